"""MLflow tracking: concurrent store creation, idempotent release registration, private markers.

Every test uses its own SQLite store under ``tmp_path``; task logic runs through ``.fn()``.
"""

from __future__ import annotations

import json
import subprocess
import sys
import time
from pathlib import Path

import numpy as np
import pytest

from deid.evaluation.audit import ORIGINAL, AuditResult, MethodAudit
from deid.methods import get_method

ROOT = Path(__file__).resolve().parents[1]


def _faces(n: int = 12) -> tuple[np.ndarray, np.ndarray]:
    X = np.random.default_rng(0).random((n, 1, 16, 16), dtype=np.float32)
    return X, np.array([f"id{i % 3}" for i in range(n)], dtype=object)


def _saved(name: str, directory: Path, **params) -> str:
    X, ident = _faces()
    get_method(name, **params).fit(X, ident).save(directory)
    return str(directory)


def _store(tmp_path: Path) -> tuple[str, str]:
    """A fresh local store and one finished run in it: (tracking URI, run id)."""
    import mlflow

    from tasks.tracking import configure_tracking

    uri = configure_tracking(None, "deid", tmp_path / "work")
    with mlflow.start_run(run_name="audit") as run:
        pass
    return uri, run.info.run_id


def _versions(uri: str, name: str) -> list:
    import mlflow

    return sorted(mlflow.MlflowClient(uri).search_model_versions(f"name = '{name}'"), key=lambda v: int(v.version))


@pytest.mark.reliability(section='6. Crash and concurrency', case='release model registered twice',
                         before='two model versions',
                         after='one version, same URI')
def test_registering_a_release_twice_keeps_one_model_version(tmp_path):
    import mlflow

    from tasks.tracking import register_release_model

    uri, run_id = _store(tmp_path)
    blur = _saved("blur", tmp_path / "blur")
    first = register_release_model.fn(run_id, "blur", blur, "ferg", "v-aaa", uri)
    again = register_release_model.fn(run_id, "blur", blur, "ferg", "v-aaa", uri)
    assert first == again == "models:/deid-ferg@release"
    versions = _versions(uri, "deid-ferg")
    assert [v.tags["release_version"] for v in versions] == ["v-aaa"]
    client = mlflow.MlflowClient(uri)
    assert client.get_model_version_by_alias("deid-ferg", "release").version == versions[0].version
    # A newer release takes the alias; re-running the older one points at its own version, alias unmoved.
    assert register_release_model.fn(run_id, "blur", blur, "ferg", "v-bbb", uri) == "models:/deid-ferg@release"
    older = register_release_model.fn(run_id, "blur", blur, "ferg", "v-aaa", uri)
    assert older == f"models:/deid-ferg/{versions[0].version}"
    assert client.get_model_version_by_alias("deid-ferg", "release").tags["release_version"] == "v-bbb"
    assert len(_versions(uri, "deid-ferg")) == 2
    model = mlflow.pyfunc.load_model(older)
    X, _ = _faces(2)
    images = np.rint(X[:, 0] * 255).astype(np.uint8)  # (N, H, W) uint8, as the signature says
    expected = np.rint(get_method("blur").fit(X).transform(images[:, None] / np.float32(255.0))[:, 0] * 255)
    out = model.predict(images)
    assert out.dtype == np.uint8 and out.shape == images.shape
    np.testing.assert_array_equal(out, expected.astype(np.uint8))


def _audited(uri: str, run_id: str, method: str, verdict: str) -> None:
    """``method``'s nested run under ``run_id`` with the verdict tag :func:`log_audit` writes."""
    import mlflow

    client = mlflow.MlflowClient(uri)
    child = client.create_run(client.get_run(run_id).info.experiment_id, run_name=method,
                              tags={"mlflow.parentRunId": run_id, "deid.method": method, "deid.verdict": verdict})
    client.set_terminated(child.info.run_id)


@pytest.mark.parametrize("colour", [False, True], ids=["grayscale", "colour"])
def test_the_registered_release_has_a_signature_an_example_and_the_verdict(tmp_path, colour):
    """What a user of the model registry reads back: input and output shape at the ingest size, an input
    example that is not a training image, and the audit's verdict on the version."""
    import mlflow
    from mlflow.models import Model

    from tasks.tracking import register_release_model

    uri, run_id = _store(tmp_path)
    _audited(uri, run_id, "blur", "PASS")
    c, h, w = (3, 24, 20) if colour else (1, 16, 16)
    X = np.random.default_rng(1).random((6, c, h, w), dtype=np.float32)
    blur = str(get_method("blur").fit(X).save(tmp_path / "blur"))
    register_release_model.fn(run_id, "blur", blur, "ferg", "v-aaa", uri)
    client = mlflow.MlflowClient(uri)
    (mv,) = _versions(uri, "deid-ferg")
    assert mv.tags["deid.verdict"] == "PASS"
    batch = [-1, h, w, c] if colour else [-1, h, w]
    info = Model.load(mlflow.artifacts.download_artifacts(artifact_uri=mv.source, dst_path=str(tmp_path / "dl")))
    spec = info.signature.to_dict()
    for side in ("inputs", "outputs"):
        (tensor,) = json.loads(spec[side])
        assert tensor["tensor-spec"] == {"dtype": "uint8", "shape": batch}, spec
    example = info.load_input_example(str(tmp_path / "dl"))
    assert example.dtype == np.uint8 and list(example.shape) == [1, *batch[1:]] and not example.any()
    model = mlflow.pyfunc.load_model(f"models:/deid-ferg/{mv.version}")
    out = model.predict(example)
    assert out.dtype == np.uint8 and out.shape == example.shape
    with pytest.raises(Exception, match="uint8|shape"):  # another size than the dataset's is refused
        model.predict(np.zeros((1, h + 2, w, *batch[3:]), dtype=np.uint8))
    # A later run re-auditing the same release does not rewrite the verdict that released it.
    _, later = _store(tmp_path)
    _audited(uri, later, "blur", "INCONCLUSIVE")
    register_release_model.fn(later, "blur", blur, "ferg", "v-aaa", uri)
    assert client.get_model_version("deid-ferg", mv.version).tags["deid.verdict"] == "PASS"


@pytest.mark.reliability(section='6. Crash and concurrency', case='kill -9 between publish and model registration',
                         before='release without a registered model forever',
                         after='the next run registers it (registration runs on every run)')
def test_a_run_killed_during_registration_is_healed_by_the_next_call(tmp_path, monkeypatch):
    import mlflow

    from tasks.tracking import register_release_model

    uri, run_id = _store(tmp_path)
    blur = _saved("blur", tmp_path / "blur")
    client = mlflow.MlflowClient(uri)

    def killed(*args, **kwargs):
        raise KeyboardInterrupt("killed")

    # Killed after logging the model, before registering it: the next call registers, logs nothing twice.
    monkeypatch.setattr(mlflow, "register_model", killed)
    with pytest.raises(KeyboardInterrupt):
        register_release_model.fn(run_id, "blur", blur, "ferg", "v-aaa", uri)
    monkeypatch.undo()
    assert _versions(uri, "deid-ferg") == []
    assert register_release_model.fn(run_id, "blur", blur, "ferg", "v-aaa", uri) == "models:/deid-ferg@release"
    logged = client.search_logged_models(experiment_ids=[client.get_run(run_id).info.experiment_id])
    assert len([m for m in logged if m.name == "release-model"]) == 1
    # Killed after registering, before the alias: the next call sets the alias on the same version.
    monkeypatch.setattr(mlflow.MlflowClient, "set_registered_model_alias", killed)
    with pytest.raises(KeyboardInterrupt):
        register_release_model.fn(run_id, "blur", blur, "ferg", "v-bbb", uri)
    monkeypatch.undo()
    assert client.get_model_version_by_alias("deid-ferg", "release").tags["release_version"] == "v-aaa"
    assert register_release_model.fn(run_id, "blur", blur, "ferg", "v-bbb", uri) == "models:/deid-ferg@release"
    versions = _versions(uri, "deid-ferg")
    assert [v.tags["release_version"] for v in versions] == ["v-aaa", "v-bbb"]
    assert client.get_model_version_by_alias("deid-ferg", "release").version == versions[1].version


@pytest.mark.reliability(section='3. Gates a run cannot loosen', case='model state holding original training images (substitution, mi-adversarial, k-Same)',
                         before='registered as an ordinary shareable model',
                         after='registered with deid.private=true and a do-not-share description')
def test_models_holding_training_images_are_registered_as_private(tmp_path):
    import mlflow

    from tasks.tracking import register_release_model

    uri, run_id = _store(tmp_path)
    private = _saved("substitution", tmp_path / "substitution", target_identity="id0")
    shareable = _saved("blur", tmp_path / "blur")
    register_release_model.fn(run_id, "substitution", private, "ferg", "v-sub", uri)
    register_release_model.fn(run_id, "blur", shareable, "jaffe", "v-blur", uri)
    (sub,), (blur,) = _versions(uri, "deid-ferg"), _versions(uri, "deid-jaffe")
    assert sub.tags["deid.private"] == "true" and sub.tags["deid.holds_training_images"] == "true"
    assert "original training images" in sub.description and "do not share" in sub.description
    assert blur.tags["deid.private"] == "false" and blur.tags["deid.holds_training_images"] == "false"
    assert not blur.description
    client = mlflow.MlflowClient(uri)
    logged = {m.tags["deid.release_version"]: m for m in
              client.search_logged_models(experiment_ids=[client.get_run(run_id).info.experiment_id])}
    assert logged["v-sub"].tags["deid.private"] == "true" and logged["v-blur"].tags["deid.private"] == "false"
    # the store holds no training image: the private model's artifacts are a pointer to its state, which
    # stays in the work area (and still loads on this machine); the shareable one is uploaded whole
    from urllib.parse import unquote, urlparse

    def files(m) -> set[str]:
        return {p.name for p in Path(unquote(urlparse(m.artifact_location).path)).rglob("*") if p.is_file()}

    assert "private-model.json" in files(logged["v-sub"]) and not {"state.npz", "method.json"} & files(logged["v-sub"])
    assert {"state.npz", "method.json"} <= files(logged["v-blur"])
    model = mlflow.pyfunc.load_model(f"models:/deid-ferg/{sub.version}")
    assert model.unwrap_python_model().method.name == "substitution"


@pytest.mark.reliability(section='3. Gates a run cannot loosen', case='HTML report and confusion matrices in MLflow',
                         before='untagged',
                         after='tagged internal (they show identities)')
def test_audit_run_marks_the_report_and_private_models_internal(tmp_path):
    import mlflow

    from tasks.tracking import INTERNAL_REPORT, configure_tracking, log_audit

    uri = configure_tracking(None, "deid", tmp_path / "work")
    report = tmp_path / "report.html"
    report.write_text("<!doctype html><p>originals next to outputs</p>")
    figures = []
    for f in ("samples.png", "confusion_blur.png", "cmc.png"):
        (tmp_path / f).write_bytes(b"png")
        figures.append(str(tmp_path / f))
    metrics = {"identity_acc_worst": 0.5}
    result = AuditResult("ferg", {m: MethodAudit(m, metrics) for m in (ORIGINAL, "blur", "substitution")}, {}, False)
    model_dirs = {"blur": _saved("blur", tmp_path / "blur"),
                  "substitution": _saved("substitution", tmp_path / "substitution", target_identity="id0")}
    run_id = log_audit.fn(result, run_name="tiny", config={"name": "tiny"},
                          dataset_info={"name": "ferg", "digest": "abc", "by_split": {"train": 8}},
                          images_dir=str(tmp_path), report=str(report), figures=figures, verdicts={},
                          model_dirs=model_dirs, transform_stats={}, tracking_uri=uri, experiment="deid",
                          tags={"deid.kind": "dataset-seed"}, method_tags={"blur": {"deid.key": "blur[sigma=2]"}})
    client = mlflow.MlflowClient(uri)
    tags = client.get_run(run_id).data.tags
    assert tags["deid.kind"] == "dataset-seed"
    assert tags["deid.report"] == INTERNAL_REPORT
    internal = tags["deid.internal_artifacts"].split(", ")
    assert set(internal) == {"report.html", "figures/samples.png", "figures/confusion_blur.png"}
    children = {r.data.tags["deid.method"]: r for r in
                mlflow.search_runs(experiment_names=["deid"], output_format="list",
                                   filter_string=f"tags.mlflow.parentRunId = '{run_id}'")}
    assert children["substitution"].data.tags["deid.private"] == "true"
    assert children["blur"].data.tags["deid.private"] == "false"
    assert children["blur"].data.tags["deid.key"] == "blur[sigma=2]" and "deid.key" not in children[ORIGINAL].data.tags
    assert "deid.private" not in children[ORIGINAL].data.tags
    # the private method's child run uploads a pointer, not its state; the shareable one its model folder
    sub_files = {a.path for a in client.list_artifacts(children["substitution"].info.run_id, "model")}
    blur_files = {a.path for a in client.list_artifacts(children["blur"].info.run_id, "model")}
    assert sub_files == {"model/private-model.json"} and "model/method.json" in blur_files


_CONFIGURE = """
import sys, time
from pathlib import Path
from tasks.tracking import configure_tracking
go, work = Path(sys.argv[1]), Path(sys.argv[2])
(go.parent / ("ready-" + sys.argv[3])).touch()
while not go.exists():
    time.sleep(0.002)
print(configure_tracking(None, "deid", work))
"""


@pytest.mark.slow
@pytest.mark.reliability(section='6. Crash and concurrency', case='three concurrent runs on a fresh work dir',
                         before='two crashed creating the MLflow store (duplicate column, alembic)',
                         after='store created under a file lock: all three succeed')
def test_concurrent_runs_create_the_local_store_once(tmp_path):
    import mlflow

    work, go = tmp_path / "work", tmp_path / "go"
    procs = [subprocess.Popen([sys.executable, "-c", _CONFIGURE, str(go), str(work), str(i)], cwd=str(ROOT),
                              stdout=subprocess.PIPE, stderr=subprocess.STDOUT, text=True) for i in range(3)]
    try:
        deadline = time.monotonic() + 180
        while len(list(tmp_path.glob("ready-*"))) < 3 and time.monotonic() < deadline:
            assert all(p.poll() is None for p in procs), [p.communicate()[0][-2000:] for p in procs]
            time.sleep(0.05)
        go.touch()  # all three imported and waiting: create the store at the same moment
        outs = [p.communicate(timeout=300)[0] for p in procs]
    finally:
        for p in procs:
            if p.poll() is None:
                p.kill()
                p.wait()
    assert [p.returncode for p in procs] == [0, 0, 0], [o[-3000:] for o in outs]
    uri = outs[0].strip().splitlines()[-1]
    assert all(o.strip().splitlines()[-1] == uri for o in outs)
    experiments = mlflow.MlflowClient(uri).search_experiments(filter_string="name = 'deid'")
    assert len(experiments) == 1
    assert (work / "mlflow" / ".store.lock").exists()


def test_a_given_sqlite_store_keeps_its_artifacts_beside_the_database(tmp_path, monkeypatch):
    """MLflow's default artifact root is ./mlruns under the process's folder: outside every configured root."""
    import mlflow

    from tasks.tracking import configure_tracking

    elsewhere = tmp_path / "elsewhere"
    elsewhere.mkdir()
    monkeypatch.chdir(elsewhere)
    uri = f"sqlite:///{tmp_path / 'store' / 'mlflow.db'}"
    (tmp_path / "store").mkdir()
    configure_tracking(uri, "given-store", tmp_path / "work")
    with mlflow.start_run():
        mlflow.log_text("x", "note.txt")
    location = mlflow.MlflowClient(uri).get_experiment_by_name("given-store").artifact_location
    assert location.startswith((tmp_path / "store" / "artifacts").resolve().as_uri()), location
    assert not (elsewhere / "mlruns").exists()
    assert (tmp_path / "store" / "artifacts").is_dir()
