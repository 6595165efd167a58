"""MLflow for the study: its own run (settings and provenance), and reading a study back from the store.

A study is a ``study-<id>`` run (tag ``deid.kind=study``, artifact ``study_meta.json``) beside one
parent run per (dataset, seed), logged by :func:`tasks.tracking.log_audit` with a nested run per
setting (tags ``deid.kind=method``, ``deid.key``, ``deid.setting``, ...). ``docs/RESULTS.md`` is
rendered from what :func:`collect` reads back, so ``deid study --from-mlflow`` needs the store only.
"""

from __future__ import annotations

from pathlib import Path

import mlflow
from prefect import task

from deid.reporting.sections import kept_sections
from deid.reporting.study import Aggregate, Record, aggregate, frontier_plot, lambda_sweep_plot, render_results
from deid.study_plan import EXPERIMENT, full_estimate
from data_contracts.atomic import write_text_atomic
from tasks._retry import retry_unless_deterministic

__all__ = ["open_study", "log_study_meta", "collect", "write_results", "render_study"]


@task(retries=2, retry_delay_seconds=[2, 5], retry_condition_fn=retry_unless_deterministic)
def open_study(tracking_uri: str, experiment: str, study_id: str, mode: str) -> str:
    """The study's own run; returns its id."""
    client = mlflow.MlflowClient(tracking_uri)
    exp = client.get_experiment_by_name(experiment)
    run = client.create_run(exp.experiment_id, run_name=f"study-{study_id}",
                            tags={"deid.kind": "study", "deid.study": study_id, "deid.mode": mode})
    client.set_terminated(run.info.run_id)
    return run.info.run_id


@task(retries=2, retry_delay_seconds=[2, 5], retry_condition_fn=retry_unless_deterministic)
def log_study_meta(tracking_uri: str, run_id: str, meta: dict, wall_seconds: float | None = None) -> None:
    """The study's settings and provenance (written at the start too, so an interrupted study still renders)."""
    client = mlflow.MlflowClient(tracking_uri)
    client.log_dict(run_id, meta, "study_meta.json")
    if wall_seconds is not None:
        client.log_metric(run_id, "wall_seconds", wall_seconds)


def collect(tracking_uri: str, study_id: str | None = None, experiment: str = EXPERIMENT) -> tuple[list[Record], dict]:
    """Read one study's method runs and its provenance back from the store (latest study by default)."""
    mlflow.set_tracking_uri(tracking_uri)
    studies = mlflow.search_runs(experiment_names=[experiment], filter_string="tags.`deid.kind` = 'study'",
                                 order_by=["start_time DESC"])
    if study_id is None:
        if studies.empty:
            raise LookupError(f"no study runs in experiment '{experiment}' at {tracking_uri}")
        study_id = studies.iloc[0]["tags.deid.study"]
    row = studies[studies["tags.deid.study"] == study_id]
    if row.empty:
        raise LookupError(f"study '{study_id}' not found in experiment '{experiment}'")
    meta = mlflow.artifacts.load_dict(f"runs:/{row.iloc[0]['run_id']}/study_meta.json")
    wall = row.iloc[0].get("metrics.wall_seconds")
    if meta.get("mode") == "quick" and wall == wall and wall is not None:
        full_runs = studies[(studies["tags.deid.mode"] == "full") & studies["metrics.wall_seconds"].notna()]
        if not full_runs.empty:  # a measured full study in this store says more than any scaling
            last = full_runs.iloc[0]
            fmeta = mlflow.artifacts.load_dict(f"runs:/{last['run_id']}/study_meta.json")
            meta["full_estimate"] = (f"the last full study in this store (`{last['tags.deid.study']}`) took "
                                     f"{last['metrics.wall_seconds'] / 60:.0f} min with {fmeta.get('workers', 1)} "
                                     f"worker process(es), load average at start {fmeta.get('load_start', '?')}")
        else:
            meta["full_estimate"] = full_estimate(float(wall), len(meta.get("seeds", [0])),
                                                  max(len(v) for v in meta.get("settings", {"": [0]}).values()))
    df = mlflow.search_runs(experiment_names=[experiment], max_results=50000,
                            filter_string=f"tags.`deid.study` = '{study_id}' and tags.`deid.kind` = 'method'",
                            order_by=["start_time ASC"])
    records = []
    order = {ds: ks for ds, ks in meta.get("settings", {}).items()}
    for _, r in df.iterrows():
        metrics = {c[len("metrics."):]: float(r[c]) for c in df.columns if c.startswith("metrics.") and r[c] == r[c]}
        records.append(Record(r["tags.deid.dataset"], int(r["tags.deid.seed"]), r["tags.deid.key"],
                              "original" if r["tags.deid.key"] == "original" else r["tags.deid.registered"],
                              r["tags.deid.setting"] if r["tags.deid.key"] != "original" else "",
                              metrics, r["run_id"]))
    rank = {(ds, k): i for ds, ks in order.items() for i, k in enumerate(ks)}
    records.sort(key=lambda x: (x.dataset != "ferg", rank.get((x.dataset, x.key), -1), x.seed))
    return records, meta


def write_results(tracking_uri: str, study_id: str | None, out: Path, experiment: str = EXPERIMENT) -> Path:
    """Render ``out/RESULTS.md`` and its plots from one study in the store; returns the file's path."""
    records, meta = collect(tracking_uri, study_id, experiment)
    aggs: dict[str, list[Aggregate]] = aggregate(records)
    out.mkdir(parents=True, exist_ok=True)
    plot = frontier_plot(aggs, out / "results_frontier.png")
    sweep = lambda_sweep_plot(aggs, out / "results_lambda_sweep.png")
    path = out / "RESULTS.md"
    # the sections other tools write into RESULTS.md (bench_release's full-size run) are kept
    write_text_atomic(path, render_results(aggs, meta, plot.name, sweep.name if sweep else None) + kept_sections(path))
    return path


@task
def render_study(tracking_uri: str, study_id: str, out: str, experiment: str = EXPERIMENT) -> str:
    """:func:`write_results` as the study flow's last step; returns the file's path."""
    return str(write_results(tracking_uri, study_id, Path(out), experiment))
