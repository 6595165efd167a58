"""Tasks that fit a method and transform a table with it."""

from __future__ import annotations

from pathlib import Path

from prefect import get_run_logger, task

from deid.methods import DeidMethod
from deid.pipeline import anonymize_table as _anonymize, fit_method as _fit
from tasks._retry import retry_unless_deterministic

__all__ = ["fit_method", "anonymize_table"]


@task(retries=1, tags=["compute-heavy"], retry_condition_fn=retry_unless_deterministic)
def fit_method(name: str, params: dict, images_dir: str, model_dir: str) -> str:
    """Fit on the training split and save; returns the model directory."""
    _fit(name, params, images_dir, model_dir)
    get_run_logger().info("fitted '%s' %s → %s", name, params, model_dir)
    return model_dir


@task(retries=1, tags=["compute-heavy"], retry_condition_fn=retry_unless_deterministic)
def anonymize_table(model_dir: str, images_dir: str, out_dir: str, label: str, batch_size: int) -> dict:
    """Load the saved method and transform every split into an anonymized table."""
    method = DeidMethod.load(model_dir)
    stats = _anonymize(method, images_dir, out_dir, label=label, batch_size=batch_size, progress=True)
    get_run_logger().info("'%s': %d images at %.0f images/s", label, stats["rows"], stats["images_per_s"])
    return dict(stats, out_dir=str(Path(out_dir)))
