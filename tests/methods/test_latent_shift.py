"""Autoencoder latent shift (Nousi et al.): target rules, encoder fine-tuning, variants."""

from __future__ import annotations

import copy

import numpy as np
import pytest
import torch

from deid.errors import ConfigError, MethodError
from deid.methods import get_method
from deid.methods.latent_shift import (grid_neighbour_targets, kmeans_targets, mean_neighbour_targets,
                                       supervised_targets)

SMALL = dict(hidden="128-32", image_size=16, width=8, code_channels=16, ae_epochs=12, finetune_epochs=15,
             batch_size=16, lr=2e-3, finetune_lr=1e-3, n_clusters=4, n_neighbors=3)


pytestmark = pytest.mark.usefixtures("torch_one_thread")


def _faces(n_id: int = 6, n_ex: int = 3, per: int = 4, size: int = 16, seed: int = 0):
    """Images whose left half carries identity and right half expression, ``(N, 1, size, size)``."""
    rng = np.random.default_rng(seed)
    id_pat = rng.random((n_id, size, size // 2))
    ex_pat = rng.random((n_ex, size, size // 2))
    X, ident, expr = [], [], []
    for i in range(n_id):
        for e in range(n_ex):
            for _ in range(per):
                img = np.concatenate([id_pat[i], ex_pat[e]], axis=1) * 0.8 + 0.2 * rng.random((size, size))
                X.append(img[None])
                ident.append(f"id{i}")
                expr.append(f"ex{e}")
    return np.asarray(X, np.float32), np.array(ident, object), np.array(expr, object)


def test_kmeans_targets_are_the_cluster_centres():
    rng = np.random.default_rng(0)
    centres = np.array([[0, 0], [10, 0], [0, 10]], np.float32)
    codes = np.concatenate([c + rng.normal(0, 0.1, (20, 2)) for c in centres]).astype(np.float32)
    t = kmeans_targets(codes, 3)
    assert len(np.unique(t, axis=0)) == 3
    for b in range(3):
        np.testing.assert_allclose(t[b * 20: (b + 1) * 20], codes[b * 20: (b + 1) * 20].mean(0)[None].repeat(20, 0),
                                   atol=1e-5)
    assert len(np.unique(kmeans_targets(codes, 100), axis=0)) == len(codes)  # K capped at N


def test_mean_neighbour_target_is_the_neighbour_closest_to_the_mean():
    rng = np.random.default_rng(1)
    codes = rng.normal(size=(40, 5)).astype(np.float32)
    n = 4
    t = mean_neighbour_targets(codes, n)
    mean = codes.mean(0)
    for i in range(len(codes)):
        d = ((codes - codes[i]) ** 2).sum(1)
        d[i] = np.inf
        nb = np.argsort(d)[:n]
        best = nb[((codes[nb] - mean) ** 2).sum(1).argmin()]
        np.testing.assert_array_equal(t[i], codes[best])
        assert not np.array_equal(t[i], codes[i])


def test_grid_target_is_each_cells_nth_neighbour():
    rng = np.random.default_rng(2)
    codes = rng.normal(size=(30, 6, 2, 2)).astype(np.float32)
    n = 5
    t = grid_neighbour_targets(codes, n)
    for r, c in [(0, 0), (1, 1), (0, 1)]:
        v = codes[:, :, r, c]
        for i in (0, 7, 29):
            d = ((v - v[i]) ** 2).sum(1)
            d[i] = np.inf
            np.testing.assert_array_equal(t[i, :, r, c], v[np.argsort(d)[n - 1]])
    with pytest.raises(MethodError, match="grid"):
        grid_neighbour_targets(codes.reshape(30, -1), 3)


def test_supervised_targets_attract_by_expression_and_repel_by_identity():
    rng = np.random.default_rng(3)
    n_id, n_ex = 5, 3
    ident = np.repeat(np.arange(n_id), n_ex * 3)
    expr = np.tile(np.repeat(np.arange(n_ex), 3), n_id)
    codes = (rng.normal(size=(n_id, 8))[ident] + rng.normal(size=(n_ex, 8))[expr]
             + 0.1 * rng.normal(size=(len(ident), 8))).astype(np.float32)
    z0 = supervised_targets(codes, ident, expr, alpha=0.6, beta=0.0, n_neighbors=50)
    z1 = supervised_targets(codes, ident, expr, alpha=0.6, beta=0.5, n_neighbors=50)
    for i in range(len(codes)):
        attract = codes[(expr == expr[i]) & (ident != ident[i])].mean(0)
        np.testing.assert_allclose(z0[i], 0.4 * codes[i] + 0.6 * attract, atol=1e-5)
        own = z0[(ident == ident[i]) & (np.arange(len(codes)) != i)].mean(0)
        assert np.linalg.norm(z1[i] - own) > np.linalg.norm(z0[i] - own)


def test_fine_tuned_encoder_moves_codes_towards_targets_and_freezes_the_decoder():
    X, ident, expr = _faces()
    base = get_method("latent-shift", target="none", **SMALL).fit(X)
    hist = base.history_["reconstruction"]
    assert hist[-1] < 0.7 * hist[0], hist
    dec = copy.deepcopy(base.ae_.decoder.state_dict())
    enc = copy.deepcopy(base.ae_.encoder.state_dict())
    m = copy.deepcopy(base)
    m.target = "kmeans"
    m.fine_tune(X)
    d = m.target_distance_
    assert d["after"] < 0.5 * d["before"], d
    for k, v in m.ae_.decoder.state_dict().items():
        torch.testing.assert_close(v, dec[k], rtol=0, atol=0)
    assert any(not torch.equal(v, enc[k]) for k, v in m.ae_.encoder.state_dict().items())
    assert np.abs(m.transform(X) - base.transform(X)).mean() > 1e-3


@pytest.mark.parametrize("arch,target", [("fc", "mean_neighbour"), ("conv", "grid_neighbour"),
                                         ("conv", "kmeans"), ("fc", "supervised")])
def test_every_variant_fits_and_shifts(arch, target):
    X, ident, expr = _faces(per=2)
    m = get_method("latent-shift", architecture=arch, target=target, alpha=0.8, **SMALL)
    Y = m.fit(X, ident, expr).transform(X)
    assert Y.shape == X.shape
    assert m.target_distance_["after"] < m.target_distance_["before"]
    assert m.code_shape_ == ([16, 2, 2] if arch == "conv" else [32])


def test_post_networks_are_trained_and_saved(tmp_path):
    from deid.methods import DeidMethod

    X, _, _ = _faces(per=2)
    m = get_method("latent-shift", deblur=True, smooth=True, post_epochs=2, **SMALL).fit(X)
    assert set(m.history_) == {"reconstruction", "finetune", "deblur", "smooth"}
    m.save(tmp_path / "m")
    assert {p.name for p in (tmp_path / "m").glob("*.pt")} == {"ae_.pt", "deblur_.pt", "smooth_.pt"}
    np.testing.assert_allclose(DeidMethod.load(tmp_path / "m").transform(X), m.transform(X), atol=1e-6)


def test_configuration_errors_name_the_problem():
    X, ident, expr = _faces(per=1)
    with pytest.raises(MethodError, match="needs identity and utility"):
        get_method("latent-shift", target="supervised", **SMALL).fit(X)
    with pytest.raises(ConfigError, match="needs architecture 'conv'"):
        get_method("latent-shift", target="grid_neighbour", **SMALL).fit(X)
    with pytest.raises(ConfigError, match="alpha"):
        get_method("latent-shift", alpha=1.5, **SMALL).fit(X)
    with pytest.raises(ConfigError, match="hidden"):
        get_method("latent-shift", hidden="big", **{k: v for k, v in SMALL.items() if k != "hidden"}).fit(X)


def test_runs_on_an_ingested_ferg_like_table(ferg_images):
    from deid.data import load_image_set

    s = load_image_set(ferg_images)
    tr, te = s.of_split("train", "val"), s.of_split("test")
    m = get_method("latent-shift", **{**SMALL, "image_size": 32}).fit(tr.X)
    Y = m.transform(te.X)
    assert Y.shape == te.X.shape
    assert m.history_["reconstruction"][-1] < 0.7 * m.history_["reconstruction"][0]


@pytest.mark.gpu
def test_trains_and_transforms_on_cuda_with_mixed_precision():
    X, _, _ = _faces(per=2)
    m = get_method("latent-shift", device="cuda", **SMALL).fit(X)
    assert next(m.ae_.parameters()).device.type == "cuda"
    Y = m.transform(X)
    assert Y.shape == X.shape and np.isfinite(Y).all()
    assert m.history_["reconstruction"][-1] < m.history_["reconstruction"][0]


def test_says_so_when_the_shift_never_happened():
    X, ident, expr = _faces(per=2)
    with pytest.warns(UserWarning, match="no latent shift"):
        m = get_method("latent-shift", target="kmeans", **{**SMALL, "finetune_epochs": 0}).fit(X)
    assert m.target_distance_["best_epoch"] == -1
