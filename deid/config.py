"""Typed run configuration, validated at the edge: YAML in ``configs/`` → :class:`RunConfig`.

Every name is checked against what exists (dataset loaders, registered methods, audit metrics)
before any heavy work starts; errors name the field and the allowed values.
"""

from __future__ import annotations

from pathlib import Path
from typing import Any, Literal

import yaml
from pydantic import BaseModel, ConfigDict, Field, ValidationError, field_validator, model_validator

from deid.errors import ConfigError
from deid.evaluation.audit import AUDIT_METRICS, AuditConfig
from deid.evaluation.gates import GateConfig
from deid.faces_dask import DaskConfig
from deid.preprocessing import PreprocessConfig
from deid.splits import SplitConfig

__all__ = ["SyntheticSpec", "DatasetConfig", "MethodSpec", "TrackingConfig", "ReleaseConfig", "RunConfig",
           "load_config", "BASELINES"]

BASELINES = ("blur", "pixelate", "blackout")


class _Strict(BaseModel):
    model_config = ConfigDict(extra="forbid")


class SyntheticSpec(_Strict):
    """Settings of the built-in FERG-like generator (see ``deid.datasets.synthetic``)."""

    n_characters: int = Field(6, ge=2, le=64)
    images_per_cell: int = Field(24, ge=2)
    size: int = Field(256, ge=32)
    entanglement: float = Field(0.5, ge=0.0, le=1.0)
    noise: float = Field(4.0, ge=0.0)
    seed: int = 0


class DatasetConfig(_Strict):
    """Which dataset, where it lives, and how it is preprocessed and split.

    ``source: builtin`` generates the FERG-like set under the work directory (dataset ``ferg``).
    """

    name: str
    source: str = "builtin"
    synthetic: SyntheticSpec = Field(default_factory=SyntheticSpec)
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
            raise ValueError(f"unknown dataset '{v}'; allowed: {available_loaders()}")
        return v

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
    label: str | None = None  # a display name when the same method runs with several settings

    @model_validator(mode="after")
    def _known_method(self) -> "MethodSpec":
        from deid.methods import method_class

        try:
            cls = method_class(self.name)
        except ConfigError as exc:
            raise ValueError(str(exc)) from None
        unknown = sorted(set(self.params) - set(cls.param_names()))
        if unknown:
            raise ValueError(f"method '{self.name}' has no parameter(s) {unknown}; allowed: {cls.param_names()}")
        return self

    @property
    def key(self) -> str:
        return self.label or self.name


class TrackingConfig(_Strict):
    """MLflow: ``uri`` None keeps a SQLite store under the work directory; set a server URL to share."""

    uri: str | None = None
    experiment: str = "deid"


class ReleaseConfig(_Strict):
    """Which method's output is published, and where. Off unless ``enabled``."""

    enabled: bool = False
    method: str | None = None
    root: str = "release"
    seed: int = 0


class RunConfig(_Strict):
    """One anonymization run: dataset → methods → audit → gates → (release)."""

    name: str = Field(..., pattern=r"^[a-z0-9][a-z0-9_.-]*$")
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
    seed: int = 0
    device: str = "auto"
    schedule: str | None = None
    schedule_enabled: bool = False

    @model_validator(mode="after")
    def _consistent(self) -> "RunConfig":
        keys = [m.key for m in self.all_methods()]
        dup = sorted({k for k in keys if keys.count(k) > 1})
        if dup:
            raise ValueError(f"methods {dup} appear twice; give each setting its own 'label'")
        faces = self.audit.face_metrics == "on" or (self.audit.face_metrics == "auto" and self.dataset.real_faces)
        face_only = {"faceness", "deid", "div"} | {m for m in AUDIT_METRICS if m.startswith("linkage_dlib")}
        if not faces and (bad := sorted({g.metric for g in self.gates.extra} & face_only)):
            raise ValueError(f"gates.extra: {bad} are face metrics, not measured for this dataset "
                             f"(dataset.real_faces is false and audit.face_metrics is '{self.audit.face_metrics}')")
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
        p = Path(self.work_dir).expanduser()
        return p if p.is_absolute() else (base or Path.cwd()) / p


def _format_validation(exc: ValidationError, where: str) -> str:
    lines = [f"{where}: invalid configuration"]
    for e in exc.errors():
        loc = ".".join(str(x) for x in e["loc"]) or "(top level)"
        lines.append(f"  - {loc}: {e['msg']}")
    return "\n".join(lines)


def load_config(path: str | Path, overrides: dict[str, Any] | None = None) -> RunConfig:
    """Read YAML with the safe loader and validate it; :class:`ConfigError` names each bad field."""
    p = Path(path)
    if not p.exists():
        raise ConfigError(f"config file {p} does not exist")
    try:
        data = yaml.safe_load(p.read_text()) or {}
    except yaml.YAMLError as exc:
        raise ConfigError(f"{p}: not valid YAML: {exc}") from exc
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


def _set_dotted(d: dict, dotted: str, value: Any) -> None:
    keys = dotted.split(".")
    for k in keys[:-1]:
        d = d.setdefault(k, {})
    d[keys[-1]] = value
