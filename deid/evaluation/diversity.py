"""Output diversity within a utility class, measured against the originals (any images, any method).

A method can hide identity by collapsing every face of one class onto one image (k-Same with k
as large as the number of identities returns one averaged face per expression). Accuracy-based
audits score that as perfect privacy with full utility; the spread of the outputs shows what was
lost. For each group (one utility class) the mean pairwise L2 distance of the outputs is divided
by the same mean for the originals, in pixel space and optionally in a feature space, and the
per-group ratios are averaged with each group weighted by its number of pairs. 1 means the
outputs vary as much as the originals do, 0 means one image per group.

Groups with more than ``max_pairs`` pairs are measured on that many pairs drawn with a seeded
generator (the same pairs for originals and outputs), so memory stays flat at ~10k images a group.
"""

from __future__ import annotations

import hashlib
from collections.abc import Callable

import numpy as np

__all__ = ["diversity_ratio", "DEFAULT_MAX_PAIRS"]

DEFAULT_MAX_PAIRS = 20_000
_CHUNK_VALUES = 8_000_000  # float64 values held at once while measuring distances (~64 MB)
_FEATURE_BATCH = 256


def _as_unit(X: np.ndarray) -> np.ndarray:
    """``uint8`` images scaled to [0, 1] float64; float images as float64 (the library's [0, 1])."""
    X = np.asarray(X)
    if X.dtype == np.uint8:
        return X.astype(np.float64) / 255.0
    return X.astype(np.float64, copy=False)


def _as_uint8(X: np.ndarray) -> np.ndarray:
    X = np.asarray(X)
    if X.dtype == np.uint8:
        return X
    return np.clip(np.rint(np.asarray(X, dtype=np.float64) * 255.0), 0, 255).astype(np.uint8)


def _pairs(n: int, max_pairs: int, rng: np.random.Generator) -> tuple[np.ndarray, np.ndarray]:
    """Every pair ``i < j`` of ``n`` items, or ``max_pairs`` pairs of distinct items drawn at random."""
    if n * (n - 1) // 2 <= max_pairs:
        return np.triu_indices(n, 1)
    i = rng.integers(0, n, size=max_pairs)
    j = rng.integers(0, n - 1, size=max_pairs)
    j = j + (j >= i)  # uniform over the items other than i
    return i, j


def _distances(X: np.ndarray, i: np.ndarray, j: np.ndarray) -> np.ndarray:
    """L2 distance of flattened rows ``X[i]`` and ``X[j]`` (images or embeddings), a chunk of pairs at a time."""
    d = int(np.prod(X.shape[1:], dtype=np.int64)) or 1
    step = max(1, _CHUNK_VALUES // d)
    out = np.empty(len(i), dtype=np.float64)
    for s in range(0, len(i), step):
        a = _as_unit(X[i[s:s + step]]).reshape(-1, d)
        b = _as_unit(X[j[s:s + step]]).reshape(-1, d)
        out[s:s + step] = np.sqrt(np.einsum("nd,nd->n", a - b, a - b))
    return out


def _embed(features: Callable[[np.ndarray], np.ndarray], X: np.ndarray, index: np.ndarray) -> np.ndarray:
    """``features`` of ``X[index]`` in batches, as float64 ``(len(index), D)``."""
    parts = []
    for s in range(0, len(index), _FEATURE_BATCH):
        f = np.asarray(features(X[index[s:s + _FEATURE_BATCH]]), dtype=np.float64)
        parts.append(f.reshape(len(f), -1))
    return np.concatenate(parts) if parts else np.zeros((0, 1))


def _distinct_fraction(X: np.ndarray) -> float:
    """The share of distinct images in ``X`` after rounding to ``uint8``."""
    if len(X) == 0:
        return float("nan")
    seen: set[bytes] = set()
    d = int(np.prod(X.shape[1:], dtype=np.int64)) or 1
    step = max(1, _CHUNK_VALUES // d)
    for s in range(0, len(X), step):
        chunk = np.ascontiguousarray(_as_uint8(X[s:s + step]))
        for row in chunk:
            seen.add(hashlib.blake2b(row.tobytes(), digest_size=16).digest())
    return len(seen) / len(X)


def diversity_ratio(originals: np.ndarray, outputs: np.ndarray, groups,
                    features: Callable[[np.ndarray], np.ndarray] | None = None, *,
                    embeddings: tuple[np.ndarray, np.ndarray] | None = None,
                    max_pairs: int = DEFAULT_MAX_PAIRS, random_state: int = 0) -> dict[str, float]:
    """How varied the outputs are within each group, relative to the originals.

    ``originals`` and ``outputs``: ``(N, ...)`` images, row ``k`` of ``outputs`` made from row
    ``k`` of ``originals``; float in [0, 1] or ``uint8`` (read as ``/255``). ``groups``: ``(N,)``
    labels of the utility class (e.g. expression). ``features``: optional callable from a batch
    of images ``(B, ...)`` to an embedding ``(B, D)`` (e.g. an identity attacker's feature
    extractor), applied to originals and outputs alike; or ``embeddings``: those features already
    computed, ``(originals', outputs')`` with one row per image (the audit's linkage has them).

    Returns ``diversity_pixels`` (and ``diversity_features`` when ``features`` is given): the
    pair-count-weighted mean over groups of ``mean output distance / mean original distance``,
    NaN when no group has two originals that differ; and ``distinct_outputs``: the share of
    distinct output images after rounding to ``uint8``.
    """
    if len(originals) != len(outputs):
        raise ValueError(f"originals ({len(originals)}) and outputs ({len(outputs)}) must have one row per image")
    groups = np.asarray(groups)
    if groups.shape != (len(originals),):
        raise ValueError(f"groups must have shape ({len(originals)},), got {groups.shape}")
    if max_pairs < 1:
        raise ValueError("max_pairs must be at least 1")
    plan = _group_pairs(groups, max_pairs, np.random.default_rng(random_state))
    spaces = _spaces(originals, outputs, plan, features, embeddings)
    result: dict[str, float] = {f"diversity_{space}": _weighted_ratio(A, B, row, plan)
                                for space, (A, B, row) in spaces.items()}
    result["distinct_outputs"] = _distinct_fraction(outputs)
    return result


def _group_pairs(groups: np.ndarray, max_pairs: int, rng: np.random.Generator) -> list[tuple[float, np.ndarray, np.ndarray]]:
    """The pairs measured in each group of two or more images: (its pair count, i, j) in positions of the whole set."""
    plan = []
    for g in sorted(set(groups.tolist()), key=str):
        idx = np.flatnonzero(groups == g)
        n = len(idx)
        if n < 2:
            continue
        i, j = _pairs(n, max_pairs, rng)
        plan.append((n * (n - 1) / 2, idx[i], idx[j]))
    return plan


def _spaces(originals: np.ndarray, outputs: np.ndarray, plan: list, features, embeddings
            ) -> dict[str, tuple[np.ndarray, np.ndarray, np.ndarray]]:
    """Space → (originals, outputs, row of each image in them): pixels, and features when given or computed."""
    spaces = {"pixels": (originals, outputs, np.arange(len(originals)))}
    if features is not None and embeddings is not None:
        raise ValueError("give features or embeddings, not both")
    if embeddings is not None:
        A, B = (np.asarray(e, dtype=np.float64).reshape(len(e), -1) for e in embeddings)
        if len(A) != len(originals) or len(B) != len(outputs):
            raise ValueError(f"embeddings must have one row per image ({len(originals)}), got {len(A)} and {len(B)}")
        spaces["features"] = (A, B, np.arange(len(originals)))
    elif features is not None:
        used = np.unique(np.concatenate([np.concatenate([i, j]) for _, i, j in plan] or [np.zeros(0, np.int64)]))
        row = np.full(len(originals), -1, dtype=np.int64)
        row[used] = np.arange(len(used))
        spaces["features"] = (_embed(features, originals, used), _embed(features, outputs, used), row)
    return spaces


def _weighted_ratio(A: np.ndarray, B: np.ndarray, row: np.ndarray, plan: list) -> float:
    """The pair-count-weighted mean over groups of mean output distance / mean original distance (L2 between rows)."""
    num = den = 0.0
    for w, i, j in plan:
        base = _distances(A, row[i], row[j]).mean()
        if base <= 0:
            continue  # the originals of this group do not vary: nothing to keep
        num += w * (_distances(B, row[i], row[j]).mean() / base)
        den += w
    return float(num / den) if den > 0 else float("nan")
