"""Folder loader: your own dataset as ``<root>/<identity>/<image>`` (the ImageFolder convention).

The utility label comes from a second folder level, ``<root>/<identity>/<label>/<image>`` (the
default), or from a CSV at the root keyed by each image's path relative to the root
(``label_file``; its other columns can be attributes, a split or a group, as in the manifest
loader). Images without a label, in the wrong place or with a label outside the declared
``labels`` become quarantine rows with the reason; rows of the label file whose image is not on
disk are quarantined too. Hidden files, documentation (README, ``.md``, ``.txt``) and the label
file itself are skipped by rule.
"""

from __future__ import annotations

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
from deid.datasets.records import as_columns, check_columns, check_labels, extra_vocabularies, labelled_item
from deid.errors import ConfigError, DatasetLayoutError

__all__ = ["scan_folder"]

SKIP_LABEL_FILE = "label file"
_DOC_SUFFIXES = {".md", ".txt", ".pdf", ".json", ".yaml", ".yml"}


def _is_doc(f: Path) -> bool:
    return f.suffix.lower() in _DOC_SUFFIXES or f.name.upper().startswith(("README", "LICENSE", "LICENCE"))


def scan_folder(root: str | Path, *, label_file: str | None = None, path_column: str = "path",
                label_column: str | list[str] = "label", attribute_columns: list[str] | None = None,
                split_column: str | None = None, group_column: str | None = None,
                labels: list[str] | None = None) -> ScanResult:
    """Label every image under ``root`` (see the module docstring).

    Without ``label_file`` the layout is ``<identity>/<label>/<image>``; with it (a CSV or Parquet
    file relative to ``root``) it is ``<identity>/<image>`` (deeper folders allowed) and each image
    is looked up by its relative path. ``labels`` declares the vocabulary and its order.
    """
    root = require_dir(root, "folder dataset")
    vocab = check_labels(labels)
    result = ScanResult(labels=vocab)
    table: dict[str, dict] | None = None
    cols = None
    if label_file is not None:
        lf = root / label_file
        if not lf.is_file():
            raise ConfigError(f"folder dataset: loader option label_file: {lf} is not a file")
        columns, rows = read_manifest(lf)
        cols = as_columns("folder dataset", identity_column="__identity__", label_column=label_column,
                          attribute_columns=attribute_columns, split_column=split_column, group_column=group_column)
        check_columns(f"label file {lf.name}", [*columns, "__identity__"], cols, also=(path_column,))
        cols = replace(cols, extra_vocab=extra_vocabularies(rows, cols.extra_labels))
        table = {}
        for row in rows:
            key = label_text(str(row.get(path_column) or "")).strip().replace("\\", "/")
            if key:
                table.setdefault(key, row)
    elif any(v is not None for v in (attribute_columns, split_column, group_column)) or label_column != "label":
        raise ConfigError("folder dataset: label_column, attribute_columns, split_column and group_column "
                          "need a label_file; without one the label is the second folder level")
    id_dirs, loose = list_dir(root, result, base=root, roots=(root,))
    for f in loose:
        if label_file is not None and f == root / label_file:
            result.skip(SKIP_LABEL_FILE)
        elif _is_doc(f):
            result.skip(SKIP_DOCUMENTATION)
        else:
            result.rejected.append(Rejected(f.name, "not in an identity folder (<root>/<identity>/...)"))
    if not id_dirs and not result.rejected:
        raise DatasetLayoutError(f"folder dataset: {root} has no identity folders; expected <root>/<identity>/"
                                 + ("<image>" if label_file else "<label>/<image>"))
    used: set[str] = set()
    for d in id_dirs:
        identity = label_text(d.name)
        for f in walk_files(d, result, base=root, roots=(root,)):
            rel = f.relative_to(root).as_posix()
            if _is_doc(f):
                result.skip(SKIP_DOCUMENTATION)
                continue
            if f.suffix.lower() not in IMAGE_SUFFIXES:
                result.rejected.append(Rejected(rel, f"not an image file name (suffix '{f.suffix}')"))
                continue
            if table is not None:
                key = label_text(rel)
                row = table.get(key)
                if row is None:
                    result.rejected.append(Rejected(rel, f"no row for this image in {label_file}"))
                    continue
                used.add(key)
                out = labelled_item({**row, "__identity__": identity}, cols, path=f, relpath=rel, labels=vocab)
            else:
                parts = f.relative_to(d).parts
                if len(parts) != 2:
                    where = "directly in the identity folder" if len(parts) == 1 else "nested below the label folder"
                    result.rejected.append(Rejected(rel, f"no label folder: the image is {where} "
                                                         "(expected <identity>/<label>/<image>)"))
                    continue
                label = label_text(parts[0]).strip()
                if vocab is not None and label not in vocab:
                    result.rejected.append(Rejected(rel, f"unknown label '{label}' (label folder); "
                                                         f"declared labels: {vocab[:20]}"))
                    continue
                out = labelled_item({"identity": identity, "label": label}, as_columns(
                    "folder", identity_column="identity", label_column="label", attribute_columns=None,
                    split_column=None, group_column=None), path=f, relpath=rel, labels=vocab)
            (result.rejected if isinstance(out, Rejected) else result.items).append(out)
    if table is not None:
        used |= {r.relpath for r in result.rejected}  # on disk, already quarantined by the walk
        for key in sorted(set(table) - used):
            result.rejected.append(Rejected(key, f"listed in {label_file} but no image file under an identity folder"))
    return result


register_loader(Loader("folder", scan_folder,
                       description="Your own dataset: <root>/<identity>/<label>/<image>, or labels from a CSV"))
