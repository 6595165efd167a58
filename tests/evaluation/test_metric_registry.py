"""The metric table is the one place a metric's facts live: every name the audit writes is in it, and
every table, gate and check that shows or judges a metric reads it from there."""

from __future__ import annotations

import pytest

from deid.evaluation import metric_registry as reg
from deid.evaluation.audit import ORIGINAL, audit
from deid.evaluation.audit_config import AUDIT_METRICS
from deid.evaluation.gates import Gate, GateConfig, gate_region
from deid.release_policy import ReleasePolicy, privacy_floor
from tests.evaluation.test_audit import FAST, _apply


def test_every_name_the_audit_writes_has_its_facts(ferg_images):
    from deid.data import load_image_set

    s = load_image_set(ferg_images)
    res = audit(s, {"blur": _apply(s, "blur")}, FAST, dataset="ferg")
    written = {k for ma in res.methods.values() for k in ma.metrics if not k.startswith("_")}
    missing = sorted(k for k in written if reg.metric(k) is None)
    assert not missing, f"the audit writes metrics the table does not know: {missing}"
    assert {k for k in written if not reg.metric(k).per_attribute} <= set(AUDIT_METRICS)
    # and a row's chance levels come out of the table's rules
    row = res.methods[ORIGINAL].metrics
    assert reg.chance_level("linkage_rank5", row) == pytest.approx(min(1.0, 5 * row["identity_chance"]))
    assert reg.chance_level("tstr_lo", row) == row["utility_chance"]
    assert reg.chance_level("ssim", row) is None


def test_a_registered_metric_reaches_every_table_and_gate(monkeypatch):
    monkeypatch.setattr(reg, "_METRICS", dict(reg._METRICS))
    reg.register_metric(reg.Metric("blink_rate", "blinks kept", "pct", "the share of closed eyes kept", "higher",
                                   "utility", ("_lo", "_hi"), short="blinks", study="blinks kept", headline=True,
                                   faces_only=True))
    assert reg.metric("blink_rate_lo").key == "blink_rate"
    assert {"blink_rate", "blink_rate_lo", "blink_rate_hi"} <= set(reg.metric_names())
    assert "blink_rate_hi" in reg.headline_names() and "blink_rate" in reg.face_only_names()
    assert ("blinks kept ↑", "blink_rate") in [(m.study_header(), m.key) for m in reg.study_metrics()]
    assert reg.chance_level("blink_rate", {"utility_chance": 0.25}) == 0.25
    with pytest.raises(ValueError, match="already registered"):
        reg.register_metric(reg.Metric("blink_rate", "again", "pct", "twice"))


def test_per_attacker_metrics_expand_over_the_registered_attackers():
    from deid.evaluation.attacker_registry import available_attackers

    names = reg.metric_names()
    for a in available_attackers():
        assert f"identity_acc_{a}_hi" in names and f"utility_acc_{a}" in names and f"tstr_{a}" in names
    with pytest.raises(ValueError, match="not produced by the audit"):
        Gate(metric="identity_acc_nobody")
    Gate(metric="tstr_retention_lo", min=0.5)  # a companion is a metric a gate may name
    Gate(metric="attr_glasses_acc_best_lo", min=0.6)  # so is an unseen attribute the data brings
    assert reg.metric("attr__chance") is None


def test_every_shown_metric_says_what_it_means():
    for m in reg.metrics():
        assert m.label and len(m.meaning) > 10, m.key
        if m.report or m.study:
            assert m.kind in ("pct", "int", "f3", "f1"), m.key


def test_the_policy_and_the_gates_share_their_usefulness_rule():
    row = {"identity_acc_worst": 0.2, "identity_acc_worst_hi": 0.21, "identity_chance": 0.2, "n_test": 5000.0, "tstr": 0.5,
           "tstr_lo": 0.45, "tstr_retention_lo": 0.6, "trts": 0.7, "trts_lo": 0.65, "trts_retention_lo": 0.95}
    reasons = privacy_floor(ReleasePolicy(), row, 0.05)
    assert len(reasons) == 1 and "TSTR" in reasons[0] and "60%" in reasons[0]
    assert gate_region({"identity_chance": 0.2, "utility_chance": 0.25, "tstr": 0.8}, GateConfig()) == \
        pytest.approx((0.25, 0.72))
