"""How each audit metric is shown in the HTML report, the terminal and the card: the metric table's
report columns (:mod:`deid.evaluation.metric_registry`), in its order."""

from __future__ import annotations

from dataclasses import dataclass

from deid.evaluation.metric_registry import chance_level, report_metrics

__all__ = ["Column", "COLUMNS", "fmt", "chance_for"]


@dataclass(frozen=True)
class Column:
    key: str
    label: str  # the report's header
    short: str  # the terminal's header
    kind: str  # pct, int, f3, f1
    terminal: bool = True  # shown in the terminal table too
    meaning: str = ""  # one line saying what it measures (the card's and the report's legend)


COLUMNS = tuple(Column(m.key, m.label, m.short or m.key, m.kind, m.short is not None, m.meaning)
                for m in report_metrics())


def fmt(v, kind: str) -> str:
    if v is None:
        return "—"
    if kind == "pct":
        return f"{100 * v:.1f}%"
    if kind == "int":
        return f"{v:.0f}"
    if kind == "f3":
        return f"{v:.3f}"
    return f"{v:.1f}"


#: the chance level a column is read against, from a row's metrics (the metric table's rule)
chance_for = chance_level
