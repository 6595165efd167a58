"""Usefulness measured on real faces (TSTR, TRTS), sharpness, and the two-sided privacy gate: each against
an output built to fool the audit as it was."""

from __future__ import annotations

import numpy as np
import pytest

from deid.data import ImageSet, load_image_set
from deid.evaluation.audit import ORIGINAL, AuditConfig, audit
from deid.evaluation.gates import GateConfig, judge, judge_audit
from deid.evaluation.transfer import sharpness_ratio, transfer_metrics, transfer_retention
from deid.methods import get_method
from deid.release_policy import ReleasePolicy, privacy_floor

FAST = AuditConfig(attackers=["hog-svm", "knn-hog"], cnn_epochs=3, cnn_width=8, cnn_min_steps=0, cnn_augment=False,
                   pca_components=16, linkage_repeats=1)


def _label_codes(s: ImageSet) -> ImageSet:
    """What a label-conditioned decoder can win the old audit with: every output a fixed random pattern per
    label (plus a little noise), nothing of a face. Trained and tested on such outputs, any classifier is
    perfect; trained on them, none reads a real face."""
    rng = np.random.default_rng(0)
    labels = sorted(set(s.label))
    codes = {lab: rng.random(s.X.shape[1:], dtype=np.float32) for lab in labels}
    X = np.stack([codes[e] for e in s.label]) * 0.9 + rng.random(s.X.shape, dtype=np.float32) * 0.1
    return ImageSet(X.astype(np.float32), s.image_id, s.split, s.identity, s.label)


@pytest.fixture(scope="module")
def result(ferg_images):
    s = load_image_set(ferg_images)
    none = get_method("none").fit(s.X[:1])
    outs = {"none": ImageSet(none.transform(s.X), s.image_id, s.split, s.identity, s.label),
            "label-codes": _label_codes(s)}
    return audit(s, outs, FAST, dataset="ferg")


@pytest.mark.reliability(section='3. Gates a run cannot loosen', case='outputs that draw each label as a code (a label-conditioned decoder)',
                         before='utility 100 % (trained and tested on outputs) against the original 80 %: PASS, published',
                         after='TSTR at chance on real faces: FAIL, with the reason that the outputs carry the label in a form real faces do not')
def test_outputs_that_paint_the_label_fail_on_real_faces(result):
    o, c = result.methods[ORIGINAL].metrics, result.methods["label-codes"].metrics
    assert c["utility_acc_best"] >= o["utility_acc_best"]  # the old figure: as useful as the originals, or more
    assert c["tstr"] < o["tstr"] and c["tstr_retention_lo"] < 0.6
    judged = judge_audit({m: a.metrics for m, a in result.methods.items()}, GateConfig(attacker_margin=0.3))
    v = judged.verdicts["label-codes"]
    assert v.status != "PASS"
    assert any("TSTR" in r for r in v.reasons)
    assert any("carry the label in a form real faces do not" in r for r in v.reasons)
    # unchanged outputs transfer exactly as the originals do
    n = result.methods["none"].metrics
    assert n["tstr"] == pytest.approx(o["tstr"]) and n["tstr_retention"] == pytest.approx(1.0)
    assert n["sharpness_ratio"] == pytest.approx(1.0) and c["sharpness_ratio"] > 0


def test_transfer_figures_and_retention_are_the_best_classifier_against_the_reference():
    m = transfer_metrics("tstr", {"a": 30, "b": 45}, 60)
    assert m["tstr"] == 0.75 and m["tstr_a"] == 0.5 and m["tstr_lo"] < 0.75 < m["tstr_hi"]
    r = transfer_retention(m, {"tstr": 0.8})
    assert r["tstr_retention"] == pytest.approx(0.75 / 0.8) and r["tstr_retention_lo"] == pytest.approx(m["tstr_lo"] / 0.8)


def test_sharpness_ratio_falls_with_blur(ferg_images):
    s = load_image_set(ferg_images)
    blurred = get_method("blur", sigma=2.0).fit(s.X[:1]).transform(s.X)
    r = sharpness_ratio(s.X, blurred)
    assert r["sharpness_ratio"] < 0.3 and r["sharpness_ratio_lo"] <= r["sharpness_ratio"] <= r["sharpness_ratio_hi"]
    assert sharpness_ratio(s.X, s.X)["sharpness_ratio"] == pytest.approx(1.0)


def _below_chance_metrics() -> dict:
    """k-Same-Select with k = identities − 1, as measured: every attacker far below chance (on 1,000
    test images, which the calibrated gate needs to judge a row)."""
    return {"n_test": 1000.0, "identity_acc_worst": 0.0, "identity_chance": 0.104, "identity_chance_min": 0.1,
            "identity_acc_linear": 0.0, "identity_acc_linear_hi": 0.018, "identity_acc_worst_hi": 0.018,
            "utility_acc_best": 0.9, "utility_acc_best_lo": 0.88, "utility_chance": 0.25}


@pytest.mark.reliability(section='3. Gates a run cannot loosen', case='every attacker significantly below chance (k-Same-Select, k = identities)',
                         before='worst attacker 0.0 % [0–1.8] against chance 10.4 %: PASS and published',
                         after='privacy FAIL in the run gate and the release policy: an attacker below chance − margin reads identity from what an output excludes')
def test_the_privacy_gate_is_two_sided():
    m = _below_chance_metrics()
    v = judge("ksame-select", m, GateConfig(min_tstr_retention=0.0, min_trts_retention=0.0))
    assert not v.passed and any("below chance" in r for r in v.reasons)
    assert any("below chance" in r for r in privacy_floor(ReleasePolicy(), m, 0.05))
    at_chance = {**m, "identity_acc_linear": 0.1, "identity_acc_linear_hi": 0.13, "identity_acc_worst": 0.1,
                 "identity_acc_worst_hi": 0.13}
    assert judge("x", at_chance, GateConfig(min_tstr_retention=0.0, min_trts_retention=0.0)).passed
    assert privacy_floor(ReleasePolicy(), at_chance, 0.05) == []
