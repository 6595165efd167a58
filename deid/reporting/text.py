"""The audit table as plain text, for terminals and logs."""

from __future__ import annotations

__all__ = ["format_table"]

_COLS = [("identity_acc_worst", "id worst", "pct"), ("identity_acc_cnn", "id cnn", "pct"),
         ("identity_acc_linear", "id lin", "pct"), ("utility_acc_best", "utility", "pct"),
         ("utility_orig_clf_acc", "util(orig clf)", "pct"), ("linkage_rank1", "rank-1", "pct"),
         ("k_anonymity", "k", "int"), ("ssim", "ssim", "f3"), ("verdict", "verdict", "str")]


def _fmt(v, kind):
    if v is None:
        return "-"
    if kind == "pct":
        return f"{100 * v:5.1f}%"
    if kind == "int":
        return f"{v:.0f}"
    if kind == "f3":
        return f"{v:.3f}"
    return str(v)


def format_table(rows: list[dict]) -> str:
    """``rows``: dicts with ``method`` and metric keys (and optionally ``verdict``); a chance row is added."""
    if not rows:
        return "(no results)"
    chance = {"method": "chance", "identity_acc_worst": rows[0].get("identity_chance"),
              "utility_acc_best": rows[0].get("utility_chance")}
    cols = [c for c in _COLS if any(r.get(c[0]) is not None for r in rows)]
    body = [[r["method"]] + [_fmt(r.get(k), kind) for k, _, kind in cols] for r in [chance] + rows]
    head = ["method"] + [label for _, label, _ in cols]
    widths = [max(len(str(x[i])) for x in [head] + body) for i in range(len(head))]
    line = lambda xs: "  ".join(str(x).rjust(w) if i else str(x).ljust(w) for i, (x, w) in enumerate(zip(xs, widths)))  # noqa: E731
    return "\n".join([line(head), line(["-" * w for w in widths])] + [line(b) for b in body])
