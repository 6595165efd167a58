"""95 % intervals for every accuracy the audit reports."""

from __future__ import annotations

import math

__all__ = ["wilson", "add_intervals", "k_attacker", "Z95"]

Z95 = 1.959963984540054


def wilson(correct: float, n: float, z: float = Z95) -> tuple[float, float]:
    """Wilson score interval of a proportion ``correct / n`` (95 % by default)."""
    if n <= 0:
        return (0.0, 1.0)
    p = correct / n
    d = 1 + z * z / n
    centre = (p + z * z / (2 * n)) / d
    half = z * math.sqrt(p * (1 - p) / n + z * z / (4 * n * n)) / d
    lo, hi = max(0.0, centre - half), min(1.0, centre + half)
    return (0.0 if correct <= 0 else min(lo, p), 1.0 if correct >= n else max(hi, p))  # exact at the ends


def _is_accuracy(name: str) -> bool:
    return "_acc_" in name and not name.endswith(("_lo", "_hi"))


def add_intervals(metrics: dict[str, float], n_key: str = "n_test") -> dict[str, float]:
    """``metrics`` with ``<name>_lo`` / ``<name>_hi`` (95 % Wilson) beside every accuracy, over
    ``metrics[n_key]`` test images (``n_eval`` when the audit pooled predictions over folds), and
    ``k_attacker``, the anonymity the worst attacker's upper bound leaves (:func:`k_attacker`)."""
    n = metrics.get("n_eval", metrics.get(n_key))
    if not n:
        return metrics
    out = dict(metrics)
    for k, v in metrics.items():
        if _is_accuracy(k) and v is not None and not math.isnan(v):
            out[f"{k}_lo"], out[f"{k}_hi"] = wilson(round(v * n), n)
    # The worst attacker's upper bound is the largest upper bound over attackers.
    his = [v for k, v in out.items() if k.startswith("identity_acc_") and k.endswith("_hi") and "worst" not in k]
    if his:
        out["identity_acc_worst_hi"] = max(his)
        if out.get("identity_chance"):
            out["k_attacker"] = k_attacker(out["identity_acc_worst_hi"], out["identity_chance"])
    return out


def k_attacker(upper: float, chance: float) -> float:
    """The k the informed attackers leave: ``1 / upper``, at most ``1 / chance``.

    When each output is equally likely to have come from any of k identities (k-anonymity over
    identities, a k-Same method's guarantee, or a distribution that does not depend on the identity),
    no attacker names its identity more often than 1 in k. Read backwards, an attacker whose 95 %
    upper bound is ``upper`` says the outputs hide a person among ``1 / upper`` identities on average
    at least (95 % confidence); ``1 / chance`` (the test's identities, when balanced) is the most a
    test can show. (The privacy gate judges the worst attacker against a threshold calibrated for the
    pool, :mod:`deid.evaluation.calibration`; this figure restates the worst upper bound as people.)"""
    return 1.0 / max(float(upper), float(chance), 1e-12)
