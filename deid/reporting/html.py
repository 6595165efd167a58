"""The audit report: one self-contained HTML file (images embedded) a person can read."""

from __future__ import annotations

import base64
import html
import json
from pathlib import Path

from deid.reporting.columns import COLUMNS, chance_for, fmt
from data_contracts.atomic import write_text_atomic

__all__ = ["render_report"]


def _cell(row: dict, col: dict) -> str:
    v = row.get(col["key"])
    text = html.escape(fmt(v, col["kind"]))
    lo, hi = row.get(f"{col['key']}_lo"), row.get(f"{col['key']}_hi")
    if v is not None and lo is not None and hi is not None:
        text += (f"<br><small>[{100 * lo:.1f}–{100 * hi:.1f}]</small>" if col["kind"] == "pct"
                 else f"<br><small>[{lo:.2f}–{hi:.2f}]</small>")
    return text


def _headline(judgement, verdicts: dict, header: dict) -> tuple[str, str]:
    released = header.get("release_method")
    if not judgement.sound:
        return "INCONCLUSIVE", "No verdict: the audit cannot vouch for itself"
    if released:
        status = verdicts.get(released, ("FAIL",))[0]
        return status, f"{released}: {status}" + (" — released" if header.get("release_version") else " — not released")
    passed = [m for m, v in verdicts.items() if v[0] == "PASS"]
    return ("PASS", f"passing every gate: {', '.join(passed)}") if passed else ("FAIL", "no method passes every gate")


def render_report(path: str | Path, *, title: str, dataset: dict, rows: list[dict], verdicts: dict[str, tuple[str, list[str]]],
                  figures: list[tuple[str, Path]], config: dict, notes: list[str] | None = None, judgement=None,
                  header: dict | None = None) -> Path:
    """Write the report. ``rows``: one dict per method (``method`` + metrics), reference rows first;
    ``verdicts``: method → (PASS | FAIL | INCONCLUSIVE, reasons); ``judgement``: the audit's checks of
    itself (:class:`deid.evaluation.gates.AuditJudgement`); ``header``: run ids, date, commit, release."""
    from jinja2 import Environment, PackageLoader, select_autoescape

    header = header or {}
    env = Environment(loader=PackageLoader("deid.reporting", "templates"), autoescape=select_autoescape(["j2", "html"]))
    cols = [{"key": c.key, "label": c.label, "kind": c.kind} for c in COLUMNS if any(r.get(c.key) is not None for r in rows)]
    ref = rows[0] if rows else {}

    def chance_cell(key: str) -> str:
        c = chance_for(key, ref)
        return fmt(c, "pct") if c is not None else ""

    status, headline = _headline(judgement, verdicts, header) if judgement is not None else ("", "")
    attackers = sorted({k.split("_acc_", 1)[1] for r in rows for k in r
                        if k.startswith(("identity_acc_", "utility_acc_")) and not k.endswith(("_lo", "_hi"))
                        and k.split("_acc_", 1)[1] not in ("worst", "best")})
    doc = env.get_template("report.html.j2").render(
        title=title, dataset=dataset, rows=rows, cols=cols, verdicts=verdicts, notes=notes or [],
        judgement=judgement, header=header, box={"status": status, "headline": headline},
        gates=config.get("gates", {}), cell=_cell, chance_cell=chance_cell, attackers=attackers,
        figures=[(cap, base64.b64encode(Path(p).read_bytes()).decode(), Path(p).stem) for cap, p in figures],
        config_json=json.dumps(config, indent=2, sort_keys=True, default=str))
    return write_text_atomic(path, doc)
