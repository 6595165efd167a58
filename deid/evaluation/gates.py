"""Release gates and the verdict: an audit that judges itself before it judges a method.

Every accuracy carries a 95 % Wilson interval (:func:`wilson`; ``<metric>_lo`` / ``<metric>_hi``
beside each ``*_acc_*`` metric). The worst informed attacker is judged against a threshold
calibrated for the worst of the row's attackers (:mod:`deid.evaluation.calibration`: a leak of the
margin fails at least 80 % of the time, a method at chance at most 5 %); utility on the **lower**
bound of its interval, against the original's and against chance.

Before any method is judged, :func:`judge_audit` checks the audit itself, and when a check fails
every verdict is ``INCONCLUSIVE`` (never ``PASS``), with the reason:

- **the reference learned**: on the original images, the identity attackers and the utility
  classifiers reach chance + ``reference_min_gain`` of the way to 100 % (and their lower bound is
  above chance);
- **the controls behave**: the unchanged originals (positive control) fail the privacy gate and
  blackout (negative control) fails the utility gate;
- **the test split can decide**: a method exactly at chance fails the privacy gate at most 5 % of
  the time at this test size with this many attackers, and a method exactly as useful as the
  original could pass the utility gate.
"""

from __future__ import annotations

from dataclasses import dataclass, field

from pydantic import BaseModel, ConfigDict, Field, field_validator

from deid.evaluation.audit_config import AUDIT_METRICS
from deid.evaluation.calibration import FALSE_ALARM, PrivacyThreshold, attacker_count, privacy_threshold
from deid.evaluation.metric_registry import metric
from deid.evaluation.intervals import Z95, add_intervals, wilson

__all__ = ["Gate", "GateConfig", "Verdict", "AuditJudgement", "judge", "judge_audit", "wilson", "add_intervals", "privacy_checks",
           "usefulness_checks", "gate_region", "PASS", "FAIL", "INCONCLUSIVE", "CONTROLS"]

PASS, FAIL, INCONCLUSIVE = "PASS", "FAIL", "INCONCLUSIVE"
POSITIVE_CONTROL, NEGATIVE_CONTROL = "original", "blackout"
CONTROLS = (POSITIVE_CONTROL, NEGATIVE_CONTROL)


class Gate(BaseModel):
    """``metric`` must stay at or below ``max`` / at or above ``min``."""

    model_config = ConfigDict(extra="forbid")

    metric: str
    max: float | None = None
    min: float | None = None

    @field_validator("metric")
    @classmethod
    def _known(cls, v: str) -> str:
        if metric(v) is None:
            raise ValueError(f"gate metric '{v}' is not produced by the audit; allowed: {list(AUDIT_METRICS)}")
        return v

    @field_validator("max", "min")
    @classmethod
    def _in_range(cls, v: float | None, info) -> float | None:
        if v is not None and "_acc" in info.data.get("metric", "") and not 0.0 <= v <= 1.0:
            raise ValueError(f"an accuracy gate must lie in [0, 1], got {v}")
        return v


class GateConfig(BaseModel):
    """The release gates, judged on interval bounds: worst informed attacker's upper bound within
    ``attacker_margin`` of chance; utility's lower bound at least ``min_utility_retention`` of the
    original's and ``min_utility_above_chance`` above chance; k-anonymity at least ``min_k`` (when
    set); linkage Rank-1 at most ``max_linkage_rank1``. ``reference_min_gain``: how far from chance
    toward 100 % the reference classifiers on the originals must get before anything is judged."""

    model_config = ConfigDict(extra="forbid")

    attacker_margin: float = Field(0.05, ge=0.0, le=1.0)
    min_tstr_retention: float = Field(0.9, ge=0.0, le=1.0)  # trained on outputs, tested on real faces: of TRTR
    min_trts_retention: float = Field(0.85, ge=0.0, le=1.0)  # original-trained classifiers on outputs: of the original's
    min_sharpness: float | None = Field(None, ge=0.0)  # median Laplacian-variance ratio, lower bound
    min_utility_retention: float = Field(0.9, ge=0.0, le=1.0)
    min_utility_above_chance: float = Field(0.05, ge=0.0, le=1.0)
    reference_min_gain: float = Field(0.5, gt=0.0, le=1.0)
    min_k: int | None = Field(None, ge=1)
    max_linkage_rank1: float | None = Field(None, ge=0.0, le=1.0)
    extra: list[Gate] = Field(default_factory=list)


@dataclass
class Verdict:
    method: str
    status: str  # PASS, FAIL or INCONCLUSIVE
    reasons: list[str]
    checks: list[dict] = field(default_factory=list)  # each gate: what, value, threshold, ok

    @property
    def passed(self) -> bool:
        return self.status == PASS

    def __str__(self) -> str:
        return f"{self.method}: {self.status}" + ("" if self.passed else " — " + "; ".join(self.reasons))


def _check(checks: list[dict], reasons: list[str], what: str, value: float, op: str, threshold: float, text: str):
    ok = value <= threshold + 1e-12 if op == "<=" else value >= threshold - 1e-12
    checks.append({"gate": what, "value": value, "op": op, "threshold": threshold, "ok": bool(ok)})
    if not ok:
        reasons.append(text)


def privacy_checks(metrics: dict[str, float], margin: float) -> list[tuple[str, float, str, float, str]]:
    """The privacy gate, two-sided: (gate, value, op, threshold, reason) for the worst informed attacker
    against the threshold calibrated for the worst of this row's attackers (:mod:`deid.evaluation.calibration`:
    a method leaking ``margin`` over chance fails at least 80 % of the time, one at chance at most the
    false-alarm bound the audit checks), and for every attacker's upper bound against the smallest
    identity's share − ``margin``: an attacker significantly *below* what a blind guess scores has learnt
    which identities an output is not (a k-Same cluster excludes everyone outside it), and reading
    its answers the other way names the person. The release policy applies the same checks."""
    worst, chance = metrics["identity_acc_worst"], metrics["identity_chance"]
    cal = row_threshold(metrics, margin)
    out = [("identity_acc_worst", worst, "<=", cal.threshold,
            f"worst attacker {worst:.1%} > {cal.threshold:.1%}, the most the worst of {cal.attackers} attackers may "
            f"read (a leak of chance {chance:.1%} + {margin:.0%} reads more {cal.power:.0%} of the time)"),
           ("privacy_false_alarm", cal.false_alarm, "<=", FALSE_ALARM,
            f"{cal.n:.0f} test images cannot tell chance {chance:.1%} from chance + {margin:.0%} with {cal.attackers} "
            f"attackers (a method at chance would fail up to {cal.false_alarm:.0%} of the time): nothing is certified")]
    floor = metrics.get("identity_chance_min")
    if floor is not None:
        for k, v in sorted(metrics.items()):
            if k.startswith("identity_acc_") and k.endswith("_hi") and "worst" not in k:
                a = k[len("identity_acc_"):-len("_hi")]
                out.append((k, v, ">=", floor - margin,
                            f"attacker '{a}' {metrics.get(f'identity_acc_{a}', v):.1%} (upper bound {v:.1%}) is below "
                            f"chance {floor:.1%} − {margin:.0%}: its errors say which identities an output is not"))
    return out


def row_threshold(metrics: dict[str, float], margin: float) -> PrivacyThreshold:
    """The calibrated privacy threshold of one audit row: its chance, test images (pooled when the
    audit pooled folds) and number of identity attackers."""
    n = metrics.get("n_eval") or metrics.get("n_test") or 1.0  # a row without its test size certifies nothing
    return privacy_threshold(metrics["identity_chance"], margin, n, attacker_count(metrics))


def usefulness_checks(metrics: dict[str, float], min_tstr: float, min_trts: float
                      ) -> list[tuple[str, float, str, float, str]]:
    """The usefulness gate on real faces: (gate, value, op, threshold, reason) for the lower bounds of
    TSTR's and TRTS's retention against ``min_tstr`` / ``min_trts``. The release policy applies the same checks."""
    out = []
    for prefix, need, what in (("tstr", min_tstr, "trained on the outputs, tested on real faces (TSTR)"),
                               ("trts", min_trts, "trained on real faces, tested on the outputs (TRTS)")):
        if (r := metrics.get(f"{prefix}_retention_lo")) is not None:
            v, vlo = metrics[prefix], metrics[f"{prefix}_lo"]
            out.append((f"{prefix}_retention_lo", r, ">=", need,
                        f"utility {what} {v:.1%} (lower bound {vlo:.1%}) keeps {r:.0%} of the original's < {need:.0%}"))
    return out


def gate_region(ref: dict[str, float], gates: GateConfig) -> tuple[float, float]:
    """The (highest worst-attacker identity accuracy, lowest TSTR) corner a method must reach, from the
    reference row and the gates: the privacy-utility plot shades it."""
    util = ref.get("tstr")
    need_u = max(gates.min_tstr_retention * util, ref.get("utility_chance", 0.0) + gates.min_utility_above_chance) \
        if util is not None else 0.0
    return ref["identity_chance"] + gates.attacker_margin, need_u


def _privacy(metrics: dict[str, float], gates: GateConfig, checks: list, reasons: list) -> None:
    for gate, value, op, threshold, text in privacy_checks(metrics, gates.attacker_margin):
        _check(checks, reasons, gate, value, op, threshold, text)


def _utility(metrics: dict[str, float], ref_utility: float | None, gates: GateConfig, checks: list, reasons: list) -> None:
    best = metrics.get("utility_acc_best")
    if best is None:
        return
    lo = metrics.get("utility_acc_best_lo", best)
    chance = metrics.get("utility_chance", 0.0)
    before = len(reasons)
    for gate, value, op, threshold, text in usefulness_checks(metrics, gates.min_tstr_retention,
                                                              gates.min_trts_retention):
        _check(checks, reasons, gate, value, op, threshold, text)
    if (t := metrics.get("tstr_lo")) is not None:
        _check(checks, reasons, "tstr_lo", t, ">=", chance + gates.min_utility_above_chance,
               f"TSTR lower bound {t:.1%} < chance {chance:.1%} + {gates.min_utility_above_chance:.0%}")
    ref_hi = metrics.get("_reference_utility_hi")
    if len(reasons) > before and ref_hi is not None and lo > ref_hi:
        reasons.append(f"the outputs are easier than the originals (trained and tested on outputs {best:.1%}, lower "
                       f"bound {lo:.1%} > the original's upper bound {ref_hi:.1%}) while real faces gain little from "
                       "them: the outputs carry the label in a form real faces do not")
    if ref_utility is not None:
        need = gates.min_utility_retention * ref_utility
        _check(checks, reasons, "utility_acc_best_lo", lo, ">=", need,
               f"utility {best:.1%} (lower bound {lo:.1%}) < {gates.min_utility_retention:.0%} of the original's "
               f"{ref_utility:.1%} = {need:.1%}")
    _check(checks, reasons, "utility_acc_best_lo", lo, ">=", chance + gates.min_utility_above_chance,
           f"utility lower bound {lo:.1%} < chance {chance:.1%} + {gates.min_utility_above_chance:.0%}")


def judge(method: str, metrics: dict[str, float], gates: GateConfig, ref_utility: float | None = None) -> Verdict:
    """PASS or FAIL of one method's metrics against the gates (bounds, not point estimates).

    ``ref_utility``: the original data's utility accuracy (the retention gate's reference).
    """
    reasons: list[str] = []
    checks: list[dict] = []
    _privacy(metrics, gates, checks, reasons)
    _utility(metrics, ref_utility, gates, checks, reasons)
    if gates.min_sharpness is not None and (sh := metrics.get("sharpness_ratio_lo")) is not None:
        _check(checks, reasons, "sharpness_ratio_lo", sh, ">=", gates.min_sharpness,
               f"sharpness {metrics['sharpness_ratio']:.2f} of the originals' (lower bound {sh:.2f}) < "
               f"{gates.min_sharpness:.2f}: the faces are blurred")
    if gates.min_k is not None:
        _check(checks, reasons, "k_anonymity", metrics["k_anonymity"], ">=", gates.min_k,
               f"k-anonymity {metrics['k_anonymity']:.0f} < {gates.min_k}")
    if gates.max_linkage_rank1 is not None:
        _check(checks, reasons, "linkage_rank1", metrics["linkage_rank1"], "<=", gates.max_linkage_rank1,
               f"linkage Rank-1 {metrics['linkage_rank1']:.1%} > {gates.max_linkage_rank1:.0%}")
    for g in gates.extra:
        v = metrics.get(g.metric)
        if v is None:
            reasons.append(f"{g.metric} was not measured (protocol off for this dataset)")
            continue
        if g.max is not None:
            _check(checks, reasons, g.metric, v, "<=", g.max, f"{g.metric} {v:.4g} > {g.max:.4g}")
        if g.min is not None:
            _check(checks, reasons, g.metric, v, ">=", g.min, f"{g.metric} {v:.4g} < {g.min:.4g}")
    return Verdict(method, FAIL if reasons else PASS, reasons, checks)


@dataclass
class AuditJudgement:
    """The audit's checks of itself and every method's verdict."""

    verdicts: dict[str, Verdict]
    inconclusive: list[str]  # why no verdict can be trusted (empty when the audit is sound)
    checks: list[dict]

    @property
    def sound(self) -> bool:
        return not self.inconclusive


def judge_audit(methods: dict[str, dict[str, float]], gates: GateConfig, *,
                data_problems: list[str] | tuple[str, ...] = ()) -> AuditJudgement:
    """Check the audit (reference learned, controls, decidability, the data), then judge every method.

    ``data_problems``: what the data's own checks found that inflates every score (e.g. a split that
    leaks near-duplicates); each one makes the audit inconclusive.

    ``methods``: name → metrics, including the positive control ``original`` and the negative
    control ``blackout`` (the audit adds it when the run did not). The controls get verdicts of
    their own when the audit is sound; when it is not, every verdict but the reference's is INCONCLUSIVE.
    """
    why: list[str] = list(data_problems)
    checks: list[dict] = [{"check": "the data's checks found nothing that inflates the scores", "ok": not data_problems}]
    ref = methods.get(POSITIVE_CONTROL)
    if ref is None:
        raise ValueError(f"the audit has no '{POSITIVE_CONTROL}' row to judge itself with")
    ref_util = ref.get("utility_acc_best")
    _check_reference_learned(ref, gates.reference_min_gain, checks, why)
    _check_decidable(ref, gates, checks, why)
    ref_hi = ref.get("utility_acc_best_hi")
    verdicts = {m: judge(m, {**metrics, "_reference_utility_hi": ref_hi} if ref_hi is not None and m != POSITIVE_CONTROL
                         else metrics, gates, ref_util) for m, metrics in methods.items()}
    _check_controls(verdicts, ref_util, checks, why)
    if why:
        for m, v in verdicts.items():
            if m != POSITIVE_CONTROL:
                verdicts[m] = Verdict(m, INCONCLUSIVE, ["audit inconclusive: " + r for r in why] + v.reasons, v.checks)
    return AuditJudgement(verdicts, why, checks)


def _check_reference_learned(ref: dict[str, float], gain: float, checks: list[dict], why: list[str]) -> None:
    """The audit's first check: on the originals, the identity attackers and utility classifiers learned."""
    for what, acc_key, chance_key in (("identity attackers", "identity_acc_worst", "identity_chance"),
                                      ("utility classifiers", "utility_acc_best", "utility_chance")):
        acc, chance = ref.get(acc_key), ref.get(chance_key)
        if acc is None or chance is None:
            if acc_key.startswith("utility"):
                why.append("the dataset has no utility label: utility cannot be judged")
            continue
        need = chance + gain * (1 - chance)
        lo = ref.get(f"{acc_key}_lo", acc)
        ok = acc >= need - 1e-12 and lo > chance
        checks.append({"check": f"reference {what} learned", "value": acc, "lower": lo, "threshold": need, "ok": ok})
        if not ok:
            why.append(f"the reference {what} did not learn on the original images: {acc:.1%} (lower bound {lo:.1%}) "
                       f"< {need:.1%} (chance {chance:.1%} + {gain:.0%} of the way to 100%)")


def _check_decidable(ref: dict[str, float], gates: GateConfig, checks: list[dict], why: list[str]) -> None:
    """The audit's second check: the test split is large enough to decide the privacy, utility and TSTR gates."""
    ref_util = ref.get("utility_acc_best")
    n = ref.get("n_eval", ref.get("n_test"))
    chance = ref.get("identity_chance")
    if n and chance is not None:
        cal = row_threshold(ref, gates.attacker_margin)
        checks.append({"check": "privacy gate decidable", "n": n, "threshold": cal.threshold, "attackers": cal.attackers,
                       "false_alarm": cal.false_alarm, "ok": cal.decidable})
        if not cal.decidable:
            why.append(f"{n:.0f} test images cannot tell chance {chance:.1%} from chance + {gates.attacker_margin:.0%} "
                       f"with {cal.attackers} attackers: a method at chance would fail the privacy gate up to "
                       f"{cal.false_alarm:.0%} of the time (at most {FALSE_ALARM:.0%}); use more images or audit.folds")
    if n and ref_util is not None:
        lo = wilson(round(ref_util * n), n)[0]
        need = max(gates.min_utility_retention * ref_util, ref.get("utility_chance", 0.0) + gates.min_utility_above_chance)
        ok = lo >= need - 1e-12
        checks.append({"check": "utility gate decidable", "n": n, "original_lower": lo, "threshold": need, "ok": ok})
        if not ok:
            why.append(f"{n:.0f} test images cannot certify utility: a method as useful as the original "
                       f"({ref_util:.1%}) has lower bound {lo:.1%} < {need:.1%}")
    if (t := ref.get("tstr")) and (t_lo := ref.get("tstr_lo")) is not None:
        ok = t_lo >= gates.min_tstr_retention * t - 1e-12
        checks.append({"check": "TSTR gate decidable", "original_lower": t_lo, "threshold": gates.min_tstr_retention * t,
                       "ok": ok})
        if not ok:
            why.append(f"{ref.get('n_test', 0):.0f} test images cannot certify utility on real faces: a release as useful "
                       f"as the originals (TRTR {t:.1%}) has lower bound {t_lo:.1%} < {gates.min_tstr_retention:.0%} of it")


def _check_controls(verdicts: dict[str, Verdict], ref_util: float | None, checks: list[dict], why: list[str]) -> None:
    """The audit's third check: the originals fail the privacy gate and blackout fails the utility gate."""
    pos = verdicts[POSITIVE_CONTROL]
    pos_private = not any(c["gate"] == "identity_acc_worst" and not c["ok"] for c in pos.checks)
    checks.append({"check": "positive control (originals) fails privacy", "ok": not pos_private})
    if pos_private:
        why.append("the unchanged originals pass the privacy gate: the attackers cannot tell identities apart")
    neg = verdicts.get(NEGATIVE_CONTROL)
    if neg is not None and ref_util is not None:
        neg_useful = not any(c["gate"] in ("utility_acc_best_lo", "tstr_retention_lo", "tstr_lo") and not c["ok"]
                             for c in neg.checks)
        checks.append({"check": "negative control (blackout) fails utility", "ok": not neg_useful})
        if neg_useful:
            why.append("blackout passes the utility gate: the utility label is not learnable from images on this split")
