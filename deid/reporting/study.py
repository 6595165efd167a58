"""The privacy–utility study and the performance table: aggregation, the papers' figures, markdown.

Pure: takes measured records (one per dataset × seed × method setting, as read back from the
tracking store by ``tasks/study.py``) and returns markdown and figures. The papers' numbers are
transcribed in :data:`LITERATURE`, each with its paper, table, dataset and protocol, so they are
never confused with ours.
"""

from __future__ import annotations

import math
from collections import defaultdict
from dataclasses import dataclass, field
from pathlib import Path

import numpy as np

from deid.evaluation.metric_registry import chance_level, study_metrics
from deid.methods.registry import ALIASES

__all__ = ["Record", "Aggregate", "LitFigure", "LITERATURE", "aggregate", "results_table", "literature_table",
           "paper_comparison", "reference_notes", "cost_table", "frontier_plot", "render_results", "render_performance", "perf_plot", "fmt_ms",
           "TABLE_COLUMNS", "feutry_table", "lambda_sweep", "lambda_sweep_plot"]


@dataclass(frozen=True)
class Record:
    """One audited method setting on one dataset and seed: ``metrics`` as the audit named them."""

    dataset: str
    seed: int
    key: str            # unique per setting, e.g. "blur[sigma=2]"; "original" for the reference row
    method: str         # registered name ("original" for the reference row)
    setting: str        # human-readable parameters, "" for none
    metrics: dict[str, float]
    run_id: str = ""


@dataclass
class Aggregate:
    dataset: str
    key: str
    method: str
    setting: str
    n: int
    mean: dict[str, float]
    std: dict[str, float]
    run_ids: list[str] = field(default_factory=list)


def aggregate(records: list[Record]) -> dict[str, list[Aggregate]]:
    """Mean and (population) standard deviation over seeds of every metric; per dataset, in first-seen order."""
    groups: dict[tuple[str, str], list[Record]] = defaultdict(list)
    for r in records:
        groups[(r.dataset, r.key)].append(r)
    out: dict[str, list[Aggregate]] = defaultdict(list)
    for (ds, key), rs in groups.items():
        names = sorted({m for r in rs for m in r.metrics})
        mean, std = {}, {}
        for m in names:
            vals = np.array([r.metrics[m] for r in rs if m in r.metrics and r.metrics[m] is not None], float)
            vals = vals[np.isfinite(vals)]
            if len(vals):
                mean[m], std[m] = float(vals.mean()), float(vals.std())
        out[ds].append(Aggregate(ds, key, rs[0].method, rs[0].setting, len({r.seed for r in rs}), mean, std,
                                 [r.run_id for r in rs]))
    return dict(out)


# -- cells --------------------------------------------------------------------------------------
def _cell(a: Aggregate, metric: str, digits: int = 3) -> str:
    if metric not in a.mean:
        return "–"
    v, s = a.mean[metric], a.std.get(metric, 0.0)
    if a.n > 1:
        return f"{v:.{digits}f} ± {s:.{digits}f}"
    return f"{v:.{digits}f}"


TABLE_COLUMNS = [(m.study_header(), m.key) for m in study_metrics()]  # (header, metric): the metric table's


def _columns(aggs: list[Aggregate]) -> list[tuple[str, str]]:
    present = {m for a in aggs for m in a.mean}
    return [(h, m) for h, m in TABLE_COLUMNS if m in present]


def results_table(aggs: list[Aggregate]) -> str:
    """Markdown table: chance and original reference rows first, then one row per method setting."""
    cols = _columns(aggs)
    head = "| method | setting | seeds | " + " | ".join(h for h, _ in cols) + " |"
    lines = [head, "|" + "---|" * (3 + len(cols))]
    orig = next((a for a in aggs if a.key == "original"), None)
    if orig is not None:
        chance = {m: chance_level(m, orig.mean) for _, m in cols}
        cells = [f"{chance[m]:.3f}" if chance.get(m) is not None else "–" for _, m in cols]
        lines.append("| *chance* | *reference* | – | " + " | ".join(cells) + " |")
    for a in sorted(aggs, key=lambda a: (a.key != "original",)):
        name = "*original data*" if a.key == "original" else f"`{a.method}`"
        setting = "*reference*" if a.key == "original" else (a.setting or "–")
        lines.append(f"| {name} | {setting} | {a.n} | " + " | ".join(_cell(a, m) for _, m in cols) + " |")
    return "\n".join(lines)


# -- the papers' figures ---------------------------------------------------------------------------
@dataclass(frozen=True)
class LitFigure:
    """One number printed in a paper: ``value`` as a fraction, ``printed`` exactly as the paper prints it."""

    paper: str
    table: str
    dataset: str
    protocol: str
    method: str
    setting: dict
    metric: str        # the audit metric it corresponds to
    value: float
    printed: str
    chance: float | None = None  # chance level of this figure in the paper's protocol, when it differs from ours


def _lit() -> tuple[LitFigure, ...]:
    rows: list[LitFigure] = []
    feutry = ("Feutry et al., ICASSP 2020", "Table 1", "FERG (55,767 images, 6 characters)",
              "MI-adversarial AE, intertwined, then substitution; classifier trained on processed images")
    for target, ident, emo in [(0, "42.47", "72.45"), (2, "38.25", "77.46"), (3, "36.21", "72.32"),
                               (4, "32.77", "66.79"), (5, "31.62", "72.95")]:
        rows.append(LitFigure(*feutry, "mi-adversarial", {"target_identity": target, "substitute": True},
                              "identity_acc_worst", float(ident) / 100, ident + " %"))
        rows.append(LitFigure(*feutry, "mi-adversarial", {"target_identity": target, "substitute": True},
                              "utility_acc_best", float(emo) / 100, emo + " %"))
    nousi = "Nousi et al., Deep Autoencoders for Attribute Preserving Face De-identification"
    t5 = (nousi, "Table 5", "CelebA 10K test subset (FC AE trained on LFW)", "FC AE, shift to k-means centre; dlib FCNS/DEID/DIV")
    for K, f, d, v in [(10, "100", "97.74", "7.42"), (50, "100", "95.76", "27.37"), (180, "99.83", "95.10", "44.93"),
                       (300, "99.53", "94.91", "44.77")]:
        for metric, p in (("faceness", f), ("deid", d), ("div", v)):
            rows.append(LitFigure(*t5, "latent-shift", {"architecture": "fc", "target": "kmeans", "n_clusters": K},
                                  metric, float(p) / 100, p + " %"))
    t6 = (nousi, "Table 6", "CelebA 10K test subset (conv AE)", "conv AE, flattened code shifted to the neighbour nearest the mean face")
    for a, n, f, d, v in [(0.4, 5, "98.66", "56.14", "87.87"), (0.4, 7, "98.92", "72.46", "78.00"),
                          (0.4, 9, "99.51", "91.48", "66.08"), (0.8, 5, "98.87", "59.25", "86.75"),
                          (0.8, 7, "99.15", "76.43", "76.72"), (0.8, 9, "99.80", "93.97", "55.14")]:
        for metric, p in (("faceness", f), ("deid", d), ("div", v)):
            rows.append(LitFigure(*t6, "latent-shift", {"architecture": "conv", "target": "mean_neighbour",
                                                        "alpha": a, "n_neighbors": n}, metric, float(p) / 100, p + " %"))
    t7 = (nousi, "Table 7", "CelebA 10K test subset (conv AE)", "conv AE, each grid cell shifted to its n-th nearest neighbour")
    for n, f, d, v in [(1, "98.04", "59.72", "88.76"), (5, "98.48", "61.29", "84.93"), (10, "98.62", "57.55", "87.43"),
                       (20, "98.15", "65.11", "84.45")]:
        for metric, p in (("faceness", f), ("deid", d), ("div", v)):
            rows.append(LitFigure(*t7, "latent-shift", {"architecture": "conv", "target": "grid_neighbour",
                                                        "n_neighbors": n}, metric, float(p) / 100, p + " %"))
    fad = ("Meden et al., FaDeNet", "Table I", "RaFD frontal, 57 identities (228 gallery / 228 probe)",
           "Rank-1/Rank-5 over 5 repetitions, originals as gallery")
    for rec, metric1, metric5, vals in [
        ("InceptionV3 (identity critic)", "linkage_rank1", "linkage_rank5", ("0.353", "0.023", "0.946", "0.119")),
        ("VGG-Face (independent)", "linkage_dlib_rank1", "linkage_dlib_rank5", ("0.902", "0.058", "1.0", "0.254")),
    ]:
        for stage, r1, r5 in (("original", vals[0], vals[2]), ("deidentified", vals[1], vals[3])):
            # 57 identities in the gallery: Rank-1 at chance is 1/57, Rank-5 5/57
            rows.append(LitFigure(*fad, "fadenet", {"recognizer": rec, "images": stage}, metric1, float(r1), r1, 1 / 57))
            rows.append(LitFigure(*fad, "fadenet", {"recognizer": rec, "images": stage}, metric5, float(r5), r5, 5 / 57))
    return tuple(rows)


#: The papers' own figures on their own datasets, transcribed from ``../shared/papers``.
LITERATURE: tuple[LitFigure, ...] = _lit()


def literature_table(figs: tuple[LitFigure, ...] = LITERATURE) -> str:
    """The papers' figures, grouped by table, exactly as printed."""
    out = []
    by_table: dict[tuple[str, str], list[LitFigure]] = defaultdict(list)
    for f in figs:
        by_table[(f.paper, f.table)].append(f)
    for (paper, table), fs in by_table.items():
        out.append(f"**{paper}, {table}** — dataset: {fs[0].dataset}; protocol: {fs[0].protocol}.\n")
        metrics = list(dict.fromkeys(f.metric for f in fs))
        settings = list(dict.fromkeys(tuple(sorted(f.setting.items())) for f in fs))
        out.append("| setting | " + " | ".join(metrics) + " |")
        out.append("|" + "---|" * (1 + len(metrics)))
        for s in settings:
            vals = {f.metric: f.printed for f in fs if tuple(sorted(f.setting.items())) == s}
            out.append("| " + ", ".join(f"{k}={v}" for k, v in s) + " | " + " | ".join(vals.get(m, "–") for m in metrics) + " |")
        out.append("")
    return "\n".join(out)


def _params_of(a: Aggregate) -> dict[str, str]:
    out = {}
    for part in a.setting.split(", "):
        if "=" in part:
            k, v = part.split("=", 1)
            out[k.strip()] = v.strip()
    return out


def _match(setting: dict, params: dict[str, str]) -> bool:
    return all(k in ("recognizer", "images") or (k in params and str(v) == params[k])
               or (k in params and _num_eq(v, params[k])) for k, v in setting.items())


def _num_eq(a, b) -> bool:
    try:
        return math.isclose(float(a), float(b))
    except (TypeError, ValueError):
        return str(a).lower() == str(b).lower()


def paper_comparison(aggs: dict[str, list[Aggregate]], figs: tuple[LitFigure, ...] = LITERATURE) -> list[str]:
    """One sentence per (our method setting, paper figure) pair that can be compared, with the gap.

    Lower is better for identity accuracy and linkage; higher for utility, DEID, DIV, faceness.
    For the substitution figures of Feutry et al. the target identity differs by dataset, so our
    row is compared with the paper's range (best and worst target).
    """
    lower_better = {"identity_acc_worst", "linkage_rank1", "linkage_rank5", "linkage_dlib_rank1", "linkage_dlib_rank5"}
    lines: list[str] = []
    for ds, rows in aggs.items():
        for a in rows:
            params = _params_of(a)
            if a.method == "mi-adversarial" and params.get("substitute", "").lower() == "true" and ds == "ferg":
                for metric in ("identity_acc_worst", "utility_acc_best"):
                    fs = [f for f in figs if f.method == "mi-adversarial" and f.metric == metric]
                    if metric not in a.mean or not fs:
                        continue
                    best = min(f.value for f in fs) if metric in lower_better else max(f.value for f in fs)
                    worst = max(f.value for f in fs) if metric in lower_better else min(f.value for f in fs)
                    lines.append(_verdict(ds, a, metric, a.mean[metric], best, worst, fs[0], metric in lower_better))
            elif ALIASES.get(a.method, a.method) == "latent-shift":  # stored runs may hold the former name
                for metric in ("faceness", "deid", "div"):
                    if metric not in a.mean:
                        continue
                    fs = [f for f in figs if f.method == "latent-shift" and f.metric == metric and _match(f.setting, params)]
                    for f in fs:
                        lines.append(_verdict(ds, a, metric, a.mean[metric], f.value, f.value, f, False))
            elif a.method == "fadenet":
                for metric in ("linkage_rank1", "linkage_rank5", "linkage_dlib_rank1", "linkage_dlib_rank5"):
                    fs = [f for f in figs if f.method == "fadenet" and f.metric == metric
                          and f.setting["images"] == "deidentified"]
                    if metric not in a.mean or not fs:
                        continue
                    orig = next((o for o in rows if o.key == "original"), None)
                    ch = orig.mean.get("identity_chance") if orig else None
                    if ch is not None and fs[0].chance is not None:
                        ours_ch = min(1.0, ch * (5 if metric.endswith("rank5") else 1))
                        lines.append(_verdict_chance(ds, a, metric, a.mean[metric], ours_ch, fs[0]))
                    else:
                        lines.append(_verdict(ds, a, metric, a.mean[metric], fs[0].value, fs[0].value, fs[0], True))
    return lines


def _verdict_chance(ds: str, a: Aggregate, metric: str, ours: float, ours_chance: float, f: LitFigure) -> str:
    """Linkage rates compared as margins above chance (galleries of different sizes); lower is better."""
    mo, mp = ours - ours_chance, f.value - f.chance
    where = f"{ds}, `{a.method}` {a.setting}".strip()
    gap = mo - mp
    how = (f"reaches the paper's margin (better by {abs(gap):.3f})" if gap <= 1e-9
           else f"**does not reach the paper's margin**: {gap:.3f} further above chance")
    return (f"- {where}: {metric} = {ours:.3f} (ours; chance {ours_chance:.3f}, margin {mo:+.3f}) vs {f.value:.3f} "
            f"({f.paper}, {f.table}, on {f.dataset}; chance {f.chance:.3f}, margin {mp:+.3f}) — {how}.")


def _verdict(ds: str, a: Aggregate, metric: str, ours: float, best: float, worst: float, f: LitFigure,
             lower_better: bool) -> str:
    ranged = best != worst
    rng = f"{best:.3f} (best) – {worst:.3f} (worst)" if ranged else f"{best:.3f}"
    ref = "the paper's worst figure" if ranged else "the paper's figure"
    where = f"{ds}, `{a.method}` {a.setting}".strip()
    gap = (ours - worst) if lower_better else (worst - ours)  # > 0: short of the paper
    if gap <= 1e-9:
        how = f"reaches {ref} (better by {abs(gap):.3f})"
    else:
        how = f"**does not reach {ref}**: {gap:.3f} {'higher' if lower_better else 'lower'} (worse)"
    return f"- {where}: {metric} = {ours:.3f} (ours) vs {rng} ({f.paper}, {f.table}, on {f.dataset}) — {how}."


# -- the adversarial methods' protocols ------------------------------------------------------------
def feutry_table(rows: list[Aggregate], figs: tuple[LitFigure, ...] = LITERATURE) -> str | None:
    """Feutry et al.'s Table 1 protocol (intertwined towards identity ``@i``, then substitution), our
    rows next to the paper's for the same target index; ``None`` when the run has no such rows."""
    ours = []
    for a in rows:
        p = _params_of(a)
        t = p.get("target_identity", "")
        if a.method == "mi-adversarial" and p.get("substitute", "").lower() == "true" and t.startswith("@"):
            ours.append((int(t[1:]), a))
    if not ours:
        return None
    paper = {(f.setting["target_identity"], f.metric): f for f in figs
             if f.method == "mi-adversarial" and "target_identity" in f.setting}
    orig = next((a for a in rows if a.key == "original"), None)
    lines = ["| targeted identity (index) | seeds | id acc, worst informed attacker ↓ | expression acc, trained on "
             "outputs ↑ | expression acc, original-trained clf | paper: id acc | paper: expression acc | "
             "id: ours − paper | expression: ours − paper |", "|" + "---|" * 9]
    for t, a in sorted(ours, key=lambda x: x[0]):
        pid, pex = paper.get((t, "identity_acc_worst")), paper.get((t, "utility_acc_best"))
        d_id = f"{a.mean['identity_acc_worst'] - pid.value:+.3f}" if pid and "identity_acc_worst" in a.mean else "–"
        d_ex = f"{a.mean['utility_acc_best'] - pex.value:+.3f}" if pex and "utility_acc_best" in a.mean else "–"
        lines.append(f"| @{t} | {a.n} | {_cell(a, 'identity_acc_worst')} | {_cell(a, 'utility_acc_best')} | "
                     f"{_cell(a, 'utility_orig_clf_acc')} | {pid.printed if pid else '–'} | {pex.printed if pex else '–'} | "
                     f"{d_id} | {d_ex} |")
    if orig is not None and "identity_chance" in orig.mean:
        lines += ["", f"Chance here: identity {orig.mean['identity_chance']:.3f}, expression "
                      f"{orig.mean.get('utility_chance', float('nan')):.3f}; in the paper (6 FERG characters, 7 "
                      "expressions): 0.167 and 0.143. `@i` is the i-th identity in sorted order; the paper's "
                      "identity i is the i-th FERG character, so the same index is not the same kind of face."]
    return "\n".join(lines)


def lambda_sweep(rows: list[Aggregate], method: str = "mi-adversarial") -> list[tuple[float, Aggregate]]:
    """The standard-variant settings of ``method`` (no target identity) that differ only in λ, by λ."""
    groups: dict[tuple, list[tuple[float, Aggregate]]] = defaultdict(list)
    for a in rows:
        p = _params_of(a)
        if a.method != method or "lam" not in p or "target_identity" in p:
            continue
        rest = tuple(sorted((k, v) for k, v in p.items() if k != "lam"))
        groups[rest].append((float(p["lam"]), a))
    best = max(groups.values(), key=len, default=[])
    return sorted(best, key=lambda x: x[0]) if len(best) >= 2 else []


def lambda_sweep_plot(aggs: dict[str, list[Aggregate]], path: str | Path) -> Path | None:
    """Identity (worst informed attacker) and expression accuracy against λ, mean ± std over seeds."""
    sweeps = {ds: lambda_sweep(rows) for ds, rows in aggs.items()}
    sweeps = {ds: s for ds, s in sweeps.items() if s}
    if not sweeps:
        return None
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    path = Path(path)
    fig, axes = plt.subplots(1, len(sweeps), figsize=(5.5 * len(sweeps), 4.2), squeeze=False)
    for ax, (ds, sw) in zip(axes[0], sweeps.items()):
        lam = [x for x, _ in sw]
        for metric, style, lab in (("identity_acc_worst", "o-", "identity, worst informed attacker"),
                                   ("utility_acc_best", "s-", "expression, trained on outputs"),
                                   ("utility_orig_clf_acc", "^--", "expression, original-trained clf")):
            ys = [a.mean.get(metric, float("nan")) for _, a in sw]
            ax.errorbar(lam, ys, yerr=[a.std.get(metric, 0.0) for _, a in sw], fmt=style, capsize=3, label=lab)
        orig = next((a for a in aggs[ds] if a.key == "original"), None)
        if orig is not None:
            for m, c in (("identity_chance", "C0"), ("utility_chance", "C1")):
                if m in orig.mean:
                    ax.axhline(orig.mean[m], ls=":", color=c, lw=1)
        ax.set_xlabel("λ (weight of the mutual-information term)")
        ax.set_ylabel("accuracy on the test split")
        ax.set_ylim(-0.02, 1.02)
        ax.set_title(f"{ds}: MI adversarial AE against λ (dotted: chance)", fontsize=9)
        ax.grid(alpha=0.3)
        ax.legend(fontsize=7)
    fig.tight_layout()
    path.parent.mkdir(parents=True, exist_ok=True)
    fig.savefig(path, dpi=110)
    plt.close(fig)
    return path


# -- figures ---------------------------------------------------------------------------------------
def frontier_plot(aggs: dict[str, list[Aggregate]], path: str | Path) -> Path:
    """Privacy against utility and against diversity, one column per dataset, mean ± std over seeds.

    Top row: worst informed attacker (x) against utility (y); bottom row (when the audit measured it):
    the same x against the diversity ratio (y). Each panel draws its Pareto frontier (low identity, high
    y) as a step line and chance as dashed lines; a setting whose diversity is under 0.5 (collapsed
    faces) is drawn hollow in the top row, so a point can sit on the privacy–utility frontier and still
    be seen to have collapsed."""
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    path = Path(path)
    n = max(1, len(aggs))
    has_div = any("diversity_pixels" in a.mean for rows in aggs.values() for a in rows)
    tstr = any("tstr" in a.mean for rows in aggs.values() for a in rows)  # studies audited before TSTR: the old axis
    panels = [("tstr", "utility on real faces, trained on anonymized (TSTR; higher = better)", "privacy–utility")
              if tstr else ("utility_acc_best", "utility accuracy, trained on anonymized (higher = better)", "privacy–utility")]
    if has_div:
        panels.append(("diversity_pixels", "diversity ratio, pixels (higher = more varied faces)", "privacy–diversity"))
    fig, axes = plt.subplots(len(panels), n, figsize=(6.5 * n, 5.5 * len(panels)), squeeze=False)
    for col, (ds, rows) in enumerate(aggs.items()):
        for r, panel in enumerate(panels):
            _frontier_panel(axes[r][col], ds, rows, panel, top=r == 0, has_div=has_div, cmap=plt.get_cmap("tab20"))
    fig.tight_layout()
    path.parent.mkdir(parents=True, exist_ok=True)
    fig.savefig(path, dpi=110)
    plt.close(fig)
    return path


def _frontier_panel(ax, ds: str, rows: list[Aggregate], panel: tuple[str, str, str], *, top: bool, has_div: bool,
                    cmap) -> None:
    """One dataset's panel: each setting against the worst attacker, the Pareto frontier and the chance lines."""
    metric, ylabel, title = panel
    methods = sorted({a.method for a in rows})
    orig = next((a for a in rows if a.key == "original"), None)
    pts = [(a, a.mean["identity_acc_worst"], a.mean.get(metric, float("nan"))) for a in rows
           if "identity_acc_worst" in a.mean]
    for a, x, y in pts:
        if not np.isfinite(y):
            continue
        c = "black" if a.key == "original" else cmap(methods.index(a.method) % 20)
        collapsed = top and a.mean.get("diversity_pixels", 1.0) < 0.5
        ax.errorbar(x, y, xerr=a.std.get("identity_acc_worst", 0), yerr=a.std.get(metric, 0),
                    fmt="*" if a.key == "original" else "o", color=c, ms=10 if a.key == "original" else 6,
                    mfc="none" if collapsed else c, capsize=2, alpha=0.9)
        short = a.key if len(a.key) <= 30 else a.key[:28] + "…]"
        ax.annotate(short, (x, y), fontsize=6, xytext=(3, 3), textcoords="offset points", clip_on=True)
    front = pareto_front([(x, y) for _, x, y in pts if np.isfinite(y)])
    if front:
        fx, fy = zip(*front)
        ax.step(fx, fy, where="post", color="grey", lw=1, label="frontier")
    if orig is not None and "identity_chance" in orig.mean:
        ax.axvline(orig.mean["identity_chance"], ls="--", color="red", lw=0.8, label="identity chance")
    if top and orig is not None and "utility_chance" in orig.mean:
        ax.axhline(orig.mean["utility_chance"], ls="--", color="blue", lw=0.8, label="utility chance")
    if metric == "diversity_pixels":
        ax.axhline(0.5, ls=":", color="green", lw=0.8, label="diversity 0.5 (release target)")
    ax.set_xlabel("identity accuracy, worst informed attacker (lower = more private)")
    ax.set_ylabel(ylabel)
    ax.set_title(f"{ds}: {title} (mean ± std over seeds)" + ("; hollow: diversity < 0.5" if top and has_div else ""))
    ax.set_xlim(-0.02, 1.02)
    ax.set_ylim(-0.02, 1.02)
    ax.legend(fontsize=7, loc="lower right")
    ax.grid(alpha=0.3)


def pareto_front(points: list[tuple[float, float]]) -> list[tuple[float, float]]:
    """Points not dominated by another with lower-or-equal x and higher-or-equal y, sorted by x."""
    front, best_y = [], -math.inf
    for x, y in sorted(points, key=lambda p: (p[0], -p[1])):
        if y > best_y:
            front.append((x, y))
            best_y = y
    return front


def reference_notes(rows: list[Aggregate], margin: float = 0.05) -> list[str]:
    """Notes on the reference row that change how a column reads (classifiers that did not learn)."""
    orig = next((a for a in rows if a.key == "original"), None)
    if orig is None:
        return []
    out = []
    m = orig.mean
    checks = [("identity_acc_worst", "identity_chance", "the informed identity attackers"),
              ("utility_acc_best", "utility_chance", "the informed utility classifiers"),
              ("utility_orig_clf_acc", "utility_chance", "the utility classifier trained on originals")]
    for metric, chance, who in checks:
        if metric in m and chance in m and m[metric] <= m[chance] + margin:
            out.append(f"> **Note:** on the original data {who} score {m[metric]:.3f} against chance "
                       f"{m[chance]:.3f}: they did not learn in this run, so the column `{metric}` says nothing "
                       f"about the methods here.")
    if orig.n > 1 and orig.std.get("utility_acc_best", 0.0) > 0.1:
        out.append(f"> **Note:** on the original data the utility classifiers scored {m['utility_acc_best']:.3f} ± "
                   f"{orig.std['utility_acc_best']:.3f} over seeds: they did not learn reliably in this run, so the "
                   f"utility columns are uncertain by about as much.")
    if {"utility_orig_clf_acc", "utility_acc_best"} <= m.keys() and m["utility_orig_clf_acc"] > m["utility_acc_best"] + 0.1:
        out.append(f"> **Note:** on the original data the informed utility attackers score {m['utility_acc_best']:.3f} "
                   f"while the CNN trained on originals scores {m['utility_orig_clf_acc']:.3f}: the column "
                   f"`utility_acc_best` understates the utility these images can carry (stronger attackers in the "
                   f"full mode).")
    return out + ([""] if out else [])


def cost_table(rows: list[Aggregate]) -> list[str]:
    """What each setting cost, from the figures its runs logged: fit seconds and transform images/s (as
    measured when the setting was fitted; a fit served from the cache keeps them) and audit seconds of its
    row; then the sum, which is the study's compute whether it ran in one go or was resumed."""
    have = [a for a in rows if any(k in a.mean for k in ("transform_fit_seconds", "seconds"))]
    if not have:
        return []

    def num(a: Aggregate, k: str) -> float | None:
        v = a.mean.get(k)
        return v if v is not None and v == v else None

    L = ["| setting | fit s | transform s | transform images/s | audit s (its row) |", "|---|---|---|---|---|"]
    fits = transforms = audits = 0.0
    for a in have:
        fit, ips, rows_n, aud = (num(a, "transform_fit_seconds"), num(a, "transform_images_per_s"),
                                 num(a, "transform_rows"), num(a, "seconds"))
        tr = rows_n / ips if rows_n and ips else None
        fits, transforms, audits = fits + (fit or 0.0), transforms + (tr or 0.0), audits + (aud or 0.0)
        name = "*the originals*" if a.key == "original" else f"`{a.key}`"
        L.append(f"| {name} | " + " | ".join("–" if v is None else fmt_ms(v) for v in (fit, tr, ips, aud)) + " |")
    L += ["", f"Sum: fits {fits / 60:.1f} min, transforms {transforms / 60:.1f} min, audit rows {audits / 60:.1f} min "
          f"({(fits + transforms + audits) / 3600:.1f} h of one worker each; seeds averaged). A fit's seconds are "
          "those of the run that fitted it, on a machine that may have been shared.", ""]
    return L


def render_results(aggs: dict[str, list[Aggregate]], meta: dict, plot_name: str, sweep_plot: str | None = None) -> str:
    """The whole ``RESULTS.md``: provenance, one table per dataset, the plot, the papers, the comparison."""
    L = _provenance(meta)
    L += _dataset_tables(aggs, meta)
    L += ["## Privacy–utility–diversity frontier", "", f"![privacy–utility–diversity frontier]({plot_name})", "",
          "Top: privacy against utility; bottom: privacy against the diversity ratio. The grey step line joins "
          "the settings no other setting beats on both axes of its panel; a hollow point in the top row is a "
          "setting whose faces collapsed (diversity under 0.5), however good its privacy and utility.", ""]
    L += _feutry_section(aggs)
    if sweep_plot:
        L += _sweep_section(aggs, sweep_plot)
    L += ["## The papers' figures (their numbers, on their datasets — not ours)", "",
          "These are transcribed from the papers in `../shared/papers/`. They were measured on other data "
          "(the full FERG, CelebA, RaFD), at other image sizes, with other networks, training budgets and "
          "recognizers, so they are context, not a like-for-like baseline.", "", literature_table(), "",
          "## Ours against the papers", ""]
    cmp_lines = paper_comparison(aggs)
    L += cmp_lines or ["- No method setting in this run has a counterpart in the papers' tables."]
    L.append("")
    return "\n".join(L)


def _provenance(meta: dict) -> list[str]:
    """How the file was produced: mode, study and commit, machine and load, wall time, datasets run and skipped."""
    L = ["# Results: the privacy–utility study", "",
         "Written by `deid study` from the runs in the MLflow store; nothing here is typed by hand. "
         "Regenerate from the store with `deid study --from-mlflow`.", "",
         "## How this file was produced", "",
         f"- mode: **{meta.get('mode', '?')}**; command: `{meta.get('command', '?')}`",
         f"- study id: `{meta.get('study_id', '?')}` (MLflow experiment `{meta.get('experiment', '?')}`, "
         f"tag `deid.study`); code commit `{meta.get('commit', '?')}`",
         f"- seeds: {meta.get('seeds', '?')}; audit: {meta.get('audit', '?')}",
         f"- machine: {meta.get('machine', '?')}",
         f"- load average (1/5/15 min) at start: {meta.get('load_start', '?')}; at end: {meta.get('load_end', '?')}",
         f"- wall time: {meta.get('wall_time', '?')}; (dataset, seed) units on {meta.get('workers', 1)} worker process(es)"]
    if meta.get("status") == "running":
        L.append("- **this study did not finish**: the tables hold the (dataset, seed) units logged before it stopped")
    if meta.get("full_estimate"):
        L.append(f"- expected time of the full study (`deid study`): {meta['full_estimate']}")
    L.append("")
    for ds, note in meta.get("datasets", {}).items():
        L.append(f"- dataset `{ds}`: {note}")
    for ds, why in meta.get("skipped", {}).items():
        L.append(f"- dataset `{ds}` **skipped**: {why}")
    for ds, items in meta.get("skipped_settings", {}).items():
        L.append(f"- settings not run on `{ds}` (they cannot apply): " + "; ".join(items))
    return L


def _dataset_tables(aggs: dict[str, list[Aggregate]], meta: dict) -> list[str]:
    """What the columns mean, then each dataset's table with its notes and settings, then what each setting cost."""
    L = ["", "Columns: identity accuracy of the worst (highest-scoring) informed attacker trained on the "
         "method's anonymized training split and tested on its test split; utility (expression) accuracy "
         "of a classifier trained on anonymized images, and of one trained on the original images; linkage "
         "Rank-1/Rank-5 with originals as gallery and anonymized images as probes (identity-CNN features; "
         "dlib's descriptor on real faces); k-anonymity (smallest group of identities sharing one output); "
         "FCNS/DEID/DIV (dlib faceness, de-identification rate, diversity; real faces only); SSIM to the "
         "original. Cells are mean ± std over seeds (one value when a single seed ran).", ""]
    for ds, rows in aggs.items():
        L += [f"## {ds}", "", results_table(rows), ""]
        L += reference_notes(rows)
        settings = meta.get("settings", {}).get(ds)
        if settings:
            L += ["Settings run: " + "; ".join(f"`{s}`" for s in settings), ""]
    costs = {ds: t for ds, rows in aggs.items() for t in [cost_table(rows)] if t}
    if costs:
        L += ["## What each setting cost", ""]
        for ds, t in costs.items():
            L += [f"**{ds}**", "", *t]
    return L


def _feutry_section(aggs: dict[str, list[Aggregate]]) -> list[str]:
    """Feutry et al.'s per-identity table for each dataset that ran its protocol (nothing when none did)."""
    feutry = {ds: t for ds, rows in aggs.items() for t in [feutry_table(rows)] if t}
    if not feutry:
        return []
    L = ["## Feutry et al.'s Table 1 protocol, per targeted identity", "",
         "The MI adversarial autoencoder's intertwined variant towards one identity, then substitution by "
         "that identity's nearest training image (`mi-adversarial`, `target_identity=@i`, `substitute=True`). "
         "The paper's columns are its own numbers on the real FERG.", ""]
    for ds, t in feutry.items():
        L += [f"**{ds}**", "", t, ""]
    return L


def _sweep_section(aggs: dict[str, list[Aggregate]], sweep_plot: str) -> list[str]:
    """The λ sweep's plot and, per dataset, identity and expression accuracy at each λ."""
    L = ["## λ sweep of the MI adversarial autoencoder (Feutry et al. Fig. 2)", "",
         f"![identity and expression accuracy against λ]({sweep_plot})", ""]
    for ds, rows in aggs.items():
        sw = lambda_sweep(rows)
        if sw:
            L.append(f"- {ds}: " + "; ".join(f"λ = {x:g}: identity {_cell(a, 'identity_acc_worst')}, expression "
                                              f"{_cell(a, 'utility_acc_best')}" for x, a in sw))
    L.append("")
    return L


# -- performance -----------------------------------------------------------------------------------
def fmt_ms(x: float) -> str:
    return f"{x:,.0f}" if x >= 100 else f"{x:,.1f}" if x >= 1 else f"{x:.3f}"


def render_performance(rows: list[dict], meta: dict, plot_name: str) -> str:
    """``rows``: stage, n, seconds, images_per_s, peak_mb, ref_seconds, ref_images_per_s, ref_peak_mb, what, ref."""
    L = ["# Performance: each stage against its bare-library reference", "",
         "Written by `deid perf` from measured runs; nothing here is typed by hand.", "",
         f"- command: `{meta.get('command', '?')}`",
         f"- machine: {meta.get('machine', '?')}",
         f"- load average (1/5/15 min) at start: {meta.get('load_start', '?')}; at end: {meta.get('load_end', '?')}",
         f"- sizes run: {meta.get('sizes', '?')}; skipped: {meta.get('skipped', 'none')}",
         f"- wall time: {meta.get('wall_time', '?')}", "",
         "Each (stage, N) ran in a fresh process; peak memory is that process's maximum resident set. "
         "The reference loop does the same work with the bare library in the same run, so the ratio "
         "(ours / reference time) is what carries over to another machine. Both processes import the same "
         "libraries first (numpy, torch, pyarrow, ...): the resident memory before the measured work, "
         "*start MB*, is that import floor; peak minus start is what the stage itself holds.", "",
         "| stage | N | ours: s | ours: images/s | ours: peak MB | reference: s | reference: images/s | "
         "reference: peak MB | start MB | time ratio (ours / ref) |", "|---|---|---|---|---|---|---|---|---|---|"]
    for r in rows:
        ratio = r["seconds"] / r["ref_seconds"] if r.get("ref_seconds") else float("nan")
        L.append(f"| {r['stage']} | {r['n']:,} | {fmt_ms(r['seconds'])} | {fmt_ms(r['images_per_s'])} | "
                 f"{r['peak_mb']:,.0f} | {fmt_ms(r['ref_seconds'])} | {fmt_ms(r['ref_images_per_s'])} | "
                 f"{r['ref_peak_mb']:,.0f} | {r.get('start_mb', float('nan')):,.0f} | {ratio:.2f} |")
    L += ["", "What each stage measures:", ""]
    seen = set()
    for r in rows:
        if r["stage"] not in seen:
            seen.add(r["stage"])
            L.append(f"- **{r['stage']}** — ours: {r['what']}; reference: {r['ref']}.")
    demo = meta.get("demo")
    L += ["", "## End-to-end: the default demo", ""]
    L.append(demo or "not measured in this run")
    L += ["", "## Time against N", "", f"![time against N per stage]({plot_name})", ""]
    return "\n".join(L)


def perf_plot(rows: list[dict], path: str | Path) -> Path:
    """Seconds against N (log–log), ours solid, reference dashed, one colour per stage."""
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    path = Path(path)
    fig, ax = plt.subplots(figsize=(7.5, 5.5))
    stages = list(dict.fromkeys(r["stage"] for r in rows))
    cmap = plt.get_cmap("tab10")
    for i, s in enumerate(stages):
        rs = sorted((r for r in rows if r["stage"] == s), key=lambda r: r["n"])
        ns = [r["n"] for r in rs]
        ax.plot(ns, [r["seconds"] for r in rs], "-o", color=cmap(i), label=f"{s} (ours)")
        ax.plot(ns, [r["ref_seconds"] for r in rs], "--x", color=cmap(i), alpha=0.6, label=f"{s} (reference)")
    ax.set_xscale("log")
    ax.set_yscale("log")
    ax.set_xlabel("N images")
    ax.set_ylabel("seconds")
    ax.set_title("time against N per stage (solid: deid, dashed: bare-library loop)")
    ax.grid(alpha=0.3, which="both")
    ax.legend(fontsize=7, ncol=2)
    fig.tight_layout()
    path.parent.mkdir(parents=True, exist_ok=True)
    fig.savefig(path, dpi=110)
    plt.close(fig)
    return path
