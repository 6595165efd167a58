"""Features to cluster on, computed in batches: pixels (+ PCA), latent codes, dlib descriptors.

Every extractor maps images ``(N, C, H, W)`` float32 in [0, 1] to features ``(N, D)`` float32.
:func:`table_features` streams an ``images`` table by row group, so memory stays flat in N.
Latent codes come from any object with ``encode(X) -> (N, D)`` (and optionally ``decode``):
the autoencoder plugs in there through :class:`LatentFeatures`.
"""

from __future__ import annotations

import importlib.util
from collections.abc import Iterable, Iterator
from pathlib import Path
from typing import Any, Protocol

import numpy as np

from deid.errors import ConfigError, MethodError

__all__ = ["FeatureExtractor", "PixelFeatures", "PCAFeatures", "LatentFeatures", "DlibFeatures",
           "table_features", "check_features"]


class FeatureExtractor(Protocol):
    def transform(self, X: np.ndarray) -> np.ndarray: ...


def check_features(F: Any, where: str) -> np.ndarray:
    """``F`` as a finite float ``(N, D)`` array, or a :class:`MethodError` saying what to change."""
    F = np.asarray(F)
    if F.ndim != 2 or F.shape[0] == 0 or F.shape[1] == 0:
        raise MethodError(f"{where}: features must be a non-empty (N, D) array, got shape {F.shape}")
    if F.dtype not in (np.float32, np.float64):
        F = F.astype(np.float32)
    bad = ~np.isfinite(F).all(axis=1)
    if bad.any():
        raise MethodError(f"{where}: {int(bad.sum())} feature rows hold NaN or infinite values "
                          f"(first row {int(np.flatnonzero(bad)[0])}); drop or repair them before clustering")
    return F


def _flat(X: np.ndarray) -> np.ndarray:
    return np.asarray(X, dtype=np.float32).reshape(len(X), -1)


class PixelFeatures:
    """Raw pixels, flattened: ``(N, C·H·W)``."""

    def fit(self, X: np.ndarray) -> "PixelFeatures":
        return self

    def transform(self, X: np.ndarray) -> np.ndarray:
        return _flat(X)

    def inverse_transform(self, F: np.ndarray, shape: tuple[int, ...]) -> np.ndarray:
        return np.asarray(F, dtype=np.float32).reshape((len(F), *shape))


class PCAFeatures:
    """Pixels projected on their first ``n_components`` principal axes (eigenfaces).

    ``fit`` on an in-memory array (randomized SVD) or ``fit_batches`` over an iterable of
    batches (incremental PCA, flat memory). Learned: ``mean_`` ``(D,)``, ``components_`` ``(d, D)``.
    """

    def __init__(self, n_components: int = 32, random_state: int = 0) -> None:
        self.n_components = n_components
        self.random_state = random_state

    def _n(self, n: int, d: int) -> int:
        if int(self.n_components) < 1:
            raise ConfigError(f"PCA: n_components must be at least 1, got {self.n_components}")
        return min(int(self.n_components), n, d)

    def fit(self, X: np.ndarray) -> "PCAFeatures":
        from sklearn.decomposition import PCA

        F = check_features(_flat(X), "PCA features")
        pca = PCA(self._n(*F.shape), svd_solver="randomized" if min(F.shape) > 500 else "full",
                  random_state=self.random_state).fit(F)
        self.mean_ = pca.mean_.astype(np.float32)
        self.components_ = pca.components_.astype(np.float32)
        return self

    def fit_batches(self, batches: Iterable[np.ndarray]) -> "PCAFeatures":
        from sklearn.decomposition import IncrementalPCA

        ipca, pending = None, []
        for X in batches:
            F = check_features(_flat(X), "PCA features")
            pending.append(F)
            if sum(len(p) for p in pending) < max(int(self.n_components), 1):
                continue  # IncrementalPCA needs at least n_components rows per step
            F = np.concatenate(pending)
            pending = []
            ipca = ipca or IncrementalPCA(self._n(10**12, F.shape[1]))
            ipca.partial_fit(F)
        if ipca is None:
            raise MethodError("PCA features: the batches held fewer rows than n_components; lower n_components")
        if pending and sum(len(p) for p in pending) >= ipca.n_components_:
            ipca.partial_fit(np.concatenate(pending))
        self.mean_ = ipca.mean_.astype(np.float32)
        self.components_ = ipca.components_.astype(np.float32)
        return self

    def transform(self, X: np.ndarray) -> np.ndarray:
        return (_flat(X) - self.mean_) @ self.components_.T

    def inverse_transform(self, F: np.ndarray, shape: tuple[int, ...]) -> np.ndarray:
        return (np.asarray(F, dtype=np.float32) @ self.components_ + self.mean_).reshape((len(F), *shape))


class LatentFeatures:
    """Latent codes of a trained encoder: anything with ``encode(X) -> (N, D)`` (and ``decode``).

    The seam for the autoencoder: k-Same in latent space clusters these codes and decodes the
    cluster means; the latent-shift method takes :func:`deid.clustering.centres.centre_targets`.
    """

    def __init__(self, model: Any) -> None:
        if not callable(getattr(model, "encode", None)):
            raise ConfigError(f"LatentFeatures needs a model with an encode(X) method, got {type(model).__name__}")
        self.model = model

    def transform(self, X: np.ndarray) -> np.ndarray:
        return check_features(np.asarray(self.model.encode(X), dtype=np.float32), "latent codes")

    def inverse_transform(self, F: np.ndarray, shape: tuple[int, ...]) -> np.ndarray:
        if not callable(getattr(self.model, "decode", None)):
            raise ConfigError(f"{type(self.model).__name__} has no decode(Z); k-Same in latent space needs one")
        return np.asarray(self.model.decode(F), dtype=np.float32).reshape((len(F), *shape))


def _dlib_models() -> Path:
    spec = importlib.util.find_spec("face_recognition_models")  # found on disk, never imported
    if spec is None or not spec.submodule_search_locations:
        raise ConfigError("dlib descriptors need the face-recognition-models package installed")
    return Path(list(spec.submodule_search_locations)[0]) / "models"


class DlibFeatures:
    """dlib's 128-d ResNet face descriptors of aligned face crops (the whole image is the face box).

    For real faces; ~80 ms per face on this CPU. Images are upscaled to ``size`` pixels first.
    """

    def __init__(self, size: int = 150) -> None:
        self.size = size
        self._sp = self._rec = None

    def transform(self, X: np.ndarray) -> np.ndarray:
        import cv2
        import dlib

        if self._sp is None:
            models = _dlib_models()
            self._sp = dlib.shape_predictor(str(models / "shape_predictor_5_face_landmarks.dat"))
            self._rec = dlib.face_recognition_model_v1(str(models / "dlib_face_recognition_resnet_model_v1.dat"))
        out = np.empty((len(X), 128), dtype=np.float32)
        for i, img in enumerate(np.asarray(X)):
            rgb = np.repeat(img, 3, axis=0) if img.shape[0] == 1 else img
            rgb = np.ascontiguousarray((np.transpose(rgb, (1, 2, 0)) * 255).round().astype(np.uint8))
            rgb = cv2.resize(rgb, (self.size, self.size), interpolation=cv2.INTER_LINEAR)
            box = dlib.rectangle(0, 0, self.size - 1, self.size - 1)
            out[i] = np.asarray(self._rec.compute_face_descriptor(rgb, self._sp(rgb, box)), dtype=np.float32)
        return out


def _image_batches(path: str | Path, batch_rows: int | None) -> Iterator[np.ndarray]:
    from data_contracts import IMAGES_SCHEMA, iter_batches
    from deid.imageio import images_to_array

    for t in iter_batches(path, IMAGES_SCHEMA, columns=["image"], batch_size=batch_rows):
        yield images_to_array(t.column("image"))


def table_features(path: str | Path, extractor: FeatureExtractor, *, batch_rows: int | None = 4096) -> np.ndarray:
    """Features ``(N, D)`` of an ``images`` table, decoded and extracted one batch at a time."""
    parts = [np.asarray(extractor.transform(X), dtype=np.float32) for X in _image_batches(path, batch_rows)]
    if not parts:
        raise MethodError(f"{path}: the images table is empty; nothing to extract features from")
    return np.concatenate(parts)
