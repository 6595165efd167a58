"""The privacy–utility study: every registered method, at the papers' settings and a small sweep,
on the built-in FERG-like set and JAFFE, through the audit, logged to MLflow, written to docs/RESULTS.md.

Each (dataset, seed) is one MLflow parent run (logged by :func:`tasks.tracking.log_audit`) with a
nested run per method setting; a ``study-<id>`` run holds the study's settings and provenance.
``docs/RESULTS.md`` is always rendered from what :func:`mlflow.search_runs` reads back, so
``deid study --from-mlflow`` regenerates it from the store alone.
"""

from __future__ import annotations

import contextlib
import json
import os
import platform
import shlex
import sys
import time
import uuid
from dataclasses import dataclass, field
from pathlib import Path

import mlflow

from deid.reporting.study import Aggregate, Record, aggregate, frontier_plot, lambda_sweep_plot, render_results
from tasks.tracking import configure_tracking, git_commit, log_audit

__all__ = ["StudyPlan", "plan", "run_study", "collect", "write_results", "machine", "loadavg", "JAFFE_DIR",
           "EXPERIMENT"]

JAFFE_DIR = Path(__file__).resolve().parents[2] / "shared" / "data" / "jaffe"
EXPERIMENT = "deid-study"
_IGNORE_IN_LABEL = {"device", "random_state"}


@dataclass
class StudyPlan:
    """What to run. ``methods``: (registered name, params) pairs; ``ferg``: generator size."""

    mode: str
    seeds: list[int]
    methods: list[tuple[str, dict]]
    jaffe_methods: list[tuple[str, dict]] | None = None
    ferg_characters: int = 6
    ferg_per_cell: int = 30
    ferg_size: int = 50
    jaffe_size: int = 64
    audit: dict = field(default_factory=lambda: {"cnn_epochs": 15, "cnn_width": 32, "linkage_repeats": 5})

    def methods_for(self, dataset: str) -> list[tuple[str, dict]]:
        return self.jaffe_methods if dataset == "jaffe" and self.jaffe_methods is not None else self.methods


def label(params: dict) -> str:
    return ", ".join(f"{k}={v}" for k, v in params.items() if k not in _IGNORE_IN_LABEL)


def key(method: str, params: dict) -> str:
    s = label(params)
    return f"{method}[{s}]" if s else method


def plan(mode: str) -> StudyPlan:
    """The settings the papers report, and a small sweep around them; ``quick`` trims epochs and sweep."""
    from deid.methods import available_methods

    quick = mode == "quick"
    ls_ep = dict(ae_epochs=5, finetune_epochs=2) if quick else dict(ae_epochs=20, finetune_epochs=10)
    adv_ep = {"epochs": 2} if quick else {}
    m: list[tuple[str, dict]] = [
        ("blur", {"sigma": 2.0}), ("blur", {"sigma": 4.0}),
        ("pixelate", {"block": 5}),
        ("blackout", {}),
        ("ksame-pixel", {"k": 2}), ("ksame-pixel", {"k": 5}),
        ("ksame-eigen", {"k": 5}),
        ("ksame-select", {"k": 5}),
        # Nousi et al. Table 5 (FC AE, k-means centres, K=50) and Table 6 (conv, mean neighbour, α=0.8, n=9)
        ("latent_shift", {"architecture": "fc", "target": "kmeans", "n_clusters": 50, "alpha": 0.8, **ls_ep}),
        ("latent_shift", {"architecture": "conv", "target": "mean_neighbour", "alpha": 0.8, "n_neighbors": 9, **ls_ep}),
        # FaDeNet: λ as the method notes recommend
        ("fadenet", {"lam": 0.1, **({"epochs": 2, "critic_epochs": 3} if quick else {})}),
        # Feutry et al. Table 1: intertwined (one target identity) + substitution
        ("mi-adversarial", {"lam": 1.0, "target_identity": "@0", "substitute": True, **adv_ep}),
        ("substitution", {"target_identity": "@0"}),
    ]
    # the sweep around the papers' settings; quick runs its cheaper half
    m += [("pixelate", {"block": 10}), ("ksame-eigen", {"k": 2}), ("ksame-select", {"k": 2}),
          ("latent_shift", {"architecture": "conv", "target": "grid_neighbour", "n_neighbors": 5, "alpha": 0.8, **ls_ep}),
          ("fadenet", {"lam": 0.5, **({"epochs": 2, "critic_epochs": 3} if quick else {})}),
          ("mi-adversarial", {"lam": 1.0, **adv_ep})]
    if not quick:
        m += [("blur", {"sigma": 1.0}), ("pixelate", {"block": 3}), ("ksame-pixel", {"k": 10}),
              ("ksame-eigen", {"k": 10}), ("ksame-select", {"k": 10}),
              ("latent_shift", {"architecture": "fc", "target": "kmeans", "n_clusters": 10, "alpha": 0.8, **ls_ep}),
              ("latent_shift", {"architecture": "conv", "target": "mean_neighbour", "alpha": 0.4, "n_neighbors": 9, **ls_ep}),
              ("fadenet", {"lam": 0.05}),
              # Feutry et al.: the λ sweep of Fig. 2 and Table 1's targeted identities 0, 2, 3, 4, 5
              ("mi-adversarial", {"lam": 0.0}), ("mi-adversarial", {"lam": 2.0}), ("mi-adversarial", {"lam": 4.0}),
              *(("mi-adversarial", {"lam": 1.0, "target_identity": f"@{i}", "substitute": True}) for i in (2, 3, 4, 5))]
    if "ksame_net" in available_methods():
        m.append(("ksame_net", {"k": 2, **({"epochs": 6, "classifier_epochs": 3} if quick else {})}))
        if not quick:
            m.append(("ksame_net", {"k": 5}))
    known = set(available_methods())
    m = [(n, p) for n, p in m if n in known]
    if quick:
        # the informed attackers are linear (PCA + logistic regression) only: the identity and utility CNNs
        # trained on the originals (original-trained classifier, linkage features) still get 15 epochs
        return StudyPlan("quick", [0], m, ferg_per_cell=24, ferg_size=40,
                         audit={"attackers": ["linear"], "cnn_epochs": 15, "cnn_width": 16, "linkage_repeats": 3})
    # every row gets CNN and linear attackers; the images are the quick mode's size (40 px, 24 per cell)
    # so that three seeds of 33 settings fit in about an hour and a half on two cores (measured: at 50 px
    # with width-32 attackers one FERG-like audit row took ~170 s under load 3, ~4 h for the study)
    # 15 epochs, not 10: with 10 the utility CNN learned the built-in set's expressions to only 0.48 ± 0.14
    # on the originals (study 20261122-032153-f5aa11), against 0.95 with 15 in the quick run
    return StudyPlan("full", [0, 1, 2], m, ferg_per_cell=24, ferg_size=40,
                     audit={"cnn_epochs": 15, "cnn_width": 16, "linkage_repeats": 5})


def loadavg() -> str:
    try:
        return " / ".join(f"{x:.2f}" for x in os.getloadavg())
    except OSError:
        return "unavailable"


def machine() -> str:
    import torch

    cpu = platform.processor() or platform.machine()
    try:
        for line in Path("/proc/cpuinfo").read_text().splitlines():
            if line.startswith("model name"):
                cpu = line.split(":", 1)[1].strip()
                break
    except OSError:
        pass
    mem = ""
    try:
        kb = int(next(ln for ln in Path("/proc/meminfo").read_text().splitlines() if ln.startswith("MemTotal")).split()[1])
        mem = f", {kb / 1024 ** 2:.1f} GiB RAM"
    except (OSError, StopIteration, ValueError):
        pass
    return (f"{cpu}, {os.cpu_count()} logical cores{mem}, {platform.system()} {platform.release()}, "
            f"Python {platform.python_version()}, torch {torch.__version__}, "
            f"OMP_NUM_THREADS={os.environ.get('OMP_NUM_THREADS', 'unset')}, "
            f"CUDA {'yes' if torch.cuda.is_available() else 'no'}")


# -- data -------------------------------------------------------------------------------------------
def _prepare(dataset: str, p: StudyPlan, seed: int, work: Path, jaffe_dir: Path) -> tuple[str, str, dict]:
    """Ingest ``dataset`` with split seed ``seed``; returns (images dir, description, dataset info)."""
    from deid.ingest import ingest_dataset
    from deid.preprocessing import PreprocessConfig
    from deid.splits import SplitConfig

    if dataset == "ferg":
        from deid.datasets.synthetic import SyntheticFergConfig, generate_ferg_like

        gcfg = SyntheticFergConfig(p.ferg_characters, p.ferg_per_cell)
        tree = generate_ferg_like(work / "data" / f"ferg-{p.ferg_characters}x{p.ferg_per_cell}", gcfg, workers=1)
        out = work / "datasets" / f"ferg-{p.ferg_characters}x{p.ferg_per_cell}-{p.ferg_size}px-seed{seed}"
        s = ingest_dataset("ferg", tree, out, preprocess=PreprocessConfig(size=p.ferg_size),
                           split=SplitConfig(val=0.1, test=0.2, seed=seed), workers=1)
        desc = (f"built-in FERG-like generator, {p.ferg_characters} characters × 7 expressions × {p.ferg_per_cell} "
                f"images = {s.written} images, grayscale {p.ferg_size}×{p.ferg_size}, split train/val/test 0.7/0.1/0.2 "
                f"(split seed = run seed)")
    else:
        out = work / "datasets" / f"jaffe-{p.jaffe_size}px-seed{seed}"
        s = ingest_dataset("jaffe", jaffe_dir, out, preprocess=PreprocessConfig(size=p.jaffe_size),
                           split=SplitConfig(val=0.0, test=0.3, seed=seed), workers=1)
        desc = (f"JAFFE from ../shared/data/jaffe, {s.written} images, {s.identities} identities, grayscale "
                f"{p.jaffe_size}×{p.jaffe_size}, split train/test 0.7/0.3 (split seed = run seed)")
    info = {"name": dataset, "digest": s.digest, "rows": s.written, "identities": s.identities, "by_split": s.by_split}
    return str(out / "images"), desc, info


def _resolve(params: dict, identities: list[str], seed: int, method: str) -> dict:
    """``@i`` in a target identity means the i-th identity of the dataset; seeds go to ``random_state``."""
    from deid.methods import method_class

    out = {}
    for k, v in params.items():
        out[k] = identities[int(v[1:]) % len(identities)] if isinstance(v, str) and v.startswith("@") else v
    names = method_class(method).param_names()
    if "random_state" in names:
        out.setdefault("random_state", seed)
    if "device" in names:
        out.setdefault("device", "cpu")
    return out


# -- the run ------------------------------------------------------------------------------------------
def run_study(p: StudyPlan, datasets: list[str], *, work: Path, out: Path, tracking_uri: str | None = None,
              experiment: str = EXPERIMENT, jaffe_dir: Path = JAFFE_DIR, command: str | None = None,
              say=print, workers: int = 1) -> Path:
    """Run the plan, log every audit, then render ``out/RESULTS.md`` from the store. Returns its path.

    Each (dataset, seed) is one unit: fit + transform every setting, then one audit. With
    ``workers > 1`` units run in that many spawned processes (one torch thread each) and this
    process logs each to MLflow as it finishes.
    """
    t_start = time.perf_counter()
    uri = configure_tracking(tracking_uri, experiment, work)
    study_id = time.strftime("%Y%m%d-%H%M%S-") + uuid.uuid4().hex[:6]
    meta = {"study_id": study_id, "mode": p.mode, "experiment": experiment, "commit": git_commit(),
            "command": command or "deid study", "seeds": p.seeds, "machine": machine(), "load_start": loadavg(),
            "audit": ", ".join(f"{k}={v}" for k, v in {"attackers": ["cnn", "linear"], **p.audit}.items()),
            "datasets": {}, "skipped": {}, "settings": {}}
    todo = []
    for ds in datasets:
        if ds == "jaffe" and not jaffe_dir.is_dir():
            msg = f"{jaffe_dir} is absent"
            meta["skipped"][ds] = msg
            say(f"skipping jaffe: {msg}")
            continue
        if ds not in ("ferg", "jaffe"):
            raise ValueError(f"study datasets are 'ferg' and 'jaffe', got '{ds}'")
        todo.append(ds)
    mlflow.set_tracking_uri(uri)
    mlflow.set_experiment(experiment)
    with mlflow.start_run(run_name=f"study-{study_id}") as sr:
        mlflow.set_tags({"deid.kind": "study", "deid.study": study_id, "deid.mode": p.mode})
        study_run = sr.info.run_id
    client = mlflow.MlflowClient()
    units = []
    methods: dict[str, list[tuple[str, dict]]] = {}
    meta["skipped_settings"] = {}
    for ds in todo:
        for seed in p.seeds:  # data first, in this process: workers never write the same cache
            images, desc, info = _prepare(ds, p, seed, work, jaffe_dir)
            meta["datasets"][ds] = desc
            units.append((ds, seed, images, info))
        n_ids = int(info["identities"])  # settings that cannot apply here are named, not run
        methods[ds] = [(n, q) for n, q in p.methods_for(ds) if int(q.get("k", 0)) <= n_ids]
        skipped = [f"`{key(n, q)}`: k = {q['k']} > {n_ids} identities" for n, q in p.methods_for(ds)
                   if int(q.get("k", 0)) > n_ids]
        if skipped:
            meta["skipped_settings"][ds] = skipped
            say(f"{ds}: skipping {len(skipped)} setting(s) whose k exceeds the {n_ids} identities")
        meta["settings"][ds] = [key(n, q) for n, q in methods[ds]]
    meta["workers"] = workers
    with mlflow.start_run(run_id=study_run):  # provenance now, so an interrupted study can still be rendered
        mlflow.log_dict({**meta, "status": "running"}, "study_meta.json")
    units.sort(key=lambda u: (u[1], u[0]))  # ferg/jaffe alternate: the two kinds of unit share the workers
    jobs = [dict(ds=ds, seed=seed, p=p, methods=methods[ds], images=images,
                 run_root=str(work / "study" / study_id / ds / f"seed{seed}"),
                 descriptor_cache=str(work / "cache" / "dlib-descriptors")) for ds, seed, images, _ in units]
    infos = {(ds, seed): info for ds, seed, _, info in units}
    pool = None
    if workers <= 1:
        done = (run_unit(**j, say=say) for j in jobs)
    else:
        import multiprocessing as mp

        say(f"running {len(jobs)} (dataset, seed) units on {workers} worker processes")
        pool = mp.get_context("spawn").Pool(workers, initializer=_quiet_worker)
        done = pool.imap_unordered(_run_unit_job, jobs)
    try:
        _log_units(done, p, meta, infos, study_id, uri, experiment, client, say)
    except BaseException:
        if pool is not None:
            pool.terminate()  # a failed unit stops the study: no worker keeps computing for nothing
        raise
    if pool is not None:
        pool.close()
        pool.join()
    meta["load_end"] = loadavg()
    meta["status"] = "done"
    wall = time.perf_counter() - t_start
    meta["wall_time"] = f"{wall / 60:.1f} min"
    with mlflow.start_run(run_id=study_run):
        mlflow.log_dict(meta, "study_meta.json")
        mlflow.log_metric("wall_seconds", wall)
    return write_results(uri, study_id, out, experiment)


def _log_units(done, p: StudyPlan, meta: dict, infos: dict, study_id: str, uri: str, experiment: str, client,
               say) -> None:
    """Log each finished (dataset, seed) unit as an MLflow parent run with tagged nested runs."""
    from deid.evaluation.gates import GateConfig, judge_audit

    for u in done:
        ds, seed, result = u["ds"], u["seed"], u["result"]
        judgement = judge_audit({m: a.metrics for m, a in result.methods.items()}, GateConfig())
        verdicts = {m: v for m, v in judgement.verdicts.items() if m != "original"}
        parent = log_audit.fn(result, run_name=f"study-{study_id}-{ds}-seed{seed}",
                              config={"study": study_id, "mode": p.mode, "seed": seed, "audit": p.audit,
                                      "methods": meta["settings"][ds]},
                              dataset_info=infos[(ds, seed)], images_dir=u["images"], report=u["report"], figures=[],
                              verdicts=verdicts, model_dirs={}, transform_stats=u["stats"], tracking_uri=uri,
                              experiment=experiment)
        client.set_tag(parent, "deid.study", study_id)
        client.set_tag(parent, "deid.kind", "dataset-seed")
        exp = client.get_experiment_by_name(experiment)
        children = client.search_runs([exp.experiment_id], f"tags.mlflow.parentRunId = '{parent}'", max_results=5000)
        by_key = {key(n, q): (n, q) for n, q in p.methods_for(ds)}
        for c in children:
            k = c.data.tags.get("deid.method", c.info.run_name)
            reg, q = by_key.get(k, (k, {}))
            for t, v in {"deid.kind": "method", "deid.study": study_id, "deid.dataset": ds, "deid.seed": str(seed),
                         "deid.key": k, "deid.registered": reg, "deid.setting": label(dict(q))}.items():
                client.set_tag(c.info.run_id, t, v)
        say(f"[{ds} seed {seed}] logged parent run {parent}")


def _quiet_worker() -> None:
    import torch

    torch.set_num_threads(1)


def _run_unit_job(job: dict) -> dict:
    return run_unit(**job)


def run_unit(ds: str, seed: int, p: StudyPlan, methods: list[tuple[str, dict]], images: str, run_root: str,
             descriptor_cache: str, say=None) -> dict:
    """One (dataset, seed): fit and transform every setting, audit them together. Pure of MLflow."""
    from deid.data import load_image_set
    from deid.evaluation.audit import AuditConfig, audit
    from deid.pipeline import anonymize_table, fit_method
    from deid.reporting.text import format_table

    say = say or (lambda msg: print(msg, flush=True))
    root = Path(run_root)
    original = load_image_set(images)
    identities = sorted(set(original.identity))
    anonymized, stats = {}, {}
    for name, params in methods:
        k = key(name, params)
        full = _resolve(params, identities, seed, name)
        run_dir = root / k.replace("/", "_")
        say(f"[{ds} seed {seed}] fit + transform {k}")
        t0 = time.perf_counter()
        method = fit_method(name, full, images, run_dir / "model", splits=("train", "val"))
        fit_s = time.perf_counter() - t0
        st = anonymize_table(method, images, run_dir / "anonymized", label=k)
        stats[k] = {**st, "fit_seconds": fit_s}
        anonymized[k] = load_image_set(run_dir / "anonymized", anonymized=True)
    say(f"[{ds} seed {seed}] audit of {len(anonymized)} settings")
    result = audit(original, anonymized, AuditConfig(**p.audit).model_copy(update={"seed": seed}), dataset=ds,
                   real_faces=ds == "jaffe", descriptor_cache=descriptor_cache, progress=say)
    report = root / "audit.txt"
    report.parent.mkdir(parents=True, exist_ok=True)
    report.write_text(format_table(result.table()) + "\n")
    return {"ds": ds, "seed": seed, "result": result, "stats": stats, "images": images, "report": str(report)}


def full_estimate(quick_seconds: float, quick_seeds: int, quick_settings: int) -> str:
    """The full study's expected time, scaled from a measured quick run (used when the store holds no full study).

    Calibration measured on the 2-core machine of docs/RESULTS.md: a quick run of 13.6 min (1 worker, 20
    settings, 1 seed) and a full run of 75.7 min (2 workers, 36 settings, 3 seeds), i.e. the full study takes
    about 1.0 × the quick time × the settings ratio on 2 workers, 2.0 × on one.
    """
    full = plan("full")
    scale = len(full.seeds) * len(full.methods) / (quick_seeds * quick_settings)
    one = quick_seconds * scale * 2.0
    return (f"about {one / 3600:.1f} h with one worker, {one / 7200:.1f} h with `--workers 2` (an estimate, not a "
            f"measurement: the quick run's wall time × {scale:.1f} for 3 seeds × {len(full.methods)} settings instead of "
            f"{quick_seeds} × {quick_settings}, × 2.0 on one worker for CNN attackers on every row and the full epochs, "
            f"the ratio measured between a quick and a full run on a 2-core machine)")


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
    records, meta = collect(tracking_uri, study_id, experiment)
    aggs: dict[str, list[Aggregate]] = aggregate(records)
    out.mkdir(parents=True, exist_ok=True)
    plot = frontier_plot(aggs, out / "results_frontier.png")
    sweep = lambda_sweep_plot(aggs, out / "results_lambda_sweep.png")
    path = out / "RESULTS.md"
    path.write_text(render_results(aggs, meta, plot.name, sweep.name if sweep else None))
    return path


def command_line() -> str:
    return " ".join(shlex.quote(a) for a in ["deid", *sys.argv[1:]])


def dump(obj) -> str:  # pragma: no cover - debugging aid
    return json.dumps(obj, indent=2, default=str)
