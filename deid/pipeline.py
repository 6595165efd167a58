"""Parquet-to-Parquet steps around a method: fit on the training split, transform a table. The run
settings every driver resolves once before any fitting are :mod:`deid.run`'s.

Per-image methods stream the input by row group (memory stays flat); set-level methods (k-Same
and its relatives) see each split whole, because their guarantee is about the set. Per-image
methods may also run on Dask workers (``deid/transform_dask.py``), which write the same table;
set-level methods always run in one process.
"""

from __future__ import annotations

import time
from pathlib import Path
from typing import TYPE_CHECKING, Any

from data_contracts import IMAGES_SCHEMA, SPLITS, atomic_dir, iter_batches, read_table
from deid.batches import COLUMNS, SplitWriters, TransformStats, transform_batch, transform_batches
from deid.data import image_set_from_table, load_image_set
from deid.methods import DeidMethod, get_method

if TYPE_CHECKING:
    from deid.config import RunConfig
    from deid.faces_dask import DaskConfig

__all__ = ["fit_method", "anonymize_table", "fit_and_anonymize", "FIT_SPLITS", "identities_of",
           "public_config"]

#: the splits every method is fitted on
FIT_SPLITS: tuple[str, ...] = ("train",)



def fit_method(name: str, params: dict, images_dir: str | Path, model_dir: str | Path, *,
               splits: tuple[str, ...] = FIT_SPLITS) -> DeidMethod:
    """Fit method ``name`` on the given splits of an images table and save it to ``model_dir``.

    A method that does not learn (``learns = False``: blur, pixelate, ...) is fitted on one image."""
    method = get_method(name, **params)
    if method.learns:
        train = load_image_set(images_dir, splits=splits)
    else:
        train = image_set_from_table(next(iter_batches(images_dir, IMAGES_SCHEMA, columns=COLUMNS, splits=splits,
                                                       batch_size=1)))
    method.fit(train.X, train.identity, train.label)
    with atomic_dir(model_dir) as tmp:
        method.save(tmp)
    return method


def anonymize_table(method: DeidMethod, images_dir: str | Path, out_dir: str | Path, *, label: str | None = None,
                    batch_size: int = 256, progress: bool = False) -> TransformStats:
    """De-identify every row of an images table into an ``anonymized`` table, written atomically, in this process.

    Output rows keep ``image_id`` (for the audit) and never the source path. Returns timing
    split into decode / model / encode. :func:`deid.transform_dask.anonymize_table_dask` writes
    the same table from Dask workers.
    """
    from tqdm.auto import tqdm

    from data_contracts import count_rows

    label = label or method.name
    t0 = time.perf_counter()
    bar = tqdm(total=count_rows(images_dir), desc=f"transform {label}", unit="img", disable=not progress)
    with atomic_dir(out_dir) as tmp:
        writers = SplitWriters(tmp, images_dir)
        if method.set_level:  # the whole split at once: the method's guarantee is about the set
            batches = (read_table(images_dir, IMAGES_SCHEMA, columns=COLUMNS, splits=(s,)) for s in SPLITS)
        else:
            batches = transform_batches(images_dir, batch_size)
        for t in batches:
            if t.num_rows == 0:
                continue
            writers.write(*transform_batch(method, t, label))
            bar.update(t.num_rows)
        writers.close()
    bar.close()
    return writers.stats(time.perf_counter() - t0, workers=1)


def fit_and_anonymize(name: str, params: dict, images_dir: str | Path, model_dir: str | Path, out_dir: str | Path, *,
                      label: str | None = None, batch_size: int = 256, progress: bool = False,
                      dask: "DaskConfig | None" = None, workers: int = 1) -> TransformStats:
    """Fit method ``name`` on the training split, save it to ``model_dir`` and de-identify every row of
    the images table into ``out_dir``; returns the transform's timing with ``fit_seconds``.

    With a ``dask`` config (a scheduler address, or a local cluster) or ``workers > 1`` (a local
    cluster of that many single-threaded workers), a per-image method transforms on Dask workers
    (:func:`deid.transform_dask.anonymize_table_dask`) and writes the same table. A set-level method
    (k-Same and its relatives) always transforms in this process: it needs the whole set at once.
    """
    t0 = time.perf_counter()
    method = fit_method(name, params, images_dir, model_dir)
    fit_s = time.perf_counter() - t0
    if (dask is not None or workers > 1) and not method.set_level:
        from deid.faces_dask import DaskConfig
        from deid.transform_dask import anonymize_table_dask

        stats = anonymize_table_dask(model_dir, images_dir, out_dir, label=label or method.name,
                                     batch_size=batch_size, dask=dask or DaskConfig(n_workers=workers),
                                     progress=progress)
    else:
        stats = anonymize_table(method, images_dir, out_dir, label=label, batch_size=batch_size, progress=progress)
    return TransformStats(stats, fit_seconds=fit_s)


# -- what the run reads of the data and of its config -------------------------------------------------------
def identities_of(images_dir: str | Path, splits: tuple[str, ...] = FIT_SPLITS) -> list[str]:
    """The sorted identities of the given splits of an images table (what ``@i`` counts)."""
    t = read_table(images_dir, IMAGES_SCHEMA, columns=["identity"], splits=splits)
    return sorted({str(v) for v in t.column("identity").to_pylist()})


def public_config(cfg: "RunConfig") -> dict[str, Any]:
    """The config as logged and reported: without ``dataset.source`` (it may be a local path; the
    dataset's digest identifies the data)."""
    out = cfg.model_dump(mode="json")
    out["dataset"].pop("source", None)
    return out
