"""The attacker registry and pool: one protocol for every attacker, chance, the CNN's step floor."""

from __future__ import annotations

import dataclasses

import numpy as np
import pytest
import torch
from pydantic import ValidationError

from deid.errors import ConfigError
from deid.evaluation.attacker_registry import Attacker, available_attackers, get_attacker, register_attacker
from deid.evaluation.attackers import AttackerConfig, CNNAttacker, train_attackers
from deid.evaluation.audit import AUDIT_METRICS, AuditConfig
from deid.models import CNNClassifier
from deid.registry import RegistryError

BUILT_IN = ["cnn", "linear", "knn-pixels", "knn-hog", "hog-svm", "fisher", "exclusion", "label-linkage",
            "dlib-descriptor"]
TINY = AttackerConfig(cnn_epochs=2, cnn_width=8, cnn_min_steps=150, pca_components=8)


def _stripes(n_per: int, seed: int):
    """3 classes of 24×24 images: horizontal stripes, vertical stripes, a bright centre; plus noise.

    Each pattern is its own mirror image, so left-right flips keep the class.
    """
    r = np.random.default_rng(seed)
    i = np.arange(24)
    pats = np.stack([np.repeat((i // 3 % 2)[:, None], 24, 1), np.repeat((i // 3 % 2)[None, :], 24, 0),
                     ((np.abs(i - 11.5)[:, None] < 6) & (np.abs(i - 11.5)[None, :] < 6))]).astype(np.float32)
    y = np.repeat(np.arange(3), n_per)
    X = np.clip(0.2 + 0.6 * pats[y] + 0.1 * r.standard_normal((len(y), 24, 24)), 0, 1).astype(np.float32)
    return X[:, None], np.array([f"c{k}" for k in y], dtype=object)


def _faces(n_per: int, seed: int):
    """6 identities, each a smooth random 32×32 template plus noise (as tests/methods/toy_faces.py)."""
    base = np.random.default_rng(0).random((6, 1, 8, 8)).astype(np.float32)
    base = torch.nn.functional.interpolate(torch.from_numpy(base), size=32, mode="bilinear").numpy()
    ident = np.repeat(np.arange(6), n_per)
    noise = np.random.default_rng(seed).standard_normal((len(ident), 1, 32, 32))
    X = np.clip(0.2 + 0.6 * base[ident] + 0.08 * noise, 0, 1).astype(np.float32)
    return X, np.array([f"p{i}" for i in ident], dtype=object)


def test_the_built_in_attackers_are_registered_in_order():
    assert available_attackers()[:len(BUILT_IN)] == BUILT_IN


def test_the_registry_refuses_a_duplicate_name():
    with pytest.raises(RegistryError, match="'cnn' is already registered"):
        register_attacker("cnn")(type("Other", (), {}))
    assert get_attacker("cnn", TINY).__class__ is CNNAttacker  # the first one stays


def test_an_unknown_attacker_names_the_registered_ones():
    with pytest.raises(ConfigError, match=r"unknown attacker 'svm'.*knn-hog"):
        get_attacker("svm", TINY)
    X, y = _stripes(4, 0)
    with pytest.raises(ConfigError, match="unknown attacker 'svm'"):
        train_attackers(X, y, X, y, label="identity", cfg=dataclasses.replace(TINY, attackers=("linear", "svm")))


@pytest.mark.parametrize("name", [pytest.param(n, marks=pytest.mark.slow) if n == "dlib-descriptor" else n
                                  for n in BUILT_IN])
def test_every_attacker_satisfies_the_protocol_and_learns_a_separable_problem(name, request):
    torch.set_num_threads(1)
    if name == "dlib-descriptor":
        request.getfixturevalue("dlib_models")
    Xtr, ytr = _stripes(20, 0)
    Xte, yte = _stripes(10, 1)
    att = get_attacker(name, TINY)
    assert isinstance(att, Attacker) and att.name == name
    assert type(att).__doc__ and len(type(att).__doc__.strip().splitlines()) == 1
    assert att.fit(Xtr, ytr) is att
    pred = att.predict(Xte)
    assert pred.shape == (30,) and set(pred) <= set(ytr)
    assert (pred == yte).mean() >= 0.9  # chance is 1/3
    f = att.features(Xte)
    assert f.ndim == 2 and f.shape[0] == 30 and f.shape[1] >= 1 and np.isfinite(f).all()


def test_chance_is_the_majority_rate_of_an_unbalanced_test_split():
    Xtr, ytr = _stripes(10, 0)
    Xte, yte = _stripes(10, 1)
    keep = np.r_[0:6, 10:12, 20:22]  # 6 × c0, 2 × c1, 2 × c2
    r = train_attackers(Xtr, ytr, Xte[keep], yte[keep], label="identity",
                        cfg=dataclasses.replace(TINY, attackers=("linear", "knn-pixels")))
    assert r.chance == pytest.approx(0.6)  # not 1/3
    assert r.n_test == 10 and set(r.correct) == {"linear", "knn-pixels"}
    for a, acc in r.accuracy.items():
        assert r.correct[a] == round(acc * r.n_test) and r.confusion[a].sum() == 10
    assert r.worst == max(r.accuracy.values())


def test_identical_training_images_get_the_majority_class():
    Xtr, ytr = np.zeros((9, 1, 24, 24), np.float32), np.array(["a"] * 5 + ["b"] * 4, dtype=object)
    Xte, yte = np.zeros((4, 1, 24, 24), np.float32), np.array(["a", "b", "b", "b"], dtype=object)
    r = train_attackers(Xtr, ytr, Xte, yte, label="identity", cfg=dataclasses.replace(TINY, attackers=tuple(BUILT_IN)))
    assert all(v == 0.25 for v in r.accuracy.values())  # every attacker guesses "a"
    assert r.chance == 0.75


def test_a_pretrained_cnn_is_reused_only_with_the_same_hyperparameters():
    torch.set_num_threads(1)
    X, y = _stripes(8, 0)
    cfg = dataclasses.replace(TINY, attackers=("cnn",), cnn_min_steps=4)
    calls = []

    def spy(model):
        predict = model.predict
        model.predict = lambda Z: (calls.append(model), predict(Z))[1]
        return model

    same = spy(get_attacker("cnn", cfg).fit(X, y))
    other = spy(CNNClassifier(epochs=cfg.cnn_epochs, width=cfg.cnn_width, random_state=cfg.random_state).fit(X, y))
    train_attackers(X, y, X, y, label="identity", cfg=cfg, pretrained={"cnn": same})
    assert calls == [same]
    train_attackers(X, y, X, y, label="identity", cfg=cfg, pretrained={"cnn": other})  # no step floor, no flips
    assert calls == [same]


@pytest.mark.slow
def test_the_cnn_step_floor_learns_a_small_set_it_misses_without():
    torch.set_num_threads(1)
    Xtr, ytr = _faces(10, seed=1)  # 60 images, 6 identities: one batch per epoch
    Xte, yte = _faces(5, seed=2)
    base = AttackerConfig(cnn_epochs=3, cnn_width=8)
    short = get_attacker("cnn", dataclasses.replace(base, cnn_min_steps=0)).fit(Xtr, ytr)
    floor = get_attacker("cnn", dataclasses.replace(base, cnn_min_steps=150)).fit(Xtr, ytr)
    assert len(short.history_) == 3 and len(floor.history_) >= 75  # early stopping waits for half the steps
    assert (floor.predict(Xte) == yte).mean() >= 0.9
    assert (short.predict(Xte) == yte).mean() <= 0.5  # chance is 1/6


def test_audit_config_validates_attackers_and_metrics_follow_the_registry():
    with pytest.raises(ValidationError, match=r"attackers\.1[\s\S]*unknown attacker 'svm'.*hog-svm"):
        AuditConfig(attackers=["linear", "svm"])
    cfg = AuditConfig(attackers=["knn-hog", "linear"], cnn_min_steps=50, cnn_augment=False)
    acfg = cfg.attacker_config()
    assert acfg.attackers == ("knn-hog", "linear") and acfg.cnn_min_steps == 50 and not acfg.cnn_augment
    assert set(AuditConfig().attackers) <= set(available_attackers())
    for a in available_attackers():
        assert f"identity_acc_{a}" in AUDIT_METRICS and f"utility_acc_{a}" in AUDIT_METRICS
    for kept in ("identity_acc_cnn", "identity_acc_linear", "identity_acc_worst", "identity_chance",
                 "utility_acc_best", "utility_orig_clf_acc_cnn", "linkage_rank1", "seconds"):
        assert kept in AUDIT_METRICS
    assert len(set(AUDIT_METRICS)) == len(AUDIT_METRICS)
