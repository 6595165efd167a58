"""Fréchet distance between feature distributions (Heusel et al. 2017, the FID's distance), read against
the originals' own: how far a method's outputs lie from real faces, as a population, in a feature space.

Each set of features is summarised by its mean and covariance; the Fréchet (2-Wasserstein) distance
between the two Gaussians is

    ‖μ₁ − μ₂‖² + tr Σ₁ + tr Σ₂ − 2 tr (Σ₁^½ Σ₂ Σ₁^½)^½.

The trace of the matrix square root is taken from eigenvalues of symmetric positive semi-definite
matrices (``eigh``), so a covariance of rank below its dimension (fewer images than features, dead
ReLU units, one output for every input) gives a finite, non-negative distance where ``sqrtm`` of the
non-symmetric product returns complex noise.

The distance of two finite samples is biased upward by their size (estimated covariances are noisier
than the true ones), and more so in many dimensions than in few, so a raw distance says little on its
own. :func:`frechet_ratio` therefore compares like with like: the test images are split at random into
halves A and B; the outputs of B are compared with the originals of A (and the outputs of A with the
originals of B), and the yardstick is the originals of B against the originals of A — the same sizes,
different images, so the bias cancels in the ratio. An output identical to its input scores 1 exactly;
an output nothing like a real face scores far above 1. Averaged over ``repeats`` random splits.
"""

from __future__ import annotations

import numpy as np

__all__ = ["frechet_from_moments", "frechet_distance", "frechet_ratio"]


def _psd_sqrt(S: np.ndarray) -> np.ndarray:
    """The symmetric square root of a symmetric positive semi-definite ``(D, D)`` matrix."""
    w, V = np.linalg.eigh((S + S.T) / 2)
    return (V * np.sqrt(np.clip(w, 0.0, None))) @ V.T


def frechet_from_moments(mu1: np.ndarray, cov1: np.ndarray, mu2: np.ndarray, cov2: np.ndarray) -> float:
    """The Fréchet distance between N(``mu1``, ``cov1``) and N(``mu2``, ``cov2``), ``mu``: ``(D,)``,
    ``cov``: ``(D, D)``; squared units of the features, never negative."""
    mu1, mu2 = np.atleast_1d(np.asarray(mu1, np.float64)), np.atleast_1d(np.asarray(mu2, np.float64))
    cov1, cov2 = np.atleast_2d(np.asarray(cov1, np.float64)), np.atleast_2d(np.asarray(cov2, np.float64))
    if mu1.shape != mu2.shape or cov1.shape != cov2.shape or cov1.shape != (len(mu1), len(mu1)):
        raise ValueError(f"moments of different shapes: {mu1.shape}, {cov1.shape} and {mu2.shape}, {cov2.shape}")
    r = _psd_sqrt(cov1)
    m = r @ cov2 @ r  # Σ₁^½ Σ₂ Σ₁^½: symmetric PSD, with the eigenvalues of Σ₁Σ₂
    tr_sqrt = float(np.sqrt(np.clip(np.linalg.eigvalsh((m + m.T) / 2), 0.0, None)).sum())
    d = float(((mu1 - mu2) ** 2).sum() + np.trace(cov1) + np.trace(cov2) - 2.0 * tr_sqrt)
    return max(0.0, d)


def _moments(F: np.ndarray) -> tuple[np.ndarray, np.ndarray]:
    F = np.asarray(F, np.float64).reshape(len(F), -1)
    return F.mean(0), np.cov(F, rowvar=False).reshape(F.shape[1], F.shape[1])


def frechet_distance(a: np.ndarray, b: np.ndarray) -> float:
    """The Fréchet distance between the samples ``a`` ``(N, D)`` and ``b`` ``(M, D)`` (rows are images;
    at least two rows each)."""
    if len(a) < 2 or len(b) < 2:
        raise ValueError(f"a Fréchet distance needs two rows a side, got {len(a)} and {len(b)}")
    return frechet_from_moments(*_moments(a), *_moments(b))


def frechet_ratio(originals: np.ndarray, outputs: np.ndarray, *, prefix: str = "feature_frechet",
                  repeats: int = 5, seed: int = 0) -> dict[str, float]:
    """The outputs' Fréchet distance to the originals over the originals' own, on disjoint random halves.

    ``originals``, ``outputs``: ``(N, D)`` features of the same N test images (row ``k`` of ``outputs``
    made from row ``k`` of ``originals``). Returns ``<prefix>`` (the ratio: 1 as close as the originals
    are to themselves; lower is better, and a method whose outputs are real faces of other people
    scores near 1 too: this is realism, not privacy) and ``<prefix>_yardstick`` (the originals' halves'
    mean distance, in the features' squared units), or nothing when there are fewer than 4 images or the
    originals do not vary."""
    A, B = (np.asarray(x, np.float64).reshape(len(x), -1) for x in (originals, outputs))
    if A.shape != B.shape:
        raise ValueError(f"originals {A.shape} and outputs {B.shape} must be row-aligned features")
    n = len(A)
    if n < 4:
        return {}
    from threadpoolctl import threadpool_limits

    rng = np.random.default_rng(seed)
    raw = yard = 0.0
    with threadpool_limits(1):  # (D, D) with D ~ 128: threads only contend (4x slower on two busy cores)
        for _ in range(repeats):
            p = rng.permutation(n)
            h1, h2 = p[: n // 2], p[n // 2:]
            m1, m2 = _moments(A[h1]), _moments(A[h2])
            yard += frechet_from_moments(*m2, *m1)
            raw += (frechet_from_moments(*_moments(B[h2]), *m1) + frechet_from_moments(*_moments(B[h1]), *m2)) / 2
    if yard <= 1e-12 * max(1.0, raw):
        return {}
    return {prefix: raw / yard, f"{prefix}_yardstick": yard / repeats}
