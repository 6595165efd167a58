"""What a dataset loader returns, and the registry that finds loaders by name.

A loader only *scans*: it walks the on-disk layout, reads labels from paths and annotation
files, and returns one :class:`SourceItem` per image plus a :class:`Rejected` entry for
every file it cannot label. Decoding, preprocessing and writing are shared (``deid.ingest``).
"""

from __future__ import annotations

from collections.abc import Callable
from dataclasses import dataclass, field
from pathlib import Path

from deid.errors import DatasetLayoutError

__all__ = [
    "SourceItem",
    "Rejected",
    "ScanResult",
    "Loader",
    "register_loader",
    "get_loader",
    "available_loaders",
    "require_dir",
]


@dataclass(frozen=True)
class SourceItem:
    """One image on disk and its labels. ``relpath`` is relative to the dataset root (private)."""

    path: Path
    relpath: str
    identity: str
    expression: str | None = None
    attributes: dict[str, float] | None = None
    split: str | None = None  # a split the dataset itself defines (CelebA's partition file)


@dataclass(frozen=True)
class Rejected:
    """A file the loader found but could not label; it becomes a quarantine row."""

    relpath: str
    reason: str


@dataclass
class ScanResult:
    items: list[SourceItem] = field(default_factory=list)
    rejected: list[Rejected] = field(default_factory=list)


@dataclass(frozen=True)
class Loader:
    """A registered dataset layout.

    ``scan(root, **options)`` labels the files; ``needs_alignment`` says whether images are in
    the wild (faces must be detected and cropped) or already face crops.
    """

    name: str
    scan: Callable[..., ScanResult]
    needs_alignment: bool = False
    utility_label: str = "expression"
    description: str = ""


_LOADERS: dict[str, Loader] = {}


def register_loader(loader: Loader) -> Loader:
    if loader.name in _LOADERS:
        raise ValueError(f"a dataset loader named '{loader.name}' is already registered")
    _LOADERS[loader.name] = loader
    return loader


def get_loader(name: str) -> Loader:
    import deid.datasets  # noqa: F401  (registers the built-in loaders)

    try:
        return _LOADERS[name]
    except KeyError:
        raise DatasetLayoutError(f"unknown dataset '{name}'; known datasets: {sorted(_LOADERS)}") from None


def available_loaders() -> list[str]:
    import deid.datasets  # noqa: F401

    return sorted(_LOADERS)


def require_dir(root: str | Path, what: str) -> Path:
    """``root`` as a Path, or a :class:`DatasetLayoutError` that says what was expected there."""
    p = Path(root)
    if not p.exists():
        raise DatasetLayoutError(f"{what}: directory {p} does not exist")
    if not p.is_dir():
        raise DatasetLayoutError(f"{what}: {p} is not a directory")
    return p
