"""Hugging Face datasets as input, read from disk only (nothing is downloaded).

Three forms of ``source`` are read:

* a dataset written by ``Dataset.save_to_disk`` or ``DatasetDict.save_to_disk`` (``state.json``,
  ``dataset_info.json`` and Arrow files; a ``dataset_dict.json`` names the splits);
* a folder of Parquet files (as ``push_to_hub`` or ``to_parquet`` write them); the split is the
  first folder or file-name prefix named ``train``, ``validation``, ``test`` (or ``val``, ``dev``...);
* an ``imagefolder``: images under ``source`` with a ``metadata.csv`` / ``metadata.jsonl`` /
  ``metadata.parquet`` whose ``file_name`` column names each image relative to it; a missing
  label column is the image's folder name, as ``imagefolder`` does.

The files are read with pyarrow alone; ``datasets`` need not be installed. The image column holds
the encoded bytes (``{bytes, path}`` structs, as the ``Image`` feature stores them) or a path
inside ``source``. A ``ClassLabel`` label is read as its name, and its names (in order) are the
label vocabulary unless the ``labels`` option declares one. Rows without an image, identity or
label, or with an unknown split, become quarantine rows with the reason.
"""

from __future__ import annotations

import json
import os
import re
from collections.abc import Iterator
from dataclasses import replace
from pathlib import Path, PurePosixPath
from typing import Any

import pyarrow as pa

from deid.datasets.base import (
    IMAGE_SUFFIXES,
    OUTSIDE_ROOT,
    Loader,
    Rejected,
    ScanResult,
    SKIP_DOCUMENTATION,
    register_loader,
    require_dir,
    walk_files,
)
from deid.datasets.records import (SPLIT_ALIASES, as_columns, check_columns, check_labels, extra_vocabularies,
                                   labelled_item)
from deid.errors import DatasetLayoutError

__all__ = ["scan_hf", "hf_form"]

METADATA_NAMES = ("metadata.csv", "metadata.jsonl", "metadata.parquet")
SKIP_METADATA = "dataset metadata file"
_SPLIT_PREFIX = re.compile(r"^(?P<split>[a-z]+)(?:[-_.]|$)", re.IGNORECASE)


def hf_form(root: Path) -> str:
    """``"save_to_disk"``, ``"parquet"`` or ``"imagefolder"``: how ``root`` holds its dataset."""
    if (root / "dataset_dict.json").is_file() or (root / "state.json").is_file():
        return "save_to_disk"
    if any(p.suffix == ".parquet" for p in root.rglob("*.parquet")):
        return "parquet"
    return "imagefolder"


def _json_file(p: Path, root: Path) -> dict:
    """A JSON object from a dataset's own file, or one clear error naming it: a file that is not
    regular (a FIFO would block the read) or that resolves outside ``root`` is not read."""
    try:
        real = p.resolve(strict=True)
        if not real.is_relative_to(root.resolve()):
            raise DatasetLayoutError(f"hf: {p} is a link to a file outside {root}; it is not read")
        if not real.is_file():
            raise DatasetLayoutError(f"hf: {p} is not a regular file")
        doc = json.loads(real.read_text(encoding="utf-8"))
    except DatasetLayoutError:
        raise
    except (OSError, RuntimeError, UnicodeDecodeError, ValueError) as exc:
        raise DatasetLayoutError(f"hf: {p} cannot be read as JSON ({type(exc).__name__})") from None
    if not isinstance(doc, dict):
        raise DatasetLayoutError(f"hf: {p} is not a JSON object")
    return doc


def _split_of(rel: PurePosixPath) -> str | None:
    """The split a file's path names (``train/x.parquet``, ``data/test-00000-of-00001.parquet``)."""
    for part in rel.parts:
        m = _SPLIT_PREFIX.match(part)
        if m and m["split"].lower() in SPLIT_ALIASES:
            return SPLIT_ALIASES[m["split"].lower()]
    return None


def _class_names(schema: pa.Schema, info: dict | None = None) -> dict[str, list[str]]:
    """``{column: ClassLabel names}`` from the ``huggingface`` schema metadata or ``dataset_info.json``."""
    feats = None
    raw = (schema.metadata or {}).get(b"huggingface")
    if raw:
        try:
            feats = json.loads(raw)["info"]["features"]
        except (ValueError, KeyError, TypeError):
            feats = None
    if feats is None and info is not None:
        feats = info.get("features")
    out = {}
    for k, v in (feats if isinstance(feats, dict) else {}).items():  # features of another shape name no classes
        if isinstance(v, dict) and v.get("_type") == "ClassLabel" and isinstance(v.get("names"), list):
            out[k] = [str(x) for x in v["names"]]
    return out


def _arrow_tables(root: Path) -> Iterator[tuple[Path, str | None, pa.Table, dict | None]]:
    """(file, split, table, dataset_info) for every Arrow file of a ``save_to_disk`` dataset."""
    if (root / "dataset_dict.json").is_file():
        splits = _json_file(root / "dataset_dict.json", root).get("splits", [])
        if not isinstance(splits, list) or not all(isinstance(s, str) for s in splits):
            raise DatasetLayoutError(f"hf: {root / 'dataset_dict.json'}: 'splits' is not a list of split names")
        dirs = [(root / s, SPLIT_ALIASES.get(s.lower(), s)) for s in splits]
    else:
        dirs = [(root, None)]
    real_root = root.resolve()
    for d, split in dirs:
        if not d.resolve().is_relative_to(real_root):
            raise DatasetLayoutError(f"hf: dataset_dict.json names split folder {d.name!r} outside {root}")
        state = _json_file(d / "state.json", root)
        info_f = d / "dataset_info.json"
        info = _json_file(info_f, root) if info_f.is_file() else None
        data_files = state.get("_data_files", [])
        if not isinstance(data_files, list):
            raise DatasetLayoutError(f"hf: {(d / 'state.json').relative_to(root)}: '_data_files' is not a list")
        for entry in data_files:
            f = d / str(entry.get("filename", "")) if isinstance(entry, dict) else d / "?"
            try:  # every file a loader opens resolves inside the dataset folder
                inside = f.resolve(strict=True).is_relative_to(real_root) and f.resolve().is_file()
            except (OSError, RuntimeError):
                inside = False
            if not inside:
                raise DatasetLayoutError(f"hf: {(d / 'state.json').relative_to(root)} lists data file "
                                         f"{entry.get('filename') if isinstance(entry, dict) else entry!r}, which is "
                                         f"not a file inside {root}")
            try:
                with pa.memory_map(str(f)) as src:
                    try:
                        table = pa.ipc.open_stream(src).read_all()
                    except pa.ArrowInvalid:
                        table = pa.ipc.open_file(src).read_all()
            except (pa.ArrowException, OSError) as exc:
                raise DatasetLayoutError(f"hf: {f.relative_to(root)} is not an Arrow file "
                                         f"({' '.join(str(exc).split())[:120]})") from None
            yield f, split, table, info


def _parquet_tables(root: Path, result: ScanResult) -> Iterator[tuple[Path, str | None, pa.Table, dict | None]]:
    import pyarrow.parquet as pq

    for f in walk_files(root, result, base=root, roots=(root,)):
        if f.suffix != ".parquet":
            result.skip(SKIP_DOCUMENTATION if f.suffix.lower() in (".md", ".json", ".txt") or
                        f.name.upper().startswith("README") else "not a Parquet file")
            continue
        rel = PurePosixPath(f.relative_to(root).as_posix())
        try:
            table = pq.read_table(f)
        except (pa.ArrowException, OSError) as exc:  # one broken file is quarantined, the others are read
            result.rejected.append(Rejected(rel.as_posix(), f"unreadable: not a Parquet file "
                                                            f"({' '.join(str(exc).split())[:120]})"))
            continue
        yield f, _split_of(rel), table, None


def _image_of(v: Any, root: Path) -> tuple[bytes | None, Path | None, str | None]:
    """An image cell as (bytes, file, reason it cannot be used)."""
    path = None
    if isinstance(v, dict):
        if isinstance(v.get("bytes"), (bytes, bytearray)) and v["bytes"]:
            return bytes(v["bytes"]), None, None
        if v.get("bytes"):  # a struct whose bytes field holds text or numbers
            return None, None, f"image bytes of type {type(v['bytes']).__name__}, not bytes"
        path = v.get("path")
    elif isinstance(v, (bytes, bytearray)):
        return (bytes(v), None, None) if v else (None, None, "empty image bytes")
    elif isinstance(v, str):
        path = v
    if not path or not isinstance(path, str):
        return None, None, "no image in the row (neither bytes nor a path)"
    p = Path(path)
    f = p if p.is_absolute() else root / p
    try:
        real = f.resolve(strict=True)
    except (OSError, RuntimeError):
        return None, None, "missing file: the row's image path does not exist"
    if not real.is_relative_to(root.resolve()):
        return None, None, f"{OUTSIDE_ROOT}: the row's image path is outside the dataset folder"
    if not real.is_file():
        return None, None, "not a regular file"
    return None, f, None


def _rows_of(table: pa.Table, names: dict[str, list[str]], columns: list[str]) -> list[dict[str, Any]]:
    rows = table.select(columns).to_pylist()
    for c, vocab in names.items():
        if c in columns:
            for r in rows:
                v = r.get(c)
                if isinstance(v, int) and 0 <= v < len(vocab):
                    r[c] = vocab[v]
                elif isinstance(v, int):
                    r[c] = None  # -1: no label
    return rows


def _metadata_rows(m: Path, root: Path) -> list[dict]:
    """The rows of imagefolder metadata file ``m``: JSON lines (each an object), or a CSV or Parquet table."""
    from deid.datasets.manifest import read_manifest

    if m.suffix != ".jsonl":
        return read_manifest(m)[1]
    rows = []
    for n, line in enumerate(m.read_text(encoding="utf-8").splitlines(), 1):
        if not line.strip():
            continue
        try:
            rows.append(json.loads(line))
        except ValueError as exc:
            raise DatasetLayoutError(f"hf: {m.relative_to(root)} line {n} is not JSON ({exc.msg})") from None
        if not isinstance(rows[-1], dict):
            raise DatasetLayoutError(f"hf: {m.relative_to(root)} line {n} is not a JSON object")
    return rows


def _listed_files(root: Path, metas: list[Path]) -> tuple[dict[Path, tuple[dict, Path]], set[Path]]:
    """Each file the metadata lists, by its real path, with its row and metadata file; and the files listed twice."""
    listed: dict[Path, tuple[dict, Path]] = {}
    twice: set[Path] = set()
    for m in metas:
        for r in _metadata_rows(m, root):
            name = r.get("file_name")
            if name:
                try:  # './a/x.tiff', 'a//x.tiff', a symlinked folder: one file
                    real = (m.parent / str(name)).resolve()
                except (OSError, RuntimeError):  # a looping link (the walk rejected it): listed, no image file
                    real = Path(os.path.abspath(m.parent / str(name)))
                if real in listed or real in twice:
                    twice.add(real)  # the manifest loader's rule: a file listed twice is not labelled by either row
                listed[real] = (r, m)
    return listed, twice


def _imagefolder_tables(root: Path, result: ScanResult, label_column: str
                        ) -> Iterator[tuple[Path, str | None, pa.Table, dict | None]]:
    """Every image under ``root`` joined with its metadata row, as one table per metadata file."""
    files = walk_files(root, result, base=root, roots=(root,))
    metas = [f for f in files if f.name in METADATA_NAMES]
    if not metas:
        raise DatasetLayoutError(f"hf: {root} holds no save_to_disk dataset, no Parquet files and no imagefolder "
                                 f"metadata ({', '.join(METADATA_NAMES)}) that gives identities")
    result.skip(SKIP_METADATA, len(metas))
    listed, twice = _listed_files(root, metas)
    by_meta: dict[Path, list[dict]] = {m: [] for m in metas}
    for f in files:
        if f.name in METADATA_NAMES:
            continue
        rel = PurePosixPath(f.relative_to(root).as_posix())
        if f.suffix.lower() not in IMAGE_SUFFIXES:
            result.skip(SKIP_DOCUMENTATION)
            continue
        if f.resolve() in twice:
            listed.pop(f.resolve(), None)
            result.rejected.append(Rejected(rel.as_posix(), "listed twice in the imagefolder metadata "
                                                             "(rows that may disagree on its labels)"))
            continue
        hit = listed.pop(f.resolve(), None)
        if hit is None:
            result.rejected.append(Rejected(rel.as_posix(), "no row for this image in the imagefolder metadata"))
            continue
        row, m = hit
        row = dict(row)
        if label_column not in row:
            row[label_column] = f.parent.name  # imagefolder's own rule: the folder names the class
        row["__image__"] = {"bytes": None, "path": rel.as_posix()}
        row["__split__"] = _split_of(rel)
        by_meta[m].append(row)
    for path, (row, m) in sorted(listed.items()):
        result.rejected.append(Rejected(f"{m.relative_to(root).as_posix()}:{row.get('file_name')}",
                                        "listed in the imagefolder metadata but no image file"))
    for m, rows in by_meta.items():
        if rows:
            try:
                table = pa.Table.from_pylist(rows)
            except pa.ArrowException as exc:  # one key holding text in a row and a number or object in another
                raise DatasetLayoutError(f"hf: {m.relative_to(root)}: a key holds values of different JSON types "
                                         f"({' '.join(str(exc).split())[:120]})") from None
            yield m, None, table, None


def scan_hf(root: str | Path, *, image_column: str = "image", identity_column: str = "identity",
            label_column: str | list[str] = "label", attribute_columns: list[str] | None = None,
            split_column: str | None = None, group_column: str | None = None,
            labels: list[str] | None = None) -> ScanResult:
    """Label every row of a Hugging Face dataset on disk (see the module docstring).

    Splits come from ``split_column`` when set, else from the dataset's own splits (split folders,
    file-name prefixes, a ``DatasetDict``); rows of a split other than train/val/test are quarantined.
    """
    root = require_dir(root, "hf dataset")
    cols = as_columns("hf dataset", identity_column=identity_column, label_column=label_column,
                      attribute_columns=attribute_columns, split_column=split_column, group_column=group_column)
    vocab = check_labels(labels)
    result = ScanResult(labels=vocab)
    form = hf_form(root)
    if form == "save_to_disk":
        tables = _arrow_tables(root)
    elif form == "parquet":
        tables = _parquet_tables(root, result)
    else:
        tables = _imagefolder_tables(root, result, cols.label)
        image_column = "__image__"
    declared = vocab
    n_rows = 0
    for f, split, table, info in tables:
        rel_file = f.relative_to(root).as_posix()
        check_columns(f"hf dataset {rel_file}", table.column_names, cols, also=(image_column,))
        names = _class_names(table.schema, info)
        if declared is None and cols.label in names:
            declared = names[cols.label]
            result.labels = declared
        own_split = "__split__" in table.column_names
        rows = _rows_of(table, names, [image_column, *dict.fromkeys(cols.used()), *(["__split__"] if own_split else [])])
        c = replace(cols, extra_vocab=extra_vocabularies(rows, cols.extra_labels))
        for i, row in enumerate(rows):
            n_rows += 1
            rel = row[image_column]["path"] if form == "imagefolder" else f"{rel_file}#{i}"
            c_row = c
            if split_column is None:  # the dataset's own split: its folder, file name or DatasetDict key
                row["__split__"] = row.get("__split__") if own_split else split
                c_row = replace(c, split="__split__" if row["__split__"] is not None else None)
            data, file, reason = _image_of(row.get(image_column), root)
            if reason is not None:
                result.rejected.append(Rejected(rel, reason))
                continue
            out = labelled_item(row, c_row, path=file or f, relpath=rel, labels=declared, data=data)
            (result.rejected if isinstance(out, Rejected) else result.items).append(out)
    if n_rows == 0 and not result.rejected:
        raise DatasetLayoutError(f"hf dataset: {root} ({form}) has no rows")
    if vocab is None and declared is not None:  # a later file's ClassLabel holds the rows read before it too
        known = set(declared)
        result.rejected += [Rejected(it.relpath, f"unknown label '{it.label}' (column '{cols.label}'); "
                                                 f"declared labels: {list(declared)[:20]}")
                            for it in result.items if it.label not in known]
        result.items = [it for it in result.items if it.label in known]
    return result


register_loader(Loader("hf", scan_hf, description="A Hugging Face dataset on disk: save_to_disk, Parquet files "
                                                  "or an imagefolder (no downloads)"))
