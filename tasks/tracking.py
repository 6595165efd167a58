"""MLflow: where runs go, and logging a whole audit as one parent run with a nested run per method.

The local default needs no server: a SQLite store and an artifact folder under the work
directory. ``tracking.uri`` in the config points at a real server instead.

What is private stays marked private. A method whose saved state holds original training images
(``DeidMethod.holds_training_images``: substitution's image bank, k-Same's mean face and
eigenfaces, ...) is still logged and registered, because the team needs it to reproduce a
release, but its nested run, its logged model and its model version carry ``deid.private=true``
and ``deid.holds_training_images=true`` and the version's description says it must not be
shared. The audit report and the figures that show original faces or identity names are logged
as before and the parent run says so: ``deid.report=internal (shows original faces)`` and
``deid.internal_artifacts`` lists them.
"""

from __future__ import annotations

import json
import os
import tempfile
import warnings
from contextlib import nullcontext
from dataclasses import dataclass
from pathlib import Path
from typing import Any
from urllib.parse import unquote, urlparse

import mlflow
import numpy as np
from filelock import FileLock
from mlflow.exceptions import MlflowException
from prefect import task

from deid.evaluation.audit import ORIGINAL, AuditResult
from deid.evaluation.metric_registry import headline_names
from deid.provenance import git_commit
from deid.workspace import WorkLayout
from tasks._retry import retry_unless_deterministic

__all__ = ["configure_tracking", "log_audit", "local_tracking_uri", "register_release_model",
           "holds_training_images", "privacy_tags", "PRIVATE_MODEL_DESCRIPTION", "INTERNAL_REPORT",
           "ImageShape", "release_signature", "release_input_example"]

#: How long a process waits for another one creating or migrating the same SQLite store.
STORE_LOCK_TIMEOUT_S = 600.0
#: The audit's verdict of a method (PASS, FAIL, INCONCLUSIVE): on its nested run and on the model version it released.
_VERDICT_TAG = "deid.verdict"
#: The parent run's ``deid.report`` tag: the report shows original faces next to their outputs.
INTERNAL_REPORT = "internal (shows original faces)"
PRIVATE_MODEL_DESCRIPTION = (
    "PRIVATE: this model's saved state holds original training images (faces of real people). "
    "Keep it inside the team allowed to see the source dataset; do not share, export or serve it."
)


def local_tracking_uri(work: Path) -> str:
    return f"sqlite:///{(work / 'mlflow' / 'mlflow.db').resolve()}"


def _sqlite_path(uri: str) -> Path | None:
    """The database file of a ``sqlite:///`` URI, or None for any other store."""
    parsed = urlparse(uri)
    if parsed.scheme != "sqlite" or parsed.path in ("", "/", "/:memory:"):
        return None
    return Path(unquote(parsed.path))


def _store_lock(uri: str):
    """A file lock next to a SQLite store (``.store.lock``); servers serialise by themselves."""
    db = _sqlite_path(uri)
    if db is None:
        return nullcontext()
    db.parent.mkdir(parents=True, exist_ok=True)
    return FileLock(str(db.parent / ".store.lock"), timeout=STORE_LOCK_TIMEOUT_S)


def configure_tracking(uri: str | None, experiment: str, work: Path) -> str:
    """Point MLflow at ``uri`` (or the local store) and make sure the experiment exists.

    Creating a SQLite store runs MLflow's schema migrations; two processes doing it at once fail
    (``duplicate column name``, alembic's ``expected to match one row``), so creation and the
    experiment check happen under a file lock next to the database.
    """
    os.environ.setdefault("MLFLOW_DISABLE_TELEMETRY", "true")
    if uri is None:
        WorkLayout(work).mlflow.mkdir(parents=True, exist_ok=True)
        uri = local_tracking_uri(work)
    # a SQLite store keeps its artifacts beside the database; MLflow's default would be ./mlruns under
    # whatever folder the process runs in, outside every root the run was given (a server decides its own)
    db = _sqlite_path(uri)
    artifacts = (db.parent / "artifacts").resolve().as_uri() if db is not None else None
    with _store_lock(uri):
        client = mlflow.MlflowClient(uri)  # the first query creates or migrates the store
        if client.get_experiment_by_name(experiment) is None:
            try:  # the kind tag opens the UI on the runs view (a model-development experiment)
                client.create_experiment(experiment, artifact_location=artifacts,
                                         tags={"mlflow.experimentKind": "custom_model_development"})
            except MlflowException as exc:  # a concurrent client on a server won
                if exc.error_code != "RESOURCE_ALREADY_EXISTS" or client.get_experiment_by_name(experiment) is None:
                    raise
    mlflow.set_tracking_uri(uri)
    mlflow.set_experiment(experiment)
    return uri


#: the record :meth:`deid.methods.DeidMethod.save` writes beside a method's state: its name and parameters
_METHOD_RECORD = "method.json"


def _saved_method(model_dir: str | Path) -> dict:
    """The record of the method saved in ``model_dir`` (``method.json``: its name and parameters)."""
    return json.loads((Path(model_dir) / _METHOD_RECORD).read_text())


def holds_training_images(model_dir: str | Path) -> bool:
    """Whether the method saved in ``model_dir`` keeps original training images in its state.

    Unknown or unreadable methods count as private: a missing marker must never make a model shareable.
    """
    from deid.methods import method_class

    try:
        name = _saved_method(model_dir)["name"]
        return bool(method_class(name).holds_training_images)
    except Exception:  # noqa: BLE001 - anything unreadable is treated as private
        return True


#: what a private model's MLflow artifacts hold instead of its state: where the state stays
POINTER_FILE = "private-model.json"


def shareable_artifacts(model_dir: str | Path, scratch: str | Path) -> str:
    """The folder to upload for the method saved in ``model_dir``: the folder itself when its state holds no
    training image, else a folder under ``scratch`` holding only :data:`POINTER_FILE` (the method's name and
    the absolute path of its state in the private work area). A store may be shared more widely than the
    work dir; original faces stay where the run keeps them."""
    model_dir = Path(model_dir)
    if not holds_training_images(model_dir):
        return str(model_dir)
    out = Path(scratch) / "pointer"
    out.mkdir(parents=True, exist_ok=True)
    try:
        name = _saved_method(model_dir)["name"]
    except Exception:  # noqa: BLE001 - the pointer names what it can
        name = "unknown"
    (out / POINTER_FILE).write_text(json.dumps({"method": name, "model_dir": str(model_dir.resolve()),
                                                "note": "state holds original training images: kept in the "
                                                        "private work area, never uploaded"}, indent=2))
    return str(out)


def privacy_tags(private: bool) -> dict[str, str]:
    value = "true" if private else "false"
    return {"deid.private": value, "deid.holds_training_images": value}


def _internal_figure(path: str) -> bool:
    """Figures that show original faces (the sample grid) or identity names (confusion matrices)."""
    name = Path(path).name
    return name.startswith("samples") or name.startswith("confusion_")


def _flatten(d: dict, prefix: str = "") -> dict[str, str]:
    out = {}
    for k, v in d.items():
        key = f"{prefix}{k}"
        if isinstance(v, dict):
            out.update(_flatten(v, key + "."))
        else:
            out[key] = str(v)[:500]
    return out


#: what each method's row logs on the parent run as ``<method>.<metric>``
HEADLINE_METRICS = headline_names()  # the metric table's headline figures, with their interval bounds


@task(retries=2, retry_delay_seconds=[2, 5], retry_condition_fn=retry_unless_deterministic)
def log_audit(result: AuditResult, *, run_name: str, config: dict, dataset_info: dict, images_dir: str,
              report: str, figures: list[str], verdicts: dict, model_dirs: dict[str, str],
              transform_stats: dict[str, dict], tracking_uri: str, experiment: str,
              started: float | None = None, tags: dict[str, str] | None = None,
              method_tags: dict[str, dict[str, str]] | None = None) -> str:
    """One parent run (config, dataset, report, figures) and one nested run per method; returns the parent id.

    ``started`` (epoch seconds): when the flow run began, so the parent run shows the run's real duration.
    ``tags`` go on the parent run, ``method_tags[name]`` on method ``name``'s nested run."""
    import pandas as pd

    summary_rows = [{"split": k, "rows": float(v)} for k, v in dataset_info.get("by_split", {}).items()]
    internal = [Path(report).name] + [f"figures/{Path(f).name}" for f in figures if _internal_figure(f)]

    mlflow.set_tracking_uri(tracking_uri)
    exp = mlflow.set_experiment(experiment)
    run = mlflow.MlflowClient(tracking_uri).create_run(exp.experiment_id, run_name=run_name,
                                                       start_time=int(1000 * started) if started else None)
    with mlflow.start_run(run_id=run.info.run_id) as parent:
        mlflow.set_tags({"mlflow.source.git.commit": git_commit(), "deid.dataset": dataset_info["name"],
                         "deid.dataset_digest": dataset_info["digest"], "deid.report": INTERNAL_REPORT,
                         "deid.internal_artifacts": ", ".join(internal)[:5000], **(tags or {})})
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
        # the headline figures on the parent too, prefixed by method: the runs table compares releases over weeks
        mlflow.log_metrics({f"{name}.{k}": float(a.metrics[k]) for name, a in result.methods.items()
                            for k in HEADLINE_METRICS if a.metrics.get(k) is not None})
        for name, audit in result.methods.items():
            with mlflow.start_run(run_name=name, nested=True):
                mlflow.set_tags({"deid.method": name, **(method_tags or {}).get(name, {})})
                mlflow.log_metrics({k: float(v) for k, v in audit.metrics.items()})
                if name in verdicts:
                    v = verdicts[name]
                    mlflow.set_tags({_VERDICT_TAG: v.status, "deid.verdict_reasons": "; ".join(v.reasons)[:5000]})
                if name in transform_stats:
                    mlflow.log_metrics({f"transform_{k}": float(v) for k, v in transform_stats[name].items()
                                        if isinstance(v, (int, float))})
                if name in model_dirs and name != ORIGINAL:
                    # the method's own parameters, on its own run
                    if (Path(model_dirs[name]) / _METHOD_RECORD).exists():
                        mlflow.log_params({f"method.{k}": v for k, v in
                                           _flatten(_saved_method(model_dirs[name]).get("params", {})).items()})
                    mlflow.set_tags(privacy_tags(holds_training_images(model_dirs[name])))
                    with tempfile.TemporaryDirectory() as scratch:
                        mlflow.log_artifacts(shareable_artifacts(model_dirs[name], scratch), artifact_path="model")
        return parent.info.run_id


@dataclass(frozen=True)
class ImageShape:
    """One image as the dataset was ingested (``preprocess.size``, grayscale or colour): what a method was
    fitted on and what its registered model takes."""

    channels: int
    height: int
    width: int

    @classmethod
    def of(cls, method) -> "ImageShape":
        """The ``(C, H, W)`` a fitted :class:`~deid.methods.DeidMethod` was fitted on (its ``input_shape_``)."""
        c, h, w = (int(v) for v in method.input_shape_)
        return cls(c, h, w)

    @property
    def batch(self) -> tuple[int, ...]:
        """The shape of a batch of images as people hold them: ``(-1, H, W)``, or ``(-1, H, W, C)`` in colour."""
        return (-1, self.height, self.width) if self.channels == 1 else (-1, self.height, self.width, self.channels)


#: the labels a method may need to transform (k-Same groups by identity, proxy-morph draws proxies of the
#: same utility label): one string per image, as predict's params
_LABEL_PARAMS = ("identity", "utility")


def release_signature(shape: ImageShape):
    """The registered model's signature: a ``uint8`` batch of images in, the de-identified batch of the same
    shape and dtype out; the optional per-image labels as params."""
    from mlflow.models import ModelSignature
    from mlflow.types.schema import ParamSchema, ParamSpec, Schema, TensorSpec

    images = Schema([TensorSpec(np.dtype(np.uint8), shape.batch)])
    out = Schema([TensorSpec(np.dtype(np.uint8), shape.batch)])
    return ModelSignature(inputs=images, outputs=out,
                          params=ParamSchema([ParamSpec(k, "string", [], (-1,)) for k in _LABEL_PARAMS]))


def release_input_example(shape: ImageShape) -> np.ndarray:
    """One black image of ``shape`` as a batch: never a training image (a private model's state holds them)."""
    return np.zeros((1, *shape.batch[1:]), dtype=np.uint8)


class _DeidMethodModel:
    """A saved de-identification method as an MLflow model: ``predict`` takes a ``uint8`` batch ``(N, H, W)``
    (grayscale) or ``(N, H, W, C)`` at the size the method was fitted on and returns the de-identified batch,
    same shape and dtype; ``params={"identity": [...], "utility": [...]}`` for methods that need the labels.

    A version registered before the signature was given (float ``(N, C, H, W)`` in ``[0, 1]``, the library's
    convention) keeps working: anything not ``uint8`` goes to the method as it is and comes back as floats."""

    def load_context(self, context) -> None:
        from deid.errors import MethodError
        from deid.methods import DeidMethod

        where = Path(context.artifacts["method"])
        if (where / POINTER_FILE).is_file():  # a private model: its state stayed in the run's work area
            pointer = json.loads((where / POINTER_FILE).read_text())
            where = Path(str(pointer.get("model_dir", "")))
            if not (where / "method.json").is_file():
                raise MethodError(f"this model's state holds original training images and stays in the private work "
                                  f"area of the run that fitted it ({where}), which is not on this machine")
        self.method = DeidMethod.load(where)

    def predict(self, context, model_input, params=None):
        from deid.errors import MethodError
        from deid.imageio import to_uint8

        given = [(params or {}).get(k) for k in _LABEL_PARAMS]  # the signature's default is an empty list
        identity, utility = (np.asarray(v, dtype=object) if v is not None and len(v) else None for v in given)
        x = np.asarray(model_input)
        if x.dtype != np.uint8:  # the library's own convention
            return self.method.transform(x.astype(np.float32), identity, utility)
        shape = ImageShape.of(self.method)
        if x.shape[1:] != shape.batch[1:]:
            raise MethodError(f"'{self.method.name}' takes uint8 images of shape {shape.batch}, got {x.shape}")
        chw = x[:, None] if x.ndim == 3 else x.transpose(0, 3, 1, 2)
        y = to_uint8(self.method.transform(chw.astype(np.float32) / np.float32(255.0), identity, utility))
        return y[:, 0] if x.ndim == 3 else np.ascontiguousarray(y.transpose(0, 2, 3, 1))


# Image arrays are not what MLflow's type-hint schemas describe, so its advice on hints is silenced.
with warnings.catch_warnings():
    warnings.simplefilter("ignore", UserWarning)
    DeidMethodModel = type("DeidMethodModel", (_DeidMethodModel, mlflow.pyfunc.PythonModel), {"__module__": __name__})

_RELEASE_MODEL = "release-model"
_RELEASE_TAG = "release_version"


def _versions_of_release(client: mlflow.MlflowClient, name: str, release_version: str) -> list[Any]:
    """Model versions of ``name`` tagged with ``release_version``, oldest first."""
    found = client.search_model_versions(f"name = '{name}' AND tags.{_RELEASE_TAG} = '{release_version}'")
    return sorted(found, key=lambda mv: int(mv.version))


def _logged_release_model(client: mlflow.MlflowClient, run_id: str, release_version: str) -> str | None:
    """The URI of a complete ``release-model`` already logged for ``release_version`` (a run that
    died before registering it), so a retry does not log a second copy."""
    experiment_id = client.get_run(run_id).info.experiment_id
    found = client.search_logged_models(
        experiment_ids=[experiment_id],
        filter_string=f"name = '{_RELEASE_MODEL}' AND tags.`deid.{_RELEASE_TAG}` = '{release_version}'")
    ready = [m for m in found if str(getattr(m.status, "value", m.status)) == "READY"]
    return ready[0].model_uri if ready else None


def _audit_verdict(client: mlflow.MlflowClient, run_id: str, method: str) -> str | None:
    """The verdict (PASS, FAIL, INCONCLUSIVE) :func:`log_audit` recorded on ``method``'s nested run of ``run_id``."""
    experiment_id = client.get_run(run_id).info.experiment_id
    runs = client.search_runs([experiment_id], max_results=1, filter_string=(
        f"tags.mlflow.parentRunId = '{run_id}' AND tags.`deid.method` = '{method}'"))
    return runs[0].data.tags.get(_VERDICT_TAG) if runs else None


@task(retries=2, retry_delay_seconds=[2, 5], retry_condition_fn=retry_unless_deterministic)
def register_release_model(run_id: str, method: str, model_dir: str, dataset: str, release_version: str,
                           tracking_uri: str) -> str:
    """Make sure ``release_version`` has one registered model version; returns its URI.

    Safe to call on every run, also for a release that already existed: a version tagged
    ``release_version=<v>`` is reused (its tags, description and alias repaired if a run died
    half-way), otherwise the model is logged to ``run_id`` and registered. Two concurrent calls
    converge on the oldest version. Registry aliases (not the deprecated stages) name what is live:
    ``models:/deid-<dataset>@release`` follows the newest registered release; the URI returned is
    that alias when it points at this release, else ``models:/deid-<dataset>/<version>``.

    Methods whose state holds training images are registered with ``deid.private=true``,
    ``deid.holds_training_images=true`` and a description saying they must not be shared.

    The model is logged with its signature (a ``uint8`` batch ``(-1, H, W)``, or ``(-1, H, W, C)`` in colour,
    at the shape the method was fitted on, in and out) and a black image as its input example; the version
    carries ``deid.verdict``, the verdict ``run_id``'s audit gave ``method`` (kept from the first audit that
    released it).
    """
    name = f"deid-{dataset}"
    client = mlflow.MlflowClient(tracking_uri)
    private = holds_training_images(model_dir)
    tags = {"method": method, _RELEASE_TAG: release_version, **privacy_tags(private)}
    verdict = _audit_verdict(client, run_id, method)
    if verdict is not None:
        tags[_VERDICT_TAG] = verdict
    description = PRIVATE_MODEL_DESCRIPTION if private else None

    existing = _versions_of_release(client, name, release_version)
    if existing:
        mv = existing[0]
    else:
        mv = _register_release(client, name, run_id, model_dir, release_version, private, tags, tracking_uri)
    _repair_version(client, name, mv, tags, description)
    return _release_alias(client, name, mv)


def _log_release_model(run_id: str, model_dir: str, release_version: str, private: bool, tracking_uri: str) -> str:
    """Log the method saved in ``model_dir`` to ``run_id`` as ``release-model`` (its signature, a black input
    example, a private model's pointer instead of its state); returns the logged model's URI."""
    from deid.methods import DeidMethod

    shape = ImageShape.of(DeidMethod.load(model_dir))
    mlflow.set_tracking_uri(tracking_uri)
    with mlflow.start_run(run_id=run_id), warnings.catch_warnings(), tempfile.TemporaryDirectory() as scratch:
        warnings.simplefilter("ignore", UserWarning)
        return mlflow.pyfunc.log_model(
            name=_RELEASE_MODEL, python_model=DeidMethodModel(),
            artifacts={"method": shareable_artifacts(model_dir, scratch)},
            signature=release_signature(shape), input_example=release_input_example(shape),
            pip_requirements=["deid"], tags={f"deid.{_RELEASE_TAG}": release_version, **privacy_tags(private)},
        ).model_uri


def _register_release(client: mlflow.MlflowClient, name: str, run_id: str, model_dir: str, release_version: str,
                      private: bool, tags: dict[str, str], tracking_uri: str):
    """A new version of ``name`` for ``release_version``, from the model a dead run logged or one logged now;
    when a concurrent run registered the same release meanwhile, the oldest version is kept and ours dropped."""
    source = _logged_release_model(client, run_id, release_version)
    if source is None:
        source = _log_release_model(run_id, model_dir, release_version, private, tracking_uri)
    mlflow.set_tracking_uri(tracking_uri)
    mine = mlflow.register_model(source, name, tags=tags)
    versions = _versions_of_release(client, name, release_version)
    mv = versions[0] if versions else mine
    if int(mine.version) != int(mv.version):
        try:
            client.delete_model_version(name, mine.version)
        except MlflowException:
            pass
    return mv


def _repair_version(client: mlflow.MlflowClient, name: str, mv, tags: dict[str, str], description: str | None) -> None:
    """Set the version's tags and description where a run that died half-way left them unset or stale; the
    verdict of the audit that first released it stays."""
    if mv.tags.get(_VERDICT_TAG):  # the verdict of the audit that released this version stays
        tags.pop(_VERDICT_TAG, None)
    for k, v in tags.items():
        if mv.tags.get(k) != v:
            client.set_model_version_tag(name, mv.version, k, v)
    if description and (mv.description or "") != description:
        client.update_model_version(name, mv.version, description=description)


def _release_alias(client: mlflow.MlflowClient, name: str, mv) -> str:
    """Point the ``release`` alias at ``mv`` when it has none or ``mv`` is the newest version; returns the alias
    URI when it points at ``mv``, else the version's own URI."""
    newest = max(int(v.version) for v in client.search_model_versions(f"name = '{name}'"))
    aliases = client.get_registered_model(name).aliases
    if "release" not in aliases or (int(mv.version) == newest and int(aliases["release"]) != newest):
        client.set_registered_model_alias(name, "release", mv.version)
        aliases["release"] = mv.version
    return f"models:/{name}@release" if int(aliases["release"]) == int(mv.version) else f"models:/{name}/{mv.version}"

