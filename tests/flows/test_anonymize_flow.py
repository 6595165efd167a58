"""The anonymization flow end to end on tiny generated data, through a Prefect test server."""

from __future__ import annotations

import json
from pathlib import Path

import pytest
import yaml

pytestmark = pytest.mark.slow


@pytest.fixture(scope="module")
def prefect_server(tmp_path_factory):
    import os

    os.environ["PREFECT_SERVER_EPHEMERAL_STARTUP_TIMEOUT_SECONDS"] = "180"
    from prefect.testing.utilities import prefect_test_harness

    with prefect_test_harness(server_startup_timeout=180):
        yield


def _config(tmp: Path, **release) -> Path:
    cfg = {
        "name": "tiny",
        "dataset": {"name": "ferg", "source": "builtin",
                    "synthetic": {"n_characters": 3, "images_per_cell": 6, "size": 64},
                    "preprocess": {"size": 32}, "split": {"val": 0.0, "test": 0.34}},
        "methods": [{"name": "none"}],
        "audit": {"attackers": ["linear", "cnn"], "cnn_epochs": 2, "cnn_width": 8, "linkage_repeats": 2},
        "gates": {"attacker_margin": 1.0, "min_utility_retention": 0.0},
        "release": {"enabled": True, "method": "blackout", "root": str(tmp / "release"), **release},
        "work_dir": str(tmp / "work"),
    }
    p = tmp / "tiny.yaml"
    p.write_text(yaml.safe_dump(cfg))
    return p


def test_flow_runs_audits_tracks_and_publishes(prefect_server, tmp_path):
    import mlflow

    from data_contracts import IMAGES_SCHEMA, read_table
    from deid.release import find_leaks
    from flows.anonymize import anonymize_ferg

    out = anonymize_ferg(config=str(_config(tmp_path)), base=str(tmp_path))
    methods = [r["method"] for r in out["table"]]
    assert methods == ["original", "blur", "pixelate", "blackout", "none"]
    assert Path(out["report"]).read_text().startswith("<!doctype html>")
    rel = Path(out["release"]["path"])
    manifest = json.loads((rel / "manifest.json").read_text())
    assert manifest["method"] == "blackout" and manifest["mlflow_run_id"] == out["mlflow_run_id"]
    assert set(manifest["files"]) and all(len(v) == 64 for v in manifest["files"].values())
    # Nothing private in the release: identities and source file names of the input.
    images = next((tmp_path / "work" / "datasets").glob("ferg-*")) / "images"
    src = read_table(images, IMAGES_SCHEMA, columns=["identity", "source_path"])
    private = set(src.column("identity").to_pylist()) | {p.rsplit("/", 1)[-1] for p in src.column("source_path").to_pylist()}
    assert find_leaks(rel, private) == []
    # MLflow: one parent run with a nested run per method, metrics logged.
    mlflow.set_tracking_uri(f"sqlite:///{tmp_path / 'work' / 'mlflow' / 'mlflow.db'}")
    runs = mlflow.search_runs(experiment_names=["deid"], output_format="list")
    children = [r for r in runs if r.data.tags.get("mlflow.parentRunId") == out["mlflow_run_id"]]
    assert sorted(r.data.tags["deid.method"] for r in children) == sorted(methods)
    assert all("identity_acc_worst" in r.data.metrics for r in children)
    # The released method is in the model registry under the alias 'release', and reproduces the release.
    assert out["release"]["model_uri"] == "models:/deid-ferg@release"
    mv = mlflow.MlflowClient().get_model_version_by_alias("deid-ferg", "release")
    assert mv.tags["release_version"] == out["release"]["version"]
    import numpy as np

    model = mlflow.pyfunc.load_model(out["release"]["model_uri"])
    x = np.random.default_rng(0).random((2, 1, 32, 32)).astype(np.float32)
    from deid.methods import get_method

    np.testing.assert_allclose(model.predict(x), get_method("blackout").fit(x).transform(x), atol=1e-6)
    # A rerun reuses every step and republishes nothing new.
    again = anonymize_ferg(config=str(_config(tmp_path)), base=str(tmp_path))
    assert again["release"]["version"] == out["release"]["version"] and again["release"]["reused"]
    # The same run config asking to publish the unchanged images, with its gates wide open, is refused
    # by the release policy (the run's own gates cannot loosen it), and nothing new is published.
    from deid.release import ReleaseRefused

    with pytest.raises(ReleaseRefused):
        anonymize_ferg(config=str(_config(tmp_path)), base=str(tmp_path), overrides={"release.method": "none"})
    assert len(list((tmp_path / "release" / "ferg").glob("v-*"))) == 1


def test_failing_gate_blocks_the_release(prefect_server, tmp_path):
    from flows.anonymize import ReleaseBlocked, anonymize_ferg

    p = _config(tmp_path)
    cfg = yaml.safe_load(p.read_text())
    cfg["gates"] = {"attacker_margin": 0.0, "min_utility_retention": 0.99, "min_k": 2}
    p.write_text(yaml.safe_dump(cfg))
    with pytest.raises(ReleaseBlocked, match="k-anonymity"):
        anonymize_ferg(config=str(p), base=str(tmp_path))
    assert not (tmp_path / "release").exists() or not any((tmp_path / "release").rglob("manifest.json"))


def test_bad_config_fails_before_any_work(prefect_server, tmp_path):
    from deid.errors import ConfigError
    from flows.anonymize import anonymize_ferg

    p = _config(tmp_path)
    cfg = yaml.safe_load(p.read_text())
    cfg["methods"] = [{"name": "blurr"}]
    p.write_text(yaml.safe_dump(cfg))
    with pytest.raises(ConfigError, match="unknown method 'blurr'"):
        anonymize_ferg(config=str(p), base=str(tmp_path))
    cfg["methods"] = []
    cfg["dataset"] = {"name": "jaffe", "source": str(tmp_path / "missing")}
    p.write_text(yaml.safe_dump(cfg))
    with pytest.raises(ConfigError, match="dataset.source"):
        anonymize_ferg(config=str(p), base=str(tmp_path))
    assert not (tmp_path / "work" / "datasets").exists()
