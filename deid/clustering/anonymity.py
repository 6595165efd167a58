"""k-anonymity of a released set (Sweeney 2002; for faces, Newton, Sweeney, Malin 2005).

The guarantee is about identities, not images: an output shared by k images of one person
protects nobody. :func:`k_anonymity` groups bitwise-identical outputs and counts the distinct
identities behind each group; :func:`attribution_risk` is the worst probability with which an
attacker who knows the group's make-up attributes an output to one identity.
"""

from __future__ import annotations

import hashlib
from typing import Any

import numpy as np

from deid.errors import EvaluationError

__all__ = ["row_digests", "identical_groups", "k_anonymity", "attribution_risk", "group_report"]


def _labels(identity: Any, n: int) -> np.ndarray:
    ident = np.asarray(identity)
    if ident.shape != (n,):
        raise EvaluationError(f"identity must have one entry per output ({n}), got shape {ident.shape}")
    return np.unique(ident, return_inverse=True)[1].reshape(-1)


def row_digests(outputs: np.ndarray) -> np.ndarray:
    """A 16-byte digest per row of ``outputs`` ``(N, ...)`` (``S16``): rows with identical bytes share one.

    ``outputs`` may be a :class:`~deid.pixels.Pixels` view, read a chunk at a time."""
    if not hasattr(outputs, "shape"):
        outputs = np.asarray(outputs)
    if len(outputs.shape) < 1 or len(outputs) == 0:
        raise EvaluationError(f"need at least one output to measure anonymity, got shape {outputs.shape}")
    digests = np.empty(len(outputs), dtype="S16")
    step = max(1, 4_000_000 // (int(np.prod(outputs.shape[1:], dtype=np.int64)) or 1))
    for s in range(0, len(outputs), step):  # a chunk of rows at a time (images on disk are read so)
        chunk = np.asarray(outputs[s:s + step])
        flat = np.ascontiguousarray(chunk).reshape(len(chunk), -1)
        digests[s:s + len(flat)] = [hashlib.blake2b(row.tobytes(), digest_size=16).digest() for row in flat]
    return digests


def identical_groups(outputs: np.ndarray) -> np.ndarray:
    """Group index per row of ``outputs`` ``(N, ...)``: rows with identical bytes share a group.

    ``outputs`` may be a :class:`~deid.pixels.Pixels` view, read a chunk at a time."""
    return np.unique(row_digests(outputs), return_inverse=True)[1].reshape(-1).astype(np.int64)


def _per_group(groups: np.ndarray, ident: np.ndarray) -> tuple[np.ndarray, np.ndarray, np.ndarray]:
    """(distinct identities, largest single-identity count, size) per group."""
    pairs = np.unique(np.stack([groups, ident], axis=1), axis=0, return_counts=True)
    (pg, _), counts = (pairs[0][:, 0], pairs[0][:, 1]), pairs[1]
    n_groups = int(groups.max()) + 1
    distinct = np.bincount(pg, minlength=n_groups)
    largest = np.zeros(n_groups, dtype=np.int64)
    np.maximum.at(largest, pg, counts)
    size = np.bincount(groups, minlength=n_groups)
    return distinct, largest, size


def k_anonymity(outputs: np.ndarray, identity: Any) -> int:
    """The smallest number of distinct identities sharing one identical output (1 if all differ).

    ``outputs`` ``(N, ...)`` (images or feature rows), ``identity`` ``(N,)`` the private labels.
    """
    groups = identical_groups(outputs)
    distinct, _, _ = _per_group(groups, _labels(identity, len(groups)))
    return int(distinct.min())


def attribution_risk(outputs: np.ndarray, identity: Any) -> float:
    """Worst probability of attributing an output to one identity: max over groups of the largest share.

    Equal shares of k identities give exactly ``1/k``; an image of a person shown alone gives 1.
    """
    groups = identical_groups(outputs)
    _, largest, size = _per_group(groups, _labels(identity, len(groups)))
    return float((largest / size).max())


def group_report(groups: np.ndarray, identity: Any) -> dict[str, float | int]:
    """Figures for a given grouping (e.g. k-Same clusters): groups, k-anonymity, worst attribution."""
    groups = np.asarray(groups, dtype=np.int64).reshape(-1)
    if len(groups) == 0:
        raise EvaluationError("need at least one row to describe its groups")
    groups = np.unique(groups, return_inverse=True)[1].reshape(-1)
    distinct, largest, size = _per_group(groups, _labels(identity, len(groups)))
    share = largest / size
    return {
        "n_groups": int(len(size)),
        "k_anonymity": int(distinct.min()),
        "attribution_risk": float(share.max()),
        "min_group_size": int(size.min()),
        "max_group_size": int(size.max()),
        "unequal_groups": int((largest * distinct != size).sum()),
    }
