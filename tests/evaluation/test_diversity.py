"""Output diversity: known answers for copies, collapsed outputs, shrunk spread and noise."""

from __future__ import annotations

import numpy as np
import pytest

from deid.evaluation.diversity import diversity_ratio


def _faces(n_groups: int = 3, per_group: int = 12, seed: int = 0):
    """Random ``(N, 1, 8, 8)`` images in [0, 1], ``per_group`` of each group label."""
    rng = np.random.default_rng(seed)
    X = rng.uniform(0.1, 0.9, size=(n_groups * per_group, 1, 8, 8)).astype(np.float32)
    groups = np.repeat(np.array([f"g{k}" for k in range(n_groups)], dtype=object), per_group)
    return X, groups


def _first_pixels(X):
    return np.asarray(X, dtype=np.float64).reshape(len(X), -1)[:, :5]


def test_outputs_equal_to_the_originals_keep_everything_exactly():
    X, g = _faces()
    r = diversity_ratio(X, X.copy(), g, features=_first_pixels)
    assert r == {"diversity_pixels": 1.0, "diversity_features": 1.0, "distinct_outputs": 1.0}


def test_one_output_per_group_has_no_diversity():
    X, g = _faces(n_groups=4, per_group=10)
    out = X.copy()
    for k in np.unique(g):
        out[g == k] = X[g == k].mean(axis=0)  # k-Same with k = every identity: one face per class
    r = diversity_ratio(X, out, g, features=_first_pixels)
    assert r["diversity_pixels"] == 0.0 and r["diversity_features"] == 0.0
    assert r["distinct_outputs"] == pytest.approx(4 / len(X))


def test_small_noise_keeps_the_ratio_near_one_and_shrinking_the_spread_scales_it():
    X, g = _faces()
    noisy = np.clip(X + np.random.default_rng(1).normal(0, 0.005, X.shape), 0, 1).astype(np.float32)
    assert diversity_ratio(X, noisy, g)["diversity_pixels"] == pytest.approx(1.0, abs=0.02)
    shrunk = X.copy()
    for k in np.unique(g):
        m = X[g == k].mean(axis=0)
        shrunk[g == k] = m + 0.5 * (X[g == k] - m)  # every within-group distance halves
    r = diversity_ratio(X, shrunk, g)
    assert r["diversity_pixels"] == pytest.approx(0.5, rel=1e-5)
    assert "diversity_features" not in r


def test_groups_are_weighted_by_pair_count():
    X, _ = _faces(n_groups=1, per_group=13)
    g = np.array(["big"] * 10 + ["small"] * 3, dtype=object)  # 45 pairs and 3 pairs
    out = X.copy()
    out[g == "small"] = X[g == "small"].mean(axis=0)  # ratio 0 in the small group, 1 in the big one
    assert diversity_ratio(X, out, g)["diversity_pixels"] == pytest.approx(45 / 48)


def test_features_are_measured_in_their_own_space():
    X, g = _faces()
    out = X.copy()
    out.reshape(len(X), -1)[:, :5] = 0.5  # the pixels the feature map reads are flattened
    r = diversity_ratio(X, out, g, features=_first_pixels)
    assert r["diversity_features"] == 0.0
    assert 0.8 < r["diversity_pixels"] < 1.0


def test_large_groups_are_sampled_with_a_seed_and_agree_with_all_pairs():
    X, g = _faces(n_groups=2, per_group=150)  # 11,175 pairs a group
    rng = np.random.default_rng(3)
    out = (X * rng.uniform(0.3, 1.0, size=(len(X), 1, 1, 1))).astype(np.float32)
    exact = diversity_ratio(X, out, g)["diversity_pixels"]
    a = diversity_ratio(X, out, g, max_pairs=2000, random_state=7)["diversity_pixels"]
    b = diversity_ratio(X, out, g, max_pairs=2000, random_state=7)["diversity_pixels"]
    c = diversity_ratio(X, out, g, max_pairs=2000, random_state=8)["diversity_pixels"]
    assert a == b and a != c
    assert a == pytest.approx(exact, rel=0.03)
    assert exact < 0.95


def test_uint8_and_float_images_are_compared_on_one_scale():
    X, g = _faces()
    X8 = np.rint(X * 255).astype(np.uint8)
    r = diversity_ratio(X8, X8.astype(np.float32) / 255, g)
    assert r["diversity_pixels"] == pytest.approx(1.0, abs=1e-6) and r["distinct_outputs"] == 1.0


def test_outputs_that_differ_below_one_grey_level_are_not_distinct():
    X, g = _faces(n_groups=1, per_group=4)
    out = np.repeat(np.rint(X[:1] * 255) / 255, 4, axis=0)  # on whole grey levels
    out[1] += 0.4 / 255  # rounds to the same uint8 image
    out[2] += 2.0 / 255
    assert diversity_ratio(X, out, g)["distinct_outputs"] == pytest.approx(2 / 4)


def test_nothing_to_measure_gives_nan_and_bad_shapes_raise():
    X, _ = _faces(n_groups=1, per_group=3)
    r = diversity_ratio(X, X, np.array(["a", "b", "c"], dtype=object))  # no group has two images
    assert np.isnan(r["diversity_pixels"]) and r["distinct_outputs"] == 1.0
    same = np.repeat(X[:1], 3, axis=0)
    assert np.isnan(diversity_ratio(same, X, np.array(["a"] * 3))["diversity_pixels"])  # originals do not vary
    with pytest.raises(ValueError, match="one row per image"):
        diversity_ratio(X, X[:2], np.array(["a"] * 3))
    with pytest.raises(ValueError, match="groups must have shape"):
        diversity_ratio(X, X, np.array(["a"] * 2))


def test_embeddings_computed_beforehand_give_the_same_figures_as_the_feature_function():
    X, g = _faces()
    rng = np.random.default_rng(3)
    out = np.clip(X + rng.normal(0, 0.05, X.shape), 0, 1)
    with_fn = diversity_ratio(X, out, g, features=_first_pixels, max_pairs=50, random_state=1)
    given = diversity_ratio(X, out, g, embeddings=(_first_pixels(X), _first_pixels(out)), max_pairs=50, random_state=1)
    assert given == pytest.approx(with_fn)
    assert given["diversity_features"] != pytest.approx(
        diversity_ratio(X, out, g, embeddings=(_first_pixels(X), _first_pixels(X)), max_pairs=50)["diversity_features"])
    with pytest.raises(ValueError, match="one row per image"):
        diversity_ratio(X, out, g, embeddings=(_first_pixels(X)[:3], _first_pixels(out)))
