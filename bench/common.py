"""What the benches share: their sections in docs/ (each between its own markers, replaced on a rerun
and kept when another bench rewrites the rest), and the bare-library ingest loop they compare with."""

from __future__ import annotations

import time
from pathlib import Path

from deid.reporting.sections import kept_sections, markers, write_section

__all__ = ["markers", "write_section", "kept_sections", "ingest_reference"]


def ingest_reference(files: list[Path], size: int = 50) -> float:
    """Seconds for the bare ingest loop: cv2 decode, grayscale, resize to ``size``, PNG encode, per file."""
    import cv2

    t0 = time.perf_counter()
    for f in files:
        img = cv2.imread(str(f), cv2.IMREAD_UNCHANGED)
        if img.ndim == 3:
            img = cv2.cvtColor(img, cv2.COLOR_BGR2GRAY)
        cv2.imencode(".png", cv2.resize(img, (size, size), interpolation=cv2.INTER_AREA))
    return time.perf_counter() - t0
