"""proxy-morph's usefulness on real faces (TSTR) against its privacy, per variant and per draw, through the audit.

    OMP_NUM_THREADS=1 .venv/bin/python bench/bench_proxy_morph_tstr.py --images DIR [--images DIR ...]
        [--variants default k2 k2-input ...] [--draws 1 2 3] [--attackers linear knn-pixels knn-hog hog-svm]
        [--audit key=value ...] [--unseen] [--out FILE] [--json FILE]

``DIR`` is an ingested images table. Per draw (``draw_seed``s from :func:`split_seeds`), every variant is fitted on the audit's
training splits (train + val, as the pipeline fits) with ``random_state`` 0 and applied to every split, one
split at a time; one :func:`deid.evaluation.audit.audit` call then measures all variants of the draw
beside the originals (the audit's TSTR, TRTS, identity attackers and sharpness ratio, nothing recomputed
here). ``--unseen`` keeps the audit's unseen attributes (off by default: they cost as much again).

Besides the audit, the *any-identity linkage*: the identity attackers trained on the original training
images name an identity for each test output, and the share of outputs whose named identity is one of
that output's own proxies (``link any``) or its heaviest one (``link top``) is set beside the same share
against the proxies of another test output with the same label (the rate an attacker blind to the
proxies gets, averaged over 20 permutations). The worst attacker (largest excess) is reported.
"""

from __future__ import annotations

import argparse
import sys
import time
from pathlib import Path

import numpy as np

from deid.provenance import command_line, git_commit, loadavg, machine

#: variants of proxy-morph: parameters over the method's defaults. The expression variants in
#: docs/proxy-morph.md (``expression: proxy|input``, ``pick: expression``: k2-proxy, k2-input, k2-pick,
#: k2-pick-input) ran at commit ee657df, whose proxy-morph had those parameters; they lifted nothing and
#: were removed.
VARIANTS: dict[str, dict] = {
    "default": {},
    "k2": {"k": 2, "max_weight": 0.7},
    "k2-dominant": {"k": 2, "max_weight": 0.7, "alpha": 0.3},  # weights mostly near the cap: 0.7 / 0.3
}

ID_ATTACKERS = ("linear", "knn-pixels", "knn-hog", "hog-svm")


def variant_params(spec: str) -> dict:
    """A variant's parameters: a name of :data:`VARIANTS`, or ``name:key=value,...`` (values read as YAML)."""
    from bench.common import key_values

    name, _, rest = spec.partition(":")
    if name not in VARIANTS:
        raise SystemExit(f"bench_proxy_morph_tstr: unknown variant {name!r}; known: {sorted(VARIANTS)}")
    return {**VARIANTS[name], **key_values(rest.split(","))}


def record_proxies(method) -> dict[str, tuple[list[int], np.ndarray]]:
    """Wrap a fitted proxy-morph's proxy draw so each input's last drawn proxies (bank rows and weights) are
    kept, keyed by the input's digest (the draw it was written with: a redraw replaces the first)."""
    seen: dict[str, tuple[list[int], np.ndarray]] = {}
    draw = method._proxies

    def recorded(label, own_hash, rng, *args, **kwargs):
        rows, w = draw(label, own_hash, rng, *args, **kwargs)
        seen[own_hash] = (list(rows), np.asarray(w))
        return rows, w

    method._proxies = recorded
    return seen


def any_identity_linkage(named: np.ndarray, proxies: list[list[str]], top: list[str], labels: np.ndarray,
                         permutations: int = 20, seed: int = 0) -> dict[str, float]:
    """Share of outputs whose ``named`` identity is among their ``proxies`` (``any``) or is their heaviest
    proxy ``top``; ``*_blind``: the same against the proxies of a random other output with the same label
    (mean over ``permutations``), what naming an identity without seeing the proxies scores."""
    named = np.asarray(named).astype(str)
    labels = np.asarray(labels).astype(str)
    n = len(named)
    hit_any = np.mean([named[i] in proxies[i] for i in range(n)])
    hit_top = np.mean([named[i] == top[i] for i in range(n)])
    rng = np.random.default_rng(seed)
    blind_any, blind_top = [], []
    for _ in range(permutations):
        perm = np.arange(n)
        for u in np.unique(labels):
            idx = np.flatnonzero(labels == u)
            perm[idx] = rng.permutation(idx)
        blind_any.append(np.mean([named[i] in proxies[perm[i]] for i in range(n)]))
        blind_top.append(np.mean([named[i] == top[perm[i]] for i in range(n)]))
    return {"link_any": float(hit_any), "link_any_blind": float(np.mean(blind_any)),
            "link_top": float(hit_top), "link_top_blind": float(np.mean(blind_top))}


def split_seeds(draw: int, split: np.ndarray) -> dict[str, int]:
    """A ``draw_seed`` per split, distinct and reproducible: one seed for every split would restart one
    random stream per split, so the i-th rows of two splits (ingested tables are sorted by identity and
    label) would draw the same proxies and link across the splits by construction."""
    return {str(s): 1000 * draw + i for i, s in enumerate(np.unique(split))}


def transform_reseeded(method, orig, seeds: dict[str, int]) -> np.ndarray:
    """A fitted proxy-morph applied to every split, one split at a time (as the pipeline hands it rows), with
    its ``draw_seed`` set to ``seeds[split]`` for each split's call."""
    Y = np.empty_like(orig.X)
    for s in np.unique(orig.split):
        k = orig.split == s
        method.draw_seed = seeds[str(s)]
        Y[k] = method.transform(orig.X[k], orig.identity[k], orig.label[k])
    return Y


def run(images: Path, variants: list[str], draws: list[int], attackers: list[str], audit_fields: dict,
        unseen: bool) -> list[dict]:
    from deid.data import ImageSet, load_image_set
    from deid.evaluation.attacker_registry import get_attacker
    from deid.evaluation.audit import ORIGINAL, AuditConfig, audit
    from deid.methods import get_method
    from deid.methods.proxy_morph import _digest

    orig = load_image_set(images)
    cfg = AuditConfig(**{"attackers": attackers, **({} if unseen else {"unseen_attributes": []}), **audit_fields})
    fit_mask = np.isin(orig.split, cfg.train_splits)
    test = orig.split == cfg.test_split
    acfg = cfg.attacker_config()
    # the identity attackers trained on the originals, once: they name an identity for each output
    named_by = {a: get_attacker(a, acfg).fit(orig.X[fit_mask], orig.identity[fit_mask]) for a in attackers}
    rows = []
    for d in draws:
        outputs, extra = {}, {}
        for v in variants:
            t0 = time.perf_counter()
            m = get_method("proxy-morph", **{**variant_params(v), "random_state": 0, "draw_seed": d})
            m.fit(orig.X[fit_mask], orig.identity[fit_mask], orig.label[fit_mask])
            t1 = time.perf_counter()
            seen = record_proxies(m)
            Y = transform_reseeded(m, orig, split_seeds(d, orig.split))
            t2 = time.perf_counter()
            outputs[v] = ImageSet(Y, orig.image_id, orig.split, orig.identity, orig.label)
            drawn = [seen[_digest(x)] for x in orig.X[test]]
            proxies = [[str(m.bank_identity_[r]) for r in rs] for rs, _ in drawn]
            top = [str(m.bank_identity_[rs[int(np.argmax(w))]]) for rs, w in drawn]
            best = None
            for a, clf in named_by.items():
                link = any_identity_linkage(clf.predict(Y[test]), proxies, top, orig.label[test], seed=d)
                link["link_attacker"] = a
                if best is None or link["link_any"] - link["link_any_blind"] > best["link_any"] - best["link_any_blind"]:
                    best = link
            extra[v] = {**best, "seconds_fit": t1 - t0, "images_per_s": len(orig.X) / (t2 - t1)}
            print(f"  {images.parent.name} draw {d} {v}: fit {t1 - t0:.1f} s, transform {t2 - t1:.1f} s", flush=True)
        res = audit(orig, outputs, cfg, dataset=images.parent.name)
        ref = res.methods[ORIGINAL].metrics
        trtr = {f"trtr{k[len('tstr'):]}": v for k, v in ref.items() if k.startswith("tstr") and "retention" not in k}
        for name, ma in res.methods.items():
            if name not in outputs:
                continue
            rows.append({"dataset": images.parent.name, "variant": name, "draw": d, **trtr,
                         "load": loadavg(), **ma.metrics, **extra[name]})
    return rows


COLUMNS = [("tstr", "TSTR [95 %]"), ("trtr", "TRTR"), ("tstr_ratio", "TSTR/TRTR"), ("trts", "TRTS"),
           ("identity_acc_worst", "worst id attacker"), ("identity_chance", "id chance"),
           ("link_any", "link any (blind)"), ("link_top", "link top (blind)"), ("sharpness_ratio", "sharpness"),
           ("unseen_retention", "unseen kept"), ("images_per_s", "img/s")]


def _cell(row: dict, key: str) -> str:
    v = row.get("tstr") / row["trtr"] if key == "tstr_ratio" and row.get("tstr") and row.get("trtr") else row.get(key)
    if v is None or (isinstance(v, float) and np.isnan(v)):
        return "—"
    if key == "tstr":
        return f"{v:.3f} [{row['tstr_lo']:.3f}, {row['tstr_hi']:.3f}]"
    if key in ("link_any", "link_top"):
        return f"{v:.3f} ({row[key + '_blind']:.3f})"
    if key == "identity_acc_worst":
        per = {k[len("identity_acc_"):]: x for k, x in row.items()
               if k.startswith("identity_acc_") and k[len("identity_acc_"):] in ID_ATTACKERS}
        return f"{v:.3f} ({max(per, key=per.get)})" if per else f"{v:.3f}"
    if key == "images_per_s":
        return f"{v:.0f}"
    return f"{v:.3f}"


def render(rows: list[dict], argv: list[str], commit: str | None = None) -> str:
    head = "| dataset | variant | draw | " + " | ".join(c[1] for c in COLUMNS) + " |"
    lines = [head, "|" + "---|" * (3 + len(COLUMNS))]
    for r in rows:
        lines.append(f"| {r['dataset']} | {r['variant']} | {r['draw']} | " + " | ".join(_cell(r, k) for k, _ in COLUMNS) + " |")
    params = ["", "Variants: " + "; ".join(f"`{v}` {VARIANTS.get(v.partition(':')[0], {})}"
                                           for v in dict.fromkeys(r["variant"] for r in rows)), ""]
    loads = sorted({r["load"] for r in rows})
    prov = (f"Measured by `{command_line('bench/bench_proxy_morph_tstr.py', argv)}` at commit "
            f"{commit or git_commit() or '?'} on {machine()}; load average (1 / 5 / 15 min) after each draw's "
            f"transforms: {', '.join(loads)}.")
    return "\n".join(lines + params + [prov, ""])


def main(argv: list[str] | None = None) -> None:
    argv = sys.argv[1:] if argv is None else argv
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--images", type=Path, action="append", required=True)
    ap.add_argument("--variants", nargs="+", default=list(VARIANTS),
                    help=f"of {sorted(VARIANTS)}, each optionally with :key=value,... (k2:alpha=0.5)")
    ap.add_argument("--draws", type=int, nargs="+", default=[1, 2])
    ap.add_argument("--attackers", nargs="+", default=list(ID_ATTACKERS))
    ap.add_argument("--audit", nargs="*", default=[], metavar="KEY=VALUE", help="other audit fields, e.g. cnn_epochs=5")
    ap.add_argument("--unseen", action="store_true", help="also the audit's unseen attributes")
    ap.add_argument("--out", type=Path, default=None)
    ap.add_argument("--json", type=Path, default=None, help="every row's figures, as JSON")
    args = ap.parse_args(argv)
    from bench.bench_proxy_mix import audit_overrides

    commit = git_commit()
    rows = []
    for images in args.images:
        rows += run(images, args.variants, args.draws, args.attackers, audit_overrides(args.audit), args.unseen)
    text = render(rows, argv, commit)
    print(text)
    if args.out:
        args.out.write_text(text)
    if args.json:
        import json

        args.json.write_text(json.dumps(rows, indent=1, default=float))


if __name__ == "__main__":
    main()
