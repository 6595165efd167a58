"""The substitution step: outputs are exactly real training images of the target identity."""

from __future__ import annotations

import numpy as np
import pytest

from deid.errors import MethodError
from deid.methods import get_method
from deid.methods.substitution import nearest_in_bank


def _data(n=40, seed=0):
    rng = np.random.default_rng(seed)
    X = rng.random((n, 1, 16, 16), dtype=np.float32)
    ident = np.array([f"p{i % 4}" for i in range(n)], dtype=object)
    return X, ident


def test_outputs_are_training_images_of_the_target():
    X, ident = _data()
    m = get_method("substitution", target_identity="p2").fit(X, ident)
    bank = X[ident == "p2"]
    rng = np.random.default_rng(1)
    Q = rng.random((25, 1, 16, 16), dtype=np.float32)
    Y = m.transform(Q)
    flat = bank.reshape(len(bank), -1)
    for y in Y:
        assert (np.abs(flat - y.reshape(1, -1)).max(1) == 0).any(), "output is not a stored target image"
    assert not any((np.abs(X[ident != "p2"].reshape(30, -1) - y.reshape(1, -1)).max(1) == 0).any() for y in Y)


def test_picks_the_pixel_nearest_image():
    X, ident = _data()
    m = get_method("substitution", target_identity="p1").fit(X, ident)
    bank = X[ident == "p1"]
    # a slightly perturbed copy of bank image 3 must map back to it
    q = np.clip(bank[3:4] + 0.01, 0, 1)
    np.testing.assert_array_equal(m.transform(q)[0], bank[3])
    rng = np.random.default_rng(2)
    Q = rng.random((30, 1, 16, 16), dtype=np.float32)
    brute = ((Q.reshape(30, 1, -1) - bank.reshape(1, len(bank), -1)) ** 2).sum(2).argmin(1)
    np.testing.assert_array_equal(nearest_in_bank(bank, Q), brute)


def test_target_identity_is_required_and_must_exist():
    X, ident = _data()
    with pytest.raises(MethodError, match="consenting or artificial"):
        get_method("substitution").fit(X, ident)
    with pytest.raises(MethodError, match="no training images"):
        get_method("substitution", target_identity="nobody").fit(X, ident)
    with pytest.raises(MethodError, match="identity labels"):
        get_method("substitution", target_identity="p0").fit(X)
