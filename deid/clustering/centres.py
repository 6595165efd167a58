"""k-means cluster-centre targets for latent codes (Nousi et al.'s unsupervised latent shift).

A reusable step, not tied to one method: cluster the codes ``(N, D)`` with :class:`DaskKMeans`
and give every row its cluster's centre as target ``t_i``; the shift then moves each encoding
towards ``z_i = (1 − α)·x_enc + α·t_i``.
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import Any

import numpy as np

from deid.clustering.features import check_features
from deid.clustering.kmeans import DaskKMeans

__all__ = ["CentreTargets", "centre_targets", "shift_towards"]


@dataclass(frozen=True)
class CentreTargets:
    """``centres`` ``(K, D)``, ``labels`` ``(N,)``, ``targets`` ``(N, D)`` = ``centres[labels]``, ``inertia``."""

    centres: np.ndarray
    labels: np.ndarray
    targets: np.ndarray
    inertia: float


def centre_targets(codes: Any, n_clusters: int, *, random_state: int = 0, client: Any = "sync",
                   **kmeans_params: Any) -> CentreTargets:
    """k-means on ``codes`` ``(N, D)``; ``client`` a Dask client, ``None`` (own cluster) or ``"sync"``."""
    codes = check_features(codes, "centre targets")
    km = DaskKMeans(n_clusters, random_state=random_state, **kmeans_params).fit(codes, client)
    return CentreTargets(km.cluster_centers_, km.labels_, km.cluster_centers_[km.labels_], km.inertia_)


def shift_towards(codes: np.ndarray, targets: np.ndarray, alpha: float) -> np.ndarray:
    """``(1 − α)·codes + α·targets`` ``(N, D)``; ``alpha`` in [0, 1]."""
    from deid.errors import ConfigError

    if not 0.0 <= float(alpha) <= 1.0:
        raise ConfigError(f"latent shift: alpha must lie in [0, 1], got {alpha}")
    return (1.0 - alpha) * np.asarray(codes) + alpha * np.asarray(targets)
