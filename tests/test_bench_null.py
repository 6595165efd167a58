"""bench_null: shuffled identities keep each utility label's identities, and the summary counts the gate's failures."""

from __future__ import annotations

import numpy as np

from bench.bench_null import gate_fails, render, shuffled_within, summarise


def test_a_shuffle_permutes_identities_within_each_label_only():
    rng = np.random.default_rng(0)
    ident = np.repeat(np.array(["a", "b", "c"]), 20)
    label = np.tile(np.array(["x", "y"]), 30)
    y = shuffled_within(ident, label, rng)
    for g in ("x", "y"):  # each label keeps its own identities, in another order
        assert sorted(y[label == g]) == sorted(ident[label == g])
    assert (y != ident).any()


def test_the_gate_fails_exactly_above_the_calibrated_threshold():
    from deid.evaluation.calibration import privacy_threshold

    t = privacy_threshold(1 / 6, 0.05, 924, 2).threshold
    assert not gate_fails(t - 1e-6, 924, 1 / 6, 0.05, 2) and gate_fails(t + 1e-3, 924, 1 / 6, 0.05, 2)
    assert 1 / 6 < t < 1 / 6 + 0.05


def test_a_leaked_row_puts_back_originals_and_true_identities():
    from bench.bench_null import leaked

    rng = np.random.default_rng(0)
    Y, X = np.zeros((1000, 1, 2, 2)), np.ones((1000, 1, 2, 2))
    truth, y = np.arange(1000).astype(str), np.full(1000, "x")
    Yl, yl = leaked(Y, X, truth, y, 0.06, rng)
    back = Yl.reshape(1000, -1)[:, 0] == 1
    assert 0.04 < back.mean() < 0.08 and (yl[back] == truth[back]).all() and (yl[~back] == "x").all()


def test_the_summary_sets_the_draws_against_their_seeds_shuffles():
    base = {"dataset": "d", "seed": 0, "chance": 1 / 6, "n": 924}
    rows = [{**base, "kind": "draw", "accuracy": {"a": 0.17, "b": 0.16}, "worst": 0.17},
            {**base, "kind": "draw", "accuracy": {"a": 0.25, "b": 0.16}, "worst": 0.25}]
    rows += [{**base, "kind": "shuffled", "accuracy": {"a": w, "b": 0.15}, "worst": w} for w in (0.16, 0.17, 0.18)]
    s = {r["kind"]: r for r in summarise(rows, 0.05)}
    # the first draw is reached by two of three shuffles, the second by none; only 0.25 fails the gate (its
    # threshold for the worst of two attackers on 924 images is about 0.20)
    assert s["draw"]["p_values"] == [3 / 4, 1 / 4]
    assert s["draw"]["fails"] == 1 and s["shuffled"]["fails"] == 0
    text = render(list(s.values()), [])
    assert "| d | 0 | as drawn | 2 | 0.210 ± 0.040 | 0.250 | 1/2 |" in text
    assert "failed 0 of 3 shuffled outputs" in text
