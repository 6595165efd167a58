"""The task that fits a method and transforms a table with it, reused when its inputs and its code are unchanged.

Reuse is a JSON record, ``fit.json`` in the model folder, keyed by the task's inputs (the method's
resolved settings, the data's content digest, the output folders) and its source, but not by where the
transform ran (a Dask cluster writes the same table as this process). The record is data: it holds
the key and the transform's timing, read back as numbers, so a planted or altered file is at worst a
cache miss (the fit runs again), never code. Prefect's own result persistence is off
(:func:`flows.prefect_env.prefect_settings`): its records are pickles. A run killed mid-task left no
record and no output (both are written atomically), so the next run computes it again.
"""

from __future__ import annotations

import dataclasses
import hashlib
import inspect
import json
import math
from pathlib import Path

from prefect import get_run_logger, task

from deid.faces_dask import DaskConfig
from deid.pipeline import fit_and_anonymize as _fit_and_anonymize
from deid.run import ResolvedMethod
from tasks._retry import retry_unless_deterministic

__all__ = ["fit_and_anonymize", "FIT_RECORD", "fit_key", "read_fit_record"]

#: the reuse record of a fit, in its model folder
FIT_RECORD = "fit.json"


def fit_key(spec: ResolvedMethod, images_dir: str, data_digest: str, model_dir: str, out_dir: str,
            batch_size: int) -> str:
    """What a fit and its outputs are made of: the resolved method, the data, the folders and this
    module's source."""
    made_of = json.dumps({"spec": dataclasses.asdict(spec), "images": str(images_dir), "data": data_digest,
                          "model": str(model_dir), "out": str(out_dir), "batch": batch_size,
                          "code": inspect.getsource(_run)}, sort_keys=True, default=str)
    return hashlib.blake2b(made_of.encode(), digest_size=16).hexdigest()


def read_fit_record(model_dir: str | Path, key: str) -> dict | None:
    """The stats of a finished fit with this ``key``, or None: absent, unreadable, another key, or any
    field that is not a finite number (a tampered record is a miss)."""
    p = Path(model_dir) / FIT_RECORD
    try:
        rec = json.loads(p.read_text(encoding="utf-8"))
    except (OSError, UnicodeDecodeError, ValueError):
        return None
    if not isinstance(rec, dict) or rec.get("key") != key or not isinstance(rec.get("stats"), dict):
        return None
    stats = {}
    for k, v in rec["stats"].items():
        if not isinstance(k, str) or isinstance(v, bool) or not isinstance(v, int | float) or not math.isfinite(v):
            return None
        stats[k] = v
    return stats


def _write_fit_record(model_dir: str | Path, key: str, stats: dict) -> None:
    from data_contracts.atomic import atomic_file

    numbers = {k: v for k, v in stats.items() if isinstance(v, int | float) and not isinstance(v, bool)}
    with atomic_file(Path(model_dir) / FIT_RECORD) as tmp:
        tmp.write_text(json.dumps({"key": key, "stats": numbers}), encoding="utf-8")


def _run(spec: ResolvedMethod, images_dir: str, data_digest: str, model_dir: str, out_dir: str, batch_size: int,
         dask: DaskConfig | None) -> dict:
    key = fit_key(spec, images_dir, data_digest, model_dir, out_dir, batch_size)
    if (Path(model_dir) / "method.json").exists() and Path(out_dir).is_dir():
        done = read_fit_record(model_dir, key)
        if done is not None:
            get_run_logger().info("'%s': fitted and transformed before with the same inputs; reused", spec.key)
            return done
    stats = dict(_fit_and_anonymize(spec.name, spec.kwargs(), images_dir, model_dir, out_dir, label=spec.key,
                                    batch_size=batch_size, progress=True, dask=dask))
    _write_fit_record(model_dir, key, stats)
    get_run_logger().info("'%s' %s: fitted in %.1f s, %d images at %.0f images/s on %d worker(s)", spec.key,
                          spec.given_params(), stats["fit_seconds"], stats["rows"], stats["images_per_s"],
                          stats.get("workers", 1))
    return stats


@task(retries=1, tags=["compute-heavy"], retry_condition_fn=retry_unless_deterministic, task_run_name="fit {spec.key}")
def fit_and_anonymize(spec: ResolvedMethod, images_dir: str, data_digest: str, model_dir: str, out_dir: str,
                      batch_size: int, dask: DaskConfig | None = None) -> dict:
    """Fit ``spec`` (resolved once by :func:`deid.run.resolve_run`, its target bound to the data) on the training split, save it to ``model_dir``, and
    de-identify every split into ``out_dir``; ``data_digest`` (the images' content digest) keys the reuse
    record. With ``dask`` (the run's ``dask`` config) a per-image method transforms on that Dask cluster;
    a set-level one (k-Same) in this process."""
    return _run(spec, images_dir, data_digest, model_dir, out_dir, batch_size, dask)

