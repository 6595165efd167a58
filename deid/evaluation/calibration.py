"""The privacy gate calibrated for the worst of several attackers, with both of its error rates stated.

A gate on the worst of ``A`` attackers faces two errors. At the null (outputs that hold no identity)
the best of ``A`` noisy scores sits above chance by luck, and a gate that asks the worst attacker's
95 % upper bound to stay within chance + margin refused one honest run in six on the demo's set
(``bench/bench_null.py``). At the margin (a method that leaks ``margin`` over chance) the gate must
still refuse. The threshold here fixes the second error and bounds the first:

- **power**: a method whose attackers score ``chance + margin`` fails at least :data:`POWER` (80 %) of
  the time: the threshold lies :data:`POWER`'s one-sided normal quantile of one attacker's spread
  below ``chance + margin`` (the worst of several attackers only fails more often);
- **false alarm**: a method exactly at chance fails with probability at most ``1 − Φ(z)^A``, every
  attacker's score taken as independent (attackers trained on the same outputs are positively
  correlated, and the worst of correlated scores exceeds a threshold less often, so this bounds it);
  an audit whose bound is above :data:`FALSE_ALARM` (5 %) cannot tell chance from chance + margin with
  its attackers on its test images, and says so (INCONCLUSIVE) rather than judge.

An attacker's score is a count of correct test predictions; pooled over folds it also moves with the
folds it was trained on, so its spread is taken as :data:`SCORE_SPREAD` times a binomial's, the most
``bench/bench_null.py`` measured (1.0–1.2 times on the demo's set).
"""

from __future__ import annotations

import math
from dataclasses import dataclass

__all__ = ["PrivacyThreshold", "privacy_threshold", "SCORE_SPREAD", "POWER", "FALSE_ALARM", "attacker_count",
           "calibration_table"]

SCORE_SPREAD = 1.2
POWER = 0.8
FALSE_ALARM = 0.05


def _phi(z: float) -> float:
    return 0.5 * (1.0 + math.erf(z / math.sqrt(2.0)))


def _z(p: float) -> float:
    """The standard normal quantile of ``p`` (bisection: no scipy needed for a gate)."""
    lo, hi = -10.0, 10.0
    for _ in range(100):
        mid = (lo + hi) / 2
        lo, hi = (mid, hi) if _phi(mid) < p else (lo, mid)
    return (lo + hi) / 2


def _spread(p: float, n: float) -> float:
    """One attacker's spread at accuracy ``p`` on ``n`` images: none at 0 or 1 (a perfect score is no
    noisier than its count)."""
    return SCORE_SPREAD * math.sqrt(max(p * (1 - p), 0.0) / n)


@dataclass(frozen=True)
class PrivacyThreshold:
    """The worst attacker's accuracy must stay at or below ``threshold``; ``false_alarm``: the bound on
    how often a method at chance exceeds it; ``power``: how often a method at ``chance + margin`` does
    (one attacker's, a lower bound)."""

    threshold: float
    false_alarm: float
    power: float
    attackers: int
    n: float

    @property
    def decidable(self) -> bool:
        return self.false_alarm <= FALSE_ALARM + 1e-12


def privacy_threshold(chance: float, margin: float, n: float, attackers: int) -> PrivacyThreshold:
    """The calibrated threshold for the worst of ``attackers`` scores over ``n`` test images."""
    n, attackers = max(float(n), 1.0), max(int(attackers), 1)
    at_margin = min(chance + margin, 1.0)
    t = at_margin - _z(POWER) * _spread(at_margin, n)
    false_alarm = 1.0 - _phi((t - chance) / max(_spread(chance, n), 1e-12)) ** attackers
    return PrivacyThreshold(t, false_alarm, POWER, attackers, n)


def attacker_count(metrics: dict[str, float]) -> int:
    """How many identity attackers a row's worst is the worst of."""
    return sum(1 for k in metrics if k.startswith("identity_acc_") and not k.endswith(("_lo", "_hi"))
               and k != "identity_acc_worst")


def calibration_table(cases=((213, 10, "JAFFE, every image tested once (folds)"), (294, 6, "the demo's test split"),
                             (924, 6, "the demo's train + test in 3 folds"), (11172, 6, "FERG's size, test split")),
                      margin: float = 0.05, attackers=(4, 8)) -> str:
    """Markdown: per (test images, identities), the threshold the worst attacker must stay under and the
    bound on false alarms at the null, for each pool size."""
    head = "| test images | identities | where | threshold (chance + margin − 0.84 σ) | " + " | ".join(
        f"false alarms at chance, {a} attackers" for a in attackers) + " |"
    lines = [head, "|---:|---:|---|---:|" + "---:|" * len(attackers)]
    for n, ids, where in cases:
        ts = [privacy_threshold(1 / ids, margin, n, a) for a in attackers]
        cells = " | ".join(f"{t.false_alarm:.1%}" + ("" if t.decidable else " (inconclusive)") for t in ts)
        lines.append(f"| {n:,} | {ids} | {where} | {ts[0].threshold:.1%} (chance {1 / ids:.1%}) | {cells} |")
    return "\n".join(lines)
