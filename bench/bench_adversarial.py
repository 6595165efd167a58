"""Benchmark and audit of the adversarial methods: FaDeNet, the MI adversarial autoencoder, substitution.

One dataset per process (the built-in FERG-like set at 50×50, JAFFE at 64×64 from ../shared/data/jaffe).
Every table goes through :func:`deid.evaluation.audit.audit`, the same audit a release gets: the
worst of the informed attackers (CNN and PCA + logistic regression, trained on the method's
anonymized training split, tested on its test split), utility trained on anonymized and on
original images, linkage Rank-1/Rank-5 with an identity CNN the methods never saw (and dlib's
descriptor on JAFFE), SSIM. Sections:

- ``audit``: original, blur, FaDeNet (also linked with its own critic's features), the MI
  autoencoder, and the intertwined variant + substitution; with speed (fit seconds, seconds per
  epoch, inference images/s on CPU) and the adversary check;
- ``sweep``: the MI autoencoder's λ sweep (Feutry et al. Fig. 2), identity and expression against λ;
- ``targets``: Feutry et al.'s Table 1 protocol — intertwined variant towards identity i, then
  substitution — for i = 0, 2, 3, 4, 5 (indices into the sorted identities).

Run (each writes ``results-<dataset>.json`` under ``--out``)::

    OMP_NUM_THREADS=1 .venv/bin/python bench/bench_adversarial.py --dataset ferg  --out work/bench/adversarial
    OMP_NUM_THREADS=1 .venv/bin/python bench/bench_adversarial.py --dataset jaffe --out work/bench/adversarial
    .venv/bin/python bench/bench_adversarial.py --render --out work/bench/adversarial --docs docs

``--render`` writes ``docs/adversarial-results.md`` and ``docs/adversarial_sweep.png`` from the JSON files.
"""

from __future__ import annotations

import argparse
import json
import os
import time
from pathlib import Path

import numpy as np
import torch

from deid.data import ImageSet, load_image_set
from deid.evaluation.audit import AuditConfig, audit
from deid.evaluation.linkage import linkage
from deid.methods import get_method
from deid.provenance import command_line, loadavg, machine

ROOT = Path(__file__).resolve().parents[1]

PAPER_TABLE1 = {"targets": [0, 2, 3, 4, 5], "identity": [42.47, 38.25, 36.21, 32.77, 31.62],
                "expression": [72.45, 77.46, 72.32, 66.79, 72.95]}
PAPER_FADENET = "RaFD, critic InceptionV3: Rank-1 0.353 → 0.023, Rank-5 0.946 → 0.119; independent VGG-Face: Rank-1 0.902 → 0.058, Rank-5 1.0 → 0.254"
JAFFE = ROOT.parent / "shared" / "data" / "jaffe"
SIZES = {"ferg": 50, "jaffe": 64}


def prepare(dataset: str, cache: Path) -> ImageSet:
    from deid.ingest import ingest_dataset
    from deid.preprocessing import PreprocessConfig
    from deid.splits import SplitConfig

    if dataset == "ferg":
        from deid.datasets.synthetic import SyntheticFergConfig, generate_ferg_like

        tree = generate_ferg_like(cache / "raw-ferg", SyntheticFergConfig(images_per_cell=30), workers=1)  # 1,260 images, as its doc says
        ingest_dataset("ferg", tree, cache / "ferg", preprocess=PreprocessConfig(size=SIZES["ferg"]),
                       split=SplitConfig(val=0.1, test=0.2, seed=0), workers=1)
    else:
        if not JAFFE.is_dir():
            raise SystemExit(f"{JAFFE} is absent: the JAFFE part of this benchmark needs it")
        ingest_dataset("jaffe", JAFFE, cache / "jaffe", preprocess=PreprocessConfig(size=SIZES["jaffe"]),
                       split=SplitConfig(val=0.0, test=0.3, seed=0), workers=1)
    return load_image_set(cache / dataset / "images")


def run_method(name: str, params: dict, data: ImageSet, train: np.ndarray, say) -> tuple[object, ImageSet, dict]:
    """Fit on the training rows, transform every row; speed figures of fit and inference."""
    m = get_method(name, **params)
    say(f"  fitting {name} {params}")
    t = time.perf_counter()
    m.fit(data.X[train], data.identity[train], data.label[train])
    fit_s = time.perf_counter() - t
    hist = getattr(m, "history_", [])
    epochs = len({(h["phase"], h.get("epoch")) for h in hist if h["phase"] not in ("val", "critic")})
    test = ~train
    t = time.perf_counter()
    Xte = m.transform(data.X[test])
    ips = int(test.sum()) / (time.perf_counter() - t)
    X = np.empty_like(data.X)
    X[test] = Xte
    X[train] = m.transform(data.X[train])
    speed = {"fit_s": fit_s, "s_per_epoch": fit_s / max(1, epochs), "images_per_s": ips}
    check = getattr(m, "adversary_check_", None)
    if check:
        speed.update({k: check[k] for k in ("disc_learned", "private_learned") if k in check})
    say(f"  {name}: fit {fit_s:.1f} s, {ips:.0f} images/s")
    return m, ImageSet(**{**data.__dict__, "X": X}), speed


def audited(data: ImageSet, outputs: dict[str, ImageSet], dataset: str, cache: Path, say) -> dict[str, dict]:
    res = audit(data, outputs, AuditConfig(), dataset=dataset, real_faces=dataset == "jaffe",
                descriptor_cache=cache / "descriptors", progress=lambda msg: say("  audit: " + msg))
    return {name: dict(a.metrics) for name, a in res.methods.items()}


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    ap.add_argument("--dataset", choices=["ferg", "jaffe"], default="ferg")
    ap.add_argument("--out", type=Path, default=ROOT / "work" / "bench" / "adversarial")
    ap.add_argument("--lams", default="0,0.5,1,2,4")
    ap.add_argument("--targets", default="0,2,3,4,5", help="indices into the sorted identities (Feutry et al.'s 0,2,3,4,5)")
    ap.add_argument("--sections", default="audit,sweep,targets")
    ap.add_argument("--render", action="store_true", help="only write the docs page from the saved JSON files")
    ap.add_argument("--docs", type=Path, default=ROOT / "docs")
    args = ap.parse_args()
    if args.render:
        render(args.out, args.docs)
        return
    torch.set_num_threads(1)
    args.out.mkdir(parents=True, exist_ok=True)
    t_start = time.perf_counter()

    def say(msg: str) -> None:
        print(f"[{time.perf_counter() - t_start:7.1f}s] {msg}", flush=True)

    data = prepare(args.dataset, args.out / "data")
    train = np.isin(data.split, ["train", "val"])
    ids = sorted({str(v) for v in data.identity})
    sections = args.sections.split(",")
    results: dict = {"dataset": args.dataset, "n_train": int(train.sum()), "n_test": int((~train).sum()),
                     "identities": len(ids), "expressions": len(set(data.label)), "size": SIZES[args.dataset],
                     "machine": machine(), "load_start": loadavg(),
                     "command": "OMP_NUM_THREADS=" + os.environ.get("OMP_NUM_THREADS", "unset") + " "
                                + command_line("bench/bench_adversarial.py")}
    say(f"{args.dataset}: train {results['n_train']} test {results['n_test']}, {len(ids)} identities")
    path = args.out / f"results-{args.dataset}.json"

    def save() -> None:
        results["load_end"] = loadavg()
        results["wall_s"] = time.perf_counter() - t_start
        path.write_text(json.dumps(results, indent=1, default=float))

    if "audit" in sections:
        say("section audit")
        outs, speed = {}, {}
        b = get_method("blur", sigma=3.0).fit(data.X[:1])
        outs["blur σ=3"] = ImageSet(**{**data.__dict__, "X": b.transform(data.X)})
        fade, outs["fadenet λ=0.1"], speed["fadenet λ=0.1"] = run_method("fadenet", {}, data, train, say)
        critic_check = {k: v for k, v in fade.critic_check_.items() if isinstance(v, (int, float))}
        _, outs["fadenet λ=0.5"], speed["fadenet λ=0.5"] = run_method("fadenet", {"lam": 0.5}, data, train, say)
        for label, params in (("mi-adversarial λ=1", {"lam": 1.0}),
                              (f"intertwined→{ids[0]} + substitution", {"lam": 1.0, "target_identity": ids[0],
                                                                         "substitute": True})):
            _, outs[label], speed[label] = run_method("mi-adversarial", params, data, train, say)
        metrics = audited(data, outs, args.dataset, args.out, say)
        test = ~train
        crit_orig = fade.critic_features(data.X[test])
        for name, m in metrics.items():
            X = data.X[test] if name == "original" else outs[name].X[test]
            lk = linkage(crit_orig, fade.critic_features(X), data.identity[test], repeats=5, seed=0)
            m.update(critic_rank1=lk.rank1, critic_rank5=lk.rank5, **speed.get(name, {}))
        results["audit"] = metrics
        results["fadenet_critic_check"] = critic_check
        save()
    if "sweep" in sections:
        say("section sweep")
        outs, speed = {}, {}
        for lam in [float(v) for v in args.lams.split(",")]:
            _, outs[f"λ={lam:g}"], speed[f"λ={lam:g}"] = run_method("mi-adversarial", {"lam": lam}, data, train, say)
        metrics = audited(data, outs, args.dataset, args.out, say)
        for name in outs:
            metrics[name].update(lam=float(name.split("=")[1]), **speed[name])
        results["sweep"] = metrics
        save()
    if "targets" in sections:
        say("section targets")
        outs, speed = {}, {}
        for i in [int(v) for v in args.targets.split(",")]:
            t = ids[i % len(ids)]
            label = f"target {i} ({t})"
            _, outs[label], speed[label] = run_method(
                "mi-adversarial", {"lam": 1.0, "target_identity": t, "substitute": True}, data, train, say)
        metrics = audited(data, outs, args.dataset, args.out, say)
        for name in outs:
            metrics[name].update(target=int(name.split()[1]), **speed[name])
        results["targets"] = metrics
        save()
    save()
    say(f"wrote {path}")


# -- the docs page ----------------------------------------------------------------------------------------
def _f(v, d=3) -> str:
    if v is None or (isinstance(v, float) and not np.isfinite(v)):
        return "–"
    if isinstance(v, bool):
        return "yes" if v else "**no**"
    return f"{v:.{d}f}" if isinstance(v, float) else str(v)


_SPEED = ("fit_s", "s_per_epoch", "images_per_s")


def _table(rows: dict[str, dict], cols: list[tuple[str, str]], first: str = "method") -> list[str]:
    out = ["| " + " | ".join([first] + [c[1] for c in cols]) + " |", "|" + "---|" * (len(cols) + 1)]
    for name, m in rows.items():
        out.append("| " + " | ".join([f"`{name}`" if name != "original" else "*original data*"]
                                     + [_f(m.get(c[0]), 1 if c[0] in _SPEED else 3) for c in cols]) + " |")
    return out


def render(res_dir: Path, docs: Path) -> Path:
    from deid.reporting.plots import _save

    import matplotlib.pyplot as plt

    found = {ds: json.loads((res_dir / f"results-{ds}.json").read_text())
             for ds in ("ferg", "jaffe") if (res_dir / f"results-{ds}.json").is_file()}
    if not found:
        raise SystemExit(f"no results-*.json under {res_dir}: run the benchmark first")
    L = ["# Adversarial methods: measured audit, λ sweep, Feutry et al.'s Table 1 protocol", "",
         "Written by `bench/bench_adversarial.py --render` from the JSON files the benchmark writes; nothing",
         "here is typed by hand. What the methods are and where they depart from the papers: "
         "[adversarial-methods.md](adversarial-methods.md).", "",
         "Columns come from `deid.evaluation.audit` (the release audit): *id worst* = identity accuracy of the "
         "strongest informed attacker (CNN or PCA + logistic regression) trained on the method's anonymized "
         "training split and tested on its test split; *expr anon* = best expression accuracy of classifiers "
         "trained on anonymized images; *expr orig-clf* = expression classifier trained on originals applied to "
         "the outputs; *link R1/R5* = linkage Rank-1/Rank-5 (gallery originals, probes other images' outputs) "
         "with an identity CNN trained separately on the originals; *dlib R1* the same with dlib's descriptor "
         "(JAFFE); *critic R1/R5* with FaDeNet's own critic's features. One seed.", ""]
    audit_cols = [("identity_acc_worst", "id worst ↓"), ("identity_acc_cnn", "id CNN"), ("identity_acc_linear", "id linear"),
                  ("utility_acc_best", "expr anon ↑"), ("utility_orig_clf_acc", "expr orig-clf ↑"),
                  ("linkage_rank1", "link R1 ↓"), ("linkage_rank5", "link R5 ↓")]
    for ds, r in found.items():
        chance_id, chance_ex = 1 / r["identities"], 1 / r["expressions"]
        title = "Built-in FERG-like set" if ds == "ferg" else "JAFFE"
        L += [f"## {title}", "",
              f"{r['n_train']} training / {r['n_test']} test images, {r['size']}×{r['size']} gray, {r['identities']} identities "
              f"(chance {chance_id:.3f}), {r['expressions']} expressions (chance {chance_ex:.3f}).",
              f"Command `{r['command']}`; {r['machine']}; load average at start {r['load_start']}, at end "
              f"{r.get('load_end', '?')}; wall time {r.get('wall_s', 0) / 60:.1f} min.", ""]
        dl = [("linkage_dlib_rank1", "dlib R1 ↓"), ("linkage_dlib_rank5", "dlib R5 ↓")] if ds == "jaffe" else []
        if "audit" in r:
            L += ["### Audit", ""]
            L += _table(r["audit"], audit_cols + dl + [("critic_rank1", "critic R1 ↓"), ("critic_rank5", "critic R5 ↓"),
                                                      ("ssim", "SSIM"), ("fit_s", "fit s"), ("s_per_epoch", "s/epoch"),
                                                      ("images_per_s", "infer img/s"), ("disc_learned", "disc learned"),
                                                      ("private_learned", "private learned")])
            cc = r.get("fadenet_critic_check", {})
            L += ["", "FaDeNet critic check (validation slice): " + ", ".join(f"{k} {_f(v)}" for k, v in cc.items()), ""]
            a = r["audit"]
            f, o = a.get("fadenet λ=0.1", {}), a.get("original", {})
            if f and o:
                L += [f"FaDeNet next to its paper ({PAPER_FADENET}): here critic Rank-1 "
                      f"{_f(o.get('critic_rank1'))} → {_f(f.get('critic_rank1'))}, independent CNN Rank-1 "
                      f"{_f(o.get('linkage_rank1'))} → {_f(f.get('linkage_rank1'))}"
                      + (f", dlib Rank-1 {_f(o.get('linkage_dlib_rank1'))} → {_f(f.get('linkage_dlib_rank1'))}"
                         if ds == "jaffe" else "")
                      + f"; the informed attacker {_f(o.get('identity_acc_worst'))} → {_f(f.get('identity_acc_worst'))}.", ""]
        if "targets" in r:
            L += ["### Feutry et al.'s Table 1 protocol: intertwined variant towards one identity, then substitution", "",
                  "| targeted identity | id worst (ours) ↓ | id CNN | id linear | expr anon (ours) ↑ | expr orig-clf | "
                  "id (paper, FERG) | expr (paper, FERG) | id: ours − paper | expr: ours − paper |",
                  "|---|---|---|---|---|---|---|---|---|---|"]
            for name, m in sorted(r["targets"].items(), key=lambda kv: kv[1].get("target", -1)):
                if name == "original":
                    continue
                t = m["target"]
                pi = PAPER_TABLE1["targets"].index(t) if t in PAPER_TABLE1["targets"] else None
                pid = PAPER_TABLE1["identity"][pi] / 100 if pi is not None else None
                pex = PAPER_TABLE1["expression"][pi] / 100 if pi is not None else None
                L.append(f"| {name} | {_f(m['identity_acc_worst'])} | {_f(m.get('identity_acc_cnn'))} | "
                         f"{_f(m.get('identity_acc_linear'))} | {_f(m['utility_acc_best'])} | {_f(m.get('utility_orig_clf_acc'))} | "
                         f"{_f(pid)} | {_f(pex)} | {_f(m['identity_acc_worst'] - pid if pid is not None else None, 3)} | "
                         f"{_f(m['utility_acc_best'] - pex if pex is not None else None, 3)} |")
            rows = [m for n, m in r["targets"].items() if n != "original"]
            if rows:
                mid = float(np.mean([m["identity_acc_worst"] for m in rows]))
                mex = float(np.mean([m["utility_acc_best"] for m in rows]))
                L += ["", f"Mean over targets: identity {mid:.3f} (paper {np.mean(PAPER_TABLE1['identity']) / 100:.3f}, "
                          f"chance here {chance_id:.3f}), expression {mex:.3f} (paper "
                          f"{np.mean(PAPER_TABLE1['expression']) / 100:.3f}, chance here {chance_ex:.3f}). The paper's "
                          "figures are on the real FERG (6 cartoon characters, 55,767 images, 7 expressions); "
                          "ours on the dataset named above.", ""]
        if "sweep" in r:
            L += ["### λ sweep of the MI autoencoder (standard variant, Feutry et al. Fig. 2)", ""]
            sw = {f"λ = {m['lam']:g}": m for n, m in sorted(r["sweep"].items(), key=lambda kv: kv[1].get("lam", -1))
                  if n != "original"}
            L += _table(sw, audit_cols[:5] + [("ssim", "SSIM"), ("disc_learned", "disc learned"),
                                              ("private_learned", "private learned"), ("fit_s", "fit s")], "λ")
            L += [""]
    with_sweep = {ds: r for ds, r in found.items() if r.get("sweep")}
    fig, axes = plt.subplots(1, max(1, len(with_sweep)), figsize=(5 * max(1, len(with_sweep)), 3.8), squeeze=False)
    for ax, (ds, r) in zip(axes[0], with_sweep.items()):
        sw = sorted((m for n, m in r.get("sweep", {}).items() if n != "original"), key=lambda m: m["lam"])
        if sw:
            lam = [m["lam"] for m in sw]
            ax.plot(lam, [m["identity_acc_worst"] for m in sw], "o-", c="crimson", label="identity, worst informed attacker")
            ax.plot(lam, [m["utility_acc_best"] for m in sw], "s-", c="navy", label="expression, trained on outputs")
            ax.plot(lam, [m["utility_orig_clf_acc"] for m in sw], "^--", c="steelblue", label="expression, original-trained")
            ax.axhline(1 / r["identities"], color="crimson", ls=":", lw=1)
            ax.axhline(1 / r["expressions"], color="navy", ls=":", lw=1)
        ax.set_ylim(0, 1.02)
        ax.set_xlabel("λ")
        ax.set_ylabel("accuracy on the test split")
        ax.set_title(f"{ds}: MI autoencoder, accuracy against λ (dotted: chance)", fontsize=9)
        ax.grid(alpha=0.3)
        ax.legend(fontsize=7)
    if with_sweep:
        _save(fig, docs / "adversarial_sweep.png")
        L += ["## λ sweep curves", "", "![identity and expression accuracy against λ](adversarial_sweep.png)", ""]
    else:
        plt.close(fig)
    L += ["The study (`deid study`, [RESULTS.md](RESULTS.md)) runs the per-target table and the λ sweep on both "
          "datasets over 3 seeds, with the release audit; this page adds FaDeNet's critic linkage and the speed figures.", ""]
    page = docs / "adversarial-results.md"
    page.write_text("\n".join(L))
    print(f"wrote {page} and {docs / 'adversarial_sweep.png'}")
    return page


if __name__ == "__main__":
    main()
