"""Attackers by name: ``register_attacker`` refuses duplicates; ``get_attacker`` builds one from config.

The registering, the lazy import of a built-in's module and the errors are the one
:class:`~deid.registry.Registry`'s.
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import Protocol, runtime_checkable

import numpy as np

from deid.registry import Registry

__all__ = ["Attacker", "AttackerConfig", "register_attacker", "available_attackers", "attacker_class", "get_attacker",
           "BUILTIN_ATTACKERS", "DEFAULT_ATTACKERS"]

#: The built-in attackers, in the order the audit reports them, and the module that registers each.
#: Their names are known without importing it (it needs torch and scikit-learn), so a config is checked
#: at once; the module is imported when an attacker is first built. A new attacker: one line here.
BUILTIN_ATTACKERS: dict[str, str] = {
    "cnn": "deid.evaluation.attackers",
    "linear": "deid.evaluation.attackers",
    "knn-pixels": "deid.evaluation.attackers",
    "knn-hog": "deid.evaluation.attackers",
    "hog-svm": "deid.evaluation.attackers",
    "fisher": "deid.evaluation.fisherfaces",
    "exclusion": "deid.evaluation.method_attackers",
    "label-linkage": "deid.evaluation.method_attackers",
    "dlib-descriptor": "deid.evaluation.descriptor_attacker",
}
#: the attackers an audit trains unless its config names others; ``dlib-descriptor`` joins them wherever the
#: audit runs the dlib linkage (real faces), and a config may name it
DEFAULT_ATTACKERS: tuple[str, ...] = ("cnn", "linear", "knn-pixels", "knn-hog", "hog-svm", "fisher", "exclusion",
                                      "label-linkage")

_ATTACKERS: Registry[type] = Registry("attacker", BUILTIN_ATTACKERS, table="BUILTIN_ATTACKERS", sort=False)


@dataclass(frozen=True)
class AttackerConfig:
    """Which attackers to train and how (names from :func:`available_attackers`)."""

    attackers: tuple[str, ...] = DEFAULT_ATTACKERS
    cnn_epochs: int = 15
    cnn_width: int = 32
    pca_components: int = 64
    random_state: int = 0
    device: str = "auto"
    cnn_min_steps: int = 150  # at least this many optimiser steps (epochs raised on small sets)
    cnn_augment: bool = True  # random shifts, brightness jitter and left-right flips while training
    cnn_shift: int = 2  # largest shift in pixels when augmenting
    cnn_flip: bool = True  # left-right flips when augmenting
    knn_pca_components: int | None = None  # PCA before 1-NN on pixels; None: standardised pixels as they are
    hog_cell: int = 8  # HOG cell size in pixels (8×8 cells, 2×2-cell blocks, 9 orientations)
    svm_c: float = 1.0
    fisher_components: int = 256  # fisherfaces: at most this many principal components (and N − classes) before LDA
    descriptor_cache: str | None = None  # dlib-descriptor: a folder of cached descriptors (the audit's dlib linkage's)


@runtime_checkable
class Attacker(Protocol):
    """An informed attacker: learns labels from de-identified images ``(N, C, H, W)``.

    ``fit(X, y)`` returns ``self``; ``predict(X)`` returns ``(N,)`` labels; ``features(X)`` returns the
    ``(N, D)`` embedding the attacker classifies in; ``from_config(cfg)`` builds one from an
    :class:`AttackerConfig`. An attacker that holds the original images sets
    ``uses_gallery = True`` and takes them as ``fit(X, y, gallery=...)`` and ``predict(X, public=...)``
    (:class:`~deid.evaluation.attackers.Gallery`); without one it uses what ``fit`` was given.
    """

    name: str

    @classmethod
    def from_config(cls, cfg: "AttackerConfig") -> "Attacker": ...

    def fit(self, X: np.ndarray, y) -> "Attacker": ...

    def predict(self, X: np.ndarray) -> np.ndarray: ...

    def features(self, X: np.ndarray) -> np.ndarray: ...


def register_attacker(name: str):
    """Class decorator: register an :class:`Attacker` under ``name``."""
    return _ATTACKERS.decorator(name)


def available_attackers() -> list[str]:
    """Every attacker's name: the built-in ones, then those registered since; imports none of them."""
    return _ATTACKERS.names()


def attacker_class(name: str) -> type:
    """The class registered under ``name``, its module imported."""
    return _ATTACKERS.get(name)


def get_attacker(name: str, cfg: "AttackerConfig | None" = None) -> Attacker:
    """Build attacker ``name`` (unfitted) from ``cfg`` (the defaults when ``None``)."""
    return attacker_class(name).from_config(cfg if cfg is not None else AttackerConfig())
