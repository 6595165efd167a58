"""Fisherfaces (Belhumeur, Hespanha, Kriegman, IEEE TPAMI 1997) as an informed attacker.

Standardised pixels → PCA to at most N − classes components → Fisher's linear discriminant, with the
within-class covariance shrunk (Ledoit–Wolf), which classifies. Where the identity is a linear pixel
signature under a nuisance that varies from image to image (lighting, expression), the discriminant
keeps the directions that separate identities and drops those the nuisance spreads, which the
nearest-neighbour and the pooled-variance attackers cannot.
"""

from __future__ import annotations

import warnings

import numpy as np
from sklearn.discriminant_analysis import LinearDiscriminantAnalysis

from deid.evaluation.attacker_registry import register_attacker
from deid.evaluation.attackers import AttackerConfig, _pca

__all__ = ["FisherAttacker"]


@register_attacker("fisher")
class FisherAttacker:
    """Fisherfaces: standardised pixels → PCA (at most N − classes components) → shrunk linear discriminant."""

    # Streams as ``linear`` does: the standardisation and the components are gathered a chunk of images at a
    # time, and only the (N, components) codes are held.

    def __init__(self, max_components: int = 256, random_state: int = 0):
        self.max_components = max_components
        self.random_state = random_state

    @classmethod
    def from_config(cls, cfg: AttackerConfig) -> "FisherAttacker":
        return cls(cfg.fisher_components, cfg.random_state)

    def fit(self, X, y) -> "FisherAttacker":
        y = np.asarray(y)
        k = max(1, min(self.max_components, len(y) - len(np.unique(y))))
        self.pca_ = _pca(X, k)
        # the within-class covariance shrunk towards its diagonal (Ledoit–Wolf): with N − classes components
        # the plain estimate is near singular and the discriminant fits the training images' noise
        self.lda_ = LinearDiscriminantAnalysis(solver="eigen", shrinkage="auto")
        with warnings.catch_warnings():  # constant inputs have no variance to explain
            warnings.simplefilter("ignore")
            self.lda_.fit(self.pca_.transform(X), y)
        return self

    def predict(self, X) -> np.ndarray:
        return self.lda_.predict(self.pca_.transform(X))

    def features(self, X) -> np.ndarray:
        """The discriminant coordinates ``(N, min(classes − 1, components))``."""
        return self.lda_.transform(self.pca_.transform(X)).astype(np.float32)
