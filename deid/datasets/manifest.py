"""Manifest loader: your own dataset as a CSV or Parquet file with one row per image.

Each row names an image by its path relative to the manifest's folder, its identity and one or
more labels; optional columns carry numeric attributes, a split (train / val / test, or
validation, dev, ...) and a group (a recording or session kept in one split). Column names are
loader options. Every row is accounted for: a row whose file is missing, unreadable, outside the
manifest's folder or listed twice, or whose identity, label or split is empty or unknown, becomes
a quarantine row with the reason.

``source`` is the manifest file, or a folder holding ``manifest.csv`` or ``manifest.parquet``.
"""

from __future__ import annotations

import os
import stat
from dataclasses import replace
from pathlib import Path, PurePosixPath
from typing import Any

from deid.datasets.base import (
    BROKEN_SYMLINK,
    IMAGE_SUFFIXES,
    OUTSIDE_ROOT,
    Loader,
    Rejected,
    ScanResult,
    label_text,
    register_loader,
)
from deid.datasets.records import as_columns, check_columns, check_labels, extra_vocabularies, labelled_item
from deid.errors import DatasetLayoutError

__all__ = ["scan_manifest", "read_manifest", "MANIFEST_NAMES"]

MANIFEST_NAMES = ("manifest.csv", "manifest.parquet")


def _manifest_file(source: Path) -> Path:
    if source.is_dir():
        for name in MANIFEST_NAMES:
            if (source / name).is_file():
                return source / name
        raise DatasetLayoutError(f"manifest: {source} is a folder without {' or '.join(MANIFEST_NAMES)}; "
                                 "point the dataset source at the manifest file")
    if not source.exists():
        raise DatasetLayoutError(f"manifest: {source} does not exist")
    return source


#: cell texts a CSV writer uses for a missing value (pandas, Excel, R): read as empty
MISSING_MARKERS = frozenset({"nan", "none", "null", "n/a", "#n/a"})


def read_manifest(path: str | Path) -> tuple[list[str], list[dict[str, Any]]]:
    """A CSV (every cell as text, empty cells empty) or Parquet manifest as (columns, rows)."""
    import pandas as pd

    path = Path(path)
    try:
        if path.suffix.lower() in (".parquet", ".pq"):
            df = pd.read_parquet(path)
        elif path.suffix.lower() in (".csv", ".tsv", ".txt"):
            df = pd.read_csv(path, dtype=str, keep_default_na=False, sep="\t" if path.suffix.lower() == ".tsv" else ",")
        else:
            raise DatasetLayoutError(f"manifest: {path.name} is neither CSV (.csv, .tsv) nor Parquet (.parquet)")
    except DatasetLayoutError:
        raise
    except Exception as exc:  # noqa: BLE001 - a parser's own error, one line
        raise DatasetLayoutError(f"manifest: cannot read {path}: {' '.join(str(exc).split())[:200]}") from None
    df = df.astype(object).where(df.notna(), None)
    rows = df.to_dict(orient="records")
    for r in rows:  # spreadsheet spellings of "missing" are missing, not a label class named 'NaN'
        for k, v in r.items():
            if isinstance(v, str) and v.strip().lower() in MISSING_MARKERS:
                r[k] = None
    return [str(c) for c in df.columns], rows


def _image(base: Path, base_real: Path, rel: str) -> tuple[Path | None, str | None]:
    """The file a row names, or the reason it cannot be used."""
    p = PurePosixPath(rel.replace("\\", "/"))
    if p.is_absolute() or ".." in p.parts:
        return None, f"{OUTSIDE_ROOT}: the path leaves the manifest's folder"
    f = base / Path(*p.parts)
    try:
        real = f.resolve(strict=True)
    except FileNotFoundError:
        return None, "missing file: no such file next to the manifest"
    except (OSError, RuntimeError):
        return None, f"{BROKEN_SYMLINK}: the link's target does not exist or loops"
    if not real.is_relative_to(base_real):
        return None, f"{OUTSIDE_ROOT}: symlink to a target outside the manifest's folder"
    try:
        mode = os.stat(real).st_mode
    except OSError as exc:
        return None, f"unreadable: {exc.strerror or exc}"
    if not stat.S_ISREG(mode):
        return None, "not a regular file"
    if f.suffix.lower() not in IMAGE_SUFFIXES:
        return None, f"not an image file name (suffix '{f.suffix}')"
    return f, None


def scan_manifest(root: str | Path, *, path_column: str = "path", identity_column: str = "identity",
                  label_column: str | list[str] = "label", attribute_columns: list[str] | None = None,
                  split_column: str | None = None, group_column: str | None = None,
                  labels: list[str] | None = None) -> ScanResult:
    """Label every row of a manifest (see the module docstring).

    ``label_column`` is the utility label, or a list whose first entry is and whose others are kept
    as attributes. ``labels`` declares the label vocabulary and its order (other values are
    quarantined); without it the labels the rows hold are the vocabulary. A configured column the
    manifest lacks is a :class:`~deid.errors.ConfigError` naming it.
    """
    manifest = _manifest_file(Path(root))
    base = manifest.parent
    base_real = base.resolve()
    columns, rows = read_manifest(manifest)
    cols = as_columns("manifest", identity_column=identity_column, label_column=label_column,
                      attribute_columns=attribute_columns, split_column=split_column, group_column=group_column)
    check_columns(f"manifest {manifest.name}", columns, cols, also=(path_column,))
    vocab = check_labels(labels)
    result = ScanResult(labels=vocab)
    if not rows:
        raise DatasetLayoutError(f"manifest: {manifest} has no rows")
    cols = replace(cols, extra_vocab=extra_vocabularies(rows, cols.extra_labels))
    seen: dict[str, int] = {}
    for lineno, row in enumerate(rows, start=2):
        raw = row.get(path_column)
        rel = label_text(str(raw)).strip() if raw is not None else ""
        if not rel:
            result.rejected.append(Rejected(f"{manifest.name}:{lineno}", f"empty path (column '{path_column}')"))
            continue
        rel = PurePosixPath(rel.replace("\\", "/")).as_posix()
        if rel in seen:
            result.rejected.append(Rejected(rel, f"listed twice in {manifest.name} (rows {seen[rel]} and {lineno})"))
            continue
        seen[rel] = lineno
        f, reason = _image(base, base_real, rel)
        if f is None:
            result.rejected.append(Rejected(rel, reason))
            continue
        out = labelled_item(row, cols, path=f, relpath=rel, labels=vocab)
        (result.rejected if isinstance(out, Rejected) else result.items).append(out)
    return result


register_loader(Loader("manifest", scan_manifest, source_may_be_file=True,
                       description="Your own dataset: a CSV or Parquet manifest, one row per image"))
