"""Ingestion speed and memory against a bare OpenCV loop over the same files, in one run.

    .venv/bin/python bench/bench_ingest.py --sizes 5000 50000 --work /tmp/deid-bench

For each size, a FERG-like tree of 256×256 PNGs is generated (kept between runs), then:
- bare loop: read → decode → grayscale → resize to 50×50 → PNG encode, one core;
- deid ingest with 1 and 2 worker processes (each in a fresh subprocess, so its peak RSS is its own).
Prints images/s, the ratio to the bare loop (goal: ≥ 0.7 per core, ≥ 1.4 with two) and peak memory
(goal: flat as the tree grows).
"""

from __future__ import annotations

import argparse
import json
import math
import os
import resource
import subprocess
import sys
import time
from pathlib import Path

ROOT = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(ROOT))


def _tree(work: Path, n: int) -> Path:
    from deid.datasets.synthetic import SyntheticFergConfig, generate_ferg_like

    per_cell = math.ceil(n / 42)
    return generate_ferg_like(work / f"tree-{per_cell}", SyntheticFergConfig(images_per_cell=per_cell), progress=True)


def _bare(root: Path) -> dict:
    import cv2

    cv2.setNumThreads(1)
    files = sorted(root.rglob("*.png"))
    t0 = time.perf_counter()
    for f in files:
        img = cv2.imdecode(__import__("numpy").frombuffer(f.read_bytes(), "uint8"), cv2.IMREAD_UNCHANGED)
        if img.ndim == 3:
            img = cv2.cvtColor(img, cv2.COLOR_BGR2GRAY)
        small = cv2.resize(img, (50, 50), interpolation=cv2.INTER_AREA)
        cv2.imencode(".png", small)
    s = time.perf_counter() - t0
    return {"images": len(files), "seconds": s, "images_per_s": len(files) / s}


def _ingest_child(root: str, out: str, workers: int) -> None:
    from deid.ingest import ingest_dataset
    from deid.preprocessing import PreprocessConfig

    t0 = time.perf_counter()
    s = ingest_dataset("ferg", root, out, preprocess=PreprocessConfig(size=50), workers=workers, chunk=128)
    secs = time.perf_counter() - t0
    peak_self = resource.getrusage(resource.RUSAGE_SELF).ru_maxrss / 1024
    peak_children = resource.getrusage(resource.RUSAGE_CHILDREN).ru_maxrss / 1024
    print(json.dumps({"images": s.written, "seconds": secs, "images_per_s": s.written / secs,
                      "peak_rss_main_mb": peak_self, "peak_rss_worker_mb": peak_children,
                      "reconciles": s.reconciles()}))


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    ap.add_argument("--sizes", type=int, nargs="+", default=[5000, 50000])
    ap.add_argument("--workers", type=int, nargs="+", default=[1, 2])
    ap.add_argument("--work", type=Path, default=Path("/tmp/deid-bench-ingest"))
    ap.add_argument("--child", nargs=3, help=argparse.SUPPRESS)
    a = ap.parse_args()
    if a.child:
        _ingest_child(a.child[0], a.child[1], int(a.child[2]))
        return
    print(f"machine: {os.cpu_count()} cores; python {sys.version.split()[0]}")
    print(f"{'images':>8} {'path':>12} {'img/s':>8} {'× bare':>7} {'peak RSS main MB':>17} {'worker MB':>10}")
    for n in a.sizes:
        root = _tree(a.work, n)
        bare = _bare(root)
        print(f"{bare['images']:>8} {'bare loop':>12} {bare['images_per_s']:>8.0f} {1.0:>7.2f} {'-':>17} {'-':>10}", flush=True)
        for w in a.workers:
            out = a.work / f"out-{n}-{w}"
            subprocess.run(["rm", "-rf", str(out)], check=True)
            r = subprocess.run([sys.executable, __file__, "--child", str(root), str(out), str(w)],
                               capture_output=True, text=True, check=True)
            m = json.loads(r.stdout.strip().splitlines()[-1])
            print(f"{m['images']:>8} {f'ingest ×{w}':>12} {m['images_per_s']:>8.0f} "
                  f"{m['images_per_s'] / bare['images_per_s']:>7.2f} {m['peak_rss_main_mb']:>17.0f} "
                  f"{m['peak_rss_worker_mb']:>10.0f}", flush=True)


if __name__ == "__main__":
    main()
