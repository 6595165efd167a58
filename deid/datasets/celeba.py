"""CelebA loader (Liu, Luo, Wang, Tang: "Deep Learning Face Attributes in the Wild", ICCV 2015).

Layout: ``img_align_celeba/NNNNNN.jpg`` (178×218, aligned) or ``img_celeba/NNNNNN.jpg`` (in the
wild), with ``identity_CelebA.txt``, ``list_attr_celeba.txt`` and ``list_eval_partition.txt``
at the root or in the official ``Img/``, ``Anno/`` and ``Eval/`` folders.
"""

from __future__ import annotations

import os
from pathlib import Path
from typing import Literal

from deid.datasets.base import (
    SKIP_DIRECTORY,
    Loader,
    Rejected,
    ScanResult,
    SourceItem,
    list_dir,
    register_loader,
    require_dir,
)
from deid.errors import DatasetLayoutError

__all__ = ["CELEBA_PARTITIONS", "read_identities", "read_attributes", "read_partition", "scan_celeba"]

CELEBA_PARTITIONS = {"0": "train", "1": "val", "2": "test"}
_IMAGE_EXT = {".jpg", ".jpeg", ".png"}
_FOLDERS = {"aligned": ("img_align_celeba", "img_align_celeba_png"), "wild": ("img_celeba",)}


def _lines(path: Path, what: str) -> list[str]:
    try:
        return path.read_text(encoding="utf-8").splitlines()
    except (OSError, UnicodeDecodeError) as exc:
        raise DatasetLayoutError(f"CelebA {what}: cannot read {path}: {exc}") from exc


def _stem(name: str) -> str:
    return name.rsplit(".", 1)[0]


def read_identities(path: str | Path) -> dict[str, str]:
    """``identity_CelebA.txt`` (``<file> <id>`` per line, no header) as ``{file stem: id}``."""
    path = Path(path)
    out: dict[str, str] = {}
    for lineno, line in enumerate(_lines(path, "identities"), start=1):
        cols = line.split()
        if not cols:
            continue
        if len(cols) != 2:
            raise DatasetLayoutError(f"CelebA identities: {path} line {lineno} has {len(cols)} columns, expected 2 (<file> <id>)")
        if not cols[1].isdigit():
            raise DatasetLayoutError(f"CelebA identities: {path} line {lineno}: identity '{cols[1]}' is not an integer")
        key = _stem(cols[0])
        if key in out:
            raise DatasetLayoutError(f"CelebA identities: {path} line {lineno} repeats file {cols[0]}")
        out[key] = cols[1]
    if not out:
        raise DatasetLayoutError(f"CelebA identities: {path} is empty")
    return out


def read_attributes(path: str | Path) -> tuple[list[str], dict[str, dict[str, float]]]:
    """``list_attr_celeba.txt`` as (names, ``{file stem: {name: ±1}}``).

    Line 1 is the row count (copies without it are accepted), then the attribute names, then
    ``<file>`` and one ±1 per attribute, separated by runs of spaces. Raises
    :class:`DatasetLayoutError` naming file and line for a wrong column count, a value other
    than ±1, a repeated file or a row count that disagrees with line 1.
    """
    path = Path(path)
    lines = [ln for ln in _lines(path, "attributes")]
    while lines and not lines[-1].strip():
        lines.pop()
    if not lines:
        raise DatasetLayoutError(f"CelebA attributes: {path} is empty")
    first = lines[0].split()
    count = None
    start = 0
    if len(first) == 1 and first[0].isdigit():
        count, start = int(first[0]), 1
    if start >= len(lines):
        raise DatasetLayoutError(f"CelebA attributes: {path} has no header line of attribute names")
    names = lines[start].split()
    if not names or any(n.lstrip("-").isdigit() for n in names):
        raise DatasetLayoutError(f"CelebA attributes: {path} line {start + 1} is not a line of attribute names")
    table: dict[str, dict[str, float]] = {}
    for lineno, line in enumerate(lines[start + 1:], start=start + 2):
        cols = line.split()
        if not cols:
            continue
        if len(cols) != len(names) + 1:
            raise DatasetLayoutError(
                f"CelebA attributes: {path} line {lineno} has {len(cols)} columns, expected {len(names) + 1} "
                f"(<file> and {len(names)} values)"
            )
        vals = cols[1:]
        bad = [v for v in vals if v not in ("1", "-1")]
        if bad:
            raise DatasetLayoutError(f"CelebA attributes: {path} line {lineno}: values must be 1 or -1, got {bad[0]!r}")
        key = _stem(cols[0])
        if key in table:
            raise DatasetLayoutError(f"CelebA attributes: {path} line {lineno} repeats file {cols[0]}")
        table[key] = {n: float(v) for n, v in zip(names, vals)}
    if count is not None and count != len(table):
        raise DatasetLayoutError(f"CelebA attributes: {path} line 1 says {count} rows, the file has {len(table)}")
    return names, table


def read_partition(path: str | Path) -> dict[str, str]:
    """``list_eval_partition.txt`` (``<file> <0|1|2>``) as ``{file stem: train|val|test}``."""
    path = Path(path)
    out: dict[str, str] = {}
    for lineno, line in enumerate(_lines(path, "partition"), start=1):
        cols = line.split()
        if not cols:
            continue
        if len(cols) != 2 or cols[1] not in CELEBA_PARTITIONS:
            raise DatasetLayoutError(
                f"CelebA partition: {path} line {lineno} is not '<file> <0|1|2>' (got {line.strip()!r})"
            )
        out[_stem(cols[0])] = CELEBA_PARTITIONS[cols[1]]
    return out


def _find(root: Path, name: str, subdirs: tuple[str, ...]) -> Path | None:
    for d in (root, *(root / s for s in subdirs)):
        if (d / name).is_file():
            return d / name
    return None


def _image_dir(root: Path, images: str) -> Path:
    kinds = ("aligned", "wild") if images == "auto" else (images,)
    for kind in kinds:
        if kind not in _FOLDERS:
            raise DatasetLayoutError(f"CelebA: images must be 'auto', 'aligned' or 'wild', got '{images}'")
        for folder in _FOLDERS[kind]:
            for base in (root, root / "Img"):
                d = base / folder
                if d.is_dir():
                    inner = d / folder  # the Kaggle copy nests the folder in itself
                    return inner if inner.is_dir() else d
    if root.name in _FOLDERS["aligned"] + _FOLDERS["wild"]:
        return root
    want = " or ".join(f for k in kinds for f in _FOLDERS[k])
    raise DatasetLayoutError(f"CelebA: no {want} folder under {root} (or {root / 'Img'})")


def scan_celeba(root: str | Path, *, images: Literal["auto", "aligned", "wild"] = "auto",
                attributes: bool = True, partition: bool = True,
                missing_images: Literal["quarantine", "error", "ignore"] = "quarantine") -> ScanResult:
    """Label every image of a CelebA tree from its annotation files.

    ``identity_CelebA.txt`` is required. ``list_attr_celeba.txt`` (if present and ``attributes``)
    fills ``attributes``; ``list_eval_partition.txt`` (if present and ``partition``) sets the
    split. Images with no identity (or no attribute / partition row when those files are used)
    are rejected with the reason. Identities listed for files not on disk are rejected
    (``missing_images="quarantine"``), raise (``"error"``) or are skipped (``"ignore"``, for a
    deliberate subset).
    """
    root = require_dir(root, "CelebA")
    img_dir = _image_dir(root, images)
    id_file, ids, attr_table, parts = _annotations(root, img_dir, attributes, partition)
    result = ScanResult()
    on_disk: set[str] = set()
    dirs, files = list_dir(img_dir, result, base=img_dir.parent, roots=(root, img_dir))
    result.skip(SKIP_DIRECTORY, len(dirs))  # the image folder is flat
    if not files and not result.rejected:
        raise DatasetLayoutError(f"CelebA: {img_dir} holds no files")
    # names already quarantined by the walk (a link out of the root, ...) are on disk, not missing
    on_disk.update(os.path.splitext(r.relpath.rsplit("/", 1)[-1])[0] for r in result.rejected)
    for f in files:
        rel = f"{img_dir.name}/{f.name}"
        stem, ext = os.path.splitext(f.name)
        if ext.lower() not in _IMAGE_EXT:
            result.rejected.append(Rejected(rel, f"not an image file name (suffix '{ext}')"))
            continue
        on_disk.add(stem)
        if stem not in ids:
            result.rejected.append(Rejected(rel, f"no identity for this image in {id_file.name}"))
            continue
        attrs = None
        if attr_table is not None:
            attrs = attr_table.get(stem)
            if attrs is None:
                result.rejected.append(Rejected(rel, "no row for this image in list_attr_celeba.txt"))
                continue
        split = None
        if parts is not None:
            split = parts.get(stem)
            if split is None:
                result.rejected.append(Rejected(rel, "no row for this image in list_eval_partition.txt"))
                continue
        result.items.append(SourceItem(path=f, relpath=rel, identity=ids[stem],
                                       attributes=dict(attrs) if attrs else None, split=split))
    _account_missing(sorted(set(ids) - on_disk), id_file, img_dir, missing_images, result)
    return result


def _annotations(root: Path, img_dir: Path, attributes: bool,
                 partition: bool) -> tuple[Path, dict[str, str], dict[str, dict[str, float]] | None, dict[str, str] | None]:
    """The identity file and its identities by image stem (required), and the attribute and partition tables
    when asked for and present (else ``None``), looked up beside the tree and the image folder."""
    anno_roots = (root, img_dir.parent, img_dir.parent.parent)
    id_file = next((f for r in anno_roots if (f := _find(r, "identity_CelebA.txt", ("Anno",))) is not None), None)
    if id_file is None:
        raise DatasetLayoutError(f"CelebA: identity_CelebA.txt not found in {root} or {root / 'Anno'}; it gives identities")
    ids = read_identities(id_file)
    attr_table: dict[str, dict[str, float]] | None = None
    if attributes:
        f = next((f for r in anno_roots if (f := _find(r, "list_attr_celeba.txt", ("Anno",))) is not None), None)
        if f is not None:
            _, attr_table = read_attributes(f)
    parts: dict[str, str] | None = None
    if partition:
        f = next((f for r in anno_roots if (f := _find(r, "list_eval_partition.txt", ("Eval", "Anno"))) is not None), None)
        if f is not None:
            parts = read_partition(f)
    return id_file, ids, attr_table, parts


def _account_missing(missing: list[str], id_file: Path, img_dir: Path, missing_images: str,
                     result: ScanResult) -> None:
    """Identities listed for images not on disk: rejected (``"quarantine"``), an error, or left out (``"ignore"``)."""
    if missing and missing_images == "error":
        raise DatasetLayoutError(
            f"CelebA: {len(missing)} files listed in {id_file} are not in {img_dir} (first: {missing[0]}); "
            "pass missing_images='ignore' to ingest a subset"
        )
    if missing and missing_images == "quarantine":
        for stem in missing:
            result.rejected.append(Rejected(f"{img_dir.name}/{stem}.jpg", f"listed in {id_file.name} but no image file"))


register_loader(Loader("celeba", scan_celeba, needs_alignment=True, utility_label="attributes",
                       description="CelebFaces Attributes (aligned 178×218 or in-the-wild)"))
