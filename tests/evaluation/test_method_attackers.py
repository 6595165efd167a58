"""Attackers beyond pixels: fisherfaces, the cluster-exclusion and same-label linkage attackers that know the
method, and dlib's pretrained descriptor; each against a case whose answer is known."""

from __future__ import annotations

from pathlib import Path

import numpy as np
import pytest
import torch

from deid.data import ImageSet
from deid.evaluation.attacker_registry import get_attacker
from deid.evaluation.attackers import AttackerConfig, Gallery, train_attackers
from deid.evaluation.audit import ORIGINAL, AuditConfig, audit
from deid.evaluation.gates import privacy_checks
from deid.methods import get_method

PIXEL_POOL = ["linear", "knn-pixels", "knn-hog", "hog-svm", "fisher"]
CHEAP = dict(cnn_epochs=1, cnn_width=4, cnn_min_steps=0, cnn_augment=False, pca_components=16, linkage_repeats=1,
             unseen_attributes=[])


def _smooth(rng: np.random.Generator, n: int, size: int) -> np.ndarray:
    """``n`` smooth random ``(1, size, size)`` patterns in [0, 1]."""
    low = torch.from_numpy(rng.random((n, 1, 6, 6)).astype(np.float32))
    return torch.nn.functional.interpolate(low, size=size, mode="bilinear").numpy()


def _labelled_faces(n_ids: int = 10, n_expr: int = 2, per: int = 12, size: int = 24, seed: int = 0) -> ImageSet:
    """``n_ids`` identities × ``n_expr`` expressions × ``per`` images: a smooth identity template, an expression
    pattern and noise; every fourth image of a cell is a test image, one a validation image."""
    rng = np.random.default_rng(seed)
    base, expr = _smooth(rng, n_ids, size), _smooth(rng, n_expr, size)
    ident = np.repeat(np.arange(n_ids), n_expr * per)
    ex = np.tile(np.repeat(np.arange(n_expr), per), n_ids)
    X = 0.1 + 0.5 * base[ident] + 0.3 * expr[ex] + 0.05 * rng.standard_normal((len(ident), 1, size, size))
    split = np.array(["train", "train", "val", "test"] * (len(ident) // 4), dtype=object)
    return ImageSet(np.clip(X, 0, 1).astype(np.float32), np.array([f"i{i}" for i in range(len(ident))], dtype=object),
                    split, np.array([f"p{i}" for i in ident], dtype=object),
                    np.array([f"e{e}" for e in ex], dtype=object))


def _signature_set(n_per: int, seed: int, n_ids: int = 8, size: int = 24, n_nuisance: int = 6):
    """Identity as a faint linear pixel signature under a strong per-image nuisance (a random mix of a few
    fixed patterns, as lighting is) and pixel noise: nearest neighbours see the nuisance, a discriminant sees
    through it."""
    fixed = np.random.default_rng(0)
    signature = fixed.standard_normal((n_ids, size * size))
    nuisance = fixed.standard_normal((n_nuisance, size * size))
    rng = np.random.default_rng(seed)
    ident = np.repeat(np.arange(n_ids), n_per)
    X = (0.5 + 0.02 * signature[ident] + 0.1 * rng.standard_normal((len(ident), n_nuisance)) @ nuisance
         + 0.02 * rng.standard_normal((len(ident), size * size)))
    return (np.clip(X, 0, 1).reshape(-1, 1, size, size).astype(np.float32),
            np.array([f"p{i}" for i in ident], dtype=object))


def test_fisherfaces_see_a_linear_identity_signature_through_nuisance_that_nearest_neighbours_do_not():
    Xtr, ytr = _signature_set(20, seed=1)
    Xte, yte = _signature_set(10, seed=2)
    r = train_attackers(Xtr, ytr, Xte, yte, label="identity",
                        cfg=AttackerConfig(attackers=("fisher", "knn-pixels"), pca_components=16))
    assert r.accuracy["fisher"] >= r.accuracy["knn-pixels"]
    assert r.accuracy["fisher"] >= 0.9 > 2 * r.chance  # chance is 1/8
    fisher = get_attacker("fisher").fit(Xtr, ytr)
    assert fisher.pca_.k == min(256, len(ytr) - 8)  # at most N − classes components
    assert fisher.features(Xte).shape == (len(yte), 7)  # classes − 1 discriminant coordinates


@pytest.fixture(scope="module")
def ksame_audit():
    """k-Same-Select with k = the number of identities (10), audited by the pixel pool and the method-aware
    attackers."""
    torch.set_num_threads(1)
    s = _labelled_faces(per=24, size=16)  # 120 test images: a zero's upper bound is under chance − 5 points
    train = s.split == "train"
    m = get_method("ksame-select", k=10, n_components=8).fit(s.X[train], s.identity[train], s.label[train])
    out = ImageSet(m.transform(s.X, s.identity, s.label), s.image_id, s.split, s.identity, s.label)
    cfg = AuditConfig(attackers=[*PIXEL_POOL, "exclusion", "label-linkage"], **CHEAP)
    return audit(s, {"ksame-select": out}, cfg, dataset="toy")


@pytest.mark.slow  # the k-Same-Select audit: ~15 s
def test_the_pixel_pool_reads_ksame_select_with_k_identities_below_chance(ksame_audit):
    """Today's wrong answer: each output stands in training for the identities of its cluster, so every
    pixel attacker names one of them, which the test image's identity never is."""
    m = ksame_audit.methods["ksame-select"].metrics
    worst_pixel = max(m[f"identity_acc_{a}"] for a in PIXEL_POOL)
    assert worst_pixel < m["identity_chance_min"] / 2  # chance is 10 %
    failed = [g for g, v, op, t, _ in privacy_checks(m, 0.05) if op == ">=" and not v >= t]
    assert {f"identity_acc_{a}_hi" for a in PIXEL_POOL} & set(failed)  # the two-sided gate's first line


@pytest.mark.slow  # the k-Same-Select audit: ~15 s
def test_the_exclusion_attacker_reads_ksame_select_well_above_chance(ksame_audit):
    m = ksame_audit.methods["ksame-select"].metrics
    assert m["identity_acc_exclusion_lo"] > m["identity_chance"]  # significantly above chance, not below
    assert m["identity_acc_exclusion"] >= 2 * m["identity_chance"]
    assert m["identity_acc_worst"] == m["identity_acc_exclusion"]
    assert any(g.startswith("identity_acc_worst") and op == "<=" and not v <= t  # the gate's above-chance side
               for g, v, op, t, _ in privacy_checks(m, 0.05))


@pytest.mark.slow  # the k-Same-Select audit: ~15 s
def test_the_exclusion_attacker_is_the_linear_one_where_outputs_are_per_image(ksame_audit):
    for row in (ORIGINAL, "blackout"):  # no output shared by two identities: nothing to exclude
        m = ksame_audit.methods[row].metrics
        assert m["identity_acc_exclusion"] == m["identity_acc_linear"], row
    # a photo repeated under one identity is not a cluster: its twin is not excluded
    X, y = _labelled_faces(n_ids=3, per=4).X[:24], np.repeat(["a", "b", "c"], 8).astype(object)
    X = np.concatenate([X, X[:8]])  # a's images twice
    att = get_attacker("exclusion", AttackerConfig(pca_components=8)).fit(X, np.r_[y, y[:8]])
    assert not att.exclusive_ and (att.predict(X[:8]) == "a").all()


def test_the_label_linkage_attacker_matches_originals_of_the_published_label_only():
    """The gallery holds, under label "b", an exact copy of each probe filed under the wrong identity, and under
    label "a" a noisy original with the right one: probes published as "a" are named right only when the
    match keeps to their label."""
    s = _labelled_faces(n_ids=6, n_expr=1, per=8)
    probes, ids = s.X[:24], s.identity[:24]
    rng = np.random.default_rng(3)
    noisy = np.clip(probes + 0.03 * rng.standard_normal(probes.shape), 0, 1).astype(np.float32)
    wrong = np.roll(ids, 8)  # the next identity for every copy
    gallery = Gallery(np.concatenate([noisy, probes]), np.r_[["a"] * 24, ["b"] * 24].astype(object),
                      np.array(["a"] * 24, dtype=object))
    y_gallery = np.r_[ids, wrong]
    blank = np.zeros_like(gallery.originals)  # the outputs of the gallery's rows carry nothing
    cfg = AttackerConfig(attackers=("label-linkage", "knn-hog"))
    r = train_attackers(blank, y_gallery, probes, ids, label="identity", cfg=cfg, gallery=gallery)
    assert r.accuracy["label-linkage"] == 1.0 and r.accuracy["knn-hog"] <= r.chance
    unlabelled = Gallery(gallery.originals)  # no published label: the exact copies win
    r = train_attackers(blank, y_gallery, probes, ids, label="identity", cfg=cfg, gallery=unlabelled)
    assert r.accuracy["label-linkage"] == 0.0


@pytest.mark.slow  # the k-Same-Select audit: ~15 s
def test_the_audit_gives_label_linkage_the_training_originals_only(ksame_audit):
    """On the original data a gallery holding the test image itself would name every test image; the
    training originals leave this noisy set short of that."""
    o = ksame_audit.methods[ORIGINAL].metrics
    assert 0.5 < o["identity_acc_label-linkage"] < 1.0
    assert "tstr_label-linkage" not in ksame_audit.methods["ksame-select"].metrics  # it never trains on outputs


def test_label_linkage_with_folds_uses_each_folds_training_originals():
    torch.set_num_threads(1)
    s = _labelled_faces(n_ids=4, per=6)
    cfg = AuditConfig(attackers=["label-linkage", "knn-hog"], folds=3, **CHEAP)
    o = audit(s, {}, cfg, dataset="toy").methods[ORIGINAL].metrics
    assert o["n_eval"] == len(s) and 0.5 < o["identity_acc_label-linkage"] < 1.0


# -- dlib's descriptor ---------------------------------------------------------------------------------------

def test_the_descriptor_attacker_describes_images_without_a_face(dlib_models):
    from deid.evaluation.descriptor_attacker import descriptors_of

    flat = np.full((2, 1, 32, 32), 0.5, np.float32)
    flat[1] = 0.2
    d = descriptors_of(flat)
    assert d.shape == (2, 128) and np.isfinite(d).all() and np.abs(d).sum(1).min() > 0
    assert not np.allclose(d[0], d[1])  # the whole image was described, not a placeholder


@pytest.mark.slow
def test_the_descriptor_attacker_joins_the_pool_where_the_dlib_linkage_runs(tmp_path, dlib_models):
    torch.set_num_threads(1)
    s = _labelled_faces(n_ids=4, per=4, size=32)
    cfg = dict(attackers=["linear"], **CHEAP)
    off = audit(s, {}, AuditConfig(face_metrics="off", **cfg)).methods[ORIGINAL].metrics
    on = audit(s, {}, AuditConfig(face_metrics="on", **cfg), descriptor_cache=tmp_path).methods[ORIGINAL].metrics
    assert "identity_acc_dlib-descriptor" not in off and "identity_acc_dlib-descriptor" in on
    assert "linkage_dlib_rank1" in on and any(tmp_path.rglob("*.npy"))  # descriptors shared through the cache


def _jaffe(jaffe_dir: Path, size: int = 96):
    """JAFFE's 213 photos, centre-cropped to the face and grey at ``size``; identity from the file name."""
    import cv2

    files = sorted(Path(jaffe_dir).glob("*.tiff"))
    X = []
    for f in files:
        img = cv2.imread(str(f), cv2.IMREAD_GRAYSCALE)
        h, w = img.shape
        c = img[h // 8: h - h // 16, w // 8: w - w // 8]
        X.append(cv2.resize(c, (size, size), interpolation=cv2.INTER_AREA))
    X = (np.stack(X)[:, None].astype(np.float32) / 255.0)
    return X, np.array([f.name.split(".")[0] for f in files], dtype=object)


@pytest.mark.slow
@pytest.mark.jaffe
def test_the_descriptor_attacker_recognises_real_faces(jaffe_dir, dlib_models):
    X, y = _jaffe(jaffe_dir)
    test = np.arange(len(y)) % 3 == 0
    r = train_attackers(X[~test], y[~test], X[test], y[test], label="identity",
                        cfg=AttackerConfig(attackers=("dlib-descriptor", "knn-pixels")))
    assert r.accuracy["dlib-descriptor"] >= 0.9 > 5 * r.chance  # 10 people
    assert r.accuracy["dlib-descriptor"] >= r.accuracy["knn-pixels"] - 0.05
