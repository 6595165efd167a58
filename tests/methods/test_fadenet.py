"""FaDeNet: U-Net shapes, the paper's augmentation, and a critic that loses its identities."""

from __future__ import annotations

import numpy as np
import pytest
import torch

from deid.data import load_image_set
from deid.errors import MethodError
from deid.methods import DeidMethod, get_method
from deid.models.adversarial import random_affine, unit_normalise
from deid.models.unet import ConvAutoencoder, UNet
from toy_faces import templates


pytestmark = pytest.mark.usefixtures("torch_one_thread")


@pytest.mark.parametrize("size", [32, 50, 64, 37])
def test_networks_adapt_to_input_size(size):
    x = torch.rand(2, 1, size, size)
    unet = UNet(1, 1, width=4, depth=3)
    assert torch.equal(unet(x), x), "a residual U-Net must start at the identity map"
    assert UNet(3, 3, width=4, depth=2, residual=False)(torch.rand(2, 3, size, size)).shape == (2, 3, size, size)
    y = ConvAutoencoder(1, width=4, depth=2, latent=4)(x)
    assert y.shape == x.shape and y.min() >= 0 and y.max() <= 1


def test_augmentation_keeps_shape_and_flips():
    g = torch.Generator().manual_seed(0)
    x = torch.rand(4, 1, 20, 20)
    assert random_affine(x, g).shape == x.shape
    flipped = random_affine(x, g, flip=1.0, crop_pad=(0, 0), scale=(1, 1), rotate=0)
    torch.testing.assert_close(flipped, torch.flip(x, dims=[3]), atol=1e-5, rtol=0)
    same = random_affine(x, g, flip=0.0, crop_pad=(0, 0), scale=(1, 1), rotate=0)
    torch.testing.assert_close(same, x, atol=1e-5, rtol=0)
    xn, norm = unit_normalise(x)
    torch.testing.assert_close(xn.flatten(1).norm(dim=1), torch.ones(4))


@pytest.fixture(scope="module")
def ferg(ferg_images):
    return load_image_set(ferg_images)


@pytest.fixture(scope="module")
def fitted():
    torch.set_num_threads(1)
    X, ident = templates(24, seed=1)
    return get_method("fadenet", lam=0.3, epochs=4, critic_epochs=10, width=4, depth=2, critic_width=8,
                      batch_size=16).fit(X, ident)


def test_critic_loses_identity_on_transformed_images(fitted):
    chk = fitted.critic_check_
    assert chk["critic_acc_original"] > 0.8, chk  # the critic learned identities at all
    assert chk["critic_acc_deid"] < chk["critic_acc_original"] - 0.3, chk
    X, ident = templates(10, seed=2)  # unseen images of the same identities
    acc_x = np.mean(fitted.critic_predict(X) == ident.astype(str))
    acc_y = np.mean(fitted.critic_predict(fitted.transform(X)) == ident.astype(str))
    assert acc_x > 0.8 and acc_y < acc_x - 0.3, (acc_x, acc_y)


def test_history_records_every_step_and_validation(fitted):
    steps = [h for h in fitted.history_ if h["phase"] == "transformer"]
    vals = [h for h in fitted.history_ if h["phase"] == "val"]
    assert steps and vals and [h for h in fitted.history_ if h["phase"] == "critic"]
    assert all({"loss", "pixel", "ce", "step"} <= set(h) for h in steps)
    assert all(np.isfinite(h["loss"]) for h in steps)
    assert len({h["step"] for h in steps}) == len(steps)


def test_critic_features_survive_save_load(fitted, ferg, tmp_path):
    X = ferg.X[:10]
    fitted.save(tmp_path / "m")
    back = DeidMethod.load(tmp_path / "m")
    np.testing.assert_allclose(back.critic_features(X), fitted.critic_features(X), atol=1e-5)
    assert back.critic_features(X).shape[0] == 10


def test_needs_identity_to_fit():
    X = np.random.default_rng(0).random((30, 1, 32, 32), dtype=np.float32)
    with pytest.raises(MethodError, match="identity"):
        get_method("fadenet", epochs=1, critic_epochs=1).fit(X)
