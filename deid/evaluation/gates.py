"""Release gates: plain rules over audit metrics, and a verdict a person can read."""

from __future__ import annotations

from dataclasses import dataclass

from pydantic import BaseModel, ConfigDict, Field, field_validator

from deid.evaluation.audit import AUDIT_METRICS

__all__ = ["Gate", "GateConfig", "Verdict", "judge"]


class Gate(BaseModel):
    """``metric`` must stay at or below ``max`` / at or above ``min``."""

    model_config = ConfigDict(extra="forbid")

    metric: str
    max: float | None = None
    min: float | None = None

    @field_validator("metric")
    @classmethod
    def _known(cls, v: str) -> str:
        if v not in AUDIT_METRICS:
            raise ValueError(f"gate metric '{v}' is not produced by the audit; allowed: {list(AUDIT_METRICS)}")
        return v


class GateConfig(BaseModel):
    """The release gates (defaults follow the audit issue): worst informed attacker within
    ``attacker_margin`` of chance, utility at least ``min_utility_retention`` of the original's,
    k-anonymity at least ``min_k`` (when set), linkage Rank-1 at most ``max_linkage_rank1``."""

    model_config = ConfigDict(extra="forbid")

    attacker_margin: float = Field(0.05, ge=0.0, le=1.0)
    min_utility_retention: float = Field(0.9, ge=0.0, le=2.0)
    min_k: int | None = Field(None, ge=1)
    max_linkage_rank1: float | None = Field(None, ge=0.0, le=1.0)
    extra: list[Gate] = Field(default_factory=list)


@dataclass
class Verdict:
    method: str
    passed: bool
    reasons: list[str]

    def __str__(self) -> str:
        return f"{self.method}: {'PASS' if self.passed else 'FAIL'}" + ("" if self.passed else " — " + "; ".join(self.reasons))


def judge(method: str, metrics: dict[str, float], gates: GateConfig) -> Verdict:
    reasons: list[str] = []
    worst, chance = metrics["identity_acc_worst"], metrics["identity_chance"]
    if worst > chance + gates.attacker_margin + 1e-12:
        reasons.append(f"worst attacker {worst:.1%} > chance {chance:.1%} + {gates.attacker_margin:.0%}")
    ret = metrics.get("utility_retention")
    if ret is not None and ret < gates.min_utility_retention - 1e-12:
        reasons.append(f"utility retention {ret:.1%} < {gates.min_utility_retention:.0%}")
    if gates.min_k is not None and metrics["k_anonymity"] < gates.min_k:
        reasons.append(f"k-anonymity {metrics['k_anonymity']:.0f} < {gates.min_k}")
    if gates.max_linkage_rank1 is not None and metrics["linkage_rank1"] > gates.max_linkage_rank1:
        reasons.append(f"linkage Rank-1 {metrics['linkage_rank1']:.1%} > {gates.max_linkage_rank1:.0%}")
    for g in gates.extra:
        v = metrics.get(g.metric)
        if v is None:
            reasons.append(f"{g.metric} was not measured (protocol off for this dataset)")
            continue
        if g.max is not None and v > g.max:
            reasons.append(f"{g.metric} {v:.4g} > {g.max:.4g}")
        if g.min is not None and v < g.min:
            reasons.append(f"{g.metric} {v:.4g} < {g.min:.4g}")
    return Verdict(method, not reasons, reasons)
