"""Folder loader: your own dataset as ``<root>/<identity>/<image>`` (the ImageFolder convention).

The utility label comes from a second folder level, ``<root>/<identity>/<label>/<image>`` (the
default), or from a CSV at the root keyed by each image's path relative to the root
(``label_file``; its other columns can be attributes, a split or a group, as in the manifest
loader). Images without a label, in the wrong place or with a label outside the declared
``labels`` become quarantine rows with the reason; rows of the label file whose image is not on
disk are quarantined too. Hidden files, documentation (README, ``.md``, ``.txt``) and the label
file itself are skipped by rule.

Any other layout is read with ``path_pattern``: a regular expression searched in each image's path
relative to the root, whose named groups give its labels: ``identity`` and ``label`` (both required),
``group`` (a recording or session kept in one split; its name is global, so include the identity in it
when sequences are numbered per person), ``split``, and any other name an attribute (numbers as they
are, other values as their index in that group's sorted vocabulary). CK+ ships
``happy/S010_006_00000015.png``: ``(?P<label>[^/]+)/(?P<group>(?P<identity>S\d+)_\d+)_\d+\.png$``.
An image the pattern does not match is quarantined with the reason.
"""

from __future__ import annotations

import re
from dataclasses import replace
from pathlib import Path

from deid.datasets.base import (
    IMAGE_SUFFIXES,
    SKIP_DOCUMENTATION,
    Loader,
    Rejected,
    ScanResult,
    label_text,
    list_dir,
    register_loader,
    require_dir,
    walk_files,
)
from deid.datasets.manifest import read_manifest
from deid.datasets.records import (Columns, as_columns, check_columns, check_labels, extra_vocabularies,
                                   labelled_item)
from deid.errors import ConfigError, DatasetLayoutError

__all__ = ["scan_folder", "compile_path_pattern", "PATH_PATTERN_ROLES"]

SKIP_LABEL_FILE = "label file"
#: the named groups of ``path_pattern`` with a role of their own (any other name is an attribute)
PATH_PATTERN_ROLES = ("identity", "label", "group", "split")
_NO_MATCH = "path_pattern does not match this path"
_DOC_SUFFIXES = {".md", ".txt", ".pdf", ".json", ".yaml", ".yml"}


def _is_doc(f: Path) -> bool:
    return f.suffix.lower() in _DOC_SUFFIXES or f.name.upper().startswith(("README", "LICENSE", "LICENCE"))


def compile_path_pattern(pattern: str) -> re.Pattern:
    """``pattern`` compiled, or a one-line :class:`ConfigError`: not a regular expression, or without the
    named groups ``identity`` and ``label``."""
    try:
        rx = re.compile(pattern)
    except (re.error, TypeError) as exc:
        raise ConfigError(f"loader option path_pattern: {pattern!r} is not a regular expression ({exc})") from None
    missing = [g for g in ("identity", "label") if g not in rx.groupindex]
    if missing:
        raise ConfigError(f"loader option path_pattern: {pattern!r} has no named group {' nor '.join(missing)}; "
                          "name the parts of the path, e.g. '(?P<label>[^/]+)/(?P<identity>S\\d+)_\\d+\\.png$'")
    return rx


def _check_options(options: dict) -> None:
    """The folder loader's option values, checked when a config loads (before any image is read)."""
    if options.get("path_pattern") is None:
        return
    compile_path_pattern(options["path_pattern"])
    if options.get("label_file") is not None:
        raise ConfigError("folder dataset: give path_pattern or label_file, not both: the pattern reads every "
                          "label from the path")


def _scan_by_pattern(root: Path, rx: re.Pattern, vocab: list[str] | None, result: ScanResult) -> ScanResult:
    """Every image under ``root`` labelled by the named groups of ``rx`` searched in its relative path."""
    found = []
    for f in walk_files(root, result, base=root, roots=(root,)):
        rel = f.relative_to(root).as_posix()
        if _is_doc(f):
            result.skip(SKIP_DOCUMENTATION)
        elif f.suffix.lower() not in IMAGE_SUFFIXES:
            result.rejected.append(Rejected(rel, f"not an image file name (suffix '{f.suffix}')"))
        elif (m := rx.search(rel)) is None:
            result.rejected.append(Rejected(rel, f"{_NO_MATCH} ({rx.pattern!r})"))
        else:
            found.append((f, rel, {k: v for k, v in m.groupdict().items() if v is not None}))
    extra = tuple(sorted(set(rx.groupindex) - set(PATH_PATTERN_ROLES)))
    cols = Columns(identity="identity", label="label", extra_labels=extra,
                   split="split" if "split" in rx.groupindex else None,
                   group="group" if "group" in rx.groupindex else None)
    cols = replace(cols, extra_vocab=extra_vocabularies([row for _, _, row in found], extra))
    for f, rel, row in found:
        out = labelled_item(row, cols, path=f, relpath=rel, labels=vocab)
        (result.rejected if isinstance(out, Rejected) else result.items).append(out)
    return result


def scan_folder(root: str | Path, *, label_file: str | None = None, path_column: str = "path",
                label_column: str | list[str] = "label", attribute_columns: list[str] | None = None,
                split_column: str | None = None, group_column: str | None = None,
                labels: list[str] | None = None, path_pattern: str | None = None) -> ScanResult:
    """Label every image under ``root`` (see the module docstring).

    Without ``label_file`` the layout is ``<identity>/<label>/<image>``; with it (a CSV or Parquet
    file relative to ``root``) it is ``<identity>/<image>`` (deeper folders allowed) and each image
    is looked up by its relative path. With ``path_pattern`` any layout: the pattern's named groups
    label each image. ``labels`` declares the vocabulary and its order.
    """
    root = require_dir(root, "folder dataset")
    _check_options({"path_pattern": path_pattern, "label_file": label_file})
    vocab = check_labels(labels)
    result = ScanResult(labels=vocab)
    if path_pattern is not None:
        if any(v is not None for v in (attribute_columns, split_column, group_column)) or label_column != "label":
            raise ConfigError("folder dataset: with path_pattern the named groups are the columns: "
                              "label_column, attribute_columns, split_column and group_column do not apply")
        return _scan_by_pattern(root, compile_path_pattern(path_pattern), vocab, result)
    table, cols = None, None
    if label_file is not None:
        table, cols = _read_label_file(root, label_file, path_column, dict(
            label_column=label_column, attribute_columns=attribute_columns, split_column=split_column,
            group_column=group_column))
    elif any(v is not None for v in (attribute_columns, split_column, group_column)) or label_column != "label":
        raise ConfigError("folder dataset: label_column, attribute_columns, split_column and group_column "
                          "need a label_file; without one the label is the second folder level")
    id_dirs, loose = list_dir(root, result, base=root, roots=(root,))
    _account_loose(root, loose, label_file, result)
    if not id_dirs and not result.rejected:
        raise DatasetLayoutError(f"folder dataset: {root} has no identity folders; expected <root>/<identity>/"
                                 + ("<image>" if label_file else "<label>/<image>"))
    used: set[str] = set()
    for d in id_dirs:
        for f in walk_files(d, result, base=root, roots=(root,)):
            rel = f.relative_to(root).as_posix()
            if _is_doc(f):
                result.skip(SKIP_DOCUMENTATION)
                continue
            if f.suffix.lower() not in IMAGE_SUFFIXES:
                out = Rejected(rel, f"not an image file name (suffix '{f.suffix}')")
            elif table is not None:
                out = _listed_image(f, rel, label_text(d.name), table, cols, label_file, vocab, used)
            else:
                out = _foldered_image(f, rel, d, vocab)
            (result.rejected if isinstance(out, Rejected) else result.items).append(out)
    if table is not None:
        used |= {r.relpath for r in result.rejected}  # on disk, already quarantined by the walk
        for key in sorted(set(table) - used):
            result.rejected.append(Rejected(key, f"listed in {label_file} but no image file under an identity folder"))
    return result


def _read_label_file(root: Path, label_file: str, path_column: str,
                     roles: dict) -> tuple[dict[str, dict], Columns]:
    """The label file's rows by image path (the first row of a path wins) and its columns, checked against
    ``roles`` (the label, attribute, split and group column options)."""
    lf = root / label_file
    if not lf.is_file():
        raise ConfigError(f"folder dataset: loader option label_file: {lf} is not a file")
    columns, rows = read_manifest(lf)
    cols = as_columns("folder dataset", identity_column="__identity__", **roles)
    check_columns(f"label file {lf.name}", [*columns, "__identity__"], cols, also=(path_column,))
    cols = replace(cols, extra_vocab=extra_vocabularies(rows, cols.extra_labels))
    table: dict[str, dict] = {}
    for row in rows:
        key = label_text(str(row.get(path_column) or "")).strip().replace("\\", "/")
        if key:
            table.setdefault(key, row)
    return table, cols


def _account_loose(root: Path, loose: list[Path], label_file: str | None, result: ScanResult) -> None:
    """Files directly under ``root``: the label file and documentation are skipped, anything else rejected."""
    for f in loose:
        if label_file is not None and f == root / label_file:
            result.skip(SKIP_LABEL_FILE)
        elif _is_doc(f):
            result.skip(SKIP_DOCUMENTATION)
        else:
            result.rejected.append(Rejected(f.name, "not in an identity folder (<root>/<identity>/...)"))


def _listed_image(f: Path, rel: str, identity: str, table: dict[str, dict], cols: Columns, label_file: str,
                  vocab: list[str] | None, used: set[str]):
    """The image labelled by its row of the label file (its key added to ``used``), or why it is rejected."""
    key = label_text(rel)
    row = table.get(key)
    if row is None:
        return Rejected(rel, f"no row for this image in {label_file}")
    used.add(key)
    return labelled_item({**row, "__identity__": identity}, cols, path=f, relpath=rel, labels=vocab)


def _foldered_image(f: Path, rel: str, d: Path, vocab: list[str] | None):
    """The image of identity folder ``d`` labelled by its label folder (``<identity>/<label>/<image>``), or
    why it is rejected."""
    parts = f.relative_to(d).parts
    if len(parts) != 2:
        where = "directly in the identity folder" if len(parts) == 1 else "nested below the label folder"
        return Rejected(rel, f"no label folder: the image is {where} (expected <identity>/<label>/<image>)")
    label = label_text(parts[0]).strip()
    if vocab is not None and label not in vocab:
        return Rejected(rel, f"unknown label '{label}' (label folder); declared labels: {vocab[:20]}")
    return labelled_item({"identity": label_text(d.name), "label": label}, as_columns(
        "folder", identity_column="identity", label_column="label", attribute_columns=None,
        split_column=None, group_column=None), path=f, relpath=rel, labels=vocab)


register_loader(Loader("folder", scan_folder, check_values=_check_options,
                       description="Your own dataset: <root>/<identity>/<label>/<image>, labels from a CSV, "
                                   "or any layout read by path_pattern"))
