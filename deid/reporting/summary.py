"""The run's machine-readable sign-off: ``work/runs/<config>/summary.json``.

One document per run, validated by :class:`RunSummaryDoc`: per method every metric with its 95 %
interval, the attacker table, the verdict (PASS / FAIL / INCONCLUSIVE) with reasons and the gate
thresholds, the audit's checks of itself, the release (version, path) or why there is none, and
where the run is recorded (MLflow run, Prefect flow run, config, code commit, date). The CLI prints
its table from this file.
"""

from __future__ import annotations

import json
from pathlib import Path
from typing import Literal

from pydantic import BaseModel, ConfigDict, Field

from deid.provenance import git_commit
from data_contracts.atomic import write_text_atomic

__all__ = ["Interval", "MethodSummary", "AuditSummary", "ReleaseSummary", "RunSummaryDoc", "build_summary",
           "write_summary", "read_summary", "SUMMARY_FILE", "EXIT_CODES"]

SUMMARY_FILE = "summary.json"
#: each run's own summary, beside the latest (runs of one config at once each keep theirs)
SUMMARIES_DIR = "summaries"
SCHEMA_VERSION = 1
# What `deid run` exits with, by outcome (configuration errors exit 2 before any of these).
EXIT_CODES = {"ok": 0, "inconclusive": 3, "blocked": 4}


class _Strict(BaseModel):
    model_config = ConfigDict(extra="forbid")


class Interval(_Strict):
    value: float
    lo: float | None = None
    hi: float | None = None


class MethodSummary(_Strict):
    role: Literal["reference", "control", "method"]
    verdict: Literal["PASS", "FAIL", "INCONCLUSIVE"] | None
    reasons: list[str] = Field(default_factory=list)
    checks: list[dict] = Field(default_factory=list)
    used_utility_label: bool | None = None
    accuracies: dict[str, Interval]  # every *_acc_* metric with its interval
    attackers: dict[str, dict[str, Interval]]  # label ("identity", "utility") → attacker → accuracy
    metrics: dict[str, float]  # everything else the audit measured


class AuditSummary(_Strict):
    sound: bool
    inconclusive: list[str]
    checks: list[dict]
    gates: dict
    chance: dict[str, float | None]
    n_test: float
    n_eval: float | None = None


class ReleaseSummary(_Strict):
    status: Literal["not requested", "published", "reused", "blocked"]
    method: str | None = None
    version: str | None = None
    path: str | None = None
    reason: str | None = None


class RunSummaryDoc(_Strict):
    schema_version: int = SCHEMA_VERSION
    config_name: str
    dataset: dict
    date: str
    code_commit: str
    mlflow_run_id: str | None = None
    prefect_flow_run_id: str | None = None
    report: str | None = None
    audit: AuditSummary
    methods: dict[str, MethodSummary]
    release: ReleaseSummary
    timings: dict | None = None  # wall seconds per stage of the run, and each method's fit and transform figures
    seeds: dict | None = None  # every effective seed: run, split, audit, synthetic, which were derived, per method

    @property
    def outcome(self) -> str:
        if not self.audit.sound:
            return "inconclusive"
        return "blocked" if self.release.status == "blocked" else "ok"

    def table_rows(self) -> list[dict]:
        """One dict per method: the metrics (with ``_lo``/``_hi``) and the verdict, for printing."""
        rows = []
        for name, m in self.methods.items():
            row = {"method": name, **m.metrics}
            for k, iv in m.accuracies.items():
                row[k] = iv.value
                if iv.lo is not None:
                    row[f"{k}_lo"], row[f"{k}_hi"] = iv.lo, iv.hi
            row["verdict"] = m.verdict or "reference"
            rows.append(row)
        return rows


def _split_metrics(metrics: dict[str, float]) -> tuple[dict[str, Interval], dict[str, dict[str, Interval]], dict[str, float]]:
    acc, attackers, rest = {}, {}, {}
    for k, v in metrics.items():
        if k.endswith(("_lo", "_hi")):
            continue
        if "_acc_" in k or (f"{k}_lo" in metrics and f"{k}_hi" in metrics):  # every figure with an interval
            iv = Interval(value=v, lo=metrics.get(f"{k}_lo"), hi=metrics.get(f"{k}_hi"))
            acc[k] = iv
            label, _, attacker = k.partition("_acc_")
            if label in ("identity", "utility") and attacker not in ("worst", "best"):
                attackers.setdefault(label, {})[attacker] = iv
        else:
            rest[k] = float(v)
    return acc, attackers, rest


def build_summary(*, config_name: str, dataset: dict, date: str, methods: dict[str, dict[str, float]],
                  judgement, gates: dict, release: ReleaseSummary, used_utility_label: dict[str, bool],
                  controls: tuple[str, ...], reference: str, mlflow_run_id: str | None = None,
                  prefect_flow_run_id: str | None = None, report: str | None = None,
                  code_commit: str | None = None, timings: dict | None = None,
                  seeds: dict | None = None) -> RunSummaryDoc:
    """Assemble the document from the audit's metrics and its judgement; ``code_commit`` defaults to
    :func:`deid.provenance.git_commit`."""
    out = {}
    for name, metrics in methods.items():
        acc, attackers, rest = _split_metrics(metrics)
        v = judgement.verdicts.get(name) if name != reference else None
        role = "reference" if name == reference else "control" if name in controls else "method"
        out[name] = MethodSummary(role=role, verdict=v.status if v else None, reasons=v.reasons if v else [],
                                  checks=v.checks if v else [], used_utility_label=used_utility_label.get(name),
                                  accuracies=acc, attackers=attackers, metrics=rest)
    ref = methods[reference]
    audit = AuditSummary(sound=judgement.sound, inconclusive=judgement.inconclusive, checks=judgement.checks,
                         gates=gates, chance={"identity": ref.get("identity_chance"), "utility": ref.get("utility_chance")},
                         n_test=ref.get("n_test", 0.0), n_eval=ref.get("n_eval"))
    return RunSummaryDoc(config_name=config_name, dataset=dataset, date=date, code_commit=code_commit or git_commit(),
                         mlflow_run_id=mlflow_run_id, prefect_flow_run_id=prefect_flow_run_id, report=report,
                         audit=audit, methods=out, release=release, timings=timings, seeds=seeds)


def write_summary(doc: RunSummaryDoc, run_dir: str | Path) -> Path:
    """Write this run's own summary, ``<run_dir>/summaries/<date>-<run id>.json``, and ``<run_dir>/summary.json``
    (the latest run's), each atomically; returns the run's own. Two runs of one config at once each keep
    their own summary, MLflow run and outcome, whichever wrote ``summary.json`` last."""
    import re
    import uuid

    text = json.dumps(doc.model_dump(mode="json"), indent=2)  # methods keep the audit's order
    run_id = doc.prefect_flow_run_id or doc.mlflow_run_id or uuid.uuid4().hex
    stamp = re.sub(r"[^0-9A-Za-z]+", "", doc.date)[:15]
    own = write_text_atomic(Path(run_dir) / SUMMARIES_DIR / f"{stamp}-{re.sub(r'[^0-9A-Za-z-]+', '', run_id)}.json", text)
    write_text_atomic(Path(run_dir) / SUMMARY_FILE, text)
    return own


def read_summary(path: str | Path) -> RunSummaryDoc:
    p = Path(path)
    if p.is_dir():
        p = p / SUMMARY_FILE
    return RunSummaryDoc.model_validate_json(p.read_text())
