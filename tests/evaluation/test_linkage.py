from __future__ import annotations

import numpy as np
import pytest

from deid.evaluation.fidelity import fidelity
from deid.evaluation.linkage import cmc_curve, linkage


def test_cmc_known_answer():
    gallery = np.array([[1, 0], [0, 1], [-1, 0]], float)
    gid = np.array(["a", "b", "c"])
    probes = np.array([[0.9, 0.1], [0.9, 0.2], [-0.8, -0.1]])
    pid = np.array(["a", "b", "c"])  # the second probe looks like 'a' first, 'b' second
    curve = cmc_curve(gallery, gid, probes, pid)
    np.testing.assert_allclose(curve, [2 / 3, 1.0, 1.0])


def test_linkage_of_identical_features_is_perfect_and_of_noise_near_chance():
    rng = np.random.default_rng(0)
    ids = np.repeat(np.arange(10), 20)
    centres = rng.normal(size=(10, 16))
    feats = centres[ids] + 0.05 * rng.normal(size=(200, 16))
    assert linkage(feats, feats, ids, repeats=3).rank1 == 1.0
    noise = linkage(feats, rng.normal(size=(200, 16)), ids, repeats=5)
    assert noise.rank1 < 0.3 and noise.chance_rank1 == pytest.approx(0.1)


def test_fidelity_identical_and_different():
    x = np.random.default_rng(0).random((3, 1, 16, 16)).astype(np.float32)
    assert fidelity(x, x) == {"ssim": pytest.approx(1.0), "psnr": 100.0}
    f = fidelity(x, np.zeros_like(x))
    assert f["ssim"] < 0.1 and f["psnr"] < 10
