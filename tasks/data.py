"""Tasks for getting data into the contract: generate the built-in set, ingest a dataset."""

from __future__ import annotations

from pathlib import Path

from prefect import get_run_logger, task

from deid.config import DatasetConfig
from deid.datasets.synthetic import SyntheticFergConfig, generate_ferg_like as _generate
from deid.faces_dask import DaskConfig
from deid.ingest import IngestSummary, ingest_dataset as _ingest
from tasks._retry import retry_unless_deterministic

__all__ = ["generate_ferg_like", "ingest_dataset"]


@task(retries=2, retry_delay_seconds=[2, 5], retry_condition_fn=retry_unless_deterministic,
      task_run_name="generate the built-in set")
def generate_ferg_like(out_dir: str, spec: SyntheticFergConfig) -> str:
    """Draw the FERG-like tree (idempotent: an existing tree with the same settings is kept)."""
    root = _generate(out_dir, spec, progress=True)
    get_run_logger().info("built-in FERG-like data at %s", root)
    return str(root)


@task(retries=2, retry_delay_seconds=[2, 5, 15], retry_condition_fn=retry_unless_deterministic,
      task_run_name="ingest {ds.name}")
def ingest_dataset(ds: DatasetConfig, root: str, out_dir: str, dask: DaskConfig | None = None) -> IngestSummary:
    """Ingest dataset ``ds`` from ``root`` into Parquet; reuses the output when files and settings are unchanged."""
    dataset = ds.name
    summary = _ingest(dataset, root, out_dir, preprocess=ds.preprocess, split=ds.split,
                      loader_options=ds.loader_options, progress=True, dask=dask,
                      utility_attribute=ds.utility_attribute)
    log = get_run_logger()
    log.info("%s: input %d = written %d + quarantined %d%s", dataset, summary.input, summary.written,
             summary.quarantined, " (reused)" if summary.reused else "")
    if not summary.reconciles():
        raise RuntimeError(f"ingest of {dataset} does not reconcile: {summary}")
    if summary.quarantined:
        log.warning("quarantined %d files: %s (see %s)", summary.quarantined, summary.quarantine_reasons,
                    Path(out_dir) / "quarantine")
    return summary
