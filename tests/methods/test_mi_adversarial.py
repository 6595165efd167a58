"""Mutual-information adversarial autoencoder: the eq. 11 surrogate, adversaries that learn,
the intertwined variant with substitution."""

from __future__ import annotations

import numpy as np
import pytest
import torch

from deid.errors import MethodError
from deid.methods import get_method
from deid.models.adversarial import mi_surrogate
from toy_faces import templates


pytestmark = pytest.mark.usefixtures("torch_one_thread")


def test_surrogate_is_zero_for_a_guessing_classifier_and_positive_for_a_good_one():
    z = torch.tensor([0, 0, 1, 2, 2, 2])
    p_hat = torch.bincount(z, minlength=3).float() / len(z)
    guess = torch.log(p_hat).expand(len(z), 3)  # q(ẑ|x̂) = p̂_Z for every sample
    mi, ce_obj, ce = mi_surrogate(guess, z, p_hat)
    assert float(mi) == pytest.approx(0.0, abs=1e-6)
    good = 6.0 * torch.nn.functional.one_hot(z, 3).float()
    mi, ce_obj, ce = mi_surrogate(good, z, p_hat)
    assert float(ce) < 0.1 < float(ce_obj) and float(mi) == pytest.approx(float(ce_obj - ce))


@pytest.fixture(scope="module")
def fitted():
    torch.set_num_threads(1)
    X, ident = templates(24, seed=1)
    m = get_method("mi-adversarial", target_identity="p3", substitute=True, lam=1.0, epochs=2, pretrain_epochs=2,
                   disc_pretrain_epochs=3, width=8, latent=8, disc_width=8, private_width=8, batch_size=16,
                   min_steps=0)
    return m.fit(X, ident), X, ident


def test_discriminator_and_private_branch_learn(fitted):
    m, _, _ = fitted
    chk = m.adversary_check_
    assert chk["disc_learned"] and chk["private_learned"], chk
    assert chk["disc_acc_pretrain_steps"] > 0.55 and chk["private_acc_pretrain_steps"] > 1 / 6 + 0.05


def test_substituted_outputs_are_training_images_of_the_target(fitted):
    m, X, ident = fitted
    Q, _ = templates(5, seed=7)
    Y = m.transform(Q)
    bank = X[ident == "p3"].reshape(-1, 32 * 32)
    assert all((np.abs(bank - y.reshape(1, -1)).max(1) == 0).any() for y in Y)


def test_history_logs_every_phase(fitted):
    m, _, _ = fitted
    phases = {h["phase"] for h in m.history_}
    assert {"pretrain", "disc_pretrain/adversary", "disc_pretrain/autoencoder", "adversarial/adversary",
            "adversarial/autoencoder", "val"} <= phases
    ae = [h for h in m.history_ if h["phase"] == "adversarial/autoencoder"]
    assert all(np.isfinite([h["loss"], h["adv_bce"], h["mi"]]).all() for h in ae)


def test_substitute_needs_a_target_identity():
    X, ident = templates(4, seed=0)
    with pytest.raises(MethodError, match="target_identity"):
        get_method("mi-adversarial", substitute=True, epochs=1).fit(X, ident)
    with pytest.raises(MethodError, match="no training images"):
        get_method("mi-adversarial", target_identity="nobody", epochs=1).fit(X, ident)
