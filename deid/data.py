"""Images and labels: a contract-checked table read into arrays for fitting and audits.

:func:`load_image_set` decodes every image into memory; :func:`open_image_set` keeps the pixels on
disk (:class:`deid.pixels.Pixels`, ``uint8``, read a chunk at a time) and only the labels in memory,
so code that reads ``X`` in chunks holds flat memory whatever the number of images.
"""

from __future__ import annotations

from dataclasses import dataclass
from pathlib import Path

import numpy as np
import pyarrow as pa
import pyarrow.compute as pc

from data_contracts import ANONYMIZED_SCHEMA, IMAGES_SCHEMA, iter_batches, read_table, table_files
from deid.imageio import images_to_array, images_to_uint8
from deid.pixels import Pixels, write_pixels

__all__ = ["ImageSet", "load_image_set", "open_image_set", "image_set_from_table"]


@dataclass
class ImageSet:
    """``X`` float32 ``(N, C, H, W)`` in [0, 1] with per-row ids, splits and labels.

    ``X`` is a ``numpy`` array or a :class:`~deid.pixels.Pixels` view of images on disk (indexing it
    gives another view; ``np.asarray`` reads).

    ``attributes`` maps an attribute name to its float ``(N,)`` values (e.g. the built-in FERG-like
    set's ``pose_bin``); ``None`` when the table has no attributes column (de-identified tables).
    """

    X: np.ndarray | Pixels
    image_id: np.ndarray
    split: np.ndarray
    identity: np.ndarray
    label: np.ndarray
    attributes: dict[str, np.ndarray] | None = None
    #: per row, the group it belongs to (a recording, a session; ``None`` when it has none); ``None`` when
    #: the table carries no groups (de-identified tables)
    group: np.ndarray | None = None

    def __len__(self) -> int:
        return len(self.X)

    def subset(self, mask_or_index) -> "ImageSet":
        attrs = None if self.attributes is None else {k: v[mask_or_index] for k, v in self.attributes.items()}
        group = None if self.group is None else self.group[mask_or_index]
        return ImageSet(self.X[mask_or_index], self.image_id[mask_or_index], self.split[mask_or_index],
                        self.identity[mask_or_index], self.label[mask_or_index], attrs, group)

    def of_split(self, *splits: str) -> "ImageSet":
        return self.subset(np.isin(self.split, splits))

    def align_to(self, image_ids: np.ndarray) -> "ImageSet":
        """Rows reordered to follow ``image_ids``; a missing id raises ``KeyError`` naming it."""
        pos = {k: i for i, k in enumerate(self.image_id)}
        missing = [k for k in image_ids if k not in pos]
        if missing:
            raise KeyError(f"{len(missing)} ids not found, e.g. {missing[:3]}")
        return self.subset(np.array([pos[k] for k in image_ids], dtype=np.int64))


def _attributes(column: pa.ChunkedArray) -> dict[str, np.ndarray]:
    """The ``attributes`` column (a list of ``{name, value}`` records per row) as ``{name: float (N,)}``,
    keeping the names every row has once."""
    n = len(column)
    if n == 0 or column.null_count:
        return {}
    arr = column.combine_chunks()
    offsets = np.asarray(arr.offsets)
    row = np.repeat(np.arange(n), np.diff(offsets))  # the row of each flattened entry
    records = arr.flatten()  # flattened, in row order
    keys, items = records.field("name"), records.field("value")
    out: dict[str, np.ndarray] = {}
    for k in sorted(pc.unique(keys).to_pylist()):
        hit = np.asarray(pc.equal(keys, k).fill_null(False), dtype=bool)
        if np.array_equal(row[hit], np.arange(n)):
            out[k] = np.asarray(items.filter(pa.array(hit)).to_numpy(zero_copy_only=False), dtype=np.float64)
    return out


def image_set_from_table(table: pa.Table, X: np.ndarray | Pixels | None = None) -> ImageSet:
    """The rows of ``table`` as an image set; its ``image`` column decoded unless ``X`` is given."""
    return ImageSet(
        X=images_to_array(table.column("image")) if X is None else X,
        image_id=np.asarray(table.column("image_id").to_pylist(), dtype=object),
        split=np.asarray(table.column("split").to_pylist(), dtype=object),
        identity=np.asarray(table.column("identity").to_pylist(), dtype=object),
        label=np.asarray(table.column("label").to_pylist(), dtype=object),
        attributes=_attributes(table.column("attributes")) if "attributes" in table.column_names else None,
        group=np.asarray(table.column("group").to_pylist(), dtype=object) if "group" in table.column_names else None,
    )


def load_image_set(path: str | Path, *, splits: tuple[str, ...] | None = None, anonymized: bool = False) -> ImageSet:
    """Read an ``images`` (or ``anonymized``) table directory into memory, schema-checked.

    An ``images`` table's attributes come along (names present in every row); an ``anonymized``
    table has none (``attributes=None``).
    """
    schema = ANONYMIZED_SCHEMA if anonymized else IMAGES_SCHEMA
    return image_set_from_table(read_table(path, schema, columns=_columns(anonymized) + ["image"], splits=splits))


def _columns(anonymized: bool) -> list[str]:
    """The label columns an image set reads (an ``anonymized`` table has no attributes)."""
    return ["image_id", "split", "identity", "label"] + ([] if anonymized else ["attributes", "group"])


def _store_name(path: Path, splits, anonymized: bool) -> tuple[str, str]:
    """(which table, which version of it): the first from the table's path and splits, the second from its
    files' names, sizes and modification times."""
    import hashlib

    which = hashlib.blake2b(repr((str(path.resolve()), splits, anonymized)).encode(), digest_size=8).hexdigest()
    h = hashlib.blake2b(digest_size=8)
    for f in table_files(path):
        st = f.stat()
        h.update(repr((str(f.relative_to(path)) if f != path else f.name, st.st_size, st.st_mtime_ns)).encode())
    return which, h.hexdigest()


def open_image_set(path: str | Path, cache_dir: str | Path, *, splits: tuple[str, ...] | None = None,
                   anonymized: bool = False, batch_rows: int = 2048) -> ImageSet:
    """An ``images`` (or ``anonymized``) table with its pixels on disk: ``X`` is a :class:`Pixels` view.

    The images are decoded once, a row group at a time, into ``cache_dir/pixels-<table>-<version>.npy``
    (``table``: its path and ``splits``; ``version``: its files' names, sizes and modification times),
    reused while the table is unchanged and replaced when it changes. Labels are read into memory as
    :func:`load_image_set` reads them, in the same row order.
    """
    path = Path(path)
    schema = ANONYMIZED_SCHEMA if anonymized else IMAGES_SCHEMA
    labels = read_table(path, schema, columns=_columns(anonymized), splits=splits)
    which, version = _store_name(path, splits, anonymized)
    store = Path(cache_dir) / f"pixels-{which}-{version}.npy"
    for old in Path(cache_dir).glob(f"pixels-{which}-*.npy"):  # earlier versions of this table
        if old != store:
            old.unlink(missing_ok=True)
    if store.is_file() and len(Pixels(store)) != labels.num_rows:
        store.unlink()
    if not store.is_file():
        if labels.num_rows == 0:
            raise ValueError(f"{path}: no images to read")
        first = next(iter_batches(path, schema, columns=["image"], splits=splits, batch_size=1))
        one = images_to_uint8(first.column("image"))
        batches = (images_to_uint8(t.column("image"))
                   for t in iter_batches(path, schema, columns=["image"], splits=splits, batch_size=batch_rows))
        write_pixels(store, (labels.num_rows, *one.shape[1:]), batches)
    return image_set_from_table(labels, X=Pixels(store))
