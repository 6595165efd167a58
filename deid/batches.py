"""The batch steps of a transform, shared by the in-process path (:func:`deid.pipeline.anonymize_table`)
and the Dask path (:mod:`deid.transform_dask`): how an images table is cut into batches, how one batch
goes through a method, and how the ``anonymized`` rows are written per split."""

from __future__ import annotations

import time
from collections.abc import Iterator
from pathlib import Path

import numpy as np
import pyarrow as pa
import pyarrow.compute as pc

from data_contracts import ANONYMIZED_SCHEMA, IMAGES_SCHEMA, SPLITS, TableWriter, iter_batches, table_labels
from deid.imageio import array_to_pngs, images_to_array
from deid.methods import DeidMethod

__all__ = ["COLUMNS", "TransformStats", "transform_batch", "SplitWriters", "transform_batches"]

#: the images table's columns a transform reads
COLUMNS = ["image_id", "dataset", "split", "identity", "label", "image", "height", "width", "channels"]


class TransformStats(dict):
    """rows, seconds, decode/model/encode seconds, images_per_s."""


def _rows(t: pa.Table, method: str, Y: np.ndarray) -> pa.Table:
    pngs = array_to_pngs(Y)
    paths = [None] * len(pngs)
    image = pa.StructArray.from_arrays([pa.array(pngs, pa.binary()), pa.array(paths, pa.string())], ["bytes", "path"])
    return pa.table({
        "image_id": t.column("image_id"), "dataset": t.column("dataset"), "split": t.column("split"),
        "identity": t.column("identity"), "label": t.column("label"),
        "method": pa.array([method] * t.num_rows, pa.string()), "image": image,
        "height": pa.array([Y.shape[2]] * t.num_rows, pa.int32()), "width": pa.array([Y.shape[3]] * t.num_rows, pa.int32()),
        "channels": pa.array([Y.shape[1]] * t.num_rows, pa.int32()),
    })


def transform_batch(method: DeidMethod, t: pa.Table, label: str) -> tuple[pa.Table, float, float, float]:
    """One batch of an images table (the columns of :data:`COLUMNS`) through ``method``: the ``anonymized``
    rows and the seconds spent decoding, in the model and encoding."""
    a = time.perf_counter()
    X = images_to_array(t.column("image"))
    ident = np.asarray(t.column("identity").to_pylist(), dtype=object)
    util = np.asarray(t.column("label").to_pylist(), dtype=object)
    b = time.perf_counter()
    Y = method.transform(X, ident, util)
    c = time.perf_counter()
    out = _rows(t, label, Y)
    return out, b - a, c - b, time.perf_counter() - c


class SplitWriters:
    """One ``anonymized`` table folder per split with rows under ``root``, the utility label stored
    against the input's ClassLabel names; rows are written in the order they are given. Counts the
    rows and the decode / model / encode seconds of every batch written (:meth:`stats`)."""

    def __init__(self, root: Path, images_dir: str | Path):
        self.writers = {s: TableWriter(root / s, ANONYMIZED_SCHEMA, labels=table_labels(images_dir),
                                       write_empty=False) for s in SPLITS}
        self.rows, self.decode_s, self.model_s, self.encode_s = 0, 0.0, 0.0, 0.0

    def write(self, out: pa.Table, decode_s: float = 0.0, model_s: float = 0.0, encode_s: float = 0.0) -> None:
        """Write one batch of :func:`transform_batch` output with the seconds it took (writing counts as encoding)."""
        a = time.perf_counter()
        for s in SPLITS:
            part = out.filter(pc.equal(out.column("split"), s))
            if part.num_rows:
                self.writers[s].write(part)
        self.rows += out.num_rows
        self.decode_s += decode_s
        self.model_s += model_s
        self.encode_s += encode_s + (time.perf_counter() - a)

    def stats(self, seconds: float, workers: int) -> TransformStats:
        return TransformStats(rows=self.rows, seconds=seconds, decode_s=self.decode_s, model_s=self.model_s,
                              encode_s=self.encode_s, images_per_s=self.rows / seconds if seconds else 0.0,
                              workers=workers)

    def close(self) -> None:
        for w in self.writers.values():
            w.close()


def transform_batches(images_dir: str | Path, batch_size: int) -> Iterator[pa.Table]:
    """The input batches of the per-image path: each row group of the images table, sliced to ``batch_size``.
    Both the in-process and the Dask transform cut the table this way, so they write the same rows."""
    for t in iter_batches(images_dir, IMAGES_SCHEMA, columns=COLUMNS, batch_size=batch_size):
        if t.num_rows:
            yield t
