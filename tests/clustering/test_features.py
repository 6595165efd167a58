"""Batched features: PCA in memory vs incremental, features streamed from an images table, dlib."""

from __future__ import annotations

import numpy as np
import pytest

from deid.clustering.features import DlibFeatures, LatentFeatures, PCAFeatures, PixelFeatures, table_features
from deid.errors import ConfigError


def _subspace_gap(a: np.ndarray, b: np.ndarray) -> float:
    """1 − smallest cosine between two row subspaces (0 when they are the same)."""
    s = np.linalg.svd(a @ b.T, compute_uv=False)
    return float(1 - s.min())


def test_pca_batches_match_in_memory():
    rng = np.random.default_rng(0)
    basis = rng.standard_normal((4, 64))
    X = (rng.standard_normal((600, 4)) * [5, 4, 3, 2]) @ basis + 0.01 * rng.standard_normal((600, 64))
    X = ((X - X.min()) / (X.max() - X.min())).astype(np.float32).reshape(600, 1, 8, 8)
    full = PCAFeatures(4).fit(X)
    inc = PCAFeatures(4).fit_batches(X[i:i + 100] for i in range(0, 600, 100))
    assert _subspace_gap(full.components_, inc.components_) < 1e-3
    Z = full.transform(X)
    assert Z.shape == (600, 4)
    np.testing.assert_allclose(full.inverse_transform(Z, (1, 8, 8)), X, atol=0.01)


def test_table_features_stream_the_images_table(ferg_images):
    from deid.data import load_image_set

    data = load_image_set(ferg_images)
    F = table_features(ferg_images, PixelFeatures(), batch_rows=50)
    assert F.shape == (len(data), 32 * 32)
    np.testing.assert_array_equal(np.sort(F.sum(1)), np.sort(data.X.reshape(len(data), -1).sum(1)))


def test_latent_seam_needs_encode():
    class Enc:
        def encode(self, X):
            return X.reshape(len(X), -1)[:, :3]

    X = np.zeros((2, 1, 4, 4), np.float32)
    assert LatentFeatures(Enc()).transform(X).shape == (2, 3)
    with pytest.raises(ConfigError, match="encode"):
        LatentFeatures(object())
    with pytest.raises(ConfigError, match="decode"):
        LatentFeatures(Enc()).inverse_transform(np.zeros((2, 3)), (1, 4, 4))


def test_dlib_descriptors_are_128_d(ferg_images):
    from deid.data import load_image_set

    X = load_image_set(ferg_images).X[:2]
    F = DlibFeatures().transform(X)
    assert F.shape == (2, 128) and np.isfinite(F).all() and not np.allclose(F[0], F[1])
