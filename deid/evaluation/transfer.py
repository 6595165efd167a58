"""Usefulness to the user of a release, measured on real faces, and how readable the outputs are.

- **TSTR** (train on the release, test on real): the utility classifiers (the audit's attackers, trained
  on a method's *training-split outputs* with their labels) read the **original** test images. A team
  that trains on the release gets this. ``tstr`` is the best classifier's accuracy, ``tstr_lo`` /
  ``tstr_hi`` its 95 % Wilson interval over the test images.
- **TRTR**: the same on the originals (the reference row's ``tstr``): what the data allows.
- **TRTS** (train on real, test on the release): the audit's original-trained classifiers read the
  method's test outputs (``utility_orig_clf_acc``); ``trts`` with its interval.
- ``tstr_retention`` / ``trts_retention`` (and ``_lo``, the cautious end, what the gates read): each
  against the reference row's figure.
- ``sharpness_ratio``: per test image, the variance of the output's Laplacian over its original's;
  the median over images, with a bootstrap 95 % interval (``_lo`` / ``_hi``). A blur halves it quickly;
  a face a person can read keeps it near 1.

"Trained and tested on outputs" (``utility_acc_best``) rewards outputs that draw each label as a code
a classifier learns; these figures cannot be won that way.
"""

from __future__ import annotations

import numpy as np

from deid.evaluation.intervals import wilson
from deid.pixels import chunks

__all__ = ["transfer_metrics", "transfer_retention", "sharpness", "sharpness_ratio"]


def transfer_metrics(prefix: str, correct: dict[str, int], n: int) -> dict[str, float]:
    """``<prefix>_<classifier>`` accuracies, ``<prefix>`` the best one and its interval, from correct
    counts over ``n`` test images."""
    if not correct or n <= 0:
        return {}
    m = {f"{prefix}_{a}": c / n for a, c in correct.items()}
    best = max(correct.values())
    m[prefix] = best / n
    m[f"{prefix}_lo"], m[f"{prefix}_hi"] = wilson(best, n)
    return m


def transfer_retention(metrics: dict[str, float], reference: dict[str, float]) -> dict[str, float]:
    """``tstr_retention``/``trts_retention`` (point, capped at 1) and ``_lo`` (the lower bound over the
    reference's point figure) of a row against the reference row."""
    out = {}
    for prefix in ("tstr", "trts"):
        ref, v, lo = reference.get(prefix), metrics.get(prefix), metrics.get(f"{prefix}_lo")
        if ref and v is not None and lo is not None:
            out[f"{prefix}_retention"] = min(1.0, v / ref)
            out[f"{prefix}_retention_lo"] = min(1.0, lo / ref)
    return out


def _gray(c: np.ndarray) -> np.ndarray:
    c = np.asarray(c, dtype=np.float32)
    return c.mean(axis=1) if c.shape[1] > 1 else c[:, 0]


def sharpness(X) -> np.ndarray:
    """Per image, the variance of its Laplacian (grey levels in [0, 1])."""
    import cv2

    out = []
    for _, c in chunks(X):
        for img in _gray(c):
            out.append(float(cv2.Laplacian(img, cv2.CV_32F, ksize=1).var()))
    return np.asarray(out, dtype=np.float64)


def sharpness_ratio(original, outputs, *, seed: int = 0, resamples: int = 400) -> dict[str, float]:
    """The median over image pairs of the outputs' Laplacian variance over the originals', with a
    percentile-bootstrap 95 % interval."""
    a, b = sharpness(original), sharpness(outputs)
    ok = a > 1e-12
    if not ok.any():
        return {}
    r = b[ok] / a[ok]
    rng = np.random.default_rng(seed)
    boots = np.median(r[rng.integers(0, len(r), size=(resamples, len(r)))], axis=1)
    lo, hi = np.percentile(boots, [2.5, 97.5])
    return {"sharpness_ratio": float(np.median(r)), "sharpness_ratio_lo": float(lo), "sharpness_ratio_hi": float(hi)}
