"""proxy-mix against its ablations and the other methods, through the audit, over seeds.

    OMP_NUM_THREADS=2 .venv/bin/python bench/bench_proxy_mix.py --images DIR [--images DIR ...]
        [--seeds 0 1 2] [--variants full no-mixture no-cleaning no-warp] [--others ksame-select ksame-net]
        [--attackers default] [--folds N] [--audit key=value ...] [--draws N] [--out docs/proxy-mix-results.md]

``DIR`` is an ingested images table (``work/datasets/<name>/images``, from ``deid ingest`` or a
run). ``--audit`` sets other fields of the audit's configuration (``cnn_epochs=1 cnn_width=16``, the
FERG-sized run's). ``--draws N`` transforms with each fitted proxy-mix N times (fresh mixture draws
each time; rows ``<variant> draw 2`` ...), to show how much one fitted model's figures move between
runs. Every method is fitted on the training split with ``random_state`` = the seed, applied to
every split, and audited with the audit's default attacker pool (or ``--attackers``), pooled over
``--folds`` folds when given. Per dataset, variant and seed the table gives the figures the
release gates read, with their 95 % intervals, and the verdict under the release target
(:func:`target_gates`); the mean over seeds follows. Printed and written as
Markdown to ``--out`` with the load average and the command line.
"""

from __future__ import annotations

import argparse
import sys
import time
from pathlib import Path

import numpy as np

from deid.provenance import command_line, git_commit, loadavg, machine

VARIANTS: dict[str, dict] = {
    "full": {},
    "no-mixture": {"mixture": "mean"},  # one identity code (the proxies' mean) for every image
    "no-cleaning": {"align": False, "adversary_weight": 0.0},  # the nuisance code as the encoder gives it
    "no-warp": {"warp": False},  # no pose and illumination heads
}

OTHERS: dict[str, dict] = {
    "ksame-select": {"k": 6},
    "ksame-net": {"k": 3, "epochs": 15},
    "blur": {},
    "pixelate": {},
}

KEYS = [("identity_acc_worst", "worst attacker"), ("identity_chance", "chance"),
        ("utility_acc_best", "utility"), ("utility_retention", "retention"),
        ("unseen_retention", "unseen"), ("linkage_rank1", "linkage R1"),
        ("diversity_pixels", "diversity px"), ("diversity_features", "diversity feat"), ("distinct_outputs", "distinct"), ("seconds_fit", "fit s")]


def variant_params(spec: str) -> dict:
    """A variant's parameters: a name of :data:`VARIANTS`, or ``name:key=value,key=value`` (values read as
    YAML) for that variant with the parameters changed (``full:cycle_weight=1``)."""
    from bench.common import key_values

    name, _, rest = spec.partition(":")
    if name not in VARIANTS:
        raise SystemExit(f"bench_proxy_mix: unknown variant {name!r}; known: {sorted(VARIANTS)}")
    return {**VARIANTS[name], **key_values(rest.split(","))}


def audit_overrides(pairs: list[str]) -> dict:
    """``key=value`` pairs (values read as YAML) as the audit configuration's fields, checked by it."""
    import yaml

    from deid.evaluation.audit import AuditConfig

    out = {}
    for pair in pairs:
        key, eq, value = pair.partition("=")
        if not eq or key.strip() not in AuditConfig.model_fields:
            raise SystemExit(f"bench_proxy_mix: --audit takes key=value with a key of the audit's configuration, "
                             f"not {pair!r}")
        out[key.strip()] = yaml.safe_load(value)
    return out


def target_gates(orig) -> "GateConfig":
    """The release target: worst attacker's upper bound within chance + 5 points, utility's lower bound at
    90 % of the original's, linkage Rank-1 at most twice chance, diversity at least 0.5, 95 % distinct
    outputs, and (where the set records them) 80 % of the unseen attributes' accuracy above chance."""
    from deid.evaluation.gates import Gate, GateConfig

    test_ids = len(set(orig.identity[orig.split == "test"].tolist()))
    extra = [Gate(metric="diversity_pixels", min=0.5), Gate(metric="distinct_outputs", min=0.95)]
    if orig.attributes:
        extra.append(Gate(metric="unseen_retention", min=0.8))
    return GateConfig(max_linkage_rank1=min(1.0, 2.0 / test_ids), extra=extra)


def run(images: Path, seeds: list[int], variants: list[str], others: list[str], attackers: list[str] | None,
        folds: int | None, audit_fields: dict | None = None, draws: int = 1) -> list[dict]:
    from bench.common import transform_per_split
    from deid.data import ImageSet, load_image_set
    from deid.evaluation.audit import AuditConfig, audit
    from deid.evaluation.gates import GateConfig, judge_audit
    from deid.methods import get_method

    orig = load_image_set(images)
    train = orig.split == "train"
    rows = []
    for seed in seeds:
        outputs, fit_s = {}, {}
        plan = [(f"proxy-mix/{v}", "proxy-mix", {**variant_params(v), "random_state": seed}) for v in variants]
        plan += [(o, o, {**OTHERS.get(o, {}), **({"random_state": seed} if o.startswith("ksame") else {})})
                 for o in others]
        for label, name, params in plan:
            t0 = time.perf_counter()
            m = get_method(name, **params).fit(orig.X[train], orig.identity[train], orig.label[train])
            fit_s[label] = time.perf_counter() - t0
            for d in range(draws if name == "proxy-mix" else 1):
                Y = transform_per_split(m, orig)
                row = label if d == 0 else f"{label} draw {d + 1}"
                outputs[row] = ImageSet(Y, orig.image_id, orig.split, orig.identity, orig.label)
                fit_s[row] = fit_s[label]
            print(f"  {images.parent.name} seed {seed} {label}: fitted in {fit_s[label]:.0f} s", flush=True)
        cfg = AuditConfig(**{**(audit_fields or {}), "seed": seed, "folds": folds,
                             **({"attackers": attackers} if attackers else {})})
        res = audit(orig, outputs, cfg, dataset=images.parent.name)
        judged = judge_audit({n: ma.metrics for n, ma in res.methods.items()}, target_gates(orig))
        for label, ma in res.methods.items():
            m = dict(ma.metrics)
            m["seconds_fit"] = fit_s.get(label, 0.0)
            verdict = judged.verdicts[label].status if label in judged.verdicts else "—"
            rows.append({"dataset": images.parent.name, "method": label, "seed": seed, "verdict": verdict,
                         "reasons": "; ".join(judged.verdicts[label].reasons) if label in judged.verdicts else "",
                         **m})
    return rows


def _cell(row: dict, key: str) -> str:
    v = row.get(key)
    if v is None or (isinstance(v, float) and np.isnan(v)):
        return "—"
    if key == "seconds_fit":
        return f"{v:.0f}"
    lo, hi = row.get(f"{key}_lo"), row.get(f"{key}_hi")
    if lo is not None and hi is not None:
        return f"{v:.3f} [{lo:.3f}, {hi:.3f}]"
    return f"{v:.3f}"


def render(rows: list[dict], argv: list[str], commit: str | None = None) -> str:
    """The tables as Markdown; ``commit`` is the code the rows were measured on (taken when the run began)."""
    head = "| dataset | method | seed | verdict | " + " | ".join(k[1] for k in KEYS) + " |"
    lines = [head, "|" + "---|" * (4 + len(KEYS))]
    for r in rows:
        lines.append(f"| {r['dataset']} | {r['method']} | {r['seed']} | {r['verdict']} | "
                     + " | ".join(_cell(r, k) for k, _ in KEYS) + " |")
    means = ["", "Mean over seeds (point estimates):", "",
             "| dataset | method | seeds | PASS | " + " | ".join(k[1] for k in KEYS) + " |",
             "|" + "---|" * (4 + len(KEYS))]
    groups: dict[tuple[str, str], list[dict]] = {}
    for r in rows:
        groups.setdefault((r["dataset"], r["method"]), []).append(r)
    for (ds, method), rs in groups.items():
        cells = []
        for k, _ in KEYS:
            vals = [r[k] for r in rs if r.get(k) is not None]
            cells.append(f"{np.mean(vals):.3f} ± {np.std(vals):.3f}" if vals else "—")
        passed = sum(r["verdict"] == "PASS" for r in rs)
        means.append(f"| {ds} | {method} | {len(rs)} | {passed}/{len(rs)} | " + " | ".join(cells) + " |")
    attrs = sorted({k[len("attr_"):-len("_acc_best")] for r in rows for k in r if k.startswith("attr_") and k.endswith("_acc_best")})
    per_attr = []
    if attrs:
        per_attr = ["", "Unseen attributes, each one's share of the original's accuracy above chance (the `unseen` "
                    "column is the least of them):", "",
                    "| dataset | method | seed | " + " | ".join(attrs) + " |", "|" + "---|" * (3 + len(attrs))]
        orig = {(r["dataset"], r["seed"]): r for r in rows if r["method"] == "original"}
        for r in rows:
            o = orig.get((r["dataset"], r["seed"]))
            if o is None or r["method"] == "original":
                continue
            cells = []
            for a in attrs:
                acc, ch = r.get(f"attr_{a}_acc_best"), r.get(f"attr_{a}_chance")
                oacc, och = o.get(f"attr_{a}_acc_best"), o.get(f"attr_{a}_chance")
                ok = None not in (acc, ch, oacc, och) and oacc > och
                cells.append(f"{(acc - ch) / (oacc - och):.3f}" if ok else "—")
            per_attr.append(f"| {r['dataset']} | {r['method']} | {r['seed']} | " + " | ".join(cells) + " |")
    fails = ["", "Why a row failed:", ""] + [f"- {r['dataset']} {r['method']} seed {r['seed']}: {r['reasons']}"
                                             for r in rows if r["verdict"] == "FAIL"]
    prov = (f"Measured by `{command_line('bench/bench_proxy_mix.py', argv)}` at commit {commit or git_commit() or '?'} on {machine()}, "
            f"load average {loadavg()}.")
    return "\n".join(lines + means + per_attr + fails + ["", prov, ""])


def main(argv: list[str] | None = None) -> None:
    argv = sys.argv[1:] if argv is None else argv
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--images", type=Path, action="append", required=True)
    ap.add_argument("--seeds", type=int, nargs="+", default=[0, 1, 2])
    ap.add_argument("--variants", nargs="+", default=list(VARIANTS),
                    help=f"of {sorted(VARIANTS)}, each optionally with :key=value,... (full:cycle_weight=1)")
    ap.add_argument("--others", nargs="*", default=[])
    ap.add_argument("--attackers", nargs="+", default=None)
    ap.add_argument("--folds", type=int, default=None)
    ap.add_argument("--audit", nargs="+", default=[], metavar="KEY=VALUE",
                    help="other audit fields, e.g. cnn_epochs=1 cnn_width=16")
    ap.add_argument("--draws", type=int, default=1, help="transforms (fresh draws) per fitted proxy-mix")
    ap.add_argument("--out", type=Path, default=None)
    args = ap.parse_args(argv)
    audit_fields = audit_overrides(args.audit)
    commit = git_commit()  # the code measured, before anyone commits during a long run
    rows = []
    for images in args.images:
        rows += run(images, args.seeds, args.variants, args.others, args.attackers, args.folds, audit_fields,
                    args.draws)
    text = render(rows, argv, commit)
    print(text)
    if args.out:
        args.out.write_text(text)


if __name__ == "__main__":
    main()
