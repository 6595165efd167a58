"""Where a run may write: its work directory and its release root, checked before any work.

Both roots come from the config, so a typo or a hostile file could point them at ``/etc`` or at
someone's data. :func:`check_workspace` resolves them and refuses system directories and
non-empty directories the pipeline did not create; :func:`claim` marks a root as the
pipeline's (the marker file :data:`MARKER`), so the next run recognises it. :func:`inside`
and :func:`ensure_inside` check that a computed path stays under its root; :func:`write_text_atomic`
replaces a file whole or not at all.
"""

from __future__ import annotations

import os
import stat
from dataclasses import dataclass
from pathlib import Path
from typing import TYPE_CHECKING

from deid.errors import ConfigError

if TYPE_CHECKING:
    from deid.config import RunConfig

__all__ = ["MARKER", "Workspace", "WorkLayout", "work_root", "release_root", "check_root", "check_workspace", "claim",
           "claim_workspace", "inside", "ensure_inside", "is_system_dir"]

#: written into a root the pipeline created or claimed while it was empty
MARKER = ".deid-workspace"

# Never a root, nor anything below them.
_SYSTEM_TREES = ("/bin", "/boot", "/dev", "/etc", "/lib", "/lib32", "/lib64", "/libx32", "/proc", "/run", "/sbin",
                 "/sys", "/usr", "/private/etc", "/System", "/Library")
# Never a root themselves (their subfolders may be fine: /var/tmp/x, /srv/deid, /home/me/work).
_SYSTEM_DIRS = ("/", "/home", "/media", "/mnt", "/opt", "/private", "/private/var", "/root", "/srv", "/tmp", "/var",
                "/Users", "/Volumes")


@dataclass(frozen=True)
class WorkLayout:
    """Every folder of a work directory, named once: what a command reads or writes below ``root`` is
    one of these (``runs/<config name>``, ``cache/<kind>``, ...), never a path spelt where it is used."""

    root: Path

    #: the folders that hold the pipeline's own state (never a release root)
    INTERNAL = ("prefect", "mlflow", "datasets", "runs", "cache", "data", "logs", "study", "private")

    @property
    def data(self) -> Path:
        """Generated source trees (the built-in set)."""
        return self.root / "data"

    @property
    def datasets(self) -> Path:
        """Ingested images tables."""
        return self.root / "datasets"

    def dataset(self, name: str, key: str | None = None) -> Path:
        """One ingested dataset: ``datasets/<name>`` or, keyed by its source and settings, ``<name>-<key>``."""
        return self.datasets / (f"{name}-{key}" if key else name)

    @property
    def runs(self) -> Path:
        return self.root / "runs"

    def run(self, name: str) -> Path:
        """One config's run folder: its models, outputs, report and summary.json."""
        return self.runs / name

    def cache(self, kind: str) -> Path:
        """One cache (``pixels``, ``audit-rows``, ``dlib-descriptors``, ``task-results``, ...)."""
        return self.root / "cache" / kind

    @property
    def private(self) -> Path:
        """Never published: the release key, index and records."""
        return self.root / "private"

    @property
    def release(self) -> Path:
        """The default release root."""
        return self.root / "release"

    @property
    def logs(self) -> Path:
        return self.root / "logs"

    @property
    def prefect(self) -> Path:
        """Prefect's home (its SQLite database)."""
        return self.root / "prefect"

    @property
    def prefect_server_log(self) -> Path:
        return self.logs / "prefect-server.log"

    @property
    def mlflow(self) -> Path:
        """The local MLflow store (``mlflow.db`` and its artifacts)."""
        return self.root / "mlflow"

    @property
    def study(self) -> Path:
        return self.root / "study"


# What a work directory written by earlier versions (before the marker) holds; a directory holding
# only these is recognised as the pipeline's. ``prefect`` is created by the ``deid`` command itself.
_WORK_ENTRIES = frozenset({MARKER, *WorkLayout.INTERNAL, "release", "perf", "perf-demo"})
_WORK_INTERNAL = WorkLayout.INTERNAL


@dataclass(frozen=True)
class Workspace:
    """The resolved roots of one run: ``work`` always, ``release`` when the run publishes."""

    work: Path
    release: Path | None

    @property
    def layout(self) -> WorkLayout:
        return WorkLayout(self.work)


def _absolute(path: str | Path, base: Path) -> Path:
    p = Path(path).expanduser()
    return Path(os.path.abspath(p if p.is_absolute() else base / p))


def work_root(cfg: RunConfig, base: Path) -> Path:
    """``cfg.work_dir`` as an absolute path; a relative one is relative to ``base`` (the project directory)."""
    return _absolute(cfg.work_dir, Path(base))


def release_root(cfg: RunConfig, base: Path) -> Path:
    """``cfg.release.root`` as an absolute path; a relative one is relative to the work directory.

    The default ``release`` is ``<work_dir>/release``.
    """
    return _absolute(cfg.release.root, work_root(cfg, base))


def inside(root: str | Path, path: str | Path, *, follow_links: bool = False) -> bool:
    """Whether ``path`` is ``root`` or below it once ``..`` is collapsed (and links resolved with ``follow_links``).

    Without ``follow_links`` the test is on the names alone, so a work directory whose ``runs``
    folder links to another disk is still the run's.
    """
    norm = os.path.realpath if follow_links else os.path.abspath
    r, p = Path(norm(root)), Path(norm(path))
    return p == r or r in p.parents


def ensure_inside(root: str | Path, path: str | Path, what: str) -> Path:
    """``path`` (absolute) if it stays inside ``root``, else a :class:`ConfigError` naming ``what``."""
    if not inside(root, path):
        raise ConfigError(f"{what}: {path} is outside {root}; refusing to write there")
    return Path(os.path.abspath(path))


def is_system_dir(path: str | Path) -> bool:
    """Whether ``path`` is a system directory (``/``, ``/etc``, the home directory, …) or lies under one."""
    home = os.path.abspath(os.path.expanduser("~"))
    for p in {os.path.abspath(path), os.path.realpath(path)}:
        if p in _SYSTEM_DIRS or p in _SYSTEM_TREES or p == home:
            return True
        if any(p.startswith(t + "/") for t in _SYSTEM_TREES):
            return True
    return False


def check_root(path: str | Path, what: str, recognised: frozenset[str] = frozenset({MARKER})) -> Path:
    """``path`` if the pipeline may write there, else a :class:`ConfigError` (one line, naming ``what``).

    Refused: system directories, a file, and a non-empty directory without :data:`MARKER` unless
    every entry is in ``recognised``. Missing or empty directories are fine. Writes nothing.
    """
    p = Path(os.path.abspath(Path(path).expanduser()))
    if is_system_dir(p):
        raise ConfigError(f"{what}: {p} is a system directory; choose a folder of its own")
    if p.exists() and not p.is_dir():
        raise ConfigError(f"{what}: {p} exists and is not a directory")
    if p.is_dir():  # others must not be able to plant files where a run reads its caches back
        st = p.stat()
        if st.st_mode & stat.S_IWOTH:
            raise ConfigError(f"{what}: {p} is writable by every user of this machine; choose a folder of your own")
        if hasattr(os, "geteuid") and st.st_uid != os.geteuid():
            raise ConfigError(f"{what}: {p} belongs to another user (uid {st.st_uid}); choose a folder of your own")
    if p.is_dir() and not (p / MARKER).exists():
        try:
            entries = {e.name for e in p.iterdir()}
        except OSError as exc:
            raise ConfigError(f"{what}: cannot read {p}: {exc.strerror}") from None
        if entries - recognised:
            raise ConfigError(f"{what}: {p} is not empty and was not created by deid (no {MARKER}); "
                              "choose a new or empty folder")
    return p


def check_workspace(cfg: RunConfig, base: str | Path) -> Workspace:
    """Resolve and check every root ``cfg`` writes to, and the per-run folders below the work directory.

    Pure check (nothing is written): call it before any work, then :func:`claim_workspace`.
    """
    base = Path(base)
    work = check_root(work_root(cfg, base), "work_dir", _WORK_ENTRIES)
    run_dir = WorkLayout(work).run(cfg.name)
    ensure_inside(work, run_dir, "name")
    for spec in cfg.all_methods():
        for sub in ("models", "anonymized"):
            ensure_inside(run_dir, run_dir / sub / spec.key, f"method '{spec.key}'")
    release = None
    if cfg.release.enabled:
        release = release_root(cfg, base)
        if release == work or any(inside(work / d, release) for d in _WORK_INTERNAL):
            raise ConfigError(f"release.root: {release} is the work directory or one of its own folders; "
                              "use a folder of its own (the default is <work_dir>/release)")
        if not inside(work, release):  # below the work directory it is covered by the work directory's check
            from deid.datasets import available_loaders

            check_root(release, "release.root", frozenset({MARKER, *available_loaders()}))
        ensure_inside(release, release / cfg.dataset.name, "dataset.name")
    return Workspace(work, release)


def claim(root: str | Path) -> Path:
    """Create ``root`` if needed and mark it as the pipeline's (idempotent); call after :func:`check_root`."""
    p = Path(root)
    p.mkdir(parents=True, exist_ok=True)
    marker = p / MARKER
    if not marker.exists():
        marker.write_text("This folder is written by the deid pipeline.\n")
    return p


def claim_workspace(ws: Workspace) -> Workspace:
    """Claim the roots :func:`check_workspace` returned."""
    claim(ws.work)
    if ws.release is not None and not inside(ws.work, ws.release):
        claim(ws.release)
    return ws
