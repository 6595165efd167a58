"""The anonymization flow: ingest → fit → transform → audit → report → gate → (publish).

One flow, ``anonymize``, runs any config (any registered dataset loader). The former per-dataset
names (``anonymize-ferg``, ``anonymize-jaffe``, ...) stay as aliases, one per registered loader
(built from :func:`deid.datasets.available_loaders`, no second list): the same body, refusing a
config of another dataset. Every one takes the path of a YAML config (relative to ``base``, by
default the current directory).
"""

from __future__ import annotations

import time

from dataclasses import dataclass, field
from datetime import datetime, timezone
from pathlib import Path

from prefect import flow, get_run_logger

from deid.config import RunConfig, load_config
from deid.datasets import available_loaders
from deid.errors import ConfigError, DeidError
from deid.evaluation.audit import ORIGINAL, AuditResult
from deid.evaluation.gates import CONTROLS, AuditJudgement
from deid.datasets import get_loader
from deid.ingest import IngestSummary, split_leak
from deid.prefit import check_ingested
from deid.pipeline import identities_of, public_config
from deid.provenance import git_commit
from deid.reporting.summary import ReleaseSummary, build_summary, write_summary
from deid.release import release_private_dir
from deid.release_policy import release_policy
from deid.run import ResolvedRun, resolve_run
from deid.workspace import WorkLayout, release_root
from flows.ingest import ingest_run
from tasks.audit import audit, judge_and_plot, write_report
from tasks.methods import fit_and_anonymize
from tasks.outcome import record_outcome
from tasks.release import publish_release
from tasks.tracking import configure_tracking, log_audit, register_release_model

__all__ = ["run_anonymization", "submit_methods", "audit_inputs", "judge_report_log", "Audited", "RunSummary",
           "ReleaseBlocked", "anonymize", "FLOWS", "alias_name", "anonymize_ferg"]


class ReleaseBlocked(RuntimeError):
    """The audit did not pass the release gates; nothing was published."""


@dataclass
class RunSummary:
    config_name: str
    table: list[dict]
    report: str
    mlflow_run_id: str
    tracking_uri: str
    verdicts: dict[str, dict]
    release: dict | None = None
    ingest: dict = field(default_factory=dict)
    summary: str | None = None


def _preflight(run: ResolvedRun) -> None:
    """Everything that can be checked before heavy work: fail fast with the field's name.

    The dataset source exists; the work directory and release root are folders the pipeline may
    write to (:func:`deid.workspace.check_workspace`), then claimed; the CUDA devices named exist; a
    release's policy (the owner's ``DEID_RELEASE_POLICY`` or the package's) loads.
    The ``deid`` command runs it too, before it starts a flow.
    """
    from deid.config import check_devices
    from deid.workspace import check_workspace, claim_workspace

    cfg = run.config
    src = cfg.dataset.source_path(run.base)
    if src is not None and not src.exists():
        raise ConfigError(f"dataset.source: {src} does not exist (dataset '{cfg.dataset.name}')")
    workspace = check_workspace(cfg, run.base)
    check_devices(cfg)
    if cfg.release.enabled:
        release_policy()
    claim_workspace(workspace)


@dataclass
class Audited:
    """An audit judged, reported and logged: what the release step and the summary need."""

    judgement: AuditJudgement
    figures: list[tuple[str, str]]
    report: str
    run_id: str
    verdicts: dict
    header: dict
    dataset_info: dict
    notes: list[str]
    title: str
    config: dict
    report_dir: Path


def submit_methods(run: ResolvedRun, images: Path, summary: IngestSummary, *,
                   parallel: bool = False) -> tuple[dict[str, str], dict[str, str], dict]:
    """Fit and apply every method of the run (parameters resolved once, before any fitting; '@i' targets
    bound to the training split here): returns (label → anonymized table, label → model folder, label →
    transform stats, or their futures when ``parallel``). Folders are named by what made them (every
    parameter's value, the method's defaults included, and the data's digest), so a cached result always
    matches its output."""
    cfg = run.config
    anonymized, model_dirs, stats = {}, {}, {}
    for spec in run.methods_for(identities_of(images)):
        made_of = spec.content_key(summary.digest)
        model_dir = run.run_dir / "models" / f"{spec.key}-{made_of}"
        out_dir = run.run_dir / "anonymized" / f"{spec.key}-{made_of}"
        kw = dict(spec=spec, images_dir=str(images), data_digest=summary.digest, model_dir=str(model_dir),
                  out_dir=str(out_dir), batch_size=cfg.batch_size, dask=cfg.dask)
        stats[spec.key] = fit_and_anonymize.submit(**kw) if parallel else fit_and_anonymize(**kw)
        anonymized[spec.key], model_dirs[spec.key] = str(out_dir), str(model_dir)
    return anonymized, model_dirs, stats


def audit_inputs(run: ResolvedRun, images: Path, anonymized: dict[str, str]) -> dict:
    """The :func:`tasks.audit.audit` arguments of a run (with the run's ``dask`` cluster, its rows are
    split over the cluster's workers)."""
    cfg, layout = run.config, run.layout
    return dict(images_dir=str(images), anonymized=anonymized, cfg=run.audit, dataset=cfg.dataset.name,
                real_faces=cfg.dataset.real_faces, descriptor_cache=str(layout.cache("dlib-descriptors")),
                pixel_cache=pixel_cache(run.work), row_cache=str(layout.cache("audit-rows")), dask=cfg.dask)


def pixel_cache(work: Path) -> str:
    """Where the audit keeps decoded images (``uint8``, one file per table version)."""
    return str(WorkLayout(work).cache("pixels"))


def source_facts(cfg: RunConfig) -> dict:
    """What the run knows of its source, for the dataset card: generated by the built-in drawer
    (synthetic), photographs of real people (``real_faces``), or not stated (``None``: the card then
    treats it as real people's photographs)."""
    ds = cfg.dataset
    synthetic = True if ds.source == "builtin" else False if ds.real_faces else None
    description = get_loader(ds.name).description
    if ds.source == "builtin":
        description = ("drawn by deid's built-in FERG-like generator: cartoon characters, no real person "
                       f"({ds.synthetic.n_characters} characters × 7 expressions)")
    return {"synthetic": synthetic, "description": description}


def data_checks(summary: IngestSummary, accepted: str | None, dataset_info: dict, notes: list[str]) -> list[str]:
    """What the ingest's own checks found, for the audit: returns the problems that make it inconclusive
    and adds the rest to ``notes``; a split leak is recorded in ``dataset_info`` (summary.json, the report)."""
    leak = split_leak(summary)
    if leak is None:
        return []
    found = leak.message(summary.dataset)
    dataset_info["split_leak"] = {"test_images": leak.test_images, "pairs": leak.pairs, "grouped": leak.grouped,
                                  "accepted": accepted if leak.leaks else None}
    if not leak.leaks:
        notes.append(found)
    elif accepted:
        notes.append(f"{found}; accepted by the run config: {accepted}")
    else:
        return [f"{found}, or state why it does not (audit.accept_split_leak)"]
    return []


def judge_report_log(run: ResolvedRun, result: AuditResult, images: Path, anonymized: dict[str, str],
                     model_dirs: dict[str, str], stats: dict[str, dict], summary: IngestSummary, *,
                     tracking_uri: str, started: float | None, run_name: str | None = None,
                     tags: dict | None = None, method_tags: dict | None = None, log_models: bool = True) -> Audited:
    """Judge the audit, draw its figures, write the HTML report and log it all as one MLflow parent run."""
    cfg, work = run.config, run.work
    ds = cfg.dataset
    dataset_info = {"name": ds.name, "rows": summary.written, "identities": summary.identities,
                    "by_split": summary.by_split}
    report_dir = run.run_dir / "report"
    config = public_config(cfg)
    notes = [f"ingest: input {summary.input} = written {summary.written} + quarantined {summary.quarantined}"]
    if used := sorted(k for k, v in _uses_utility(cfg).items() if v):
        notes.append(f"used the utility label when fitting (their utility is partly by construction; the unseen "
                     f"attributes show what else survives): {', '.join(used)}")
    problems = data_checks(summary, cfg.audit.accept_split_leak, dataset_info, notes)
    title = f"deid audit — {run_name or cfg.name}"
    judgement, figures = judge_and_plot(result, str(images), anonymized, cfg.gates, str(report_dir), title,
                                        pixel_cache(work), problems)
    header = {"date": datetime.now(timezone.utc).isoformat(timespec="seconds"), "code_commit": git_commit(),
              "prefect_flow_run_id": _flow_run_id(),
              "release_status": "requested" if cfg.release.enabled else "not requested",
              "release_method": cfg.release.method if cfg.release.enabled else None}
    report = write_report(result, judgement, figures, str(report_dir), title, dataset_info, config, notes, header)
    verdicts = {m: v for m, v in judgement.verdicts.items() if m != ORIGINAL}
    run_id = log_audit(result, run_name=run_name or cfg.name, config=config,
                       dataset_info={**dataset_info, "digest": summary.digest}, images_dir=str(images), report=report,
                       figures=[p for _, p in figures], verdicts=verdicts, model_dirs=model_dirs if log_models else {},
                       transform_stats=stats, tracking_uri=tracking_uri, experiment=cfg.tracking.experiment,
                       started=started, tags=tags, method_tags=method_tags)
    header["mlflow_run_id"] = run_id
    return Audited(judgement, figures, report, run_id, verdicts, header, dataset_info, notes, title, config, report_dir)


def run_anonymization(config: str | RunConfig, overrides: dict | None = None, base: str | None = None, *,
                      dataset: str | None = None) -> RunSummary:
    """The body of the ``anonymize`` flow and its aliases (callable directly from tests via a flow).

    ``dataset``: the alias flow's dataset; a config of another dataset is refused before any work."""
    started = datetime.now(timezone.utc).timestamp()
    base_dir = Path(base) if base else Path.cwd()
    cfg = _run_config(config, overrides, base_dir, dataset)
    run = resolve_run(cfg, base_dir)  # once: seeds, work dir, every method's typed parameters
    cfg, work = run.config, run.work
    _preflight(run)
    log = get_run_logger()
    tracking_uri = configure_tracking(cfg.tracking.uri, cfg.tracking.experiment, work)

    clock = {"start": time.perf_counter()}
    images, summary = ingest_run(run)
    check_ingested(run, images)  # what the table alone refuses (k, empty splits, gates), before any fit
    clock["ingest"] = time.perf_counter()
    anonymized, model_dirs, stats = submit_methods(run, images, summary)
    clock["fit_and_transform"] = time.perf_counter()
    result = audit(**audit_inputs(run, images, anonymized))
    clock["audit"] = time.perf_counter()
    a = judge_report_log(run, result, images, anonymized, model_dirs, stats, summary,
                         tracking_uri=tracking_uri, started=started)
    clock["report_and_tracking"] = time.perf_counter()
    run_dir = run.run_dir
    verdicts, run_id, header = a.verdicts, a.run_id, a.header
    out = RunSummary(cfg.name, result.table(), a.report, run_id, tracking_uri,
                     {m: {"passed": v.passed, "status": v.status, "reasons": v.reasons} for m, v in verdicts.items()},
                     ingest=summary.model_dump())
    release, blocked = ReleaseSummary(status="not requested"), None
    if cfg.release.enabled:
        release, blocked, out.release = _release(run, a, result, images, anonymized, model_dirs, base_dir,
                                                 tracking_uri)
        header.update(release_status=release.status, release_version=release.version, release_path=release.path)
    clock["release"] = time.perf_counter()
    # Rendered again with what is known only now: the MLflow run and the release.
    report = out.report = write_report(result, a.judgement, a.figures, str(a.report_dir), a.title, a.dataset_info,
                                       a.config, a.notes, header)
    doc = build_summary(config_name=cfg.name, dataset=a.dataset_info, date=header["date"],
                        code_commit=header["code_commit"], methods={n: r.metrics for n, r in result.methods.items()},
                        judgement=a.judgement, gates=cfg.gates.model_dump(), release=release,
                        used_utility_label=_uses_utility(cfg), controls=CONTROLS, reference=ORIGINAL,
                        mlflow_run_id=run_id, prefect_flow_run_id=header["prefect_flow_run_id"], report=report,
                        timings=_timings(clock, summary, stats, result), seeds=run.seed_record())
    out.summary = str(write_summary(doc, run_dir))
    record_outcome(run_id, tracking_uri, doc.model_dump(mode="json"), report, out.summary)
    if blocked is not None:
        blocked.summary = out.summary  # the caller reads this run's own summary, not the latest of its config
        raise blocked
    log.info("done: %s", out.report)
    return out


def _run_config(config: str | RunConfig, overrides: dict | None, base_dir: Path, dataset: str | None) -> RunConfig:
    """The run's config, loaded (a file relative to ``base_dir``, with ``overrides``) or as given, and
    refused when an alias flow of another dataset runs it."""
    if isinstance(config, RunConfig):
        if overrides:
            raise ConfigError("overrides apply to a config file; set the fields on the RunConfig instead")
        cfg = config
    else:
        cfg = load_config(config if Path(config).is_absolute() else base_dir / config, overrides)
    if dataset is not None and cfg.dataset.name != dataset:
        raise ConfigError(f"flow '{alias_name(dataset)}' runs '{dataset}' configs, but config '{cfg.name}' reads "
                          f"dataset '{cfg.dataset.name}': run it with the 'anonymize' flow")
    return cfg


def _release(run: ResolvedRun, a: Audited, result: AuditResult, images: Path, anonymized: dict[str, str],
             model_dirs: dict[str, str], base_dir: Path, tracking_uri: str
             ) -> tuple[ReleaseSummary, Exception | None, dict | None]:
    """The release step: (its summary, why it was blocked, the published release). Blocked by the method's
    verdict or by the release policy; else published (or reused) and its model registered."""
    cfg, work, ds = run.config, run.work, run.config.dataset
    m = cfg.release.method
    v = a.verdicts[m]
    if not v.passed:
        reasons = "; ".join(v.reasons)
        return (ReleaseSummary(status="blocked", method=m, reason=f"verdict {v.status}: {reasons}"),
                ReleaseBlocked(f"release of '{m}' blocked: the audit's verdict is {v.status}: {reasons} "
                               f"(report: {a.report})"), None)
    metrics = result.methods[m].metrics
    manifest = {"method_params": run.method(m).given_params(),
                "config_name": cfg.name, "code_commit": a.header["code_commit"], "mlflow_run_id": a.run_id,
                "audit": metrics, "verdict": {"status": v.status, "gates": cfg.gates.model_dump()},
                "preprocess": ds.preprocess.model_dump()}
    try:
        rel = publish_release(anonymized[m], str(release_root(cfg, base_dir)), ds.name, m, manifest,
                              str(images), str(release_private_dir(work)), release_policy(),
                              cfg.gates.attacker_margin, metrics, license=cfg.release.license,
                              source=source_facts(cfg))
    except DeidError as exc:  # the release policy's floors, a leak: nothing was published
        return ReleaseSummary(status="blocked", method=m, reason=str(exc)), exc, None
    # Every run makes sure the release has its registered model: a run killed between
    # publishing and registering is healed by the next one.
    rel["model_uri"] = register_release_model(a.run_id, m, model_dirs[m], ds.name, rel["version"], tracking_uri)
    return ReleaseSummary(status="reused" if rel["reused"] else "published", method=m, version=rel["version"],
                          path=rel["path"]), None, rel


def _timings(clock: dict[str, float], summary: IngestSummary, stats: dict, result: AuditResult) -> dict:
    """Wall seconds of each stage of this run (a stage served from the cache is fast), and per method
    its fit seconds and transform images/s (as measured when it was fitted) and its audit seconds."""
    marks = list(clock.items())
    stages = {name: round(t - marks[i - 1][1], 3) for i, (name, t) in enumerate(marks) if i}
    methods = {}
    for name, st in stats.items():
        st = st.result() if hasattr(st, "result") else st
        methods[name] = {k: st[k] for k in ("fit_seconds", "rows", "images_per_s") if k in st}
    for name, ma in result.methods.items():
        methods.setdefault(name, {})["audit_seconds"] = round(ma.metrics.get("seconds", float("nan")), 3)
    return {"stages_s": stages, "total_s": round(marks[-1][1] - marks[0][1], 3), "images": summary.written,
            "ingest_seen": summary.input, "methods": methods}


def _uses_utility(cfg: RunConfig) -> dict[str, bool]:
    """Which methods used the utility label when fitting (their utility is partly by construction)."""
    from deid.methods import method_class

    out = {spec.key: bool(method_class(spec.name).needs_utility) for spec in cfg.all_methods()}
    out.setdefault("blackout", False)
    return out


def _flow_run_id() -> str | None:
    from prefect.runtime import flow_run

    return str(flow_run.id) if flow_run.id else None


def _outputs(s: RunSummary) -> dict:
    return {"report": s.report, "mlflow_run_id": s.mlflow_run_id, "verdicts": s.verdicts, "release": s.release,
            "table": s.table, "summary": s.summary}


def run_name() -> str:
    """A flow run's name in Prefect's lists: the config's name (or its file's) and the UTC date and time."""
    from prefect.runtime import flow_run

    cfg = flow_run.parameters.get("config", "")
    name = cfg.name if isinstance(cfg, RunConfig) else Path(str(cfg)).stem
    return f"{name} {datetime.now(timezone.utc):%Y-%m-%d %H:%M}"


@flow(name="anonymize", log_prints=True, validate_parameters=True, flow_run_name=run_name)
def anonymize(config: str | RunConfig = "configs/ferg.yaml", overrides: dict | None = None,
              base: str | None = None) -> dict:
    """Ingest, de-identify, audit and (when the gates pass and release is on) publish the dataset of any config."""
    return _outputs(run_anonymization(config, overrides, base))


def alias_name(dataset: str) -> str:
    """The former per-dataset flow name: ``anonymize-<dataset>``."""
    return f"anonymize-{dataset}"


def _make_alias(dataset: str):
    def alias(config: str | RunConfig = f"configs/{dataset}.yaml", overrides: dict | None = None,
              base: str | None = None) -> dict:
        """The ``anonymize`` flow under its former per-dataset name: one config of this dataset."""
        return _outputs(run_anonymization(config, overrides, base, dataset=dataset))

    # A module-level name, so a deployment finds it as flows/anonymize.py:anonymize_<dataset>.
    alias.__name__ = alias.__qualname__ = _attribute(dataset)
    return flow(name=alias_name(dataset), log_prints=True, validate_parameters=True, flow_run_name=run_name)(alias)


def _attribute(dataset: str) -> str:
    return "anonymize_" + "".join(c if c.isalnum() else "_" for c in dataset)


#: dataset → its alias flow, one per registered loader
FLOWS = {d: _make_alias(d) for d in available_loaders()}
globals().update({_attribute(d): f for d, f in FLOWS.items()})
