"""The anonymization flow end to end on tiny generated data, through a Prefect test server."""

from __future__ import annotations

import json
import re
from pathlib import Path

import pytest
import yaml

from tests.flows.settings import FAST_POOLED_AUDIT, MECHANICS_GATES, SMALL_DECIDABLE

pytestmark = pytest.mark.slow


def _config(tmp: Path, **release) -> Path:
    cfg = {
        "name": "tiny",
        "dataset": {"name": "ferg", "source": "builtin",
                    "synthetic": SMALL_DECIDABLE, "preprocess": {"size": 40}, "split": {"val": 0.0, "test": 0.4}},
        "include_baselines": False,
        "methods": [{"name": "proxy-morph", "params": {"k": 3, "draw_seed": 0}}, {"name": "none"}],
        "audit": FAST_POOLED_AUDIT,
        "gates": MECHANICS_GATES,
        "release": {"enabled": True, "method": "proxy-morph", "root": str(tmp / "release"), **release},
        "work_dir": str(tmp / "work"),
    }
    p = tmp / "tiny.yaml"
    p.write_text(yaml.safe_dump(cfg))
    return p


def test_flow_runs_audits_tracks_and_publishes(prefect_server, seed_small_decidable, tmp_path):
    import mlflow

    from data_contracts import IMAGES_SCHEMA, read_table
    from deid.release import find_leaks
    from deid.release_policy import POLICY_ENV, release_policy
    from flows.anonymize import anonymize_ferg

    seed_small_decidable(tmp_path / "work")
    # A policy file in the project is not the owner's: it is never read (the owner's is DEID_RELEASE_POLICY).
    (tmp_path / "policy").mkdir()
    (tmp_path / "policy" / "release.yaml").write_text("max_attacker_margin: 0.01\n")
    out = anonymize_ferg(config=str(_config(tmp_path)), base=str(tmp_path))
    methods = [r["method"] for r in out["table"]]
    assert methods == ["original", "proxy-morph", "none", "blackout"]  # blackout: the audit's negative control
    assert Path(out["report"]).read_text().startswith("<!doctype html>")
    faces = Path(out["report"]).parent / "faces.png"  # originals and outputs by label, at a size a person reads
    assert faces.is_file() and faces.stat().st_size > 0
    # The audit judged itself sound and passed proxy-morph on interval bounds (usefulness not asked here).
    from deid.reporting.summary import read_summary

    doc = read_summary(out["summary"])
    assert doc.audit.sound, doc.audit.inconclusive
    assert doc.methods["proxy-morph"].verdict == "PASS" and doc.methods["none"].verdict == "FAIL"
    assert doc.methods["proxy-morph"].used_utility_label is True
    assert doc.release.status == "published" and doc.release.version == out["release"]["version"]
    # Every effective seed: the run seed, what the config set, what was derived from the run seed.
    want = {"run": 0, "split": 0, "audit": FAST_POOLED_AUDIT.get("seed", 0),
            "synthetic": SMALL_DECIDABLE.get("seed", 0), "methods": {"proxy-morph": 0}}
    assert {k: v for k, v in doc.seeds.items() if k != "derived"} == want
    assert "split" in doc.seeds["derived"]
    # The summary times each stage of the run, and each method's fit, transform and audit.
    t = doc.timings
    assert list(t["stages_s"]) == ["ingest", "fit_and_transform", "audit", "report_and_tracking", "release"]
    assert t["stages_s"]["audit"] > 0 and t["stages_s"]["fit_and_transform"] > 0  # each stage's own share
    assert sum(t["stages_s"].values()) == pytest.approx(t["total_s"], abs=0.01)
    assert t["images"] == doc.dataset["rows"] and t["methods"]["proxy-morph"]["fit_seconds"] > 0
    assert t["methods"]["none"]["images_per_s"] > 0 and t["methods"]["blackout"]["audit_seconds"] > 0
    rel = Path(out["release"]["path"])
    manifest = json.loads((rel / "manifest.json").read_text())
    assert manifest["method"] == "proxy-morph" and not {"mlflow_run_id", "code_commit"} & set(manifest)
    owner = release_policy()
    assert manifest["release_policy"] == owner.record() and owner.source.startswith(f"{POLICY_ENV}=")
    from deid.release import release_private_dir, release_record

    record = release_record(release_private_dir(tmp_path / "work"), "ferg", out["release"]["version"])
    assert record["published"]["mlflow_run_id"] == out["mlflow_run_id"]  # the internal pointer, kept private
    assert set(manifest["files"]) and all(len(v) == 64 for v in manifest["files"].values())
    assert rel.is_relative_to(tmp_path / "release")
    # Nothing private in the release: identities and source file names of the input.
    images = next((tmp_path / "work" / "datasets").glob("ferg-*")) / "images"
    src = read_table(images, IMAGES_SCHEMA, columns=["identity", "source_path"])
    private = set(src.column("identity").to_pylist()) | {p.rsplit("/", 1)[-1] for p in src.column("source_path").to_pylist()}
    assert find_leaks(rel, private) == []
    # MLflow: one parent run with a nested run per method, metrics logged, the outcome tagged.
    mlflow.set_tracking_uri(f"sqlite:///{tmp_path / 'work' / 'mlflow' / 'mlflow.db'}")
    runs = mlflow.search_runs(experiment_names=["deid"], output_format="list")
    children = [r for r in runs if r.data.tags.get("mlflow.parentRunId") == out["mlflow_run_id"]]
    assert sorted(r.data.tags["deid.method"] for r in children) == sorted(methods)
    assert all("identity_acc_worst" in r.data.metrics for r in children)
    parent = mlflow.get_run(out["mlflow_run_id"])
    assert parent.data.tags["deid.audit"] == "sound" and parent.data.tags["deid.release"] == "published"
    assert parent.data.tags["deid.verdict.proxy-morph"] == "PASS"
    assert next(r for r in children if r.data.tags["deid.method"] == "proxy-morph").data.params["method.k"] == "3"
    assert mlflow.get_experiment_by_name("deid").tags["mlflow.experimentKind"] == "custom_model_development"
    # Prefect's task runs say what each one did
    from prefect import get_client
    from prefect.client.schemas.filters import FlowRunFilter, FlowRunFilterId

    with get_client(sync_client=True) as client:
        runs_ = client.read_task_runs(flow_run_filter=FlowRunFilter(id=FlowRunFilterId(any_=[doc.prefect_flow_run_id])))
        flow_run = client.read_flow_run(doc.prefect_flow_run_id)
    # ... and the flow run, which config and when
    assert re.fullmatch(r"tiny \d{4}-\d{2}-\d{2} \d{2}:\d{2}", flow_run.name), flow_run.name
    names = {r.name for r in runs_}
    assert {"fit proxy-morph", "fit none", "ingest ferg", "audit ferg", "publish proxy-morph"} <= names, names
    # the parent run carries each method's headline figures, so releases compare across runs in the runs table
    assert parent.data.metrics["proxy-morph.tstr"] == doc.methods["proxy-morph"].accuracies["tstr"].value
    assert {"original.identity_acc_worst", "blackout.tstr_retention"} <= set(parent.data.metrics)
    assert parent.info.end_time - parent.info.start_time > 5000  # the run's real duration, not the logging's
    # The released method is in the model registry under the alias 'release', marked private (its
    # state holds averages of training faces), and loads back as the fitted method.
    assert out["release"]["model_uri"] == "models:/deid-ferg@release"
    mv = mlflow.MlflowClient().get_model_version_by_alias("deid-ferg", "release")
    assert mv.tags["release_version"] == out["release"]["version"] and mv.tags["deid.private"] == "true"
    model = mlflow.pyfunc.load_model(out["release"]["model_uri"])
    assert model.unwrap_python_model().method.name == "proxy-morph"
    # Reuse is a JSON record beside each fitted model (fit.json): no key files inside data folders, which
    # other Parquet readers take as they are.
    import pyarrow.parquet as pq

    work = tmp_path / "work"
    assert not [p for d in ("runs", "datasets") for p in (work / d).rglob("*") if p.name.endswith(".key")]
    outputs = {p.name: p for p in (work / "runs" / "tiny" / "anonymized").iterdir()}
    assert sorted(n.rsplit("-", 1)[0] for n in outputs) == ["none", "proxy-morph"]
    for p in outputs.values():
        assert pq.read_table(p).num_rows == src.num_rows
    fitted = {p: p.stat().st_mtime_ns for p in (work / "runs" / "tiny" / "models").glob("*/method.json")}
    # A rerun reuses every step and republishes nothing new; an output deleted by hand is made again.
    import shutil

    shutil.rmtree(next(p for n, p in outputs.items() if n.startswith("none-")))
    again = anonymize_ferg(config=str(_config(tmp_path)), base=str(tmp_path))
    assert again["release"]["version"] == out["release"]["version"] and again["release"]["reused"]
    refit = {p: p.stat().st_mtime_ns for p in fitted}
    assert [p.parent.name.rsplit("-", 1)[0] for p in fitted if refit[p] != fitted[p]] == ["none"]
    figures = [[{k: v for k, v in row.items() if k != "seconds"} for row in r["table"]] for r in (out, again)]
    assert json.dumps(figures[0]) == json.dumps(figures[1])  # the same figures (NaN-safe), timings aside
    # The same run asking to publish the unchanged images with its privacy gate wide open gets no
    # verdict (the originals then pass privacy: a control that passes) and publishes nothing new.
    from flows.anonymize import ReleaseBlocked

    with pytest.raises(ReleaseBlocked, match="INCONCLUSIVE"):
        anonymize_ferg(config=str(_config(tmp_path)), base=str(tmp_path),
                       overrides={"release.method": "none", "gates.attacker_margin": 1.0})
    assert len(list((tmp_path / "release" / "ferg").glob("v-*"))) == 1


def test_failing_gate_blocks_the_release(prefect_server, seed_small_decidable, tmp_path):
    from flows.anonymize import ReleaseBlocked, anonymize_ferg

    seed_small_decidable(tmp_path / "work")
    p = _config(tmp_path)
    cfg = yaml.safe_load(p.read_text())
    cfg["gates"] = {"attacker_margin": 0.0, "min_utility_retention": 0.99, "min_k": 2}
    p.write_text(yaml.safe_dump(cfg))
    with pytest.raises(ReleaseBlocked, match="blocked"):
        anonymize_ferg(config=str(p), base=str(tmp_path))
    assert not (tmp_path / "release").exists() or not any((tmp_path / "release").rglob("manifest.json"))


def test_bad_config_fails_before_any_work(prefect_server, tmp_path):
    from deid.errors import ConfigError
    from flows.anonymize import anonymize, anonymize_ferg

    p = _config(tmp_path)
    cfg = yaml.safe_load(p.read_text())
    cfg["methods"] = [{"name": "blurr"}]
    p.write_text(yaml.safe_dump(cfg))
    with pytest.raises(ConfigError, match="unknown method 'blurr'"):
        anonymize_ferg(config=str(p), base=str(tmp_path))
    cfg["methods"], cfg["release"] = [], {"enabled": False}
    cfg["dataset"] = {"name": "jaffe", "source": str(tmp_path / "missing")}
    p.write_text(yaml.safe_dump(cfg))
    with pytest.raises(ConfigError, match="dataset.source"):
        anonymize(config=str(p), base=str(tmp_path))  # the one flow takes any dataset's config
    assert not (tmp_path / "work" / "datasets").exists()


def test_target_identity_index_is_resolved_before_any_fit(prefect_server, seed_small_decidable, tmp_path):
    """'@i' resolves in one place for every driver, after ingest and before any fit; beyond the
    identities it is one configuration error, not a failed (and retried) fit."""
    from deid.errors import ConfigError
    from flows.anonymize import anonymize_ferg

    seed_small_decidable(tmp_path / "work")
    p = _config(tmp_path)
    cfg = yaml.safe_load(p.read_text())
    cfg["release"] = {"enabled": False}
    cfg["include_baselines"] = True
    cfg["methods"] = [{"name": "substitution", "params": {"target_identity": "@6"}}]  # identities @0 to @5
    p.write_text(yaml.safe_dump(cfg))
    with pytest.raises(ConfigError, match=r"target_identity '@6' asks for identity 6, but the training split has 6"):
        anonymize_ferg(config=str(p), base=str(tmp_path))
    assert (tmp_path / "work" / "datasets").exists() and not (tmp_path / "work" / "runs").exists()
