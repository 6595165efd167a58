"""k-Same-Pixel / k-Same-Eigen (Newton, Sweeney, Malin, IEEE TKDE 2005) and k-Same-Select (Gross et al., PET 2005).

Each output is the average of a cluster of images of k distinct identities in equal shares
(:func:`deid.clustering.ksame_clusters`), so it cannot be attributed to any of them with
probability above 1/k. Set-level: ``transform`` clusters the set it is given and returns, row by
row, each image's cluster average; the cluster of each row is kept in ``last_clusters_`` and the
identity-level figures (k-anonymity, worst attribution probability) in ``last_report_``.
Outputs keep the input's row order: the release step shuffles them and gives fresh ids, since
order alone would re-identify records. ``fit`` learns the PCA space that "nearest" is measured in.
"""

from __future__ import annotations

from typing import Literal

import numpy as np

from deid.clustering.features import PCAFeatures
from deid.clustering.ksame import cluster_means, ksame_clusters
from deid.errors import ConfigError, MethodError
from deid.clustering.anonymity import group_report
from deid.methods.base import AnonymityK, DeidMethod, PositiveInt, Seed
from deid.methods.registry import register_method

__all__ = ["KSamePixel", "KSameEigen", "KSameSelect"]

_PCA_FIT_ROWS = 10_000


class _KSame(DeidMethod):
    set_level = True
    needs_identity = True
    holds_training_images = True  # pca_mean_ and pca_components_: the training set's mean face and eigenfaces
    test_params = {"k": 3, "n_components": 8}
    k_within = "split"  # every split is clustered whole
    guarantee = ("k-anonymity: each output is the average of a cluster of images of at least k distinct identities, "
                 "so it is attributed to any of them with probability at most 1/k")

    def __init__(self, k: AnonymityK = 2, n_components: PositiveInt = 32, random_state: Seed = 0) -> None:
        self.k = k
        self.n_components = n_components
        self.random_state = random_state

    def _fit(self, X, identity, utility):
        n_ids = len(np.unique(identity))
        if self.k > n_ids:
            raise ConfigError(f"{self.name}: k = {self.k} but the training set holds only {n_ids} identities; "
                              f"lower k to at most {n_ids}")
        if len(X) > _PCA_FIT_ROWS:  # the search space from a uniform sample: eigenfaces settle long before
            X = X[np.sort(np.random.default_rng(self.random_state).choice(len(X), _PCA_FIT_ROWS, replace=False))]
        pca = PCAFeatures(self.n_components, self.random_state).fit(X)
        self.pca_mean_, self.pca_components_ = pca.mean_, pca.components_

    def _pca(self) -> PCAFeatures:
        pca = PCAFeatures(self.n_components, self.random_state)
        pca.mean_, pca.components_ = self.pca_mean_, self.pca_components_
        return pca

    def _average(self, X: np.ndarray, codes: np.ndarray, clusters: np.ndarray) -> np.ndarray:
        """Pixel space: the mean image of each cluster."""
        return cluster_means(X, clusters)

    def _clusters(self, codes: np.ndarray, identity: np.ndarray, utility: np.ndarray | None) -> np.ndarray:
        return ksame_clusters(codes, identity, int(self.k), random_state=self.random_state)

    def _transform(self, X, identity, utility):
        codes = self._pca().transform(X)
        clusters = self._clusters(codes, identity, utility)
        self.last_clusters_ = clusters
        self.last_report_ = group_report(clusters, identity)
        return self._average(X, codes, clusters)


@register_method("ksame-pixel")
class KSamePixel(_KSame):
    """k-Same-Pixel: clusters found in PCA space, averaged in pixel space."""


@register_method("ksame-eigen")
class KSameEigen(_KSame):
    """k-Same-Eigen: clusters and averages in the eigenface (PCA) space, decoded back to images."""

    def _average(self, X, codes, clusters):
        mean_codes = cluster_means(codes, clusters)
        return np.clip(self._pca().inverse_transform(mean_codes, X.shape[1:]), 0.0, 1.0)


@register_method("ksame-select")
class KSameSelect(_KSame):
    """k-Same-Select: k-Same within groups sharing the utility label, so averages keep it.

    ``space`` is ``"pixel"`` (average images) or ``"eigen"`` (average PCA codes, decode).
    """

    needs_utility = True
    test_params = {"k": 2, "n_components": 8}
    k_within = "split label"  # clusters within each utility label of each split
    guarantee = ("k-anonymity within each utility label: each output averages images of at least k distinct "
                 "identities that share its label, so it is attributed to any of them with probability at most 1/k")
    param_docs = {"space": "where clusters are averaged: pixel (images) or eigen (PCA codes, decoded)"}

    def __init__(self, k: AnonymityK = 2, n_components: PositiveInt = 32, space: Literal["pixel", "eigen"] = "pixel",
                 random_state: Seed = 0) -> None:
        super().__init__(k, n_components, random_state)
        self.space = space

    def _fit(self, X, identity, utility):
        if self.space not in ("pixel", "eigen"):
            raise ConfigError(f"ksame-select: space must be 'pixel' or 'eigen', got {self.space!r}")
        if utility is None:
            raise MethodError("ksame-select needs utility labels (e.g. expression) to fit")
        super()._fit(X, identity, utility)

    def _clusters(self, codes, identity, utility):
        if utility is None:
            raise MethodError("ksame-select needs utility labels (e.g. expression) to transform")
        clusters = np.empty(len(codes), dtype=np.int64)
        offset = 0
        labels = np.asarray(utility).astype(str)
        for label in np.unique(labels):
            rows = np.flatnonzero(labels == label)
            n_ids = len(np.unique(identity[rows]))
            if n_ids < self.k:
                noun = "identity" if n_ids == 1 else "identities"
                raise MethodError(f"ksame-select: utility group '{label}' holds images of only {n_ids} {noun}, "
                                  f"fewer than k = {self.k}; lower k to {n_ids} or merge that label with another")
            c = ksame_clusters(codes[rows], identity[rows], int(self.k), random_state=self.random_state)
            clusters[rows] = c + offset
            offset += int(c.max()) + 1
        return clusters

    def _average(self, X, codes, clusters):
        if self.space == "eigen":
            return KSameEigen._average(self, X, codes, clusters)
        return cluster_means(X, clusters)
