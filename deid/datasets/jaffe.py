"""JAFFE loader (Lyons, Kamachi, Gyoba: "Coding Facial Expressions with Gabor Wavelets", FG 1998).

Layout: a flat folder of ``<ID>.<EX><k>.<serial>.tiff``, e.g. ``KA.AN1.39.tiff``.
"""

from __future__ import annotations

import re
from pathlib import Path

from deid.datasets.base import (
    SKIP_DIRECTORY,
    SKIP_DOCUMENTATION,
    Loader,
    Rejected,
    ScanResult,
    SourceItem,
    label_text,
    list_dir,
    register_loader,
    require_dir,
)
from deid.errors import DatasetLayoutError

__all__ = ["JAFFE_EXPRESSIONS", "scan_jaffe"]

# JAFFE's codes mapped to FERG's names, so both datasets share one expression vocabulary.
JAFFE_EXPRESSIONS = {
    "AN": "anger", "DI": "disgust", "FE": "fear", "HA": "joy",
    "NE": "neutral", "SA": "sadness", "SU": "surprise",
}
_NAME = re.compile(r"^(?P<id>[A-Z]{2})\.(?P<ex>[A-Z]{2})(?P<k>\d+)\.(?P<serial>\d+)\.tiff?$", re.IGNORECASE)


def scan_jaffe(root: str | Path) -> ScanResult:
    root = require_dir(root, "JAFFE")
    result = ScanResult()
    dirs, files = list_dir(root, result, base=root, roots=(root,))
    result.skip(SKIP_DIRECTORY, len(dirs))  # the layout is flat
    if not files and not result.rejected:
        raise DatasetLayoutError(f"JAFFE: {root} is empty; expected files like KA.AN1.39.tiff")
    for f in files:
        if f.suffix.lower() in {".md", ".txt"} or f.name.upper().startswith("README"):
            result.skip(SKIP_DOCUMENTATION)  # documentation next to the images is not data
            continue
        m = _NAME.match(label_text(f.name))
        if not m:
            result.rejected.append(Rejected(f.name, "file name does not match <ID>.<EX><k>.<serial>.tiff"))
            continue
        ex = m["ex"].upper()
        if ex not in JAFFE_EXPRESSIONS:
            result.rejected.append(Rejected(f.name, f"unknown expression code '{ex}'; known: {sorted(JAFFE_EXPRESSIONS)}"))
            continue
        result.items.append(SourceItem(path=f, relpath=f.name, identity=m["id"].upper(), label=JAFFE_EXPRESSIONS[ex]))
    return result


register_loader(Loader("jaffe", scan_jaffe, description="The Japanese Female Facial Expression database"))
