"""MLflow: where runs go, and logging a whole audit as one parent run with a nested run per method.

The local default needs no server: a SQLite store and an artifact folder under the work
directory. ``tracking.uri`` in the config points at a real server instead.
"""

from __future__ import annotations

import os
import subprocess
import warnings
from pathlib import Path
from typing import Any

import mlflow
from prefect import task

from deid.evaluation.audit import ORIGINAL, AuditResult

__all__ = ["configure_tracking", "log_audit", "git_commit", "local_tracking_uri"]


def local_tracking_uri(work: Path) -> str:
    return f"sqlite:///{(work / 'mlflow' / 'mlflow.db').resolve()}"


def configure_tracking(uri: str | None, experiment: str, work: Path) -> str:
    """Point MLflow at ``uri`` (or the local store) and make sure the experiment exists."""
    os.environ.setdefault("MLFLOW_DISABLE_TELEMETRY", "true")
    if uri is None:
        (work / "mlflow").mkdir(parents=True, exist_ok=True)
        uri = local_tracking_uri(work)
        artifacts = (work / "mlflow" / "artifacts").resolve().as_uri()
    else:
        artifacts = None
    mlflow.set_tracking_uri(uri)
    client = mlflow.MlflowClient()
    if client.get_experiment_by_name(experiment) is None:
        client.create_experiment(experiment, artifact_location=artifacts)
    mlflow.set_experiment(experiment)
    return uri


def git_commit() -> str:
    try:
        return subprocess.run(["git", "rev-parse", "HEAD"], capture_output=True, text=True, check=True,
                              cwd=Path(__file__).resolve().parent).stdout.strip()
    except (OSError, subprocess.CalledProcessError):
        return "unknown"


def _flatten(d: dict, prefix: str = "") -> dict[str, str]:
    out = {}
    for k, v in d.items():
        key = f"{prefix}{k}"
        if isinstance(v, dict):
            out.update(_flatten(v, key + "."))
        else:
            out[key] = str(v)[:500]
    return out


@task(retries=2, retry_delay_seconds=[2, 5])
def log_audit(result: AuditResult, *, run_name: str, config: dict, dataset_info: dict, images_dir: str,
              report: str, figures: list[str], verdicts: dict, model_dirs: dict[str, str],
              transform_stats: dict[str, dict], tracking_uri: str, experiment: str) -> str:
    """One parent run (config, dataset, report, figures) and one nested run per method; returns the parent id."""
    import warnings

    import pandas as pd

    summary_rows = [{"split": k, "rows": float(v)} for k, v in dataset_info.get("by_split", {}).items()]

    mlflow.set_tracking_uri(tracking_uri)
    mlflow.set_experiment(experiment)
    with mlflow.start_run(run_name=run_name) as parent:
        mlflow.set_tags({"mlflow.source.git.commit": git_commit(), "deid.dataset": dataset_info["name"],
                         "deid.dataset_digest": dataset_info["digest"]})
        mlflow.log_params(_flatten(config))
        with warnings.catch_warnings():  # a bare name is a fine source; MLflow warns it could mean several kinds
            warnings.simplefilter("ignore", UserWarning)
            ds = mlflow.data.from_pandas(pd.DataFrame(summary_rows), source=str(Path(images_dir).resolve()),
                                         name=dataset_info["name"], digest=dataset_info["digest"])
        mlflow.log_input(ds, context="evaluation")
        mlflow.log_artifact(report)
        for f in figures:
            mlflow.log_artifact(f, artifact_path="figures")
        mlflow.log_table(pd.DataFrame(result.table()), artifact_file="audit_table.json")
        for name, audit in result.methods.items():
            with mlflow.start_run(run_name=name, nested=True):
                mlflow.set_tag("deid.method", name)
                mlflow.log_metrics({k: float(v) for k, v in audit.metrics.items()})
                if name in verdicts:
                    v = verdicts[name]
                    mlflow.set_tags({"deid.verdict": "pass" if v.passed else "fail",
                                     "deid.verdict_reasons": "; ".join(v.reasons)[:5000]})
                if name in transform_stats:
                    mlflow.log_metrics({f"transform_{k}": float(v) for k, v in transform_stats[name].items()
                                        if isinstance(v, (int, float))})
                if name in model_dirs and name != ORIGINAL:
                    mlflow.log_artifacts(model_dirs[name], artifact_path="model")
        return parent.info.run_id


class _DeidMethodModel:
    """A saved de-identification method as an MLflow model: ``predict`` takes ``(N, C, H, W)`` floats."""

    def load_context(self, context) -> None:
        from deid.methods import DeidMethod

        self.method = DeidMethod.load(context.artifacts["method"])

    def predict(self, context, model_input, params=None):
        import numpy as np

        return self.method.transform(np.asarray(model_input, dtype=np.float32))


# Image arrays are not what MLflow's type-hint schemas describe, so its advice on hints is silenced.
with warnings.catch_warnings():
    warnings.simplefilter("ignore", UserWarning)
    DeidMethodModel = type("DeidMethodModel", (_DeidMethodModel, mlflow.pyfunc.PythonModel), {"__module__": __name__})


@task(retries=2, retry_delay_seconds=[2, 5])
def register_release_model(run_id: str, method: str, model_dir: str, dataset: str, release_version: str,
                           tracking_uri: str) -> str:
    """Log the released method's model to the run and point the registry alias ``release`` at it.

    Registry aliases (not the deprecated stages) name what is live: ``models:/deid-<dataset>@release``.
    """
    mlflow.set_tracking_uri(tracking_uri)
    name = f"deid-{dataset}"
    client = mlflow.MlflowClient()
    with mlflow.start_run(run_id=run_id):
        with warnings.catch_warnings():
            warnings.simplefilter("ignore", UserWarning)
            info = mlflow.pyfunc.log_model(name="release-model", python_model=DeidMethodModel(),
                                           artifacts={"method": model_dir}, pip_requirements=["deid"])
    mv = mlflow.register_model(info.model_uri, name, tags={"method": method, "release_version": release_version})
    client.set_registered_model_alias(name, "release", mv.version)
    return f"models:/{name}@release"
