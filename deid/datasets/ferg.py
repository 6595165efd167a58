"""FERG-DB loader (Aneja, Colburn, Faigin, Shapiro, Mones: "Modeling Stylized Character
Expressions via Deep Learning", ACCV 2016).

Layout: ``FERG_DB_256/<character>/<character>_<expression>/<character>_<expression>_<n>.png``.
The root may be ``FERG_DB_256`` itself or its parent.
"""

from __future__ import annotations

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

__all__ = ["FERG_CHARACTERS", "FERG_EXPRESSIONS", "scan_ferg"]

FERG_CHARACTERS = ("aia", "bonnie", "jules", "malcolm", "mery", "ray")
FERG_EXPRESSIONS = ("anger", "disgust", "fear", "joy", "neutral", "sadness", "surprise")
_IMAGE_EXT = {".png", ".jpg", ".jpeg"}
_NAME = re.compile(r"^(?P<char>[a-z0-9]+)_(?P<expr>[a-z]+)_(?P<n>\d+)$")


def scan_ferg(root: str | Path, *, characters: list[str] | None = None,
              allow_unknown_characters: bool = True) -> ScanResult:
    """Label every file under a FERG-DB tree.

    ``characters`` restricts the characters read; unknown character folder names are accepted
    (the generator can make more than six) unless ``allow_unknown_characters`` is false.
    Files that break the naming pattern, sit in the wrong folder, or carry an unknown
    expression become :class:`Rejected` entries with the reason.
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
    result.skip("not in a character folder", len(loose))
    wanted = {label_text(c) for c in characters} if characters else None
    for cdir in char_dirs:
        char = label_text(cdir.name)
        if wanted is not None and char not in wanted:
            result.skip("character not selected")
            continue
        if not allow_unknown_characters and char not in FERG_CHARACTERS:
            raise DatasetLayoutError(f"FERG-DB: unknown character folder '{cdir}'; known: {list(FERG_CHARACTERS)}")
        for f in walk_files(cdir, result, base=root, roots=roots):
            rel = f.relative_to(root).as_posix()
            if f.suffix.lower() not in _IMAGE_EXT:
                result.rejected.append(Rejected(rel, f"not an image file name (suffix '{f.suffix}')"))
                continue
            m = _NAME.match(label_text(f.stem))
            if not m:
                result.rejected.append(Rejected(rel, "file name does not match <character>_<expression>_<n>"))
                continue
            expr = m["expr"]
            if expr not in FERG_EXPRESSIONS:
                result.rejected.append(Rejected(rel, f"unknown expression '{expr}'; known: {list(FERG_EXPRESSIONS)}"))
                continue
            if m["char"] != char or label_text(f.parent.name) != f"{char}_{expr}" or f.parent.parent != cdir:
                result.rejected.append(
                    Rejected(rel, f"file is not in its folder {char}/{char}_{expr}/ (character or expression mismatch)")
                )
                continue
            result.items.append(SourceItem(path=f, relpath=rel, identity=char, expression=expr))
    if not result.items and not result.rejected:
        raise DatasetLayoutError(f"FERG-DB: no image files under {root}")
    return result


register_loader(Loader("ferg", scan_ferg, description="FERG-DB cartoon faces (and the built-in FERG-like set)"))
