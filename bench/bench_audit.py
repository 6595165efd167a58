"""Audit speed: images/s of each protocol, on the built-in FERG-like set and on JAFFE.

    .venv/bin/python bench/bench_audit.py [--jaffe ../shared/data/jaffe] [--work /tmp/deid-bench-audit]

Each protocol runs once on the original images (train split for training, test split for testing),
timed on its own: CNN and linear attackers (train + predict), linkage, fidelity, k-anonymity,
and on JAFFE the dlib protocols (descriptors uncached then cached, faceness, DEID, DIV).
"""

from __future__ import annotations

import argparse
import os
import sys
import time
from pathlib import Path

ROOT = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(ROOT))


def _timed(label: str, n: int, fn):
    t0 = time.perf_counter()
    out = fn()
    s = time.perf_counter() - t0
    print(f"  {label:34s} {n:>6d} images {s:8.2f} s {n / s:10.1f} images/s", flush=True)
    return out


def run(name: str, images: Path, real_faces: bool, cache: Path) -> None:
    import numpy as np

    from deid.data import load_image_set
    from deid.clustering.anonymity import k_anonymity
    from deid.evaluation.attackers import AttackerConfig, train_attackers
    from deid.evaluation.fidelity import fidelity
    from deid.evaluation.linkage import linkage
    from deid.models import CNNClassifier

    s = load_image_set(images)
    tr, te = s.of_split("train", "val"), s.of_split("test")
    print(f"{name}: {len(tr)} train / {len(te)} test images of shape {s.X.shape[1:]}, "
          f"{len(set(s.identity))} identities; {os.cpu_count()} cores, load {os.getloadavg()[0]:.1f}")
    for att in ("cnn", "linear"):
        r = _timed(f"{att} attacker (identity)", len(tr) + len(te), lambda: train_attackers(
            tr.X, tr.identity, te.X, te.identity, label="identity", cfg=AttackerConfig(attackers=(att,))))
        print(f"    accuracy {r.accuracy[att]:.3f}")
    ref = CNNClassifier().fit(tr.X, tr.identity)
    feats = _timed("identity-CNN features", len(te), lambda: ref.features(te.X))
    _timed("linkage (5 repeats)", len(te), lambda: linkage(feats, feats, te.identity))
    _timed("fidelity (SSIM, PSNR)", len(te), lambda: fidelity(te.X, np.clip(te.X * 0.9, 0, 1)))
    _timed("k-anonymity", len(s), lambda: k_anonymity(s.X, s.identity))
    if real_faces:
        from deid.evaluation.facemetrics import DescriptorCache, describe, deid_rate, diversity, faceness

        c = DescriptorCache(cache)
        d = _timed("dlib descriptors (cold or cached)", len(te), lambda: describe(te.X, c))
        _timed("dlib descriptors (cached)", len(te), lambda: describe(te.X, c))
        _timed("faceness (HOG detector)", len(te), lambda: faceness(te.X))
        _timed("DEID + DIV", len(te), lambda: (deid_rate(d, d), diversity(d)))


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    ap.add_argument("--jaffe", type=Path, default=ROOT.parent / "shared" / "data" / "jaffe")
    ap.add_argument("--work", type=Path, default=Path("/tmp/deid-bench-audit"))
    a = ap.parse_args()
    from deid.datasets.synthetic import SyntheticFergConfig, generate_ferg_like
    from deid.ingest import ingest_dataset
    from deid.preprocessing import PreprocessConfig

    root = generate_ferg_like(a.work / "raw", SyntheticFergConfig(images_per_cell=24))
    ingest_dataset("ferg", root, a.work / "ferg", preprocess=PreprocessConfig(size=50))
    run("built-in FERG-like", a.work / "ferg" / "images", False, a.work / "cache")
    if a.jaffe.is_dir():
        ingest_dataset("jaffe", a.jaffe, a.work / "jaffe", preprocess=PreprocessConfig(size=64))
        run("JAFFE", a.work / "jaffe" / "images", True, a.work / "cache")
    else:
        print(f"JAFFE not found at {a.jaffe}: skipped")


if __name__ == "__main__":
    main()
