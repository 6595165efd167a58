"""Autoencoders, post-processing nets, the training loop and Parquet streaming."""

from __future__ import annotations

import numpy as np
import pytest
import torch

from deid.errors import ConfigError
from deid.models.autoencoder import (ConvAutoencoder, Deblurrer, FCAutoencoder, Smoother, from_net, gaussian_blur,
                                     iter_image_batches, predict, to_net, train_regression)


pytestmark = pytest.mark.usefixtures("torch_one_thread")


def _blobs(n: int = 96, size: int = 16, seed: int = 0) -> np.ndarray:
    """Smooth random faces-ish images: a few Gaussian blobs each, ``(n, 1, size, size)`` in [0, 1]."""
    rng = np.random.default_rng(seed)
    yy, xx = np.mgrid[0:size, 0:size] / size
    out = np.zeros((n, 1, size, size), np.float32)
    for i in range(n):
        for _ in range(3):
            cy, cx, s, a = rng.uniform(0.2, 0.8), rng.uniform(0.2, 0.8), rng.uniform(0.08, 0.2), rng.uniform(0.3, 0.7)
            out[i, 0] += a * np.exp(-((yy - cy) ** 2 + (xx - cx) ** 2) / (2 * s * s))
    return np.clip(out, 0, 1)


@pytest.mark.parametrize("size", [8, 16, 32])
def test_shapes_of_both_autoencoders(size):
    x = torch.rand(3, 1, size, size)
    fc = FCAutoencoder(1, size, [64, 32])
    assert fc.encode(x).shape == (3, 32) and fc(x).shape == x.shape
    conv = ConvAutoencoder(1, size, width=4, code_channels=8).eval()
    with torch.no_grad():
        assert conv.encode(x).shape == (3, 8, 2, 2) and conv(x).shape == x.shape
        assert float(conv(x).min()) >= 0 and float(conv(x).max()) <= 1


def test_paper_architectures_have_the_paper_codes():
    fc = FCAutoencoder(1, 64)  # 4096-1024-768-512
    assert [m.out_features for m in fc.encoder if isinstance(m, torch.nn.Linear)] == [1024, 768, 512]
    assert fc.encoder[1].in_features == 4096
    assert ConvAutoencoder(1, 64).code_shape == (256, 2, 2)


def test_conv_autoencoder_refuses_sizes_it_cannot_pool():
    with pytest.raises(ConfigError, match="power of two"):
        ConvAutoencoder(1, 50)


def test_reconstruction_error_drops_during_training():
    X = _blobs()
    torch.manual_seed(0)
    for ae in (FCAutoencoder(1, 16, [128, 32]), ConvAutoencoder(1, 16, width=8, code_channels=16)):
        hist = train_regression(ae, ae.parameters(), X, epochs=15, batch_size=16, lr=2e-3, modules=[ae])
        assert hist[-1] < 0.5 * hist[0], hist
        rec = predict(ae, X)
        assert rec.shape == X.shape and float(((rec - X) ** 2).mean()) < hist[0]


def test_deblurrer_learns_to_undo_blur():
    X = _blobs(64, 16)
    torch.manual_seed(0)
    db = Deblurrer(1, 8)
    blurred = gaussian_blur(torch.from_numpy(X), 1.0).numpy()
    before = float(((predict(db, blurred) - X) ** 2).mean())
    train_regression(db, db.parameters(), X, epochs=20, batch_size=16, lr=2e-3, modules=[db],
                     input_fn=lambda x, g: gaussian_blur(x, 1.0))
    after = float(((predict(db, blurred) - X) ** 2).mean())
    assert after < before and after < float(((blurred - X) ** 2).mean())


def test_smoother_and_blur_keep_shape_and_range():
    x = torch.rand(2, 1, 15, 15)
    assert Smoother(1, 4)(x).shape == x.shape
    y = gaussian_blur(x, torch.tensor([0.5, 2.0]))
    assert y.shape == x.shape and float(y[1].std()) < float(y[0].std()) < float(x[0].std())


def test_resize_in_and_out_of_the_network():
    x = torch.rand(2, 1, 50, 50)
    assert to_net(x, 64).shape == (2, 1, 64, 64) and to_net(x, 50) is x
    back = from_net(to_net(x, 32), (50, 50))
    assert back.shape == x.shape and float(back.min()) >= 0 and float(back.max()) <= 1


def test_training_is_deterministic_under_a_seed():
    X = _blobs(32, 8)
    outs = []
    for _ in range(2):
        torch.manual_seed(3)
        ae = FCAutoencoder(1, 8, [16])
        train_regression(ae, ae.parameters(), X, epochs=2, batch_size=8, seed=3, modules=[ae])
        outs.append(predict(ae, X))
    np.testing.assert_array_equal(outs[0], outs[1])


def test_streams_a_parquet_table_by_row_group(ferg_images):
    from data_contracts import count_rows

    seen, ids = 0, set()
    for X, rows in iter_image_batches(ferg_images, batch_size=50):
        assert X.dtype == torch.float32 and X.shape[1:] == (1, 32, 32) and len(X) == rows.num_rows <= 50
        assert "image" not in rows.column_names
        seen += len(X)
        ids.update(rows.column("image_id").to_pylist())
    assert seen == count_rows(ferg_images) == len(ids)
    train = sum(len(X) for X, _ in iter_image_batches(ferg_images, splits=("train",)))
    assert 0 < train < seen
