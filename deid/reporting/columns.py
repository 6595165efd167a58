"""How each audit metric is shown: one table for the HTML report, the terminal and Markdown."""

from __future__ import annotations

from dataclasses import dataclass

__all__ = ["Column", "COLUMNS", "fmt", "chance_for"]


@dataclass(frozen=True)
class Column:
    key: str
    label: str  # the report's header
    short: str  # the terminal's header
    kind: str  # pct, int, f3, f1
    terminal: bool = True  # shown in the terminal table too


COLUMNS = (
    Column("identity_acc_worst", "identity, worst attacker", "id worst", "pct"),
    Column("tstr", "utility on real faces, trained on output (TSTR)", "TSTR", "pct"),
    Column("trts", "utility on output, original-trained (TRTS)", "TRTS", "pct"),
    Column("utility_acc_best", "utility, trained and tested on output (diagnostic)", "util(out)", "pct"),
    Column("utility_orig_clf_acc", "utility, original-trained", "util(orig clf)", "pct", False),
    Column("tstr_retention", "TSTR kept of the original's (TRTR)", "tstr kept", "pct", False),
    Column("sharpness_ratio", "sharpness ratio (Laplacian variance, median)", "sharp", "f3"),
    Column("utility_retention", "utility retention", "retention", "pct", False),
    Column("linkage_rank1", "linkage Rank-1", "rank-1", "pct"),
    Column("linkage_rank5", "linkage Rank-5", "rank-5", "pct", False),
    Column("linkage_dlib_rank1", "dlib Rank-1", "dlib rank-1", "pct", False),
    Column("faceness", "faceness", "faceness", "pct", False),
    Column("deid", "DEID", "deid", "pct", False),
    Column("div", "DIV", "div", "pct", False),
    Column("unseen_retention", "unseen attributes kept (above chance)", "unseen", "pct"),
    Column("diversity_pixels", "diversity ratio (pixels)", "div", "f3"),
    Column("diversity_features", "diversity ratio (identity features)", "div feat", "f3", False),
    Column("distinct_outputs", "distinct outputs", "distinct", "pct", False),
    Column("k_anonymity", "k", "k", "int"),
    Column("k_attacker", "k, attackers' view (1 / worst upper bound)", "k att", "f1"),
    Column("ssim", "SSIM", "ssim", "f3"),
    Column("psnr", "PSNR dB", "psnr", "f1", False),
)


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


def chance_for(key: str, row: dict) -> float | None:
    """The chance level a column is read against (identity or utility), from a row's metrics."""
    if key.endswith("rank5") and row.get("identity_chance") is not None:  # five guesses, not one
        return min(1.0, 5 * row["identity_chance"])
    if key.startswith(("identity_acc", "linkage")):
        return row.get("identity_chance")
    if key.startswith(("utility_acc", "utility_orig", "tstr", "trts")) and not key.endswith("retention"):
        return row.get("utility_chance")
    return None
