"""Parquet-to-Parquet steps around a method: fit on the training split, transform a table.

Per-image methods stream the input by row group (memory stays flat); set-level methods (k-Same
and its relatives) see each split whole, because their guarantee is about the set.
"""

from __future__ import annotations

import time
from pathlib import Path

import numpy as np
import pyarrow as pa
import pyarrow.compute as pc

from data_contracts import (ANONYMIZED_SCHEMA, IMAGES_SCHEMA, SPLITS, TableWriter, atomic_dir, iter_batches, read_table,
                            table_labels)
from deid.data import load_image_set
from deid.imageio import array_to_pngs, images_to_array
from deid.methods import DeidMethod, get_method

__all__ = ["fit_method", "anonymize_table", "TransformStats"]

_COLS = ["image_id", "dataset", "split", "identity", "expression", "image", "height", "width", "channels"]


def fit_method(name: str, params: dict, images_dir: str | Path, model_dir: str | Path, *,
               splits: tuple[str, ...] = ("train",)) -> DeidMethod:
    """Fit method ``name`` on the given splits of an images table and save it to ``model_dir``."""
    train = load_image_set(images_dir, splits=splits)
    method = get_method(name, **params)
    method.fit(train.X, train.identity, train.expression)
    with atomic_dir(model_dir) as tmp:
        method.save(tmp)
    return method


class TransformStats(dict):
    """rows, seconds, decode/model/encode seconds, images_per_s."""


def _rows(t: pa.Table, method: str, Y: np.ndarray) -> pa.Table:
    pngs = array_to_pngs(Y)
    paths = [None] * len(pngs)
    image = pa.StructArray.from_arrays([pa.array(pngs, pa.binary()), pa.array(paths, pa.string())], ["bytes", "path"])
    return pa.table({
        "image_id": t.column("image_id"), "dataset": t.column("dataset"), "split": t.column("split"),
        "identity": t.column("identity"), "expression": t.column("expression"),
        "method": pa.array([method] * t.num_rows, pa.string()), "image": image,
        "height": pa.array([Y.shape[2]] * t.num_rows, pa.int32()), "width": pa.array([Y.shape[3]] * t.num_rows, pa.int32()),
        "channels": pa.array([Y.shape[1]] * t.num_rows, pa.int32()),
    })


def anonymize_table(method: DeidMethod, images_dir: str | Path, out_dir: str | Path, *, label: str | None = None,
                    batch_size: int = 256, progress: bool = False) -> TransformStats:
    """De-identify every row of an images table into an ``anonymized`` table, written atomically.

    Output rows keep ``image_id`` (for the audit) and never the source path. Returns timing
    split into decode / model / encode.
    """
    from tqdm.auto import tqdm

    label = label or method.name
    t_dec = t_mod = t_enc = 0.0
    n = 0
    t0 = time.perf_counter()
    from data_contracts import count_rows

    bar = tqdm(total=count_rows(images_dir), desc=f"transform {label}", unit="img", disable=not progress)
    with atomic_dir(out_dir) as tmp:
        # one folder per split with rows, the utility label stored against the input's ClassLabel names
        writers = {s: TableWriter(tmp / s, ANONYMIZED_SCHEMA, labels=table_labels(images_dir), write_empty=False)
                   for s in SPLITS}
        if method.set_level:
            batches = (read_table(images_dir, IMAGES_SCHEMA, columns=_COLS, splits=(s,)) for s in SPLITS)
        else:
            batches = iter_batches(images_dir, IMAGES_SCHEMA, columns=_COLS, batch_size=batch_size)
        for t in batches:
            if t.num_rows == 0:
                continue
            a = time.perf_counter()
            X = images_to_array(t.column("image"))
            ident = np.asarray(t.column("identity").to_pylist(), dtype=object)
            util = np.asarray(t.column("expression").to_pylist(), dtype=object)
            b = time.perf_counter()
            Y = method.transform(X, ident, util)
            c = time.perf_counter()
            out = _rows(t, label, Y)
            for s in SPLITS:
                part = out.filter(pc.equal(out.column("split"), s))
                if part.num_rows:
                    writers[s].write(part)
            d = time.perf_counter()
            t_dec, t_mod, t_enc = t_dec + (b - a), t_mod + (c - b), t_enc + (d - c)
            n += t.num_rows
            bar.update(t.num_rows)
        for w in writers.values():
            w.close()
    bar.close()
    secs = time.perf_counter() - t0
    return TransformStats(rows=n, seconds=secs, decode_s=t_dec, model_s=t_mod, encode_s=t_enc,
                          images_per_s=n / secs if secs else 0.0)
