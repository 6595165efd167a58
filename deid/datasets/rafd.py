"""RaFD loader (Langner, Dotsch, Bijlstra, Wigboldus, Hawk, van Knippenberg: "Presentation and
validation of the Radboud Faces Database", Cognition and Emotion 24(8), 2010).

Layout: ``Rafd<camera>_<id>_<ethnicity>_<gender>_<expression>_<gaze>.jpg`` anywhere under the
root, e.g. ``Rafd090_01_Caucasian_female_angry_frontal.jpg``; children carry ``Kid`` as ethnicity.
Cameras 000–180 in 45° steps; 090 is frontal. Expressions are mapped to FERG's names, with
``contempt`` kept as its own label. The five cameras fire at once and the three gazes are shot
in the same sitting, so one person's one expression is one session: its images share the group
``<id>_<expression>`` and are never split between train and test.
"""

from __future__ import annotations

import re
from collections.abc import Sequence
from pathlib import Path

from deid.datasets.base import (
    SKIP_DOCUMENTATION,
    Loader,
    Rejected,
    ScanResult,
    SourceItem,
    label_text,
    register_loader,
    require_dir,
    walk_files,
)
from deid.errors import DatasetLayoutError

__all__ = ["RAFD_EXPRESSIONS", "RAFD_CAMERAS", "RAFD_GAZES", "scan_rafd"]

RAFD_EXPRESSIONS = {
    "angry": "anger", "contemptuous": "contempt", "disgusted": "disgust", "fearful": "fear",
    "happy": "joy", "neutral": "neutral", "sad": "sadness", "surprised": "surprise",
}
RAFD_CAMERAS = ("000", "045", "090", "135", "180")
RAFD_GAZES = ("frontal", "left", "right")
_GAZE_VALUE = {"left": -1.0, "frontal": 0.0, "right": 1.0}
_IMAGE_EXT = {".jpg", ".jpeg", ".png"}
_NAME = re.compile(
    r"^Rafd(?P<cam>\d{3})_(?P<id>\d{1,3})_(?P<eth>[A-Za-z]+)_(?P<gender>male|female)_"
    r"(?P<expr>[a-z]+)_(?P<gaze>[a-z]+)$"
)


def scan_rafd(root: str | Path, *, cameras: Sequence[str] | None = ("090",), gazes: Sequence[str] | None = None,
              adults_only: bool = False) -> ScanResult:
    """Label every RaFD image under ``root``.

    ``cameras`` selects camera angles (default the frontal ``090``, as the literature does;
    ``None`` for all); ``gazes`` selects gaze directions (``None`` for all); ``adults_only``
    drops the children (57 adults remain). Files outside the selection are not input.
    Names that break the pattern, unknown expressions, gazes or cameras are rejected with the reason.
    """
    root = require_dir(root, "RaFD")
    for what, sel, known in (("camera", cameras, RAFD_CAMERAS), ("gaze", gazes, RAFD_GAZES)):
        if sel is not None and (bad := sorted(set(sel) - set(known))):
            raise DatasetLayoutError(f"RaFD: unknown {what} {bad} in the configuration; known: {list(known)}")
    result = ScanResult()
    files = walk_files(root, result, base=root, roots=(root,))
    if not files and not result.rejected:
        raise DatasetLayoutError(f"RaFD: no files under {root}; expected Rafd090_01_Caucasian_female_angry_frontal.jpg")
    for f in files:
        rel = f.relative_to(root).as_posix()
        if f.suffix.lower() in {".txt", ".md", ".pdf", ".csv"} or f.name.upper().startswith("README"):
            result.skip(SKIP_DOCUMENTATION)  # documentation next to the images is not data
            continue
        if f.suffix.lower() not in _IMAGE_EXT:
            result.rejected.append(Rejected(rel, f"not an image file name (suffix '{f.suffix}')"))
            continue
        m = _NAME.match(label_text(f.stem))
        if not m:
            result.rejected.append(Rejected(rel, "file name does not match Rafd<camera>_<id>_<ethnicity>_<gender>_<expression>_<gaze>"))
            continue
        cam, gaze, expr = m["cam"], m["gaze"], m["expr"]
        if cam not in RAFD_CAMERAS:
            result.rejected.append(Rejected(rel, f"unknown camera '{cam}'; known: {list(RAFD_CAMERAS)}"))
            continue
        if gaze not in RAFD_GAZES:
            result.rejected.append(Rejected(rel, f"unknown gaze '{gaze}'; known: {list(RAFD_GAZES)}"))
            continue
        if expr not in RAFD_EXPRESSIONS:
            result.rejected.append(Rejected(rel, f"unknown expression '{expr}'; known: {sorted(RAFD_EXPRESSIONS)}"))
            continue
        child = m["eth"].lower() == "kid"
        if (cameras is not None and cam not in cameras) or (gazes is not None and gaze not in gazes) \
                or (adults_only and child):
            result.skip("not selected (camera, gaze or adults_only)")
            continue
        attrs = {"camera_deg": float(int(cam)), "gaze": _GAZE_VALUE[gaze],
                 "male": 1.0 if m["gender"] == "male" else 0.0, "child": 1.0 if child else 0.0}
        ident = f"{int(m['id']):02d}"
        result.items.append(SourceItem(path=f, relpath=rel, identity=ident, label=RAFD_EXPRESSIONS[expr],
                                       attributes=attrs, group=f"{ident}_{expr}"))
    if not result.items and not result.rejected:
        raise DatasetLayoutError(f"RaFD: no image matches the selection (cameras={cameras}, gazes={gazes}) under {root}")
    return result


register_loader(Loader("rafd", scan_rafd, needs_alignment=True,
                       description="Radboud Faces Database (8 expressions, 5 cameras, 3 gazes)"))
