"""What the benches share: their sections in docs/ (each between its own markers, replaced on a rerun
and kept when another bench rewrites the rest), and the bare-library ingest loop they compare with."""

from __future__ import annotations

import time
from pathlib import Path

from deid.reporting.sections import kept_sections, markers, write_section

__all__ = ["markers", "write_section", "kept_sections", "ingest_reference", "key_values", "transform_per_split"]


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


def key_values(parts) -> dict:
    """``key=value`` strings as a dict, each value read as YAML (a part without ``=`` gives ``None``)."""
    import yaml

    out = {}
    for part in filter(None, parts):
        key, _, value = part.partition("=")
        out[key.strip()] = yaml.safe_load(value)
    return out


def transform_per_split(method, orig):
    """A fitted method applied to every split of an image set, one split at a time, as the pipeline hands a
    set-level method its rows."""
    import numpy as np

    Y = np.empty_like(orig.X)
    for split in np.unique(orig.split):
        k = orig.split == split
        Y[k] = method.transform(orig.X[k], orig.identity[k], orig.label[k])
    return Y
