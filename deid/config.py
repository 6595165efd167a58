"""Typed run configuration, validated at the edge: YAML in ``configs/`` → :class:`RunConfig`.

Every name is checked against what exists (dataset loaders, registered methods and their typed
parameters, audit metrics) before any heavy work starts; errors name the field and the allowed values,
one line per problem. :func:`check_run` adds what can be checked without data or servers: the dataset
path and the work directory. Neither imports torch, scikit-learn, prefect or mlflow (a method's module
is imported only when a config names it).
"""

from __future__ import annotations

import logging
import re
import typing
from pathlib import Path
from typing import TYPE_CHECKING, Annotated, Any, Callable

import yaml
from pydantic import (AfterValidator, BaseModel, ConfigDict, Field, ValidationError, field_validator,
                      model_validator)

from deid.datasets.synthetic import SyntheticFergConfig
from deid.errors import ConfigError, did_you_mean
from deid.evaluation.audit_config import AuditConfig
from deid.evaluation.gates import GateConfig
from deid.evaluation.metric_registry import face_only_names
from deid.faces_dask import DaskConfig
from deid.methods.base import Device
from deid.preprocessing import PreprocessConfig
from deid.splits import SplitConfig

if TYPE_CHECKING:
    from deid.workspace import Workspace

__all__ = ["DatasetConfig", "MethodSpec", "TrackingConfig", "ReleaseConfig", "RunConfig",
           "load_config", "validate_config", "build_config", "method_specs", "check_run", "check_devices", "check_name", "check_cron", "Name",
           "BASELINES", "NAME_PATTERN"]

BASELINES = ("blur", "pixelate", "blackout")

_log = logging.getLogger(__name__)

#: names that become folder names (run name, method label, dataset): one plain path component
NAME_PATTERN = r"[a-z0-9][a-z0-9_.-]{0,63}"


def check_name(v: str) -> str:
    """``v`` if it is a plain lower-case name usable as one folder name, else a ``ValueError``."""
    if not re.fullmatch(NAME_PATTERN, v) or ".." in v:
        raise ValueError(f"{v!r} is not a plain name: use 1-64 of a-z, 0-9, '_', '.', '-', "
                         "starting with a letter or digit, without '..'")
    return v


Name = Annotated[str, AfterValidator(check_name)]

_CRON_NICKNAMES = ("@yearly", "@annually", "@monthly", "@weekly", "@daily", "@midnight", "@hourly")
_CRON_FIELD = r"(\*|\?|[0-9A-Za-z]+(-[0-9A-Za-z]+)?)(/[0-9]+)?(,(\*|[0-9A-Za-z]+(-[0-9A-Za-z]+)?)(/[0-9]+)?)*"


def check_cron(v: str) -> str:
    """``v`` if it is a cron expression (five fields, or a nickname such as ``@daily``), else a ``ValueError``."""
    expr = " ".join(v.split())
    if expr in _CRON_NICKNAMES:
        return v
    if len(expr.split(" ")) != 5:
        raise ValueError(f"{v!r} is not a cron expression: it needs 5 fields (minute hour day month weekday)")
    try:
        from cronsim import CronSim, CronSimError
    except ImportError:  # no parser here: the shape of each field at least
        if not all(re.fullmatch(_CRON_FIELD, f) for f in expr.split(" ")):
            raise ValueError(f"{v!r} is not a cron expression") from None
        return v
    import datetime

    try:
        CronSim(expr, datetime.datetime(2000, 1, 1))
    except CronSimError as exc:
        raise ValueError(f"{v!r} is not a cron expression: {exc}") from None
    return v


class _Strict(BaseModel):
    model_config = ConfigDict(extra="forbid")



class DatasetConfig(_Strict):
    """Which dataset, where it lives, and how it is preprocessed and split.

    ``source: builtin`` generates the FERG-like set under the work directory (dataset ``ferg``).
    """

    name: Name
    source: str = "builtin"
    synthetic: SyntheticFergConfig = Field(default_factory=SyntheticFergConfig)
    preprocess: PreprocessConfig = Field(default_factory=PreprocessConfig)
    split: SplitConfig = Field(default_factory=SplitConfig)
    loader_options: dict[str, Any] = Field(default_factory=dict)
    utility_attribute: str | None = None  # e.g. CelebA's "Smiling" as the utility label
    real_faces: bool = False

    @field_validator("name")
    @classmethod
    def _known_dataset(cls, v: str) -> str:
        from deid.datasets import available_loaders

        if v not in available_loaders():
            raise ValueError(f"unknown dataset '{v}'{did_you_mean(v, available_loaders())}; "
                             f"allowed: {available_loaders()}")
        return v

    @model_validator(mode="after")
    def _loader_takes_its_options(self) -> "DatasetConfig":
        from deid.datasets import get_loader

        try:  # the loader says which options it takes: a misspelt one is one line when the config loads
            get_loader(self.name).check_options(self.loader_options)
        except ConfigError as exc:
            raise ValueError(f"loader_options: {exc}") from None
        return self

    @model_validator(mode="after")
    def _builtin_is_ferg(self) -> "DatasetConfig":
        if self.source == "builtin" and self.name != "ferg":
            raise ValueError(f"source 'builtin' generates a FERG-like set; dataset '{self.name}' needs a source path")
        return self

    def source_path(self, base: Path) -> Path | None:
        if self.source == "builtin":
            return None
        p = Path(self.source).expanduser()
        return p if p.is_absolute() else (base / p)


class MethodSpec(_Strict):
    name: str
    params: dict[str, Any] = Field(default_factory=dict)
    label: Name | None = None  # a name when the same method runs with several settings (a folder name too)

    @field_validator("name")
    @classmethod
    def _current_name(cls, v: str) -> str:
        from deid.methods.registry import canonical_name

        return canonical_name(v)  # a former name (latent_shift) becomes the current one, with a note in the log

    @model_validator(mode="after")
    def _known_method(self) -> "MethodSpec":
        from deid.methods import method_class

        try:
            cls = method_class(self.name)
        except ConfigError as exc:
            raise ValueError(str(exc)) from None
        unknown = sorted(set(self.params) - set(cls.param_names()))
        if unknown:
            raise ValueError(f"method '{self.name}' has no parameter(s) {unknown}"
                             f"{did_you_mean(unknown[0], cls.param_names())}; allowed: {cls.param_names()}")
        try:  # types and constraints as the method declares them
            cls.validate_params(self.params)
        except ConfigError as exc:
            raise ValueError(str(exc)) from None
        return self

    @property
    def key(self) -> str:
        return self.label or self.name


class TrackingConfig(_Strict):
    """MLflow: ``uri`` None keeps a SQLite store under the work directory; set a server URL to share."""

    uri: str | None = None
    experiment: str = "deid"


class ReleaseConfig(_Strict):
    """Which method's output is published, and where. Off unless ``enabled``.

    A former ``seed`` key (read by nothing: the release draws nothing) is accepted and dropped, with a
    deprecation note in the log; the run's seeds are the top-level ``seed`` (:mod:`deid.run`)."""

    enabled: bool = False
    method: str | None = None
    root: str = "release"
    # the licence the release's dataset card declares: a Hugging Face licence id (SPDX), e.g. cc-by-4.0
    license: str = Field("unknown", pattern=r"^[A-Za-z0-9][A-Za-z0-9.+-]{0,63}$")

    @model_validator(mode="before")
    @classmethod
    def _former_seed(cls, data: Any) -> Any:
        if isinstance(data, dict) and "seed" in data:
            _log.warning("release.seed is deprecated and ignored (nothing reads it); remove it: the run's seed is "
                         "the top-level 'seed'")
            data = {k: v for k, v in data.items() if k != "seed"}
        return data

    @model_validator(mode="before")
    @classmethod
    def _licence_spelling(cls, data: Any) -> Any:
        if isinstance(data, dict) and "licence" in data:
            if "license" in data:
                raise ValueError("give release.license or release.licence, not both")
            data = {**data, "license": data["licence"]}
            del data["licence"]
        return data


class RunConfig(_Strict):
    """One anonymization run: dataset → methods → audit → gates → (release)."""

    name: Name
    dataset: DatasetConfig
    methods: list[MethodSpec] = Field(default_factory=list)
    include_baselines: bool = True
    audit: AuditConfig = Field(default_factory=AuditConfig)
    gates: GateConfig = Field(default_factory=GateConfig)
    release: ReleaseConfig = Field(default_factory=ReleaseConfig)
    tracking: TrackingConfig = Field(default_factory=TrackingConfig)
    work_dir: str = "work"
    dask: DaskConfig | None = None  # a scheduler address (or local cluster) for the parallel stages
    batch_size: int = Field(256, ge=1)
    seed: int = 0  # the run seed: every seed left unset below derives from it (deid.run)
    device: Device = "auto"
    schedule: Annotated[str, AfterValidator(check_cron)] | None = None
    schedule_enabled: bool = False

    @model_validator(mode="after")
    def _consistent(self) -> "RunConfig":
        keys = [m.key for m in self.all_methods()]
        dup = sorted({k for k in keys if keys.count(k) > 1})
        if dup:
            raise ValueError(f"methods {dup} appear twice; give each setting its own 'label'")
        faces = self.audit.face_metrics == "on" or (self.audit.face_metrics == "auto" and self.dataset.real_faces)
        if not faces and (bad := sorted({g.metric for g in self.gates.extra} & face_only_names())):
            raise ValueError(f"gates.extra: {bad} are face metrics, not measured for this dataset "
                             f"(dataset.real_faces is false and audit.face_metrics is '{self.audit.face_metrics}')")
        if self.release.method is not None and self.release.method not in keys:
            from deid.methods.registry import ALIASES, canonical_name

            if ALIASES.get(self.release.method) in keys:  # a former method name
                self.release.method = canonical_name(self.release.method)
        if self.release.enabled:
            if self.release.method is None:
                raise ValueError("release.method must name the method whose output is published")
            if self.release.method not in keys:
                raise ValueError(f"release.method '{self.release.method}' is not among the run's methods {keys}")
        return self

    def all_methods(self) -> list[MethodSpec]:
        base = [MethodSpec(name=b) for b in BASELINES if self.include_baselines
                and not any(m.key == b for m in self.methods)]
        return base + list(self.methods)

    def work_path(self, base: Path | None = None) -> Path:
        """``work_dir`` as an absolute path (:func:`deid.workspace.work_root`); a relative one is relative to
        ``base`` (default the current folder)."""
        from deid.workspace import work_root

        return work_root(self, base or Path.cwd())


def check_devices(cfg: RunConfig) -> None:
    """The run-time half of the device check: every ``cuda``/``cuda:N`` the config names exists on this machine.

    Loading checks only the form (``auto``, ``cpu``, ``cuda``, ``cuda:N``); this imports torch, and only
    when a CUDA device is asked for. Raises :class:`ConfigError` naming the field.
    """
    asked = {"device": cfg.device, "audit.device": cfg.audit.device}
    for i, m in enumerate(cfg.methods):
        if isinstance(m.params.get("device"), str):
            asked[f"methods.{i}.params.device"] = m.params["device"]
    cuda = {where: dev for where, dev in asked.items() if dev.startswith("cuda")}
    if not cuda:
        return
    import torch

    n = torch.cuda.device_count() if torch.cuda.is_available() else 0
    for where, dev in cuda.items():
        index = int(dev.split(":", 1)[1]) if ":" in dev else 0
        if index >= n:
            have = f"{n} CUDA device(s), cuda:0 to cuda:{n - 1}" if n else "no CUDA device"
            raise ConfigError(f"{where}: '{dev}' was asked for but this machine has {have}; use 'auto' or 'cpu'")


def check_run(cfg: RunConfig, base: Path | None = None, *, warnings: list[str] | None = None) -> Workspace:
    """Everything about ``cfg`` that can be checked without its data or a server; writes nothing.

    The dataset source exists (when the dataset is read from disk) and is a folder; the work directory
    and release root are folders the pipeline may write to (:func:`deid.workspace.check_workspace`);
    the CUDA devices named exist (:func:`check_devices`). Relative paths are relative to ``base``
    (default: the current directory). Raises :class:`ConfigError` naming the field. With ``warnings`` (a
    list, as ``deid validate`` passes) a missing dataset is appended there instead: the config is valid,
    its data is elsewhere.
    """
    from deid.datasets import get_loader
    from deid.workspace import check_workspace

    base = Path.cwd() if base is None else Path(base)
    src = cfg.dataset.source_path(base)
    if src is not None and not src.exists():
        msg = f"dataset.source: {src} does not exist (dataset '{cfg.dataset.name}')"
        if warnings is None:
            raise ConfigError(msg)
        warnings.append(msg + "; `deid run` needs it")
        src = None
    if src is not None and not src.is_dir() and not get_loader(cfg.dataset.name).source_may_be_file:
        raise ConfigError(f"dataset.source: {src} is not a directory (dataset '{cfg.dataset.name}')")
    workspace = check_workspace(cfg, base)
    check_devices(cfg)
    return workspace


def _model_in(annotation: Any) -> type[BaseModel] | None:
    """The pydantic model inside ``annotation`` (``X``, ``X | None``, ``list[X]``, ``Annotated[X, ...]``)."""
    if isinstance(annotation, type) and issubclass(annotation, BaseModel):
        return annotation
    for arg in typing.get_args(annotation):
        if (model := _model_in(arg)) is not None:
            return model
    return None


def _allowed_keys(loc: tuple) -> list[str] | None:
    """The keys the section at ``loc`` (a path into :class:`RunConfig`) allows, if it is a model."""
    model: type[BaseModel] | None = RunConfig
    for part in loc:
        if isinstance(part, int):  # an item of a list: the same model
            continue
        field = model.model_fields.get(part) if model else None
        if field is None:
            return None
        model = _model_in(field.annotation)
    return list(model.model_fields) if model else None


def _problem(e: dict) -> str:
    loc = ".".join(str(x) for x in e["loc"]) or "(top level)"
    if e["type"] == "extra_forbidden":
        allowed = _allowed_keys(tuple(e["loc"][:-1]))
        if allowed is not None:
            return f"{loc}: unknown key{did_you_mean(e['loc'][-1], allowed)}; allowed: {allowed}"
    msg = str(e["ctx"]["error"]) if e["type"] == "value_error" else e["msg"]  # without "Value error, "
    return f"{loc}: {msg}"


def _format_validation(exc: ValidationError, where: str) -> str:
    """One line per problem: ``<where>: <field>: <what is wrong>``."""
    return "\n".join(f"{where}: {_problem(e)}" for e in exc.errors())


def _yaml_problem(exc: yaml.YAMLError) -> str:
    mark = getattr(exc, "problem_mark", None)
    problem = getattr(exc, "problem", None) or str(exc)
    where = f"line {mark.line + 1}, column {mark.column + 1}: " if mark is not None else ""
    return " ".join(f"{where}{problem}".split())


def load_config(path: str | Path, overrides: dict[str, Any] | None = None) -> RunConfig:
    """Read YAML with the safe loader, apply ``overrides`` (dotted keys) and validate.

    :class:`ConfigError` names each bad field, one line per problem.
    """
    p = Path(path)
    if not p.exists():
        raise ConfigError(f"config file {p} does not exist")
    if not p.is_file():
        raise ConfigError(f"config file {p} is not a file")
    try:
        data = yaml.safe_load(p.read_text()) or {}
    except yaml.YAMLError as exc:
        raise ConfigError(f"{p}: not valid YAML: {_yaml_problem(exc)}") from None
    except (OSError, UnicodeDecodeError) as exc:
        raise ConfigError(f"config file {p} cannot be read: {exc}") from None
    if not isinstance(data, dict):
        raise ConfigError(f"{p}: the top level must be a mapping")
    for k, v in (overrides or {}).items():
        _set_dotted(data, k, v)
    return validate_config(data, where=str(p))


def validate_config(data: dict, where: str = "config") -> RunConfig:
    try:
        return RunConfig.model_validate(data)
    except ValidationError as exc:
        raise ConfigError(_format_validation(exc, where)) from None


def build_config(make: Callable[[], dict[str, Any]], where: str = "config") -> RunConfig:
    """A run config built from typed parts: ``make()`` returns :class:`RunConfig`'s fields, its sections as
    models (a section left without a seed keeps it unset, for :func:`deid.run.resolve_run` to derive).
    A refused part is a :class:`ConfigError`, one line per problem, as for a YAML file."""
    try:
        return RunConfig(**make())
    except ValidationError as exc:
        raise ConfigError(_format_validation(exc, where)) from None


def method_specs(settings: typing.Iterable[tuple[str, dict[str, Any], str | None]],
                 where: str = "config") -> list[MethodSpec]:
    """``methods:`` built from (name, params, label) settings; a refused one is a :class:`ConfigError`
    naming it as ``methods.<i>``, one line per problem."""
    out = []
    for i, (name, params, label) in enumerate(settings):
        try:
            out.append(MethodSpec(name=name, params=params, label=label))
        except ValidationError as exc:
            raise ConfigError("\n".join(f"{where}: {_problem({**e, 'loc': ('methods', i, *e['loc'])})}"
                                         for e in exc.errors())) from None
    return out


def _set_dotted(d: dict, dotted: str, value: Any) -> None:
    """``d[a][b][c] = value`` for ``"a.b.c"`` (missing sections are created; ``methods.0`` is a list item)."""
    keys = dotted.split(".")
    if not all(keys):
        raise ConfigError(f"--set {dotted}: empty key")
    node: Any = d
    for i, k in enumerate(keys):
        last = i == len(keys) - 1
        if isinstance(node, list):
            if not k.isdigit() or int(k) >= len(node):
                raise ConfigError(f"--set {dotted}: '{'.'.join(keys[:i])}' has {len(node)} item(s), "
                                  f"numbered from 0; no item '{k}'")
            k = int(k)
        elif not isinstance(node, dict):
            raise ConfigError(f"--set {dotted}: '{'.'.join(keys[:i])}' is a value, not a section")
        if last:
            node[k] = value
        else:
            if isinstance(node, dict) and node.get(k) is None:
                node[k] = {}
            node = node[k]
