"""The Fréchet ratio against the closed form and known cases; faces kept on real faces."""

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


def test_faces_kept_counts_only_images_with_a_face_in_the_original():
    from deid.evaluation.facemetrics import faces_kept

    o = np.array([True, True, True, True, False])
    k = faces_kept(o, np.array([True, True, True, False, True]))
    assert k["faces_kept"] == 0.75 and k["faces_kept_lo"] < 0.75 < k["faces_kept_hi"]
    assert faces_kept(o, o)["faces_kept"] == 1.0 and faces_kept(o, o)["faces_kept_hi"] == 1.0
    assert faces_kept(np.zeros(3, bool), np.ones(3, bool)) == {}


@pytest.mark.slow
@pytest.mark.jaffe
def test_faces_kept_on_real_faces(jaffe_dir, dlib_models):
    """JAFFE read where it lies (nothing copied): dlib finds the faces of the originals themselves, and none
    in blackout's output."""
    from deid.evaluation.facemetrics import faces_found, faces_kept
    from deid.methods import get_method
    from tests.evaluation.test_method_attackers import _jaffe

    X, _ = _jaffe(jaffe_dir, size=64)
    X = X[::4]  # 54 photos: enough to know, cheap to detect
    orig = faces_found(X)
    assert orig.mean() > 0.9
    assert faces_kept(orig, faces_found(X))["faces_kept"] == 1.0
    black = get_method("blackout").fit(X[:1]).transform(X)
    assert faces_kept(orig, faces_found(black))["faces_kept"] == 0.0


@pytest.mark.slow
@pytest.mark.jaffe
def test_the_audit_measures_realism_on_real_faces(jaffe_dir, dlib_models, tmp_path):
    """Wired into the audit on JAFFE: the originals and `none` keep every face and read 1 in dlib's Fréchet
    ratio too, blackout keeps none; every name written is in the metric table, as a face metric."""
    import torch

    from deid.data import ImageSet
    from deid.evaluation import metric_registry as reg
    from deid.evaluation.audit import ORIGINAL, AuditConfig, audit
    from tests.evaluation.test_method_attackers import _jaffe

    torch.set_num_threads(1)
    files = sorted(jaffe_dir.glob("*.tiff"))
    X, ident = _jaffe(jaffe_dir, size=64)
    expr = np.array([f.name.split(".")[1][:2] for f in files], dtype=object)
    split = np.array(["train", "train", "test"] * (len(files) // 3 + 1), dtype=object)[: len(files)]
    s = ImageSet(X, np.array([f.name for f in files], dtype=object), split, ident, expr)
    cfg = AuditConfig(attackers=["linear"], face_metrics="on", cnn_epochs=1, cnn_width=4, cnn_min_steps=0,
                      cnn_augment=False, pca_components=16, linkage_repeats=1, unseen_attributes=[])
    r = audit(s, {"none": s}, cfg, dataset="jaffe", descriptor_cache=tmp_path)
    o, n, b = (r.methods[k].metrics for k in (ORIGINAL, "none", "blackout"))
    assert o["faces_kept"] == n["faces_kept"] == 1.0 and b["faces_kept"] == 0.0 < b["faces_kept_hi"]
    assert o["faceness"] > 0.9 and o["faces_kept_lo"] > 0.9
    assert n["dlib_frechet"] == pytest.approx(1.0, abs=1e-6) and b["dlib_frechet"] > 3
    assert b["feature_frechet"] > n["feature_frechet"]
    face_only = reg.face_only_names()
    assert {"faces_kept", "faces_kept_lo", "dlib_frechet", "dlib_frechet_yardstick"} <= face_only
    assert "feature_frechet" not in face_only
    assert all(reg.metric(k) is not None for k in o), sorted(k for k in o if reg.metric(k) is None)
