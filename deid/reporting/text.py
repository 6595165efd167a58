"""The audit table for terminals, logs and Markdown, from the run's summary."""

from __future__ import annotations

from deid.reporting.columns import COLUMNS, chance_for, fmt

__all__ = ["format_table", "verdict_markdown", "summary_table"]


def _cell(row: dict, key: str, kind: str, intervals: bool) -> str:
    text = fmt(row.get(key), kind)
    lo, hi = row.get(f"{key}_lo"), row.get(f"{key}_hi")
    if intervals and row.get(key) is not None and lo is not None and hi is not None:
        text += f" [{100 * lo:.0f}–{100 * hi:.0f}]" if kind == "pct" else f" [{lo:.2f}–{hi:.2f}]"
    return text


def _grid(rows: list[dict], intervals: bool) -> tuple[list[str], list[list[str]]]:
    cols = [c for c in COLUMNS if c.terminal and any(r.get(c.key) is not None for r in rows)]
    ref = rows[0] if rows else {}
    head = ["method"] + [c.short for c in cols] + (["verdict"] if any("verdict" in r for r in rows) else [])
    chance = ["chance"] + [fmt(chance_for(c.key, ref), c.kind) if chance_for(c.key, ref) is not None else ""
                           for c in cols] + ([""] if len(head) > len(cols) + 1 else [])
    body = [[r["method"]] + [_cell(r, c.key, c.kind, intervals) for c in cols]
            + ([str(r.get("verdict", ""))] if len(head) > len(cols) + 1 else []) for r in rows]
    return head, [chance] + body


def format_table(rows: list[dict], intervals: bool = True) -> str:
    """``rows``: dicts with ``method`` and metric keys (``_lo``/``_hi`` shown as the interval, and
    optionally ``verdict``); a chance row is added."""
    if not rows:
        return "(no results)"
    head, body = _grid(rows, intervals)
    widths = [max(len(str(x[i])) for x in [head] + body) for i in range(len(head))]

    def line(xs):
        return "  ".join(str(x).rjust(w) if i else str(x).ljust(w) for i, (x, w) in enumerate(zip(xs, widths)))

    return "\n".join([line(head), line(["-" * w for w in widths])] + [line(b) for b in body])


def summary_table(doc):
    """A rich Table of a :class:`deid.reporting.summary.RunSummaryDoc`, verdicts coloured."""
    from rich.table import Table

    head, body = _grid(doc.table_rows(), True)
    t = Table(title=f"{doc.config_name}: audit {'sound' if doc.audit.sound else 'INCONCLUSIVE'}")
    for i, h in enumerate(head):
        t.add_column(h, justify="left" if i == 0 else "right", no_wrap=True)
    colour = {"PASS": "green", "FAIL": "red", "INCONCLUSIVE": "yellow"}
    for row in body:
        v = row[-1] if head[-1] == "verdict" else ""
        t.add_row(*row[:-1], f"[{colour[v]}]{v}[/]" if v in colour else v) if head[-1] == "verdict" else t.add_row(*row)
    return t


def verdict_markdown(doc) -> str:
    """The verdict table as Markdown (the Prefect artifact)."""
    head, body = _grid(doc.table_rows(), True)
    lines = [f"## deid audit — {doc.config_name}", ""]
    if not doc.audit.sound:
        lines += ["**INCONCLUSIVE** — no verdict can be trusted:", ""] + [f"- {r}" for r in doc.audit.inconclusive] + [""]
    lines += ["| " + " | ".join(head) + " |", "|" + "---|" * len(head)]
    lines += ["| " + " | ".join(str(x) for x in row) + " |" for row in body]
    rel = doc.release
    lines += ["", f"**release**: {rel.status}" + (f" — `{rel.version}`" if rel.version else "")
              + (f" — {rel.reason}" if rel.reason else "")]
    return "\n".join(lines)
