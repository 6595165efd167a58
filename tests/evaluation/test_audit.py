"""The audit against cases whose answer is known, and its refusals of bad input."""

from __future__ import annotations

import numpy as np
import pytest

from deid.data import ImageSet, load_image_set
from deid.errors import EvaluationError
from deid.evaluation.audit import ORIGINAL, AuditConfig, audit
from deid.evaluation.gates import Gate, GateConfig, judge
from deid.methods import get_method

FAST = AuditConfig(cnn_epochs=4, cnn_width=8, pca_components=16, linkage_repeats=2)


def _apply(s: ImageSet, name: str, **params) -> ImageSet:
    m = get_method(name, **params).fit(s.X[s.split == "train"], s.identity[s.split == "train"])
    return ImageSet(m.transform(s.X, s.identity, s.expression), s.image_id, s.split, s.identity, s.expression)


@pytest.fixture(scope="module")
def result(ferg_images):
    s = load_image_set(ferg_images)
    outs = {"none": _apply(s, "none"), "blackout": _apply(s, "blackout")}
    shuffled = outs["none"].subset(np.random.default_rng(0).permutation(len(s)))  # row order must not matter
    outs["none-shuffled"] = shuffled
    return audit(s, outs, FAST, dataset="ferg")


def test_unchanged_output_scores_like_the_original(result):
    o, n, sh = (result.methods[k].metrics for k in (ORIGINAL, "none", "none-shuffled"))
    for k in ("identity_acc_cnn", "identity_acc_linear", "utility_acc_cnn", "linkage_rank1"):
        assert n[k] == pytest.approx(o[k]) and sh[k] == pytest.approx(o[k]), k
    assert o["identity_acc_worst"] > 0.9  # the originals are identifiable
    assert n["ssim"] == pytest.approx(1.0) and n["k_anonymity"] == 1


def test_blackout_scores_chance(result):
    b = result.methods["blackout"].metrics
    assert b["identity_acc_cnn"] == pytest.approx(b["identity_chance"])
    assert b["identity_acc_linear"] == pytest.approx(b["identity_chance"])
    assert b["utility_acc_best"] == pytest.approx(b["utility_chance"])
    assert b["k_anonymity"] == len(set(result.methods[ORIGINAL].classes["identity"]))


def test_gates_pass_blackout_on_privacy_and_fail_it_on_utility(result):
    b, o = result.methods["blackout"].metrics, result.methods[ORIGINAL].metrics
    v = judge("blackout", b, GateConfig())
    assert not v.passed and any("utility retention" in r for r in v.reasons)
    assert not any("worst attacker" in r for r in v.reasons)
    v = judge("original", o, GateConfig())
    assert any("worst attacker" in r for r in v.reasons)
    assert judge("blackout", b, GateConfig(min_utility_retention=0.0)).passed


def test_gate_on_unknown_metric_is_refused():
    with pytest.raises(ValueError, match="not produced by the audit"):
        Gate(metric="accuracy", max=0.2)


def test_mismatched_rows_name_the_method(ferg_images):
    s = load_image_set(ferg_images)
    short = s.subset(np.arange(len(s) - 1))
    with pytest.raises(EvaluationError, match="method 'short'.*rows"):
        audit(s, {"short": short}, FAST)
    other = ImageSet(s.X, np.array([f"x{i}" for i in range(len(s))], dtype=object), s.split, s.identity, s.expression)
    with pytest.raises(EvaluationError, match="method 'renamed'.*image ids"):
        audit(s, {"renamed": other}, FAST)


def test_nan_pixels_name_the_method(ferg_images):
    s = load_image_set(ferg_images)
    X = s.X.copy()
    X[3, 0, 1, 1] = np.nan
    with pytest.raises(EvaluationError, match="method 'broken'.*NaN"):
        audit(s, {"broken": ImageSet(X, s.image_id, s.split, s.identity, s.expression)}, FAST)


def test_single_class_split_is_refused(ferg_images):
    s = load_image_set(ferg_images)
    one = s.subset(s.identity == s.identity[0])
    with pytest.raises(EvaluationError, match="one identity class"):
        audit(one, {}, FAST)
