"""Images kept on disk and read a chunk at a time, so the audit's memory does not grow with the data.

A table's images are decoded once into a ``uint8`` ``.npy`` file (``(N, C, H, W)``, a quarter of the
``float32`` size), written sequentially with plain file writes. :class:`Pixels` is a read-only view of
rows of such a file: indexing it with a slice, an index array or a boolean mask gives another view and
reads nothing; ``np.asarray(view)`` (or :meth:`Pixels.read`) reads those rows as ``float32`` in
``[0, 1]``, the library's image convention. Every read maps the file, copies the rows out and unmaps it
again, so the pages of earlier chunks do not stay in the process's resident set.

Code that loops over ``X[s:s + step]`` works unchanged on a ``numpy`` array or on :class:`Pixels`;
:func:`chunks` is that loop, with a chunk size from :data:`CHUNK_VALUES`.
"""

from __future__ import annotations

import hashlib
from collections.abc import Callable, Iterable, Iterator
from pathlib import Path

import numpy as np

__all__ = ["Pixels", "CHUNK_VALUES", "chunk_rows", "chunks", "write_pixels", "map_pixels", "is_lazy"]

#: values (pixels or features) one chunk holds; 4M float32 values are 16 MB
CHUNK_VALUES = 4_000_000


def chunk_rows(shape: tuple[int, ...], values: int | None = None) -> int:
    """Rows per chunk for arrays of ``shape`` (first axis rows) so a chunk holds about ``values`` values."""
    per_row = int(np.prod(shape[1:], dtype=np.int64)) or 1
    return max(1, (values or CHUNK_VALUES) // per_row)


def chunks(X, rows: int | None = None) -> Iterator[tuple[int, np.ndarray]]:
    """``(start, chunk)`` over the rows of ``X`` (an array, kept in its dtype, or :class:`Pixels`, read as
    ``float32``), in order."""
    step = rows or chunk_rows(X.shape)
    for s in range(0, len(X), step):
        yield s, np.asarray(X[s:s + step])


def is_lazy(X) -> bool:
    return isinstance(X, Pixels)


class Pixels:
    """A read-only ``float32`` ``(N, C, H, W)`` view, in ``[0, 1]``, of rows of a ``uint8`` ``.npy`` file."""

    ndim = 4
    dtype = np.dtype(np.float32)

    def __init__(self, path: str | Path, rows: np.ndarray | None = None, *, _shape: tuple[int, ...] | None = None):
        self.path = Path(path)
        if _shape is None:
            mm = np.load(self.path, mmap_mode="r", allow_pickle=False)
            if mm.dtype != np.uint8 or mm.ndim != 4:
                raise ValueError(f"{self.path}: expected uint8 (N, C, H, W), got {mm.dtype} {mm.shape}")
            _shape = tuple(mm.shape)
            del mm
        self._file_shape = _shape
        self.rows = None if rows is None else np.asarray(rows, dtype=np.int64)

    # -- shape --------------------------------------------------------------------------------------
    def __len__(self) -> int:
        return self._file_shape[0] if self.rows is None else len(self.rows)

    @property
    def shape(self) -> tuple[int, ...]:
        return (len(self), *self._file_shape[1:])

    @property
    def size(self) -> int:
        return int(np.prod(self.shape, dtype=np.int64))

    def __repr__(self) -> str:
        return f"Pixels({self.path.name}, shape={self.shape})"

    # -- views ----------------------------------------------------------------------------------------
    def _positions(self) -> np.ndarray:
        return np.arange(self._file_shape[0], dtype=np.int64) if self.rows is None else self.rows

    def __getitem__(self, key):
        if isinstance(key, (int, np.integer)):
            n = len(self)
            if not -n <= key < n:
                raise IndexError(f"row {key} out of range for {n} rows")
            return self[np.array([key])].read()[0]
        if isinstance(key, slice):
            if self.rows is None:
                start, stop, step = key.indices(self._file_shape[0])
                return Pixels(self.path, np.arange(start, stop, step, dtype=np.int64), _shape=self._file_shape)
            return Pixels(self.path, self.rows[key], _shape=self._file_shape)
        key = np.asarray(key)
        if key.dtype == bool:
            if key.shape != (len(self),):
                raise IndexError(f"boolean index of shape {key.shape} for {len(self)} rows")
            key = np.flatnonzero(key)
        elif not np.issubdtype(key.dtype, np.integer):
            raise IndexError(f"Pixels are indexed by rows (slice, integers, boolean mask), not {key.dtype}")
        key = key.astype(np.int64, copy=False)
        if key.size and (key.min() < -len(self) or key.max() >= len(self)):
            raise IndexError(f"row index out of range for {len(self)} rows")
        return Pixels(self.path, self._positions()[key], _shape=self._file_shape)

    # -- reads ----------------------------------------------------------------------------------------
    def read_uint8(self) -> np.ndarray:
        """The rows as ``uint8`` ``(n, C, H, W)`` (a copy; the file is unmapped again)."""
        mm = np.load(self.path, mmap_mode="r", allow_pickle=False)
        try:
            if self.rows is None:
                return np.array(mm)
            if len(self.rows) and np.all(np.diff(self.rows) == 1):  # a contiguous run: one slice
                return np.array(mm[self.rows[0]:self.rows[-1] + 1])
            return mm[self.rows]  # fancy indexing copies
        finally:
            del mm

    def read(self) -> np.ndarray:
        """The rows as ``float32`` ``(n, C, H, W)`` in ``[0, 1]``."""
        return self.read_uint8().astype(np.float32) / np.float32(255.0)

    def __array__(self, dtype=None, copy=None):
        x = self.read()
        return x if dtype is None else x.astype(dtype, copy=False)

    def key(self) -> str:
        """What identifies these rows of this file (for memoising work on the same rows)."""
        h = hashlib.blake2b(str(self.path.resolve()).encode(), digest_size=16)
        h.update(repr(self._file_shape).encode())
        if self.rows is not None:
            h.update(np.ascontiguousarray(self.rows).tobytes())
        return h.hexdigest()


def write_pixels(path: str | Path, shape: tuple[int, ...], batches: Iterable[np.ndarray]) -> Pixels:
    """Write ``uint8`` batches (rows in order, ``(b, C, H, W)``) to the ``.npy`` file ``path``, atomically.

    ``shape`` is the whole array's; the batches must fill it exactly. Written with plain writes (no
    memory map), so the process holds one batch at a time.
    """
    from data_contracts.atomic import atomic_file

    path = Path(path)
    n = 0
    with atomic_file(path) as tmp:
        with open(tmp, "wb") as f:
            np.lib.format.write_array_header_1_0(f, {"descr": np.lib.format.dtype_to_descr(np.dtype(np.uint8)),
                                                     "fortran_order": False, "shape": tuple(shape)})
            for b in batches:
                b = np.ascontiguousarray(b, dtype=np.uint8)
                if b.shape[1:] != tuple(shape[1:]):
                    raise ValueError(f"batch of shape {b.shape[1:]} for images of shape {tuple(shape[1:])}")
                f.write(b.tobytes())
                n += len(b)
            if n != shape[0]:
                raise ValueError(f"{n} rows written for a shape of {shape[0]}")
    return Pixels(path)


def map_pixels(fn: Callable[[np.ndarray], np.ndarray], X, path: str | Path) -> Pixels:
    """``fn`` (float32 images → float32 images of the same shape) applied chunk by chunk to ``X``,
    the result stored as ``uint8`` at ``path``."""
    from deid.imageio import to_uint8

    return write_pixels(path, tuple(X.shape), (to_uint8(fn(c)) for _, c in chunks(X)))
