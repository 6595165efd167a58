"""Attackers beyond pixels: fisherfaces and dlib's pretrained descriptor, each against a case whose answer is known."""

from __future__ import annotations

from pathlib import Path

import numpy as np
import pytest
import torch

from deid.data import ImageSet
from deid.evaluation.attacker_registry import get_attacker
from deid.evaluation.attackers import AttackerConfig, train_attackers
from deid.evaluation.audit import ORIGINAL, AuditConfig, audit

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
