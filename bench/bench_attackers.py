"""The attacker pool: worst-case identity accuracy per method with the old pool and the new one.

    OMP_NUM_THREADS=2 .venv/bin/python bench/bench_attackers.py [--baselines-only] [--jaffe DIR]
        [--out docs/attackers-table.md] [--work /tmp/deid-bench-attackers]

For the built-in FERG-like set (6 characters × 7 expressions × 24 images, 50 px) and JAFFE
(64 px gray, when present) every method is fitted on train+val and applied to each split; identity
attackers are trained on the de-identified train+val images and tested on the de-identified test
images. The old pool is what the audit ran before the registry: the CNN with shifts and brightness
jitter only and no step floor, and PCA + logistic regression. The new pool is every registered
attacker with its defaults (the CNN with flips and a step floor, 150 by default). Per method: the worst case
of each pool, each attacker's accuracy and its seconds (train + predict). The table is printed and
written as Markdown to ``--out`` with the load average and the command line.
"""

from __future__ import annotations

import argparse
import dataclasses
import sys
import time
from pathlib import Path

import numpy as np

from deid.provenance import command_line, git_commit, loadavg, machine

ROOT = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(ROOT))

TRAIN, TEST = ("train", "val"), ("test",)
OLD_CNN = "cnn (old)"


def learned_methods() -> dict[str, tuple[str, dict]]:
    """The learned methods with epoch settings small enough for a CPU run."""
    return {
        "latent-shift": ("latent-shift", dict(architecture="fc", image_size=32, ae_epochs=10, finetune_epochs=5,
                                              post_epochs=0)),
        "fadenet": ("fadenet", dict(epochs=3, critic_epochs=3, min_steps=100)),
        "mi-adversarial": ("mi-adversarial", dict(epochs=2, pretrain_epochs=1, disc_pretrain_epochs=1, min_steps=0)),
        "ksame-net": ("ksame-net", dict(k=2, epochs=5, classifier_epochs=3)),
    }


def methods_for(n_ids: int, baselines_only: bool) -> dict[str, tuple[str, dict]]:
    out = {"none": ("none", {}), "blur": ("blur", {}), "pixelate": ("pixelate", {}), "blackout": ("blackout", {}),
           f"ksame-select k={n_ids}": ("ksame-select", {"k": n_ids})}
    if not baselines_only:
        out.update(learned_methods())
    return out


def deidentify(name: str, params: dict, s) -> tuple[np.ndarray, float]:
    """``name`` fitted on train+val, applied to each split on its own; PNG-quantised output and fit+apply seconds."""
    from deid.methods import get_method

    t0 = time.perf_counter()
    tr = np.isin(s.split, TRAIN)
    m = get_method(name, **params).fit(s.X[tr], s.identity[tr], s.label[tr])
    Y = np.empty_like(s.X)
    for part in (TRAIN, TEST):  # set-level methods (k-Same) make each released part k-anonymous on its own
        rows = np.isin(s.split, part)
        Y[rows] = m.transform(s.X[rows], s.identity[rows], s.label[rows])
    return np.rint(np.clip(Y, 0, 1) * 255).astype(np.float32) / 255, time.perf_counter() - t0


def attack(Y: np.ndarray, s, cnn_epochs: int, cnn_min_steps: int) -> dict[str, tuple[float, float]]:
    """Attacker name → (identity accuracy, seconds) for the old CNN and every registered attacker."""
    from deid.evaluation.attackers import AttackerConfig, available_attackers, train_attackers

    tr, te = np.isin(s.split, TRAIN), np.isin(s.split, TEST)
    new = AttackerConfig(cnn_epochs=cnn_epochs, cnn_min_steps=cnn_min_steps)
    old = dataclasses.replace(new, cnn_min_steps=0, cnn_flip=False)  # the CNN as the audit trained it before
    runs = [(OLD_CNN, "cnn", old)] + [(a, a, new) for a in available_attackers()]
    out = {}
    for label, name, cfg in runs:
        t0 = time.perf_counter()
        r = train_attackers(Y[tr], s.identity[tr], Y[te], s.identity[te], label="identity",
                            cfg=dataclasses.replace(cfg, attackers=(name,)), where=label)
        out[label] = (r.accuracy[name], time.perf_counter() - t0)
        out["chance"] = (r.chance, 0.0)
    return out


def run(dataset: str, images: Path, args) -> list[dict]:
    from deid.data import load_image_set

    s = load_image_set(images)
    n_ids = len(set(s.identity))
    print(f"{dataset}: {int(np.isin(s.split, TRAIN).sum())} train+val / {int(np.isin(s.split, TEST).sum())} test "
          f"images of shape {s.X.shape[1:]}, {n_ids} identities; load {loadavg()}", flush=True)
    rows = []
    for label, (name, params) in methods_for(n_ids, args.baselines_only).items():
        Y, fit_s = deidentify(name, params, s)
        res = attack(Y, s, args.cnn_epochs, args.cnn_min_steps)
        old_worst = max(res[OLD_CNN][0], res["linear"][0])
        new_worst = max(v[0] for k, v in res.items() if k not in (OLD_CNN, "chance"))
        rows.append({"dataset": dataset, "method": label, "fit_s": fit_s, "old": old_worst, "new": new_worst,
                     "attackers": res})
        print(f"  {label:22s} fit {fit_s:6.1f}s  worst old {old_worst:.3f}  new {new_worst:.3f}  "
              + "  ".join(f"{k} {a:.3f}/{t:.1f}s" for k, (a, t) in res.items() if k != "chance"), flush=True)
    return rows


def markdown(rows: list[dict], command: str, load: tuple[str, str], wall: float) -> str:
    names = [k for k in rows[0]["attackers"] if k != "chance"]
    head = ["dataset", "method", "chance", "worst, old pool", "worst, new pool"] + [f"{n}" for n in names]
    lines = [
        "# Informed identity attackers: old pool vs new pool",
        "",
        f"Command: `{command}`  ",
        f"Code commit `{git_commit()}`; {machine()}.  ",
        f"Load average (1/5/15 min) at start {load[0]}, at end {load[1]}; wall time {wall / 60:.1f} min.",
        "",
        "Identity accuracy of attackers trained on the de-identified train+val split, tested on the de-identified "
        "test split (lower is more private); chance is the test split's majority rate. Old pool: "
        f"`{OLD_CNN}` (shifts and brightness jitter, no step floor) and `linear`; new pool: every registered "
        "attacker with its defaults. Attacker cells: accuracy / seconds (train + predict).",
        "",
        "| " + " | ".join(head) + " |",
        "|" + "---|" * len(head),
    ]
    for r in rows:
        cells = [r["dataset"], r["method"], f"{r['attackers']['chance'][0]:.3f}", f"{r['old']:.3f}", f"{r['new']:.3f}"]
        cells += [f"{r['attackers'][n][0]:.3f} / {r['attackers'][n][1]:.1f}" for n in names]
        lines.append("| " + " | ".join(cells) + " |")
    per = {n: np.mean([r["attackers"][n][1] for r in rows]) for n in names}
    lines += ["", "Mean seconds per method (identity only; the audit also trains each attacker on the utility label): "
              + ", ".join(f"`{n}` {v:.1f}" for n, v in per.items()) + ".", ""]
    return "\n".join(lines)


def main() -> None:
    from deid.evaluation.attackers import AttackerConfig

    ap = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    ap.add_argument("--jaffe", type=Path, default=ROOT.parent / "shared" / "data" / "jaffe")
    ap.add_argument("--work", type=Path, default=Path("/tmp/deid-bench-attackers"))
    ap.add_argument("--out", type=Path, default=ROOT / "docs" / "attackers-table.md")
    ap.add_argument("--baselines-only", action="store_true", help="none, blur, pixelate, blackout, k-Same-Select")
    ap.add_argument("--no-jaffe", action="store_true")
    ap.add_argument("--images-per-cell", type=int, default=24, help="FERG-like images per character × expression")
    ap.add_argument("--cnn-epochs", type=int, default=15)
    ap.add_argument("--cnn-min-steps", type=int, default=AttackerConfig().cnn_min_steps,
                    help="the new pool's CNN step floor (the old pool has none)")
    a = ap.parse_args()
    from deid.datasets.synthetic import SyntheticFergConfig, generate_ferg_like
    from deid.ingest import ingest_dataset
    from deid.preprocessing import PreprocessConfig

    load0, t0 = loadavg(), time.perf_counter()
    ferg = a.work / f"ferg-{a.images_per_cell}"
    if not (ferg / "images").is_dir():
        root = generate_ferg_like(a.work / f"raw-{a.images_per_cell}",
                                  SyntheticFergConfig(n_characters=6, images_per_cell=a.images_per_cell))
        ingest_dataset("ferg", root, ferg, preprocess=PreprocessConfig(size=50))
    rows = run("FERG-like", ferg / "images", a)
    if a.jaffe.is_dir() and not a.no_jaffe:
        jaffe = a.work / "jaffe"
        if not (jaffe / "images").is_dir():
            ingest_dataset("jaffe", a.jaffe, jaffe, preprocess=PreprocessConfig(size=64, grayscale=True))
        rows += run("JAFFE", jaffe / "images", a)
    elif not a.no_jaffe:
        print(f"JAFFE not found at {a.jaffe}: skipped")
    text = markdown(rows, command_line(sys.argv[0]), (load0, loadavg()), time.perf_counter() - t0)
    a.out.parent.mkdir(parents=True, exist_ok=True)
    a.out.write_text(text)
    print(f"\nwrote {a.out}")


if __name__ == "__main__":
    main()
