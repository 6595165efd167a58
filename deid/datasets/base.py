"""What a dataset loader returns, and the registry that finds loaders by name.

A loader only *scans*: it walks the on-disk layout, reads labels from paths and annotation
files, and returns one :class:`SourceItem` per image plus a :class:`Rejected` entry for
every file it cannot label. Decoding, preprocessing and writing are shared (``deid.ingest``).

Every entry a scan looks at is accounted for: it becomes an item, a rejection, or a count in
``ScanResult.skipped`` under the rule that left it out, so ``seen = items + rejected + skipped``.
The folders a loader walks through as its layout are not entries. :func:`list_dir` and
:func:`walk_files` do the walking for every loader: hidden entries, FIFOs, sockets and devices,
and folders named like image files are skipped by rule; symlinks are followed only to targets
inside the dataset root, others are rejected (``outside root``), as are broken or looping ones.
Labels (identity, expression, attribute names) are NFKC-normalised (:func:`label_text`), so
names that differ only by Unicode look-alikes (KELVIN SIGN vs ``K``) are one label.
"""

from __future__ import annotations

import os
import re
import stat
import unicodedata
from collections.abc import Callable, Sequence
from dataclasses import dataclass, field, replace
from pathlib import Path

from deid.errors import ConfigError, DatasetLayoutError, did_you_mean
from deid.registry import Registry

__all__ = [
    "SourceItem",
    "Rejected",
    "GROUP_PATTERN",
    "compile_group_pattern",
    "apply_group_pattern",
    "ScanResult",
    "Loader",
    "register_loader",
    "get_loader",
    "available_loaders",
    "require_dir",
    "label_text",
    "list_dir",
    "walk_files",
    "IMAGE_SUFFIXES",
    "SKIP_HIDDEN",
    "SKIP_SPECIAL",
    "SKIP_IMAGE_NAMED_DIR",
    "SKIP_DIRECTORY",
    "SKIP_DOCUMENTATION",
    "SKIP_CYCLE",
    "OUTSIDE_ROOT",
    "BROKEN_SYMLINK",
]

# Suffixes of the image files any loader reads; a folder named like one is not walked into.
IMAGE_SUFFIXES = frozenset({".png", ".jpg", ".jpeg", ".tif", ".tiff", ".bmp", ".webp", ".gif", ".pgm", ".ppm"})
# Rules under which a scan leaves an entry out without a quarantine row (keys of ScanResult.skipped).
SKIP_HIDDEN = "hidden"
SKIP_SPECIAL = "not a regular file"  # FIFO, socket, device
SKIP_IMAGE_NAMED_DIR = "directory named like an image"
SKIP_DIRECTORY = "directory"  # a sub-folder where the layout has only files
SKIP_DOCUMENTATION = "documentation"
SKIP_CYCLE = "folder already walked (symlink cycle)"
# The loader option every loader accepts: a regex whose ``group`` (or whole match) names an item's group.
GROUP_PATTERN = "group_pattern"
# Reasons (prefixes) of scan rejections the walker makes.
OUTSIDE_ROOT = "outside root"
BROKEN_SYMLINK = "broken symlink"


def label_text(text: str) -> str:
    """A label as the library compares it: Unicode NFKC (``"\u212aA"`` and ``"KA"`` are one name)."""
    return unicodedata.normalize("NFKC", text)


@dataclass(frozen=True)
class SourceItem:
    """One image and its labels. ``relpath`` names it relative to the dataset root (private).

    The image is the file at ``path``, or, for inputs that hold images inside a table (a Hugging
    Face dataset), the encoded bytes in ``data`` (``path`` is then the table file they came from).
    """

    path: Path
    relpath: str
    identity: str
    label: str | None = None
    attributes: dict[str, float] | None = None
    split: str | None = None  # a split the dataset itself defines (CelebA's partition file)
    group: str | None = None  # a recording or session whose frames never straddle splits
    data: bytes | None = field(default=None, repr=False, compare=False)

    def __post_init__(self) -> None:  # every loader's labels meet here: one normal form for all
        object.__setattr__(self, "identity", label_text(self.identity))
        if self.group is not None:
            object.__setattr__(self, "group", label_text(self.group))
        if self.label is not None:
            object.__setattr__(self, "label", label_text(self.label))
        if self.attributes:
            object.__setattr__(self, "attributes", {label_text(k): v for k, v in self.attributes.items()})


def compile_group_pattern(pattern: str) -> re.Pattern:
    """``pattern`` compiled, or a :class:`ConfigError` naming the ``group_pattern`` option."""
    try:
        return re.compile(pattern)
    except (re.error, TypeError) as exc:
        raise ConfigError(f"loader option {GROUP_PATTERN}: {pattern!r} is not a regular expression ({exc})") from None


def apply_group_pattern(items: Sequence[SourceItem], pattern: str) -> list[SourceItem]:
    """Items with ``group`` taken from their relative path: the first match of ``pattern``
    (searched, not anchored) gives its named group ``group``, else the whole match, e.g.
    ``"(?P<group>.+)_frame\\d+\\.png$"``. Items it does not match keep the loader's group.
    A pattern that matches no item at all is a :class:`ConfigError`."""
    rx = compile_group_pattern(pattern)
    out, matched = [], 0
    for it in items:
        m = rx.search(it.relpath)
        g = (m.groupdict().get("group") or m.group(0)) if m else None
        if g:
            matched += 1
            it = replace(it, group=g)
        out.append(it)
    if items and not matched:
        raise ConfigError(f"loader option {GROUP_PATTERN}: {pattern!r} matches none of the {len(items)} "
                          f"relative paths (e.g. {items[0].relpath!r})")
    return out


@dataclass(frozen=True)
class Rejected:
    """A file the loader found but could not label; it becomes a quarantine row."""

    relpath: str
    reason: str


@dataclass
class ScanResult:
    """Items to ingest, rejections to quarantine, and the entries left out, counted by rule."""

    items: list[SourceItem] = field(default_factory=list)
    rejected: list[Rejected] = field(default_factory=list)
    skipped: dict[str, int] = field(default_factory=dict)
    # The utility label's vocabulary in its declared order (a config's ``labels``), when the loader
    # was given one; ``None``: the labels the items carry are the vocabulary.
    labels: list[str] | None = None

    def skip(self, rule: str, n: int = 1) -> None:
        self.skipped[rule] = self.skipped.get(rule, 0) + n

    @property
    def seen(self) -> int:
        """Every entry the scan accounted for: ``items + rejected + skipped``."""
        return len(self.items) + len(self.rejected) + sum(self.skipped.values())


@dataclass(frozen=True)
class Loader:
    """A registered dataset layout.

    ``scan(root, **options)`` labels the files; ``needs_alignment`` says whether images are in
    the wild (faces must be detected and cropped) or already face crops; ``source_may_be_file``
    whether ``root`` may name a file (a manifest) rather than a folder.
    """

    name: str
    scan: Callable[..., ScanResult]
    needs_alignment: bool = False
    source_may_be_file: bool = False
    utility_label: str = "expression"
    description: str = ""
    # checks of the options' values that need no data (a regex compiles, two options that exclude each
    # other), run with check_options when a config loads: a ConfigError, one line
    check_values: Callable[[dict], None] | None = None

    def option_names(self) -> list[str]:
        """The loader options ``scan`` takes (``group_pattern`` is every loader's)."""
        import inspect

        params = list(inspect.signature(self.scan).parameters.values())[1:]
        return sorted({p.name for p in params if p.kind is p.KEYWORD_ONLY} | {GROUP_PATTERN})

    def check_options(self, options: dict) -> None:
        """A :class:`ConfigError` naming any option this loader does not take (with the closest it does),
        before any work: one line."""
        allowed = self.option_names()
        unknown = sorted(set(options) - set(allowed))
        if unknown:
            hints = "; ".join(f"'{u}'{did_you_mean(u, allowed)}" for u in unknown)
            raise ConfigError(f"loader option {hints} is not an option of the '{self.name}' loader; "
                              f"it takes: {allowed}")
        if options.get(GROUP_PATTERN) is not None:
            compile_group_pattern(options[GROUP_PATTERN])
        if self.check_values is not None:
            self.check_values(options)


#: The built-in loaders and the module that registers each, imported when a loader is first asked for
#: (the one :class:`~deid.registry.Registry`, as for the methods and the attackers): a new loader is a
#: module and one line here.
BUILTIN_LOADERS: dict[str, str] = {name: f"deid.datasets.{name}" for name in
                                   ("celeba", "ferg", "folder", "hf", "jaffe", "lfw", "manifest", "rafd")}

_LOADERS: Registry[Loader] = Registry("dataset", BUILTIN_LOADERS, table="BUILTIN_LOADERS")


def register_loader(loader: Loader) -> Loader:
    """Register ``loader`` under its name, from the module that defines its ``scan``."""
    return _LOADERS.add(loader.name, loader, getattr(loader.scan, "__module__", None))


def get_loader(name: str) -> Loader:
    """The loader registered as ``name``, its module imported."""
    return _LOADERS.get(name)


def available_loaders() -> list[str]:
    """Every loader's name, sorted; imports no loader module."""
    return _LOADERS.names()


def require_dir(root: str | Path, what: str) -> Path:
    """``root`` as a Path, or a :class:`DatasetLayoutError` that says what was expected there."""
    p = Path(root)
    if not p.exists():
        raise DatasetLayoutError(f"{what}: directory {p} does not exist")
    if not p.is_dir():
        raise DatasetLayoutError(f"{what}: {p} is not a directory")
    return p


def _inside(target: Path, roots: tuple[Path, ...]) -> bool:
    return any(target == r or target.is_relative_to(r) for r in roots)


def _resolved_roots(roots: Sequence[str | Path]) -> tuple[Path, ...]:
    return tuple(Path(r).resolve() for r in roots)


def _classify(entry: os.DirEntry, result: ScanResult, base: Path, roots: tuple[Path, ...]) -> str | None:
    """``"dir"``, ``"file"`` or ``None`` (the entry was recorded as skipped or rejected)."""

    def rel() -> str:
        return Path(entry.path).relative_to(base).as_posix()

    if entry.name.startswith("."):
        result.skip(SKIP_HIDDEN)
        return None
    try:
        if entry.is_symlink():
            try:
                target = Path(entry.path).resolve(strict=True)
            except (OSError, RuntimeError):  # dangling, or a loop
                result.rejected.append(Rejected(rel(), f"{BROKEN_SYMLINK}: the link's target does not exist or loops"))
                return None
            if not _inside(target, roots):
                result.rejected.append(Rejected(rel(), f"{OUTSIDE_ROOT}: symlink to a target outside the dataset root"))
                return None
            mode = os.stat(entry.path).st_mode
        elif entry.is_dir(follow_symlinks=False):  # the file type from the directory listing, no stat call
            return "dir"
        elif entry.is_file(follow_symlinks=False):
            return "file"
        else:
            mode = entry.stat(follow_symlinks=False).st_mode
    except OSError as exc:
        result.rejected.append(Rejected(rel(), f"unreadable: {exc.strerror or exc}"))
        return None
    if stat.S_ISDIR(mode):
        return "dir"
    if stat.S_ISREG(mode):
        return "file"
    result.skip(SKIP_SPECIAL)
    return None


def list_dir(directory: str | Path, result: ScanResult, *, base: str | Path,
             roots: Sequence[str | Path]) -> tuple[list[Path], list[Path]]:
    """One level of ``directory``: (folders, regular files), each sorted by name.

    Every other entry is recorded in ``result``: hidden ones, FIFOs, sockets and devices, and
    folders named like image files are counted in ``skipped``; symlinks whose target lies outside
    every folder in ``roots`` are rejected (``outside root``), dangling or looping ones too
    (``broken symlink``). Rejections are named by their path relative to ``base``.
    """
    directory = Path(directory)
    base = Path(base)
    rroots = _resolved_roots(roots)
    dirs: list[Path] = []
    files: list[Path] = []
    try:
        with os.scandir(directory) as it:
            entries = sorted(it, key=lambda e: e.name)
    except OSError as exc:
        rel = directory.relative_to(base).as_posix() if directory != base else "."
        result.rejected.append(Rejected(rel, f"unreadable: folder cannot be listed ({exc.strerror or exc})"))
        return dirs, files
    for e in entries:
        kind = _classify(e, result, base, rroots)
        if kind == "dir":
            if Path(e.name).suffix.lower() in IMAGE_SUFFIXES:
                result.skip(SKIP_IMAGE_NAMED_DIR)
            else:
                dirs.append(Path(e.path))
        elif kind == "file":
            files.append(Path(e.path))
    return dirs, files


def walk_files(directory: str | Path, result: ScanResult, *, base: str | Path,
               roots: Sequence[str | Path]) -> list[Path]:
    """Every regular file under ``directory`` (recursively), in sorted path order.

    Entries are classified as :func:`list_dir` does; a folder reached twice through symlinks
    (a cycle) is walked once.
    """
    out: list[Path] = []
    visited: set[tuple[int, int]] = set()
    stack = [Path(directory)]
    while stack:
        d = stack.pop()
        try:
            st = os.stat(d)
        except OSError:
            continue
        if (st.st_dev, st.st_ino) in visited:
            result.skip(SKIP_CYCLE)
            continue
        visited.add((st.st_dev, st.st_ino))
        dirs, files = list_dir(d, result, base=base, roots=roots)
        out.extend(files)
        stack.extend(reversed(dirs))
    return sorted(out)
