"""A pretrained face recogniser as an informed attacker: dlib's 128-D ResNet descriptor (King, "Dlib-ml",
JMLR 2009; the model files of ``face-recognition-models``, nothing downloaded) under a logistic regression
trained on the training outputs' descriptors.

The descriptors are :func:`deid.evaluation.facemetrics.describe`'s, the ones the dlib linkage uses: an
image in which dlib finds no face is described whole, so every output has a descriptor and a prediction.
Meaningful on real faces only (the descriptor was trained on photos); the audit adds it to the pool when
it runs the dlib linkage (``face_metrics`` on, or ``auto`` on a real-face dataset), and a config may name it.
"""

from __future__ import annotations

import numpy as np
from sklearn.linear_model import LogisticRegression
from sklearn.pipeline import Pipeline, make_pipeline
from sklearn.preprocessing import StandardScaler

from deid.evaluation.attacker_registry import register_attacker
from deid.evaluation.attackers import AttackerConfig, _memo, _PipelineAttacker, content_key

__all__ = ["DlibDescriptorAttacker", "descriptors_of"]


def descriptors_of(X, cache_dir: str | None = None) -> np.ndarray:
    """dlib descriptors ``(N, 128)`` of ``X`` ``(N, C, H, W)``, through the descriptor cache in ``cache_dir``,
    remembered for the same rows (the identity and the utility attackers describe the same outputs)."""
    from deid.evaluation.facemetrics import DescriptorCache, describe

    return _memo(("dlib", content_key(X), cache_dir), lambda: describe(X, DescriptorCache(cache_dir)))


@register_attacker("dlib-descriptor")
class DlibDescriptorAttacker(_PipelineAttacker):
    """dlib's pretrained 128-D face descriptor → standardised → multinomial logistic regression."""

    def __init__(self, descriptor_cache: str | None = None, random_state: int = 0):
        self.descriptor_cache = descriptor_cache
        self.random_state = random_state

    @classmethod
    def from_config(cls, cfg: AttackerConfig) -> "DlibDescriptorAttacker":
        return cls(cfg.descriptor_cache, cfg.random_state)

    def _inputs(self, X) -> np.ndarray:
        return descriptors_of(X, self.descriptor_cache)

    def _pipeline(self, inputs: np.ndarray) -> Pipeline:
        return make_pipeline(StandardScaler(), LogisticRegression(max_iter=2000, C=1.0))
