"""The audit judges itself first: intervals, controls, a reference that learned, decidable gates."""

from __future__ import annotations

import pytest

from deid.evaluation.gates import FAIL, INCONCLUSIVE, PASS, Gate, GateConfig, judge_audit
from deid.evaluation.intervals import add_intervals, wilson


def _m(identity: float, utility: float, *, n: int = 1200, id_chance: float = 1 / 6, util_chance: float = 1 / 7) -> dict:
    return add_intervals({"identity_acc_cnn": identity, "identity_acc_linear": identity, "identity_acc_worst": identity,
                          "identity_chance": id_chance, "utility_acc_cnn": utility, "utility_acc_best": utility,
                          "utility_chance": util_chance, "n_test": float(n), "k_anonymity": 1.0,
                          "linkage_rank1": identity})


def _audit(**methods) -> dict:
    base = {"original": _m(0.99, 0.95), "blackout": _m(1 / 6, 1 / 7)}
    return {**base, **methods}


def test_wilson_matches_known_values():
    lo, hi = wilson(34, 202)  # 16.8 % of 202
    assert lo == pytest.approx(0.1230, abs=1e-4) and hi == pytest.approx(0.2260, abs=1e-4)
    assert wilson(0, 10)[0] == 0.0 and wilson(10, 10)[1] == 1.0


def test_a_sound_audit_passes_a_private_useful_method_and_fails_the_rest():
    j = judge_audit(_audit(good=_m(0.17, 0.93), leaky=_m(0.9, 0.95), useless=_m(0.17, 0.3)), GateConfig())
    assert j.sound, j.inconclusive
    assert j.verdicts["good"].status == PASS
    assert j.verdicts["leaky"].status == FAIL and "the most the worst of 2 attackers" in j.verdicts["leaky"].reasons[0]
    assert j.verdicts["useless"].status == FAIL
    assert j.verdicts["original"].status == FAIL and j.verdicts["blackout"].status == FAIL


@pytest.mark.reliability(section="3. Gates a run cannot loosen", case="gates judged on point estimates (upper bound of attacker ignored)",
                         before="an attacker at chance + 4.9 points on 64 test images passed",
                         after="64 images decide nothing (INCONCLUSIVE); on 1,200 the calibrated threshold fails it")
def test_a_leak_just_under_the_margin_fails_and_a_small_test_decides_nothing():
    near = _m(1 / 6 + 0.049, 0.95)
    j = judge_audit(_audit(near=near), GateConfig())
    assert j.sound and j.verdicts["near"].status == FAIL
    small = {k: _m(v[0], v[1], n=64) for k, v in {"original": (0.99, 0.95), "blackout": (1 / 6, 1 / 7),
                                                 "near": (1 / 6 + 0.049, 0.95)}.items()}
    assert judge_audit(small, GateConfig()).verdicts["near"].status == INCONCLUSIVE


def test_a_margin_that_reaches_a_perfect_score_fails_no_attacker():
    """chance + margin at or past 100 %: no score exceeds it, not even a perfect one (the gate wide open)."""
    from deid.evaluation.calibration import privacy_threshold

    for n in (64, 924):
        cal = privacy_threshold(1 / 6, 1.0, n, 4)
        assert cal.threshold == 1.0 and cal.false_alarm == 0.0
    assert privacy_threshold(1 / 6, 0.05, 924, 4).threshold < 1 / 6 + 0.05


@pytest.mark.parametrize("n,attackers", [(924, 4), (1200, 2), (11172, 8)])
def test_the_calibrated_gate_fails_a_leak_of_the_margin_and_rarely_a_method_at_chance(n, attackers):
    """Simulated audits: each attacker's score drawn around its accuracy with the assumed spread (a
    binomial's, widened), independent. At chance the worst fails at most the stated bound (and at most
    5 %); at chance + margin it fails at least 80 % of the time."""
    import numpy as np

    from deid.evaluation.calibration import SCORE_SPREAD, privacy_threshold
    from deid.evaluation.gates import privacy_checks

    rng = np.random.default_rng(0)
    chance, margin = 1 / 6, 0.05
    cal = privacy_threshold(chance, margin, n, attackers)

    def fail_rate(p: float) -> float:
        sd = SCORE_SPREAD * np.sqrt(p * (1 - p) / n)
        worst = (p + sd * rng.standard_normal((20_000, attackers))).max(axis=1)
        return float((worst > cal.threshold).mean())

    at_null, at_margin = fail_rate(chance), fail_rate(chance + margin)
    assert cal.decidable and at_null <= cal.false_alarm + 0.005 and at_null <= 0.05
    assert at_margin >= 0.8 - 0.01
    # the gate the audit applies is this threshold, on the worst attacker's point estimate
    row = add_intervals({**{f"identity_acc_a{i}": chance for i in range(attackers)}, "identity_acc_worst": chance,
                         "identity_chance": chance, "n_test": float(n)})
    (gate, _, op, threshold, _), (_, fa, _, _, _) = privacy_checks(row, margin)[:2]
    assert (gate, op) == ("identity_acc_worst", "<=") and threshold == pytest.approx(cal.threshold)
    assert fa == pytest.approx(cal.false_alarm)


def test_a_reference_that_did_not_learn_makes_every_verdict_inconclusive():
    # cnn_epochs=2 on a colour set: original utility 24 %, identity 33 % (chance 14 % / 17 %)
    methods = {"original": _m(0.33, 0.24), "blackout": _m(1 / 6, 1 / 7), "ksame-select": _m(0.17, 0.54)}
    j = judge_audit(methods, GateConfig())
    assert not j.sound and any("did not learn" in r for r in j.inconclusive)
    assert j.verdicts["ksame-select"].status == INCONCLUSIVE and j.verdicts["blackout"].status == INCONCLUSIVE


def test_a_control_that_passes_makes_every_verdict_inconclusive():
    # The utility label is uninformative on this split: blackout scores as well as the original.
    methods = {"original": _m(0.99, 0.95, util_chance=0.95), "blackout": _m(1 / 6, 0.95, util_chance=0.95),
               "m": _m(0.17, 0.95, util_chance=0.95)}
    j = judge_audit(methods, GateConfig(reference_min_gain=0.01))
    assert not j.sound and j.verdicts["m"].status == INCONCLUSIVE
    # Originals that pass privacy: the attackers cannot tell identities apart.
    j = judge_audit({"original": _m(0.17, 0.95), "blackout": _m(1 / 6, 1 / 7), "m": _m(0.17, 0.9)}, GateConfig())
    assert not j.sound and any("originals pass the privacy gate" in r for r in j.inconclusive)


def test_a_test_split_too_small_to_decide_says_so():
    small = {k: _m(v[0], v[1], n=202) for k, v in {"original": (0.99, 0.95), "blackout": (1 / 6, 1 / 7),
                                                   "perfect": (1 / 6, 0.95)}.items()}
    j = judge_audit(small, GateConfig())
    assert not j.sound and any("cannot tell chance 16.7% from chance + 5%" in r for r in j.inconclusive)
    assert j.verdicts["perfect"].status == INCONCLUSIVE
    big = {k: _m(v[0], v[1], n=1008) for k, v in {"original": (0.99, 0.95), "blackout": (1 / 6, 1 / 7),
                                                  "perfect": (1 / 6, 0.95)}.items()}
    assert judge_audit(big, GateConfig()).verdicts["perfect"].status == PASS


def test_gates_out_of_range_are_refused_at_load():
    with pytest.raises(ValueError):
        GateConfig(min_utility_retention=1.5)  # retention is capped at 100 %
    with pytest.raises(ValueError):
        GateConfig(attacker_margin=-0.01)
    with pytest.raises(ValueError, match=r"\[0, 1\]"):
        Gate(metric="identity_acc_worst", max=1.5)


def test_the_calibration_table_in_the_docs_is_the_computed_one():
    from pathlib import Path

    from deid.evaluation.calibration import calibration_table, privacy_threshold

    doc = (Path(__file__).resolve().parents[2] / "docs" / "audit.md").read_text()
    block = doc.split("<!-- calibration-table -->\n", 1)[1].split("\n<!-- /calibration-table -->", 1)[0]
    assert block == calibration_table()
    # more attackers: more false alarms at the same threshold; more images: fewer
    assert privacy_threshold(1 / 6, 0.05, 924, 8).false_alarm > privacy_threshold(1 / 6, 0.05, 924, 4).false_alarm
    assert privacy_threshold(1 / 6, 0.05, 2000, 4).false_alarm < privacy_threshold(1 / 6, 0.05, 924, 4).false_alarm


def test_a_problem_the_data_checks_found_makes_the_audit_inconclusive():
    methods = _audit(good=_m(0.17, 0.93))
    assert judge_audit(methods, GateConfig()).verdicts["good"].passed
    j = judge_audit(methods, GateConfig(), data_problems=["ferg: 12 test images have a near-duplicate"])
    assert not j.sound and j.verdicts["good"].status == INCONCLUSIVE
    assert any("near-duplicate" in r for r in j.verdicts["good"].reasons)
    assert [c["ok"] for c in j.checks if c["check"].startswith("the data's checks")] == [False]
