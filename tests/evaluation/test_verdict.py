"""The audit judges itself first: intervals, controls, a reference that learned, decidable gates."""

from __future__ import annotations

import pytest

from deid.evaluation.gates import FAIL, INCONCLUSIVE, PASS, Gate, GateConfig, judge_audit
from deid.evaluation.intervals import add_intervals, wilson


def _m(identity: float, utility: float, *, n: int = 600, id_chance: float = 1 / 6, util_chance: float = 1 / 7) -> dict:
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
    assert j.verdicts["leaky"].status == FAIL and "upper bound" in j.verdicts["leaky"].reasons[0]
    assert j.verdicts["useless"].status == FAIL
    assert j.verdicts["original"].status == FAIL and j.verdicts["blackout"].status == FAIL


@pytest.mark.reliability(section="3. Gates a run cannot loosen", case="gates judged on point estimates (upper bound of attacker ignored)",
                         before="an attacker at chance + 4.9 points on 64 test images passed", after="judged on the 95% upper bound: FAIL")
def test_gates_judge_the_upper_bound_of_the_attacker():
    near = _m(1 / 6 + 0.049, 0.95)
    assert near["identity_acc_worst_hi"] > 1 / 6 + 0.05
    j = judge_audit(_audit(near=near), GateConfig())
    assert j.verdicts["near"].status == FAIL


@pytest.mark.parametrize("identity", [1 / 6, 0.19, 0.2, 0.21, 0.3, 0.9])
@pytest.mark.parametrize("n", [64, 600, 11172])
def test_the_attackers_k_is_the_privacy_gate_read_as_identities(identity, n):
    m = _m(identity, 0.95, n=n)
    assert m["k_attacker"] == pytest.approx(1 / max(m["identity_acc_worst_hi"], 1 / 6))
    assert m["k_attacker"] <= 6  # no test shows more identities than it holds
    passes = judge_audit(_audit(m=m), GateConfig()).verdicts["m"].checks[0]["ok"]
    assert passes == (m["k_attacker"] >= 1 / (1 / 6 + 0.05) - 1e-9)
    if n == 11172 and identity == 1 / 6:
        assert m["k_attacker"] > 5.6  # a large test at chance shows nearly every identity


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
    assert not j.sound and any("cannot certify chance + 5%" in r for r in j.inconclusive)
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


def test_the_decidability_table_in_the_docs_is_the_computed_one():
    from pathlib import Path

    from deid.evaluation.intervals import decidability_table

    doc = (Path(__file__).resolve().parents[2] / "docs" / "audit.md").read_text()
    block = doc.split("<!-- decidability-table -->\n", 1)[1].split("\n<!-- /decidability-table -->", 1)[0]
    assert block == decidability_table()


def test_the_power_table_in_the_docs_is_the_computed_one_and_more_attackers_pass_less_often():
    from pathlib import Path

    from deid.evaluation.intervals import pass_probability_at_chance, power_table

    doc = (Path(__file__).resolve().parents[2] / "docs" / "audit.md").read_text()
    block = doc.split("<!-- power-table -->\n", 1)[1].split("\n<!-- /power-table -->", 1)[0]
    assert block == power_table()
    one, four = (pass_probability_at_chance(213, 0.1, 0.05, a) for a in (1, 4))
    assert 0 < four < one < 1 and four == pytest.approx(one ** 4)
    assert pass_probability_at_chance(11172, 1 / 6, 0.05, 4) > 0.99  # a big test split leaves no doubt
    assert pass_probability_at_chance(20, 0.5, 0.05) < 0.1  # too few images: only a score well below chance passes


def test_a_problem_the_data_checks_found_makes_the_audit_inconclusive():
    methods = _audit(good=_m(0.17, 0.93))
    assert judge_audit(methods, GateConfig()).verdicts["good"].passed
    j = judge_audit(methods, GateConfig(), data_problems=["ferg: 12 test images have a near-duplicate"])
    assert not j.sound and j.verdicts["good"].status == INCONCLUSIVE
    assert any("near-duplicate" in r for r in j.verdicts["good"].reasons)
    assert [c["ok"] for c in j.checks if c["check"].startswith("the data's checks")] == [False]
