"""The privacy gate at the null: a method's worst informed attacker beside the same outputs with the identity labels shuffled.

    OMP_NUM_THREADS=2 .venv/bin/python bench/bench_null.py --images DIR [--method proxy-mix] [--params k=3 ...]
        [--seeds 0 1] [--draws 8] [--shuffles 4] [--leaks 0] [--attackers linear knn-pixels knn-hog hog-svm]
        [--folds 3] [--margin 0.05] [--out FILE.md]

``DIR`` is an ingested images table. Per seed the method is fitted on the training split
(``random_state`` = the seed), then applied ``--draws`` times to every split, one split at a time as
the pipeline hands a set-level method (a method that draws at random draws afresh each time). Each
output is attacked as the audit does it — every attacker of ``--attackers`` trained on all folds but
one of train + test and tested on the last, predictions pooled so every image is tested once — and
then ``--shuffles`` times more with its identity labels permuted within each utility label. A shuffled
label says nothing about the pixels, so the shuffled rows show what the worst attacker reads, and how
often the privacy gate (the worst attacker against the threshold calibrated for the worst of the pool,
:mod:`deid.evaluation.calibration`) fails, when there is nothing to read: the gate's false alarms at
this size, measured, beside the bound the audit assumes. A method whose draws score like the shuffles
holds no identity the attackers can find; its failures at the gate are the gate's.

``--leaks`` rows per draw measure the gate's power: the shuffled labels, with the true identity and the
*original* image put back for a share of the images (``--leak-share``; by default chosen so that an attacker
reading every such image scores chance + ``--margin``, ``margin / (1 − chance)``; attackers that learn the
put-back faces from a few examples read less, so the share is raised until the worst attacker reads the
margin on average): a method that leaks about the margin. The gate must fail these at least 80 % of the time.

The p-value of a draw is the share of the seed's shuffled rows whose worst attacker scores at least
as high (one added to both counts): a permutation test of "the outputs carry identity".
"""

from __future__ import annotations

import argparse
import inspect
import sys
import time
from pathlib import Path

import numpy as np

from deid.provenance import command_line, git_commit, loadavg, machine

DEFAULT_ATTACKERS = ["linear", "knn-pixels", "knn-hog", "hog-svm"]


def shuffled_within(y: np.ndarray, groups: np.ndarray, rng: np.random.Generator) -> np.ndarray:
    """``y`` permuted within each group of ``groups``: every group keeps its own multiset of labels."""
    out = np.asarray(y).copy()
    for g in np.unique(groups):
        rows = np.flatnonzero(groups == g)
        out[rows] = out[rng.permutation(rows)]
    return out


def gate_fails(accuracy: float, n: int, chance: float, margin: float, attackers: int) -> bool:
    """The privacy gate's test: the worst of ``attackers`` scores, ``accuracy`` on ``n`` images, above the
    threshold calibrated for them (:func:`deid.evaluation.calibration.privacy_threshold`)."""
    from deid.evaluation.calibration import privacy_threshold

    return accuracy > privacy_threshold(chance, margin, n, attackers).threshold + 1e-12


def attack(X: np.ndarray, identity: np.ndarray, folds: int, attackers: list[str], seed: int) -> tuple[dict, float]:
    """Each attacker's pooled accuracy over ``folds`` folds, and chance (the majority rate)."""
    from deid.evaluation.audit import AuditConfig, _pooled_attack

    acfg = AuditConfig(seed=seed, folds=folds, attackers=attackers).attacker_config()
    r = _pooled_attack(X, identity, "identity", folds, acfg, "bench_null", seed)
    return dict(r.accuracy), float(r.chance)


def leaked(Y: np.ndarray, X: np.ndarray, truth: np.ndarray, y: np.ndarray, share: float,
           rng: np.random.Generator) -> tuple[np.ndarray, np.ndarray]:
    """Outputs ``Y`` with labels ``y``, but a random ``share`` of the rows put back to their originals ``X``
    and true identities ``truth``: a method that leaks those rows."""
    pick = rng.random(len(Y)) < share
    Y, y = Y.copy(), np.asarray(y, dtype=object).copy()
    Y[pick], y[pick] = X[pick], truth[pick]
    return Y, y


def run(images: Path, method: str, params: dict, seeds: list[int], draws: int, shuffles: int,
        attackers: list[str], folds: int, leaks: int = 0, margin: float = 0.05,
        leak_share: float | None = None) -> list[dict]:
    from bench.common import transform_per_split
    from deid.data import load_image_set
    from deid.methods import get_method
    from deid.methods.registry import method_class

    orig = load_image_set(images)
    train = orig.split == "train"
    pool = np.isin(orig.split, ["train", "test"])
    ident = np.asarray(orig.identity).astype(str)
    label = np.asarray(orig.label).astype(str)
    true_chance = float(np.unique(ident[pool], return_counts=True)[1].max() / pool.sum())
    rows = []
    for seed in seeds:
        t0 = time.perf_counter()
        seeded = "random_state" in inspect.signature(method_class(method)).parameters
        m = get_method(method, **{**params, **({"random_state": seed} if seeded else {})}).fit(orig.X[train], orig.identity[train],
                                                                          orig.label[train])
        print(f"  {images.parent.name} seed {seed} {method}: fitted in {time.perf_counter() - t0:.0f} s", flush=True)
        rng = np.random.default_rng(seed)
        for d in range(draws):
            Y = transform_per_split(m, orig)
            for s in range(shuffles + leaks + 1):
                kind = "draw" if s == 0 else "shuffled" if s <= shuffles else "leaked"
                Yp, y = Y[pool], ident[pool] if s == 0 else shuffled_within(ident[pool], label[pool], rng)
                if kind == "leaked":
                    share = leak_share if leak_share is not None else margin / (1 - 1 / len(set(ident[pool])))
                    Yp, y = leaked(Yp, np.asarray(orig.X[pool]), ident[pool], y, share, rng)
                acc, chance = attack(Yp, y, folds, attackers, seed)
                if kind == "leaked":  # the audit's chance is the true identities' majority rate; putting some
                    chance = true_chance  # true labels back shifts the shuffled labels' counts, not the truth
                rows.append({"dataset": images.parent.name, "seed": seed, "draw": d, "kind": kind,
                             "accuracy": acc, "worst": max(acc.values()), "chance": chance, "n": int(pool.sum())})
            done = rows[-(shuffles + leaks + 1):]
            print(f"  seed {seed} draw {d}: worst {done[0]['worst']:.3f}, shuffled "
                  f"{[round(r['worst'], 3) for r in done if r['kind'] == 'shuffled']}, leaked "
                  f"{[round(r['worst'], 3) for r in done if r['kind'] == 'leaked']}", flush=True)
    return rows


def summarise(rows: list[dict], margin: float) -> list[dict]:
    """Per (dataset, seed, kind): the worst attacker's mean, sd, and how often the gate fails; per draw its p-value."""
    from deid.evaluation.calibration import privacy_threshold

    out = []
    for key in sorted({(r["dataset"], r["seed"]) for r in rows}):
        rs = [r for r in rows if (r["dataset"], r["seed"]) == key]
        null = np.array([r["worst"] for r in rs if r["kind"] == "shuffled"])
        for kind in ("draw", "shuffled", "leaked"):
            sel = [r for r in rs if r["kind"] == kind]
            if not sel:
                continue
            w = np.array([r["worst"] for r in sel])
            n, chance = sel[0]["n"], sel[0]["chance"]
            per = {a: np.std([r["accuracy"][a] for r in sel]) for a in sel[0]["accuracy"]}
            p = [float((1 + (null >= x - 1e-12).sum()) / (1 + len(null))) for x in w] if kind == "draw" else []
            out.append({"dataset": key[0], "seed": key[1], "kind": kind, "rows": len(sel), "n": n, "chance": chance,
                        "worst_mean": float(w.mean()), "worst_sd": float(w.std()), "worst_max": float(w.max()),
                        "fails": int(sum(gate_fails(x, n, chance, margin, len(per)) for x in w)),
                        "attacker_sd": float(np.mean(list(per.values()))),
                        "binomial_sd": float(np.sqrt(chance * (1 - chance) / n)),
                        "binomial_fail": privacy_threshold(chance, margin, n, len(per)).false_alarm,
                        "p_values": p})
    return out


def render(summary: list[dict], argv: list[str], commit: str | None = None) -> str:
    lines = ["| dataset | seed | outputs | rows | worst attacker, mean ± sd | max | gate fails | "
             "one attacker's sd (binomial) | p-value, mean (min) |", "|---|---|---|---|---|---|---|---|---|"]
    for s in summary:
        p = f"{np.mean(s['p_values']):.2f} ({min(s['p_values']):.2f})" if s["p_values"] else "—"
        what = {"draw": "as drawn", "shuffled": "identity shuffled", "leaked": "shuffled, margin leaked"}[s["kind"]]
        lines.append(f"| {s['dataset']} | {s['seed']} | {what} | {s['rows']} | {s['worst_mean']:.3f} ± {s['worst_sd']:.3f} "
                     f"| {s['worst_max']:.3f} | {s['fails']}/{s['rows']} | {s['attacker_sd']:.4f} ({s['binomial_sd']:.4f}) "
                     f"| {p} |")
    null = [s for s in summary if s["kind"] == "shuffled"]
    if null:
        fails, total = sum(s["fails"] for s in null), sum(s["rows"] for s in null)
        lines += ["", f"At the null the gate failed {fails} of {total} shuffled outputs ({fails / total:.0%}); "
                  f"the bound the audit assumes (independent attackers) is {np.mean([s['binomial_fail'] for s in null]):.1%} "
                  f"(n = {null[0]['n']}, chance {null[0]['chance']:.3f})."]
    if leaky := [s for s in summary if s["kind"] == "leaked"]:
        fails, total = sum(s["fails"] for s in leaky), sum(s["rows"] for s in leaky)
        lines += ["", f"With the margin leaked the gate failed {fails} of {total} outputs ({fails / total:.0%}; "
                  f"the worst attacker read {np.mean([s['worst_mean'] for s in leaky]):.3f} on average)."]
    prov = (f"Measured by `{command_line('bench/bench_null.py', argv)}` at commit {commit or git_commit() or '?'} on "
            f"{machine()}, load average {loadavg()}.")
    return "\n".join(lines + ["", prov, ""])


def main(argv: list[str] | None = None) -> None:
    from bench.common import key_values

    argv = sys.argv[1:] if argv is None else argv
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--images", type=Path, required=True)
    ap.add_argument("--method", default="proxy-mix")
    ap.add_argument("--params", nargs="*", default=["k=3"], metavar="KEY=VALUE")
    ap.add_argument("--seeds", type=int, nargs="+", default=[0, 1])
    ap.add_argument("--draws", type=int, default=8)
    ap.add_argument("--shuffles", type=int, default=4)
    ap.add_argument("--leaks", type=int, default=0, help="rows per draw with the margin leaked (the gate's power)")
    ap.add_argument("--leak-share", type=float, default=None,
                    help="share of images put back (default margin / (1 - chance): attackers that read every one)")
    ap.add_argument("--attackers", nargs="+", default=DEFAULT_ATTACKERS)
    ap.add_argument("--folds", type=int, default=3)
    ap.add_argument("--margin", type=float, default=0.05)
    ap.add_argument("--out", type=Path, default=None)
    args = ap.parse_args(argv)
    if bad := [p for p in args.params if "=" not in p]:
        raise SystemExit(f"bench_null: --params takes key=value, not {bad[0]!r}")
    params = key_values(args.params)
    commit = git_commit()
    rows = run(args.images, args.method, params, args.seeds, args.draws, args.shuffles, args.attackers, args.folds,
               args.leaks, args.margin, args.leak_share)
    text = render(summarise(rows, args.margin), argv, commit)
    print(text)
    if args.out:
        args.out.write_text(text)


if __name__ == "__main__":
    main()
