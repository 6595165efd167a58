"""What a run concluded, recorded where people look: tags and artifacts on the MLflow parent run,
and a Prefect markdown artifact with the verdict table on the flow run."""

from __future__ import annotations

from prefect import get_run_logger, task

from deid.reporting.summary import RunSummaryDoc
from deid.reporting.text import verdict_markdown

__all__ = ["record_outcome"]


@task
def record_outcome(run_id: str, tracking_uri: str, summary: dict, report: str, summary_path: str) -> None:
    """Tag the parent run with the audit's verdicts and the release, attach the final report
    (internal) and ``summary.json``, and leave the verdict table on the Prefect flow run."""
    import mlflow
    from prefect.artifacts import create_markdown_artifact

    doc = RunSummaryDoc.model_validate(summary)
    client = mlflow.MlflowClient(tracking_uri)
    tags = {"deid.audit": "sound" if doc.audit.sound else "inconclusive",
            "deid.release": doc.release.status,
            "deid.outcome": doc.outcome}
    if doc.release.version:
        tags["deid.release_version"] = doc.release.version
    for name, m in doc.methods.items():
        if m.verdict:
            tags[f"deid.verdict.{name}"] = m.verdict
    for k, v in tags.items():
        client.set_tag(run_id, k, v)
    client.log_artifact(run_id, report, artifact_path="internal")
    client.log_artifact(run_id, summary_path)
    key = "deid-verdict-" + "".join(c if c.isalnum() else "-" for c in doc.config_name.lower())
    create_markdown_artifact(verdict_markdown(doc), key=key[:64].strip("-"),
                             description=f"deid audit verdicts for {doc.config_name}")
    get_run_logger().info("outcome: %s (audit %s, release %s)", doc.outcome, tags["deid.audit"], doc.release.status)
