"""Attackers that know how the outputs were made, not only what they look like.

- ``exclusion``: a cluster method (k-Same and its kin, Newton, Sweeney, Malin 2005) gives every member of
  a cluster the same output, and a cluster holds each identity at most once. An output that also stands,
  in the attacker's training set, for identities A, B, … is therefore none of them. Pixel attackers learn
  the opposite (they answer A or B), which reads *below* chance; this attacker excludes them and lets a
  linear classifier choose among the rest. Whether the outputs behave so is read from the training
  outputs themselves (identical outputs shared by distinct identities, none repeated), so on other
  methods it is the ``linear`` attacker.
- ``label-linkage``: holds a gallery of original images with their identities and the label a release
  publishes with every output (the utility label); each output is matched, by nearest HOG descriptor,
  to the originals of its own published label, and named after the one it is nearest to. It reads what
  an output still shares with the faces it was made from (a proxy mixture with its proxies, a cluster
  average with its members), as the linkage protocol does, but as an attacker in the pool.
"""

from __future__ import annotations

import numpy as np

from deid.clustering.anonymity import row_digests
from deid.evaluation.attacker_registry import register_attacker
from deid.evaluation.attackers import AttackerConfig, Gallery, LinearPixelClassifier, _nearest, hog_of

__all__ = ["ExclusionAttacker", "LabelLinkageAttacker"]


@register_attacker("exclusion")
class ExclusionAttacker:
    """Cluster exclusion: an output shared in training by identities A, B, … is none of them; logistic regression."""

    def __init__(self, n_components: int = 64, random_state: int = 0):
        self.n_components = n_components
        self.random_state = random_state

    @classmethod
    def from_config(cls, cfg: AttackerConfig) -> "ExclusionAttacker":
        return cls(cfg.pca_components, cfg.random_state)

    def fit(self, X, y) -> "ExclusionAttacker":
        y = np.asarray(y)
        self.base_ = LinearPixelClassifier(self.n_components, self.random_state).fit(X, y)
        self.classes_ = self.base_.model_.classes_
        members: dict[bytes, list] = {}
        for d, label in zip(row_digests(X).tolist(), y.tolist()):
            members.setdefault(d, []).append(label)
        shared = [m for m in members.values() if len(m) > 1]
        # the outputs behave as a cluster method's: identical outputs stand for distinct identities, never
        # for one twice (a duplicate photo of one person under a per-image method repeats it)
        self.exclusive_ = bool(shared) and sum(len(set(m)) == len(m) for m in shared) > len(shared) / 2
        self.excluded_ = {d: np.isin(self.classes_, m) for d, m in members.items() if len(set(m)) > 1} \
            if self.exclusive_ else {}
        return self

    def predict(self, X) -> np.ndarray:
        score = self.base_.model_.predict_proba(self.base_.features(X))
        if self.excluded_:
            for i, d in enumerate(row_digests(X).tolist()):
                out = self.excluded_.get(d)
                if out is not None and not out.all():
                    score[i, out] = -1.0  # below every probability: an excluded identity is never chosen
        return self.classes_[score.argmax(1)]

    def features(self, X) -> np.ndarray:
        """The linear classifier's principal-component codes ``(N, n_components)``."""
        return self.base_.features(X)


@register_attacker("label-linkage")
class LabelLinkageAttacker:
    """Same-label linkage: an output is named after its nearest original (HOG) among those of its published label."""

    uses_gallery = True

    def __init__(self, cell: int = 8, random_state: int = 0):
        self.cell = cell
        self.random_state = random_state

    @classmethod
    def from_config(cls, cfg: AttackerConfig) -> "LabelLinkageAttacker":
        return cls(cfg.hog_cell, cfg.random_state)

    def fit(self, X, y, gallery: Gallery | None = None) -> "LabelLinkageAttacker":
        """``gallery``: the originals of these rows and their published label; without one the outputs
        ``X`` themselves are the gallery (a 1-NN on HOG)."""
        self.y_ = np.asarray(y)
        self.gallery_ = hog_of(X if gallery is None else gallery.originals, self.cell)
        if len(self.gallery_) != len(self.y_):
            raise ValueError(f"label-linkage: {len(self.gallery_)} gallery images for {len(self.y_)} labels")
        self.public_ = None if gallery is None or gallery.public_train is None else np.asarray(gallery.public_train)
        return self

    def predict(self, X, public=None) -> np.ndarray:
        """``public`` ``(N,)``: each output's published label; an output is matched against the originals
        that carry it (all of them when ``None``, or when no original carries it)."""
        probes = self.features(X)
        match = np.empty(len(probes), dtype=np.int64)
        if public is None or self.public_ is None:
            match[:] = _nearest(self.gallery_, probes, lambda c: c)
        else:
            public = np.asarray(public)
            for value in np.unique(public):
                rows = np.flatnonzero(public == value)
                pool = np.flatnonzero(self.public_ == value)
                pool = pool if len(pool) else np.arange(len(self.gallery_))
                match[rows] = pool[_nearest(self.gallery_[pool], probes[rows], lambda c: c)]
        return self.y_[match]

    def features(self, X) -> np.ndarray:
        """HOG descriptors ``(N, D)``, the space outputs and originals are matched in."""
        return hog_of(X, self.cell)
