"""The audit against cases whose answer is known, and its refusals of bad input."""

from __future__ import annotations

import numpy as np
import pytest

from deid.data import ImageSet, load_image_set
from deid.errors import EvaluationError
from deid.evaluation.audit import ORIGINAL, AuditConfig, audit
from deid.evaluation.gates import Gate, GateConfig, judge
from deid.methods import get_method

FAST = AuditConfig(attackers=["cnn", "linear"], cnn_epochs=4, cnn_width=8, cnn_min_steps=0, cnn_augment=False,
                   pca_components=16, linkage_repeats=2)


def _apply(s: ImageSet, name: str, **params) -> ImageSet:
    m = get_method(name, **params).fit(s.X[s.split == "train"], s.identity[s.split == "train"])
    return ImageSet(m.transform(s.X, s.identity, s.label), s.image_id, s.split, s.identity, s.label)


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
    n_ids = len(set(result.methods[ORIGINAL].classes["identity"]))
    assert b["k_anonymity"] == n_ids
    # at chance the attackers' k is the identities less the interval's width; the originals hide no one
    assert 1 < b["k_attacker"] <= n_ids and b["k_attacker"] == pytest.approx(1 / b["identity_acc_worst_hi"])
    assert result.methods[ORIGINAL].metrics["k_attacker"] < 1.2


def test_gates_pass_blackout_on_privacy_and_fail_it_on_utility(result):
    b, o = result.methods["blackout"].metrics, result.methods[ORIGINAL].metrics
    ref_util = o["utility_acc_best"]
    wide = GateConfig(attacker_margin=0.3)  # ~34 test images: the upper bound of chance is far above chance
    v = judge("blackout", b, wide, ref_util)
    assert not v.passed and any("of the original's" in r for r in v.reasons)
    assert not any("worst attacker" in r for r in v.reasons)
    assert any("worst attacker" in r for r in judge("blackout", b, GateConfig(), ref_util).reasons)
    v = judge("original", o, GateConfig(), ref_util)
    assert any("worst attacker" in r for r in v.reasons)
    loose = judge("blackout", b, GateConfig(attacker_margin=0.3, min_utility_retention=0.0, min_utility_above_chance=0.0,
                                            min_tstr_retention=0.0, min_trts_retention=0.0), ref_util)
    assert loose.reasons == [r for r in loose.reasons if "lower bound" in r and "< chance" in r] != []
    assert any(r.startswith("TSTR lower bound") for r in loose.reasons)


def test_the_frechet_ratio_reads_the_originals_as_one_and_blackout_far_above(result):
    o, n, b = (result.methods[k].metrics for k in (ORIGINAL, "none", "blackout"))
    assert o["feature_frechet"] == pytest.approx(1.0, abs=1e-6) and n["feature_frechet"] == pytest.approx(1.0, abs=1e-6)
    assert n["feature_frechet_yardstick"] == pytest.approx(o["feature_frechet_yardstick"]) and o["feature_frechet_yardstick"] > 0
    assert b["feature_frechet"] > 3, b["feature_frechet"]
    assert "faces_kept" not in o  # a face metric: not measured on cartoons


def test_every_accuracy_has_its_interval(result):
    for name, ma in result.methods.items():
        m = ma.metrics
        accs = [k for k in m if "_acc_" in k and not k.endswith(("_lo", "_hi"))]
        assert accs, name
        for k in accs:
            assert m[f"{k}_lo"] <= m[k] <= m[f"{k}_hi"], (name, k)
    o, n = result.methods[ORIGINAL].metrics, result.methods["none"].metrics
    assert n["identity_acc_worst_hi"] >= o["identity_acc_worst_lo"]  # known answer: unchanged output


def test_the_negative_control_runs_in_every_audit(ferg_images):
    s = load_image_set(ferg_images)
    r = audit(s, {"none": _apply(s, "none")}, AuditConfig(attackers=["linear"], cnn_epochs=1, cnn_width=4,
                                                        pca_components=8, linkage_repeats=1))
    assert "blackout" in r.methods
    b = r.methods["blackout"].metrics
    assert b["identity_acc_linear"] == pytest.approx(b["identity_chance"])
    assert b["identity_acc_worst_lo"] <= b["identity_chance"] <= b["identity_acc_worst_hi"]


def test_gate_on_unknown_metric_is_refused():
    with pytest.raises(ValueError, match="not produced by the audit"):
        Gate(metric="accuracy", max=0.2)


def test_mismatched_rows_name_the_method(ferg_images):
    s = load_image_set(ferg_images)
    short = s.subset(np.arange(len(s) - 1))
    with pytest.raises(EvaluationError, match="method 'short'.*rows"):
        audit(s, {"short": short}, FAST)
    other = ImageSet(s.X, np.array([f"x{i}" for i in range(len(s))], dtype=object), s.split, s.identity, s.label)
    with pytest.raises(EvaluationError, match="method 'renamed'.*image ids"):
        audit(s, {"renamed": other}, FAST)


def test_nan_pixels_name_the_method(ferg_images):
    s = load_image_set(ferg_images)
    X = s.X.copy()
    X[3, 0, 1, 1] = np.nan
    with pytest.raises(EvaluationError, match="method 'broken'.*NaN"):
        audit(s, {"broken": ImageSet(X, s.image_id, s.split, s.identity, s.label)}, FAST)


def test_single_class_test_split_is_refused(ferg_images):
    s = load_image_set(ferg_images)
    expr = s.label.copy()
    expr[s.split == "test"] = expr[s.split == "test"][0]
    one = ImageSet(s.X, s.image_id, s.split, s.identity, expr)
    with pytest.raises(EvaluationError, match="single utility class"):
        audit(one, {}, FAST)


def test_single_class_split_is_refused(ferg_images):
    s = load_image_set(ferg_images)
    one = s.subset(s.identity == s.identity[0])
    with pytest.raises(EvaluationError, match="one identity class"):
        audit(one, {}, FAST)


def _judged(s: ImageSet, cfg: AuditConfig):
    from deid.evaluation.gates import judge_audit

    r = audit(s, {"none": _apply(s, "none"), "pixelate": _apply(s, "pixelate")}, cfg)
    return judge_audit({m: a.metrics for m, a in r.methods.items()}, GateConfig(attacker_margin=0.5))


def test_a_reference_that_cannot_learn_gives_no_verdict(ferg_images):
    s = load_image_set(ferg_images)
    weak = AuditConfig(attackers=["cnn"], cnn_epochs=1, cnn_width=4, cnn_min_steps=0, cnn_augment=False,
                       linkage_repeats=1, unseen_attackers=["knn-pixels"])
    j = _judged(s, weak)
    assert not j.sound and any("did not learn" in r for r in j.inconclusive), j.checks
    assert {v.status for m, v in j.verdicts.items() if m != ORIGINAL} == {"INCONCLUSIVE"}


def test_an_uninformative_utility_label_gives_no_verdict(ferg_images):
    s = load_image_set(ferg_images)
    shuffled = np.random.default_rng(0).permutation(s.label)  # labels unrelated to the images
    s = ImageSet(s.X, s.image_id, s.split, s.identity, shuffled, s.attributes)
    j = _judged(s, AuditConfig(attackers=["linear", "hog-svm"], linkage_repeats=1, cnn_epochs=1, cnn_width=4,
                               cnn_min_steps=0))
    assert not j.sound and any("utility classifiers did not learn" in r for r in j.inconclusive), j.checks
    assert {v.status for m, v in j.verdicts.items() if m != ORIGINAL} == {"INCONCLUSIVE"}


def test_an_audit_split_over_workers_merges_into_the_audit_of_all_methods(ferg_images):
    from deid.evaluation.audit import merge_audits

    s = load_image_set(ferg_images)
    cfg = AuditConfig(attackers=["linear"], cnn_epochs=1, cnn_width=4, cnn_min_steps=0, pca_components=8,
                      linkage_repeats=1)
    outs = {"none": _apply(s, "none"), "blur": _apply(s, "blur", sigma=2.0), "pixelate": _apply(s, "pixelate")}
    whole = audit(s, outs, cfg, dataset="ferg")
    parts = [audit(s, {k: outs[k] for k in ("none", "pixelate")}, cfg, dataset="ferg"),
             audit(s, {"blur": outs["blur"]}, cfg, dataset="ferg")]
    merged = merge_audits(parts, order=list(outs))
    assert list(merged.methods) == list(whole.methods) == ["original", "none", "blur", "pixelate", "blackout"]
    for name, row in whole.methods.items():
        got = merged.methods[name].metrics
        assert {k: v for k, v in got.items() if k != "seconds"} == pytest.approx(
            {k: v for k, v in row.metrics.items() if k != "seconds"}, nan_ok=True), name
    other = audit(s, {"blur": outs["blur"]}, cfg.model_copy(update={"seed": 1}), dataset="ferg")
    with pytest.raises(EvaluationError, match="different data or settings"):
        merge_audits([parts[0], other])
