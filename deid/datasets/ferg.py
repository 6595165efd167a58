"""FERG-DB loader (Aneja, Colburn, Faigin, Shapiro, Mones: "Modeling Stylized Character
Expressions via Deep Learning", ACCV 2016).

Layout: ``FERG_DB_256/<character>/<character>_<expression>/<character>_<expression>_<n>.png``.
The root may be ``FERG_DB_256`` itself or its parent. An optional ``FERG_DB_256/attributes.csv``
(the published set has none; the built-in generator writes one with nuisance bins such as
``pose_bin``) gives per-image attributes: a header ``file,<name>,...`` and one row per image,
its path relative to ``FERG_DB_256`` and one number per attribute.
"""

from __future__ import annotations

import csv
import io
import math
import re
from pathlib import Path

from deid.datasets.base import (
    Loader,
    Rejected,
    ScanResult,
    SourceItem,
    label_text,
    list_dir,
    register_loader,
    require_dir,
    walk_files,
)
from deid.errors import DatasetLayoutError
from data_contracts.atomic import write_text_atomic

__all__ = ["FERG_CHARACTERS", "FERG_EXPRESSIONS", "ATTRIBUTES_FILE", "scan_ferg", "read_ferg_attributes",
           "write_ferg_attributes"]

FERG_CHARACTERS = ("aia", "bonnie", "jules", "malcolm", "mery", "ray")
FERG_EXPRESSIONS = ("anger", "disgust", "fear", "joy", "neutral", "sadness", "surprise")
_IMAGE_EXT = {".png", ".jpg", ".jpeg"}
_NAME = re.compile(r"^(?P<char>[a-z0-9]+)_(?P<expr>[a-z]+)_(?P<n>\d+)$")
ATTRIBUTES_FILE = "attributes.csv"
SKIP_ATTRIBUTES_FILE = "attribute file"


def read_ferg_attributes(path: str | Path) -> dict[str, dict[str, float]]:
    """Parse ``attributes.csv``: ``{relative image path: {attribute: value}}``.

    Raises :class:`DatasetLayoutError` naming the line for a missing ``file`` column, repeated
    or empty attribute names, a row of the wrong width, a repeated file or a non-finite value.
    """
    try:
        text = Path(path).read_text(encoding="utf-8")
    except (OSError, UnicodeDecodeError) as exc:
        raise DatasetLayoutError(f"FERG-DB attributes: cannot read {path}: {exc}") from exc
    rows = list(csv.reader(io.StringIO(text)))
    if not rows or not rows[0] or rows[0][0].strip() != "file":
        raise DatasetLayoutError(f"FERG-DB attributes: {path} line 1 must be the header 'file,<attribute>,...'")
    names = [label_text(n.strip()) for n in rows[0][1:]]
    if not names or "" in names or len(set(names)) != len(names):
        raise DatasetLayoutError(f"FERG-DB attributes: {path} line 1 has no, empty or repeated attribute names")
    table: dict[str, dict[str, float]] = {}
    for lineno, cols in enumerate(rows[1:], start=2):
        if not cols:
            continue
        if len(cols) != len(names) + 1:
            raise DatasetLayoutError(
                f"FERG-DB attributes: {path} line {lineno} has {len(cols)} columns, expected {len(names) + 1}"
            )
        try:
            values = [float(v) for v in cols[1:]]
        except ValueError:
            raise DatasetLayoutError(
                f"FERG-DB attributes: {path} line {lineno} has a value that is not a number"
            ) from None
        if not all(math.isfinite(v) for v in values):
            raise DatasetLayoutError(f"FERG-DB attributes: {path} line {lineno} has a non-finite value")
        key = label_text(cols[0].strip())
        if key in table:
            raise DatasetLayoutError(f"FERG-DB attributes: {path} line {lineno} repeats file {key}")
        table[key] = dict(zip(names, values))
    return table


def write_ferg_attributes(path: str | Path, table: dict[str, dict[str, float]]) -> None:
    """Write ``{relative image path: {attribute: value}}`` as ``attributes.csv`` (rows sorted, atomic).

    Every row must have the same attribute names.
    """
    names = sorted({k for attrs in table.values() for k in attrs})
    if any(sorted(attrs) != names for attrs in table.values()):
        raise ValueError("every image needs the same attribute names")
    buf = io.StringIO()
    w = csv.writer(buf, lineterminator="\n")
    w.writerow(["file", *names])
    for key in sorted(table):
        w.writerow([key, *(f"{table[key][n]:g}" for n in names)])
    write_text_atomic(path, buf.getvalue())


def scan_ferg(root: str | Path, *, characters: list[str] | None = None,
              allow_unknown_characters: bool = True, attributes: bool = True,
              expressions: list[str] | None = FERG_EXPRESSIONS) -> ScanResult:
    """Label every file under a FERG-DB tree.

    ``characters`` restricts the characters read; unknown character folder names are accepted
    (the generator can make more than six) unless ``allow_unknown_characters`` is false.
    ``expressions`` is the label vocabulary (FERG's seven by default); ``None`` accepts every
    expression name the folders use (e.g. a tree with ``contempt``).
    Files that break the naming pattern, sit in the wrong folder, or carry an expression outside
    the vocabulary become :class:`Rejected` entries with the reason. With ``attributes`` (the
    default) an ``attributes.csv`` at the root fills each listed image's ``attributes``; images
    it does not list keep none.
    """
    root = given = require_dir(root, "FERG-DB")
    if (root / "FERG_DB_256").is_dir():
        root = root / "FERG_DB_256"
    result = ScanResult()
    roots = (given, root)
    char_dirs, loose = list_dir(root, result, base=root, roots=roots)
    if not char_dirs:
        raise DatasetLayoutError(
            f"FERG-DB: {root} has no character folders; expected FERG_DB_256/<character>/<character>_<expression>/"
        )
    attr_file = next((f for f in loose if f.name == ATTRIBUTES_FILE), None)
    attr_table = read_ferg_attributes(attr_file) if attributes and attr_file is not None else {}
    if attr_file is not None:
        result.skip(SKIP_ATTRIBUTES_FILE)
    result.skip("not in a character folder", len(loose) - (attr_file is not None))
    wanted = {label_text(c) for c in characters} if characters else None
    for cdir in char_dirs:
        char = label_text(cdir.name)
        if wanted is not None and char not in wanted:
            result.skip("character not selected")
            continue
        if not allow_unknown_characters and char not in FERG_CHARACTERS:
            raise DatasetLayoutError(f"FERG-DB: unknown character folder {str(cdir)!r}; known: {list(FERG_CHARACTERS)}")
        for f in walk_files(cdir, result, base=root, roots=roots):
            out = _ferg_item(f, f.relative_to(root).as_posix(), cdir, char, expressions, attr_table)
            (result.rejected if isinstance(out, Rejected) else result.items).append(out)
    if not result.items and not result.rejected:
        raise DatasetLayoutError(f"FERG-DB: no image files under {root}")
    return result


def _ferg_item(f: Path, rel: str, cdir: Path, char: str, expressions: list[str] | None,
               attr_table: dict[str, dict[str, float]]) -> SourceItem | Rejected:
    """A file of character folder ``cdir`` labelled by its name and folders, or why it is rejected."""
    if f.suffix.lower() not in _IMAGE_EXT:
        return Rejected(rel, f"not an image file name (suffix '{f.suffix}')")
    m = _NAME.match(label_text(f.stem))
    if not m:
        return Rejected(rel, "file name does not match <character>_<expression>_<n>")
    expr = m["expr"]
    if expressions is not None and expr not in expressions:
        return Rejected(rel, f"unknown expression '{expr}'; known: {list(expressions)}")
    if m["char"] != char or label_text(f.parent.name) != f"{char}_{expr}" or f.parent.parent != cdir:
        return Rejected(rel, f"file is not in its folder {char}/{char}_{expr}/ (character or expression mismatch)")
    attrs = attr_table.get(label_text(rel))
    return SourceItem(path=f, relpath=rel, identity=char, label=expr, attributes=dict(attrs) if attrs else None)


register_loader(Loader("ferg", scan_ferg, description="FERG-DB cartoon faces (and the built-in FERG-like set)"))
