"""The Fréchet ratio against the closed form and known cases."""

from __future__ import annotations

import numpy as np
import pytest

from deid.evaluation.frechet import frechet_distance, frechet_from_moments, frechet_ratio


def test_two_gaussians_in_two_dimensions_match_the_closed_form():
    # diagonal covariances commute: tr (Σ₁^½ Σ₂ Σ₁^½)^½ = Σ √(a_i b_i) = 2 + 2, so d = ‖Δμ‖² + 5 + 5 − 8
    mu1, mu2 = np.array([0.0, 0.0]), np.array([3.0, -1.0])
    assert frechet_from_moments(mu1, np.diag([1.0, 4.0]), mu2, np.diag([4.0, 1.0])) == pytest.approx(10.0 + 2.0)
    # equal covariances: only the means count
    S = np.array([[2.0, 0.7], [0.7, 1.0]])
    assert frechet_from_moments(mu1, S, mu2, S) == pytest.approx(10.0, abs=1e-9)
    # a non-commuting pair against scipy's general matrix square root
    from scipy.linalg import sqrtm

    T = np.array([[1.0, -0.9], [-0.9, 3.0]])
    closed = 10.0 + np.trace(S) + np.trace(T) - 2 * np.trace(sqrtm(S @ T)).real
    assert frechet_from_moments(mu1, S, mu2, T) == pytest.approx(closed, rel=1e-9)
    # and from samples, the estimate converges to it
    rng = np.random.default_rng(0)
    a, b = rng.multivariate_normal(mu1, S, 200_000), rng.multivariate_normal(mu2, T, 200_000)
    assert frechet_distance(a, b) == pytest.approx(closed, rel=0.02)


def test_singular_covariances_give_a_finite_distance():
    rng = np.random.default_rng(1)
    a = rng.normal(size=(20, 128))  # fewer images than features, as on a small test split
    one = np.tile(a[:1], (20, 1))  # one output for every input: zero covariance
    d = frechet_distance(a, one)
    assert np.isfinite(d) and d > 0 and frechet_distance(a, a) == pytest.approx(0.0, abs=1e-8)


def test_unchanged_outputs_score_one_and_collapsed_ones_far_above():
    rng = np.random.default_rng(2)
    mix = rng.normal(size=(16, 16))
    f = rng.normal(size=(300, 16)) @ mix
    same = frechet_ratio(f, f)
    assert same["feature_frechet"] == pytest.approx(1.0, abs=1e-6) and same["feature_frechet_yardstick"] > 0
    assert frechet_ratio(f, np.zeros_like(f))["feature_frechet"] > 5
    fresh = rng.normal(size=(300, 16)) @ mix  # other faces of the same population
    assert frechet_ratio(f, fresh)["feature_frechet"] == pytest.approx(1.0, abs=0.25)
    assert frechet_ratio(f, 0.5 * f)["feature_frechet"] > 1.5  # shrunk towards the mean
    assert set(frechet_ratio(f, f, prefix="dlib_frechet")) == {"dlib_frechet", "dlib_frechet_yardstick"}
    assert frechet_ratio(f[:3], f[:3]) == {} and frechet_ratio(np.ones((10, 4)), f[:10, :4]) == {}
