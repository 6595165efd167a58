"""95 % intervals for every accuracy the audit reports."""

from __future__ import annotations

import math

__all__ = ["wilson", "add_intervals", "k_attacker", "Z95", "decidable_margin", "decidability_table", "pass_probability_at_chance",
           "power_table"]

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
    test can show. The privacy gate (upper bound within chance + margin) is the same test, stated in
    accuracy: ``k_attacker >= 1 / (chance + margin)``."""
    return 1.0 / max(float(upper), float(chance), 1e-12)


def decidable_margin(n: int, chance: float) -> float:
    """The smallest privacy margin a test of ``n`` images can certify: how far above chance the 95 %
    upper bound of an attacker exactly at chance lies."""
    return wilson(round(chance * n), n)[1] - chance


def decidability_table(sizes=(64, 100, 213, 302, 500, 1008, 5000, 55767), classes=(2, 6, 10, 100)) -> str:
    """Markdown: for each test size and number of balanced identity classes, the smallest margin above
    chance the privacy gate can decide."""
    head = "| test images | " + " | ".join(f"{c} identities (chance {100 / c:.1f}%)" for c in classes) + " |"
    lines = [head, "|---:|" + "---:|" * len(classes)]
    for n in sizes:
        lines.append(f"| {n:,} | " + " | ".join(f"{100 * decidable_margin(n, 1 / c):.1f} points" for c in classes) + " |")
    return "\n".join(lines)


def pass_probability_at_chance(n: int, chance: float, margin: float, attackers: int = 1) -> float:
    """How often a method whose outputs hold no identity at all passes the privacy gate: the chance that
    every one of ``attackers`` attackers, each scoring like a coin of bias ``chance`` on ``n`` test images,
    keeps its 95 % upper bound within ``chance + margin``. Attackers are taken as independent (correlated
    ones pass more often) and each one's score as a binomial count. Pooled over folds a score spreads
    more than that — it moves with the folds it was trained on too — so the measured rate can be lower
    than this figure: ``bench/bench_null.py`` measures it on shuffled identities (docs/audit.md)."""
    from scipy.stats import binom

    ok = [k for k in range(n + 1) if wilson(k, n)[1] <= chance + margin + 1e-12]
    if not ok:
        return 0.0
    return float(binom.cdf(max(ok), n, chance)) ** int(attackers)


def power_table(cases=((213, 10, "JAFFE, every image tested once (folds)"), (302, 6, "the demo's test split"),
                       (924, 6, "the demo's train + test in 3 folds"), (11172, 6, "FERG's size, test split")),
                margin: float = 0.05, attackers: int = 4) -> str:
    """Markdown: for each (test images, identities), how often a method exactly at chance passes the privacy
    gate with one attacker and with ``attackers`` independent ones."""
    lines = ["| test images | identities | where | 1 attacker | " f"{attackers} attackers |", "|---:|---:|---|---:|---:|"]
    for n, ids, where in cases:
        one, many = (pass_probability_at_chance(n, 1 / ids, margin, a) for a in (1, attackers))
        lines.append(f"| {n:,} | {ids} | {where} | {one:.0%} | {many:.0%} |")
    return "\n".join(lines)
