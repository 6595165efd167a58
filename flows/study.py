"""The privacy–utility study: the anonymization pipeline driven over a plan of settings and seeds.

Every (dataset, seed) of the plan (:mod:`deid.study_plan`) is a :class:`~deid.config.RunConfig` that
goes through the same tasks as ``deid run``: ingest, fit and transform each setting (cached on its
inputs), audit, judge, report and log one MLflow parent run with a nested run per setting. A
``study-<id>`` run holds the study's settings and provenance, and ``docs/RESULTS.md`` is rendered
from what the store holds (:mod:`tasks.study`), so ``deid study --from-mlflow`` regenerates it alone.
"""

from __future__ import annotations

import os
import time
import uuid
from contextlib import nullcontext
from pathlib import Path
from typing import Callable

from prefect import flow, get_run_logger
from prefect.task_runners import ProcessPoolTaskRunner, ThreadPoolTaskRunner

from deid.audit_dask import split_methods
from deid.evaluation.audit import merge_audits
from deid.provenance import command_line, git_commit, loadavg, machine
from deid.run import resolve_run
from deid.workspace import WorkLayout
from deid.study_plan import (EXPERIMENT, STUDY_DATASETS, StudyPlan, applicable, audit_summary, describe, key, plan,
                             run_config, setting_label)
from flows.anonymize import _preflight, audit_inputs, judge_report_log, submit_methods
from flows.ingest import ingest_run
from tasks.audit import audit
from tasks.study import collect, log_study_meta, open_study, render_study, write_results
from tasks.tracking import configure_tracking

__all__ = ["study", "run_study", "plan", "StudyPlan", "collect", "write_results", "command_line", "JAFFE_DIR",
           "EXPERIMENT"]

#: where the study finds JAFFE: $DEID_JAFFE, else a ``jaffe`` folder beside the checkout's parent (the study
#: skips the dataset when it is absent)
JAFFE_DIR = Path(os.environ.get("DEID_JAFFE") or Path(__file__).resolve().parents[2] / "shared" / "data" / "jaffe")


@flow(name="study", log_prints=True, task_runner=ThreadPoolTaskRunner(max_workers=1))
def study(plan: StudyPlan, datasets: list[str], work_dir: str, out: str, tracking_uri: str | None = None,
          experiment: str = EXPERIMENT, jaffe_dir: str = str(JAFFE_DIR), command: str = "deid study",
          workers: int = 1) -> str:
    """Run the plan through the anonymization tasks, log every audit, render ``out/RESULTS.md`` from the
    store; returns its path. The task runner decides how many steps run at once (:func:`run_study`)."""
    log = get_run_logger()
    t_start = time.perf_counter()
    work = Path(work_dir).resolve()
    uri = configure_tracking(tracking_uri, experiment, work)
    study_id = time.strftime("%Y%m%d-%H%M%S-") + uuid.uuid4().hex[:6]
    meta = {"study_id": study_id, "mode": plan.mode, "experiment": experiment, "commit": git_commit(),
            "command": command, "seeds": plan.seeds, "machine": machine(), "load_start": loadavg(),
            "audit": audit_summary(plan), "datasets": {}, "skipped": {}, "settings": {}, "skipped_settings": {},
            "workers": workers}
    todo = _runnable(datasets, jaffe_dir, meta, log)
    study_run = open_study(uri, experiment, study_id, plan.mode)
    units = _ingested_units(plan, todo, work, jaffe_dir, uri, experiment, meta, log)
    log_study_meta(uri, study_run, {**meta, "status": "running"})

    units.sort(key=lambda u: (u[0].seeds.run, u[0].config.dataset.name))  # the two datasets alternate on the workers
    parts = audit_parts(len(units), workers)
    if parts > 1:
        log.info("each audit runs as %d parts, one per worker (each part audits the originals too)", parts)
    audits = []
    for run, images, summary in units:
        anonymized, model_dirs, stats = submit_methods(run, images, summary, parallel=True)
        futs = [audit.submit(**audit_inputs(run, images, part), wait_for=list(stats.values()))
                for part in split_methods(anonymized, parts)]
        audits.append((futs, (run, images, summary, anonymized, model_dirs, stats)))
    for futs, unit in audits:
        _judge_and_log(futs, unit, study_id, uri, log)
    wall = time.perf_counter() - t_start
    meta.update(load_end=loadavg(), status="done", wall_time=f"{wall / 60:.1f} min")
    log_study_meta(uri, study_run, meta, wall)
    return render_study(uri, study_id, out, experiment)


def _runnable(datasets: list[str], jaffe_dir: str, meta: dict, log) -> list[str]:
    """The datasets the study runs: a name it does not know is refused, an absent JAFFE skipped and noted."""
    todo = []
    for ds in datasets:
        if ds not in STUDY_DATASETS:
            raise ValueError(f"study datasets are {list(STUDY_DATASETS)}, got '{ds}'")
        if ds == "jaffe" and not Path(jaffe_dir).is_dir():
            meta["skipped"][ds] = f"{jaffe_dir} is absent"
            log.warning("skipping jaffe: %s is absent", jaffe_dir)
            continue
        todo.append(ds)
    return todo


def _ingested_units(p: StudyPlan, todo: list[str], work: Path, jaffe_dir: str, uri: str, experiment: str,
                    meta: dict, log) -> list[tuple]:
    """(resolved run, images, ingest summary) of every (dataset, seed), ingested in this process, with the
    settings that cannot apply named in ``meta`` and left out of the run."""
    units = []
    for ds in todo:
        for seed in p.seeds:
            run = resolve_run(run_config(p, ds, seed, work_dir=work, jaffe_dir=Path(jaffe_dir), tracking_uri=uri,
                                         experiment=experiment), work)
            _preflight(run)
            images, summary = ingest_run(run)
            run, skipped = applicable(run, summary.identities)  # settings that cannot apply are named, not run
            if skipped:
                meta["skipped_settings"][ds] = skipped
                log.warning("%s: skipping %d setting(s) whose k exceeds the %d identities", ds, len(skipped),
                            summary.identities)
            meta["datasets"][ds] = describe(p, ds, summary.written, summary.identities)
            meta["settings"][ds] = [key(m.name, m.given_params()) for m in run.methods]
            units.append((run, images, summary))
    return units


def _judge_and_log(futs: list, unit: tuple, study_id: str, uri: str, log) -> None:
    """One (dataset, seed)'s audit parts merged, judged, reported and logged as a parent run, every row
    tagged with the study, the dataset, the seed and its setting."""
    run, images, summary, anonymized, model_dirs, stats = unit
    ds, seed = run.config.dataset.name, run.seeds.run
    method_tags = {m.key: {"deid.kind": "method", "deid.study": study_id, "deid.dataset": ds, "deid.seed": str(seed),
                           "deid.key": key(m.name, m.given_params()), "deid.registered": m.name,
                           "deid.setting": setting_label(m.given_params())} for m in run.methods}
    result = merge_audits([f.result() for f in futs], order=list(anonymized))
    for name in result.methods:  # the audit's own rows: the original data and its controls
        method_tags.setdefault(name, {"deid.kind": "method", "deid.study": study_id, "deid.dataset": ds,
                                      "deid.seed": str(seed), "deid.key": name, "deid.registered": name,
                                      "deid.setting": ""})
    a = judge_report_log(run, result, images, anonymized, model_dirs, {k: f.result() for k, f in stats.items()},
                         summary, tracking_uri=uri, started=None,
                         run_name=f"study-{study_id}-{ds}-seed{seed}", log_models=False,
                         tags={"deid.study": study_id, "deid.kind": "dataset-seed"}, method_tags=method_tags)
    log.info("[%s seed %d] logged parent run %s", ds, seed, a.run_id)


def audit_parts(units: int, workers: int) -> int:
    """How many parts each (dataset, seed) audit is split into: workers the units leave idle are given
    to the audits (the full-size plan's single unit audits on both workers of a 2-core machine)."""
    return max(1, workers // max(units, 1))


def _one_torch_thread() -> None:
    import torch

    torch.set_num_threads(1)


def run_study(p: StudyPlan, datasets: list[str], *, work: Path, out: Path, tracking_uri: str | None = None,
              experiment: str = EXPERIMENT, jaffe_dir: Path = JAFFE_DIR, command: str | None = None,
              say: Callable[[str], None] = print, workers: int = 1) -> Path:
    """Run the :func:`study` flow; returns the path of ``out/RESULTS.md``.

    ``workers`` steps (fit + transform of one setting, or one audit) run at once, each in its own
    process with one torch thread when ``workers > 1``. Without a Prefect API configured, a server
    for this study starts on a free loopback port and stops with it.
    """
    runner = ProcessPoolTaskRunner(max_workers=workers, initializer=_one_torch_thread) if workers > 1 \
        else ThreadPoolTaskRunner(max_workers=1)
    if workers > 1:
        say(f"running the study's steps on {workers} worker processes")
    with _prefect_api(work, say):
        path = study.with_options(task_runner=runner)(
            plan=p, datasets=list(datasets), work_dir=str(work), out=str(out), tracking_uri=tracking_uri,
            experiment=experiment, jaffe_dir=str(jaffe_dir), command=command or "deid study", workers=workers)
    return Path(path)


def _prefect_api(work: Path, say: Callable[[str], None]):
    """The configured Prefect API, else a server for this run (:func:`flows.server_keeper.run_server`)."""
    import os

    from prefect.settings import PREFECT_API_URL

    if PREFECT_API_URL.value():
        return nullcontext()
    from flows.server_keeper import run_server

    layout = WorkLayout(work)
    home = Path(os.environ.get("PREFECT_HOME", layout.prefect))
    return run_server(home, layout.prefect_server_log, say=say)
