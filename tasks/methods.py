"""The task that fits a method and transforms a table with it, cached on its inputs and its code.

Reuse is Prefect's: the cache key is the task's inputs (the method's resolved settings, the data's
content digest, the output folders) and its source, but not where the transform ran (a Dask cluster
writes the same table as this process); the result (the transform's timing) is persisted under the
work directory, never inside a data folder. A run killed mid-task left no result and no
output (outputs are written atomically), so the next run computes it again.
"""

from __future__ import annotations

from pathlib import Path

from prefect import Task, get_run_logger, task
from prefect.cache_policies import INPUTS, TASK_SOURCE

from deid.config import MethodSpec
from deid.faces_dask import DaskConfig
from deid.pipeline import fit_and_anonymize as _fit_and_anonymize
from tasks._retry import retry_unless_deterministic

__all__ = ["fit_and_anonymize", "fit_and_anonymize_in", "RESULTS_DIR"]

#: where cached task results live, under the work directory
RESULTS_DIR = Path("cache") / "task-results"


@task(retries=1, tags=["compute-heavy"], retry_condition_fn=retry_unless_deterministic,
      cache_policy=(INPUTS - "dask") + TASK_SOURCE, persist_result=True)
def fit_and_anonymize(spec: MethodSpec, images_dir: str, data_digest: str, model_dir: str, out_dir: str,
                      batch_size: int, dask: DaskConfig | None = None) -> dict:
    """Fit ``spec`` (parameters already resolved) on the training split, save it to ``model_dir``, and
    de-identify every split into ``out_dir``; ``data_digest`` (the images' content digest) keys the cache.
    With ``dask`` (the run's ``dask`` config) a per-image method transforms on that Dask cluster; a
    set-level one (k-Same) in this process."""
    stats = _fit_and_anonymize(spec.name, spec.params, images_dir, model_dir, out_dir, label=spec.key,
                               batch_size=batch_size, progress=True, dask=dask)
    get_run_logger().info("'%s' %s: fitted in %.1f s, %d images at %.0f images/s on %d worker(s)", spec.key,
                          spec.params, stats["fit_seconds"], stats["rows"], stats["images_per_s"],
                          stats.get("workers", 1))
    return dict(stats)


def fit_and_anonymize_in(work: Path, model_dir: Path, out_dir: Path) -> Task:
    """:func:`fit_and_anonymize` with its results kept under ``work``; the cache is refreshed when the
    model or the output folder is gone (deleted by hand, or a run killed between the two)."""
    present = (Path(model_dir) / "method.json").exists() and Path(out_dir).is_dir()
    return fit_and_anonymize.with_options(result_storage=(work / RESULTS_DIR).resolve(),
                                          refresh_cache=not present)
