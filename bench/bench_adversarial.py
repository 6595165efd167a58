"""Benchmark and audit of the adversarial methods: FaDeNet, the MI adversarial autoencoder, substitution.

Prints, per dataset (the built-in FERG-like set at 50×50, JAFFE at 64×64 from ../shared/data/jaffe):
- speed: fit seconds, seconds per epoch, inference images/s on CPU;
- the audit table: informed attacker (trained on anonymized train, tested on anonymized test) for
  identity and expression, expression accuracy of a classifier trained on originals, pixel MSE,
  and linkage Rank-1/Rank-5 (gallery = originals, probes = anonymized other images) with the
  FaDeNet critic's features and with an independently trained recognizer;
- the λ sweep of the MI autoencoder (identity and expression accuracy against λ);
- the substitution table per targeted identity, next to Feutry et al.'s Table 1.

Run:  OMP_NUM_THREADS=1 .venv/bin/python bench/bench_adversarial.py --dataset ferg --out /tmp/adv-ferg
"""

from __future__ import annotations

import argparse
import json
import time
from pathlib import Path

import numpy as np
import torch

from deid.data import load_image_set
from deid.methods import get_method
from deid.models import CNNClassifier

PAPER_TABLE1 = {"targets": [0, 2, 3, 4, 5], "identity": [42.47, 38.25, 36.21, 32.77, 31.62],
                "expression": [72.45, 77.46, 72.32, 66.79, 72.95]}
JAFFE = Path(__file__).resolve().parents[2] / "shared" / "data" / "jaffe"


def prepare(dataset: str, cache: Path):
    from deid.ingest import ingest_dataset
    from deid.preprocessing import PreprocessConfig

    if dataset == "ferg":
        from deid.datasets.synthetic import SyntheticFergConfig, generate_ferg_like

        tree = generate_ferg_like(cache / "raw-ferg", SyntheticFergConfig(), workers=1)
        ingest_dataset("ferg", tree, cache / "ferg", preprocess=PreprocessConfig(size=50), workers=1)
    else:
        ingest_dataset("jaffe", JAFFE, cache / "jaffe", preprocess=PreprocessConfig(size=64), workers=1)
    s = load_image_set(cache / dataset / "images")
    return s.of_split("train", "val"), s.of_split("test")


def attacker(Atr, ytr, Ate, yte, seed=0) -> float:
    return CNNClassifier(epochs=12, width=16, random_state=seed).fit(Atr, ytr).score(Ate, yte)


def linkage(feats, X_gallery, X_probe, id_gallery, id_probe) -> tuple[float, float]:
    """Rank-1/Rank-5 (cosine) of probes against a gallery, rank by best same-identity gallery image."""
    G, P = feats(X_gallery), feats(X_probe)
    G = G / (np.linalg.norm(G, axis=1, keepdims=True) + 1e-12)
    P = P / (np.linalg.norm(P, axis=1, keepdims=True) + 1e-12)
    S = P @ G.T
    ranks = []
    for i in range(len(P)):
        order = np.argsort(-S[i])
        ids_sorted = list(dict.fromkeys(id_gallery[order]))  # identities in order of first appearance
        ranks.append(ids_sorted.index(id_probe[i]) + 1)
    ranks = np.array(ranks)
    return float((ranks <= 1).mean()), float((ranks <= 5).mean())


def gallery_probe_split(ids, seed=0):
    rng = np.random.default_rng(seed)
    gal = np.zeros(len(ids), bool)
    for u in np.unique(ids):
        idx = rng.permutation(np.flatnonzero(ids == u))
        gal[idx[: len(idx) // 2]] = True
    return gal


def run_method(name, params, tr, te):
    m = get_method(name, **params)
    t = time.perf_counter()
    m.fit(tr.X, tr.identity, tr.expression)
    fit_s = time.perf_counter() - t
    epochs = len({(h["phase"], h.get("epoch")) for h in getattr(m, "history_", []) if h["phase"] not in ("val", "critic")})
    t = time.perf_counter()
    Ate = m.transform(te.X)
    ips = len(te.X) / (time.perf_counter() - t)
    Atr = m.transform(tr.X)
    return m, Atr, Ate, {"fit_s": fit_s, "s_per_epoch": fit_s / max(1, epochs), "images_per_s": ips}


def audit_row(label, Atr, Ate, tr, te, critic, indep, util_orig, speed):
    gal = gallery_probe_split(te.identity)
    row = {"method": label,
           "id_informed": attacker(Atr, tr.identity, Ate, te.identity),
           "expr_informed": attacker(Atr, tr.expression, Ate, te.expression),
           "expr_orig_clf": util_orig.score(Ate, te.expression),
           "mse": float(((Ate - te.X) ** 2).mean())}
    for tag, f in (("critic", critic.critic_features), ("indep", indep.features)):
        r1, r5 = linkage(f, te.X[gal], Ate[~gal], te.identity[gal], te.identity[~gal])
        row[f"{tag}_r1"], row[f"{tag}_r5"] = r1, r5
    row.update(speed)
    return row


def fmt(rows, cols):
    out = [" | ".join(cols), " | ".join("---" for _ in cols)]
    for r in rows:
        out.append(" | ".join(f"{r[c]:.3f}" if isinstance(r.get(c), float) else str(r.get(c, "")) for c in cols))
    return "\n".join(out)


def main() -> None:
    ap = argparse.ArgumentParser()
    ap.add_argument("--dataset", choices=["ferg", "jaffe"], default="ferg")
    ap.add_argument("--out", type=Path, default=Path("/tmp/bench-adversarial"))
    ap.add_argument("--lams", default="0,1,4")
    ap.add_argument("--targets", type=int, default=3, help="how many identities to target in the substitution table")
    ap.add_argument("--sections", default="audit,sweep,substitution")
    args = ap.parse_args()
    torch.set_num_threads(1)
    args.out.mkdir(parents=True, exist_ok=True)
    tr, te = prepare(args.dataset, args.out / "data")
    ids = sorted({str(v) for v in tr.identity})
    sections = args.sections.split(",")
    print(f"{args.dataset}: train {len(tr)} test {len(te)} images {tr.X.shape[1:]}, {len(ids)} identities "
          f"(identity chance {1 / len(ids):.3f}), {len(set(tr.expression))} expressions")
    results: dict = {"dataset": args.dataset}
    indep = CNNClassifier(epochs=15, width=24, random_state=123).fit(tr.X, tr.identity)  # a recognizer FaDeNet never saw
    util_orig = CNNClassifier(epochs=15, width=16, random_state=7).fit(tr.X, tr.expression)
    fade, fAtr, fAte, fspeed = run_method("fadenet", {}, tr, te)
    print("fadenet critic check (validation slice):", {k: round(v, 3) for k, v in fade.critic_check_.items() if isinstance(v, float)})
    if "audit" in sections:
        rows = [audit_row("original", tr.X, te.X, tr, te, fade, indep, util_orig, {})]
        b = get_method("blur", sigma=3.0).fit(tr.X)
        rows.append(audit_row("blur σ=3", b.transform(tr.X), b.transform(te.X), tr, te, fade, indep, util_orig, {}))
        rows.append(audit_row("fadenet λ=0.1", fAtr, fAte, tr, te, fade, indep, util_orig, fspeed))
        for label, params in (("mi-adversarial λ=1", {"lam": 1.0}),
                              (f"mi intertwined→{ids[0]} + substitution", {"lam": 1.0, "target_identity": ids[0], "substitute": True})):
            m, Atr, Ate, sp = run_method("mi-adversarial", params, tr, te)
            row = audit_row(label, Atr, Ate, tr, te, fade, indep, util_orig, sp)
            row.update({k: m.adversary_check_[k] for k in ("disc_acc_pretrain_steps", "private_acc_pretrain_steps")})
            rows.append(row)
        cols = ["method", "id_informed", "expr_informed", "expr_orig_clf", "critic_r1", "critic_r5", "indep_r1", "indep_r5",
                "mse", "fit_s", "s_per_epoch", "images_per_s"]
        print("\n## audit (" + args.dataset + ")\n" + fmt(rows, cols))
        results["audit"] = rows
    if "sweep" in sections:
        rows = []
        for lam in [float(v) for v in args.lams.split(",")]:
            m, Atr, Ate, sp = run_method("mi-adversarial", {"lam": lam}, tr, te)
            rows.append({"lam": lam, "id_informed": attacker(Atr, tr.identity, Ate, te.identity),
                         "expr_informed": attacker(Atr, tr.expression, Ate, te.expression),
                         "mse": float(((Ate - te.X) ** 2).mean()), "fit_s": sp["fit_s"]})
        print("\n## λ sweep, mi-adversarial (" + args.dataset + ")\n" + fmt(rows, ["lam", "id_informed", "expr_informed", "mse", "fit_s"]))
        results["sweep"] = rows
    if "substitution" in sections:
        rows = []
        for t in ids[: args.targets]:
            m, Atr, Ate, sp = run_method("mi-adversarial", {"lam": 1.0, "target_identity": t, "substitute": True}, tr, te)
            rows.append({"target": t, "id_informed": attacker(Atr, tr.identity, Ate, te.identity),
                         "expr_informed": attacker(Atr, tr.expression, Ate, te.expression),
                         "expr_orig_clf": util_orig.score(Ate, te.expression), "fit_s": sp["fit_s"]})
        print("\n## substitution per targeted identity (" + args.dataset + ")\n"
              + fmt(rows, ["target", "id_informed", "expr_informed", "expr_orig_clf", "fit_s"]))
        print("Feutry et al. Table 1 (FERG, 6 identities):", PAPER_TABLE1)
        results["substitution"] = rows
    (args.out / f"results-{args.dataset}.json").write_text(json.dumps(results, indent=1, default=float))


if __name__ == "__main__":
    main()
