"""The study flow on tiny generated data: the anonymization pipeline's tasks, RESULTS.md from the store."""

from __future__ import annotations

import math
import re

import pytest

pytestmark = pytest.mark.slow

CHEAP_AUDIT = {"attackers": ["linear"], "cnn_epochs": 1, "cnn_width": 4, "cnn_min_steps": 0, "linkage_repeats": 1,
               "pca_components": 8, "unseen_attackers": ["knn-pixels"]}


def _plan(mode: str, methods: list, seeds=(0,)):
    from flows.study import StudyPlan

    return StudyPlan(mode, list(seeds), methods, ferg_characters=3, ferg_per_cell=4, ferg_size=24, audit=CHEAP_AUDIT)


def _children(uri: str, parent: str) -> dict[str, dict[str, float]]:
    import mlflow

    runs = mlflow.MlflowClient(uri).search_runs(
        [mlflow.MlflowClient(uri).get_run(parent).info.experiment_id], f"tags.mlflow.parentRunId = '{parent}'")
    return {r.data.tags["deid.method"]: r.data.metrics for r in runs}


def _figures(metrics: dict[str, float]) -> dict[str, float]:
    """The audit's figures, without its timings."""
    return {k: v for k, v in metrics.items() if k != "seconds" and not k.startswith("transform_")}


def _same(a: dict[str, float], b: dict[str, float]) -> bool:
    return a.keys() == b.keys() and all(a[k] == b[k] or (math.isnan(a[k]) and math.isnan(b[k])) for k in a)


def test_the_study_is_the_run_pipeline_and_renders_from_the_store(prefect_server, tmp_path):
    import mlflow

    from deid.study_plan import key, method_label, run_config
    from flows.anonymize import anonymize_ferg
    from flows.study import collect, run_study, write_results

    methods = [("blur", {"sigma": 2.0}), ("substitution", {"target_identity": "@0"}), ("ksame-pixel", {"k": 5})]
    uri = f"sqlite:///{tmp_path / 'mlflow.db'}"
    out = tmp_path / "docs"
    path = run_study(_plan("full", methods), ["ferg", "jaffe"], work=tmp_path / "work", out=out, tracking_uri=uri,
                     jaffe_dir=tmp_path / "no-jaffe", say=lambda m: None)
    md = path.read_text()
    assert (out / "results_frontier.png").stat().st_size > 1000 and "](results_frontier.png)" in md
    assert "mode: **full**" in md and "dataset `jaffe` **skipped**" in md
    assert "`ksame-pixel[k=5]`: k = 5 > 3 identities" in md  # a setting that cannot apply is named, not run
    rows = {ln.split("|")[1].strip(): ln for ln in md.splitlines() if ln.startswith("| ")}
    for r in ("*chance*", "*original data*", "`blur`", "`substitution`"):
        assert r in rows, r
    assert "load average" in md and "at end:" in md

    # every number of a row is the metric MLflow holds for that run
    records, meta = collect(uri)
    assert {r.key for r in records} == {"original", "blur[sigma=2.0]", "substitution[target_identity=@0]", "blackout"}
    assert meta["status"] == "done" and meta["workers"] == 1
    blur = next(r for r in records if r.key == "blur[sigma=2.0]")
    run = mlflow.MlflowClient(uri).get_run(blur.run_id)
    cells = [c.strip() for c in rows["`blur`"].split("|")[4:-1]]
    assert cells[0] == f"{run.data.metrics['identity_acc_worst']:.3f}"
    assert cells[-1] == f"{run.data.metrics['ssim']:.3f}"
    assert re.search(r"\| 1 \| ", rows["*original data*"])
    # regenerating from the store alone gives the same file
    assert write_results(uri, meta["study_id"], tmp_path / "again").read_text() == md
    # ... and keeps the sections other tools wrote into the file (bench_release's full-size run)
    from deid.reporting.sections import write_section

    write_section(tmp_path / "again" / "RESULTS.md", "bench_release ferg-full", "## A release at full size\n\n42 min")
    again = write_results(uri, meta["study_id"], tmp_path / "again").read_text()
    assert again.startswith(md.rstrip("\n")) and again.count("42 min") == 1

    # The same config through `deid run`'s flow (its own work dir: nothing cached) gives the same figures;
    # '@0' resolves there as in the study.
    cfg = run_config(_plan("full", methods), "ferg", 0, work_dir=tmp_path / "run-work", jaffe_dir=tmp_path,
                     tracking_uri=None)
    cfg = cfg.model_copy(update={"methods": [m for m in cfg.methods if m.name != "ksame-pixel"]})
    res = anonymize_ferg(config=cfg, base=str(tmp_path))
    ran = _children(f"sqlite:///{tmp_path / 'run-work' / 'mlflow' / 'mlflow.db'}", res["mlflow_run_id"])
    studied = {method_label(r.key) if r.key not in ("original", "blackout") else r.key: r.metrics for r in records}
    assert set(ran) == set(studied) == {"original", "blackout", method_label(key("blur", {"sigma": 2.0})),
                                        method_label(key("substitution", {"target_identity": "@0"}))}
    for name in ran:
        assert "identity_acc_worst" in ran[name] and _same(_figures(ran[name]), _figures(studied[name])), name

    # A second study on the same work dir reuses every fit (Prefect's cache) and quotes the measured full study.
    fitted = {p: p.stat().st_mtime_ns for p in (tmp_path / "work" / "runs").glob("*/models/*/method.json")}
    assert len(fitted) == 2
    md2 = run_study(_plan("quick", methods), ["ferg"], work=tmp_path / "work", out=tmp_path / "quick",
                    tracking_uri=uri, jaffe_dir=tmp_path / "no-jaffe", say=lambda m: None).read_text()
    assert {p: p.stat().st_mtime_ns for p in fitted} == fitted
    line = next(ln for ln in md2.splitlines() if "expected time of the full study" in ln)
    assert "the last full study in this store" in line and "with 1 worker process(es)" in line
    again, _ = collect(uri)
    assert _same(_figures(next(r for r in again if r.key == "blur[sigma=2.0]").metrics), _figures(blur.metrics))


def _on_one_and_two_workers(plan, tmp_path) -> dict[int, dict]:
    """The plan's study run with 1 and with 2 workers: (seed, key) → a figure of each row, per worker count."""
    from flows.study import collect, run_study

    got = {}
    for workers in (1, 2):
        uri = f"sqlite:///{tmp_path / f'mlflow{workers}.db'}"
        run_study(plan, ["ferg"], work=tmp_path / f"work{workers}", out=tmp_path / f"docs{workers}", tracking_uri=uri,
                  jaffe_dir=tmp_path / "no-jaffe", say=lambda m: None, workers=workers)
        records, meta = collect(uri)
        assert meta["workers"] == workers and meta["status"] == "done"
        got[workers] = {(r.seed, r.key): (r.metrics["identity_acc_linear"], r.metrics["ssim"]) for r in records}
    return got


def test_steps_on_worker_processes_log_what_a_sequential_study_logs(prefect_server, tmp_path):
    got = _on_one_and_two_workers(_plan("tiny", [("blur", {"sigma": 2.0})], seeds=(0, 1)), tmp_path)
    assert {s for s, _ in got[2]} == {0, 1}
    assert got[1] == got[2]


def test_a_bad_setting_stops_the_study_before_any_work(prefect_server, tmp_path):
    from deid.errors import ConfigError
    from flows.study import run_study

    with pytest.raises(ConfigError, match="sigma"):
        run_study(_plan("tiny", [("blur", {"sigma": -1.0})]), ["ferg"], work=tmp_path / "work", out=tmp_path / "docs",
                  tracking_uri=f"sqlite:///{tmp_path / 'm.db'}", jaffe_dir=tmp_path / "no-jaffe", say=lambda m: None,
                  workers=2)
    assert not (tmp_path / "work" / "datasets").exists() and not (tmp_path / "docs").exists()


def test_a_single_units_audit_split_over_two_workers_gives_the_sequential_figures(prefect_server, tmp_path):
    got = _on_one_and_two_workers(_plan("tiny", [("blur", {"sigma": 2.0}), ("pixelate", {"block": 4})]), tmp_path)
    assert {"blur[sigma=2.0]", "pixelate[block=4]", "original"} <= {k for _, k in got[2]}
    assert got[1] == got[2]


def test_idle_workers_split_each_audit():
    from flows.study import audit_parts

    assert audit_parts(units=1, workers=2) == 2  # the full-size plan: one unit, both workers on its audit
    assert audit_parts(units=6, workers=2) == 1 and audit_parts(units=1, workers=1) == 1
