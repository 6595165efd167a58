"""Ingestion speed and memory against the bare OpenCV loop over the same files, in one run.

    .venv/bin/python bench/bench_ingest.py --sizes 10000 --work /tmp/deid-bench-ingest
    .venv/bin/python bench/bench_ingest.py --sizes 10000 --image-size 256   # FERG's own size: decoding dominates
    .venv/bin/python bench/bench_ingest.py --tree /data/FERG_DB_256          # any FERG-layout tree

Each size's input is the tree ``deid perf`` measures (64×64 PNGs, ``round(N / 42)`` per character and
expression, made by ``bench.perf``); ``--image-size 256`` makes 256×256 ones. Every file is read once
before anything is timed (a warm file cache for every side), then, each in a fresh process:

- bare loop (``bench.common.ingest_reference``): list the tree, then read → decode → grayscale → resize
  to 50×50 → PNG encode per file, one core; run before and after the ingests, their mean is the reference;
- ``deid.ingest.ingest_dataset`` with 1 and 2 worker processes, all security checks on; its libraries
  (pyarrow, pandas, tqdm) are imported before the clock starts, as the loop's are; worker processes start
  inside the timed part.

Prints images/s, the speed ratio to the bare loop (target: ≥ 0.8 on one worker, ≥ 1.5 on two), peak
memory, the load averages before and after, and with ``--costs`` what each check costs per image.
"""

from __future__ import annotations

import argparse
import hashlib
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


def _tree(work: Path, n: int, image_size: int) -> Path:
    if image_size == 64:
        from bench.perf import _data

        return _data(n, work)[0]  # the same files deid perf measures at this N
    from deid.datasets.synthetic import SyntheticFergConfig, generate_ferg_like

    per_cell = math.ceil(n / 42)
    return generate_ferg_like(work / f"tree-{per_cell}-{image_size}",
                              SyntheticFergConfig(images_per_cell=per_cell, size=image_size), progress=True)


def _files(root: Path) -> list[Path]:
    return sorted(root.rglob("*.png"))


def _warm(root: Path) -> int:
    """Read every file once, so that every measured side finds them in the page cache."""
    return sum(len(f.read_bytes()) for f in _files(root))


def _reference_child(root: str) -> None:
    import cv2

    from bench.common import ingest_reference

    cv2.setNumThreads(1)
    t0 = time.perf_counter()
    files = _files(Path(root))  # the loop lists the tree too, as ingest does
    listing = time.perf_counter() - t0
    print(json.dumps({"images": len(files), "seconds": listing + ingest_reference(files), "listing_s": listing}))


def _ingest_child(root: str, out: str, workers: int) -> None:
    import pandas  # noqa: F401  pyarrow imports it on its first array; the import floor, not the work
    import tqdm.auto  # noqa: F401

    from deid.ingest import ingest_dataset
    from deid.preprocessing import PreprocessConfig

    t0 = time.perf_counter()
    s = ingest_dataset("ferg", root, out, preprocess=PreprocessConfig(size=50), workers=workers, chunk=128)
    secs = time.perf_counter() - t0
    peak_self = resource.getrusage(resource.RUSAGE_SELF).ru_maxrss / 1024
    peak_children = resource.getrusage(resource.RUSAGE_CHILDREN).ru_maxrss / 1024
    print(json.dumps({"images": s.input, "written": s.written, "seconds": secs, "peak_rss_main_mb": peak_self,
                      "peak_rss_worker_mb": peak_children, "reconciles": s.reconciles()}))


def _child(*args: str) -> dict:
    r = subprocess.run([sys.executable, __file__, "--child", *args], capture_output=True, text=True, check=True)
    return json.loads(r.stdout.strip().splitlines()[-1])


def _costs(root: Path, sample: int, ingest_s: float, n: int) -> list[tuple[str, float]]:
    """Milliseconds per image of each check (and of the PNG level), timed alone on ``sample`` of the files."""
    import cv2
    import numpy as np

    from deid.datasets import get_loader
    from deid.imageio import check_header, decode_image, encode_png
    from deid.ingest import _content_hashes, _label_conflicts
    from deid.preprocessing import PreprocessConfig, preprocess_image
    from deid.splits import image_hash64, near_duplicates_across_splits

    cfg = PreprocessConfig(size=50)
    t0 = time.perf_counter()
    scan = get_loader("ferg").scan(root)
    per_scan = (time.perf_counter() - t0) / max(1, len(scan.items))
    t0 = time.perf_counter()
    plain = _files(root)
    per_list = (time.perf_counter() - t0) / max(1, len(plain))
    items = scan.items[:sample]
    datas = [Path(it.path).read_bytes() for it in items]
    outs = [preprocess_image(decode_image(d), cfg) for d in datas]

    def per(fn, seq) -> float:
        best = math.inf
        for _ in range(3):
            t = time.perf_counter()
            for x in seq:
                fn(x)
            best = min(best, time.perf_counter() - t)
        return best / len(seq) * 1e3

    hashes = _content_hashes(scan.items, 1, cfg.max_file_bytes)
    t0 = time.perf_counter()
    _label_conflicts(scan.items, hashes)
    conflicts = (time.perf_counter() - t0) / len(scan.items) * 1e3
    rng = np.random.default_rng(0)
    ph = [image_hash64(o) for o in outs]
    ph = [ph[i % len(ph)] ^ (1 << int(rng.integers(0, 63))) for i in range(n)]
    t0 = time.perf_counter()
    near_duplicates_across_splits(ph, list(rng.choice(["train", "val", "test"], n, p=[0.7, 0.1, 0.2])),
                                  [it.identity for it in (scan.items * (n // len(scan.items) + 1))[:n]])
    near = (time.perf_counter() - t0) / n * 1e3
    return [
        ("path containment, labels, skip rules (the loader's scan, less a bare listing)", (per_scan - per_list) * 1e3),
        ("content hash pass (read + sha256 of every file, before any decode)",
         per(lambda it: hashlib.sha256(Path(it.path).read_bytes()).hexdigest(), items)),
        ("max_file_bytes and regular-file check (stat)", per(lambda it: os.stat(it.path), items)),
        ("changed-during-ingest guard (sha256 of the bytes decoded)", per(lambda d: hashlib.sha256(d).digest(), datas)),
        ("header check (size, pages; Pillow, no pixel decoded)",
         per(lambda d: check_header(d, max_pixels=cfg.max_pixels, min_side=cfg.min_side, multipage=cfg.multipage),
             datas)),
        ("perceptual hash of the written image", per(image_hash64, outs)),
        ("near-duplicate search across splits (indexed by hash blocks)", near),
        ("label conflicts (same bytes under two identities)", conflicts),
        ("PNG level 3 (the product's) over OpenCV's default", per(encode_png, outs) - per(lambda o: cv2.imencode(".png", o), outs)),
    ]


def _print_costs(costs: list[tuple[str, float]], ingest_ms: float) -> None:
    print(f"\nwhat each check costs (ms per image, timed alone; share of ingest ×1 at {ingest_ms:.3f} ms per image)")
    for name, ms in costs:
        print(f"  {name:84s} {ms:7.4f} ms {100 * ms / ingest_ms:5.1f} %")


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    ap.add_argument("--sizes", type=int, nargs="+", default=[10000])
    ap.add_argument("--workers", type=int, nargs="+", default=[1, 2])
    ap.add_argument("--image-size", type=int, default=64, choices=[64, 256])
    ap.add_argument("--tree", type=Path, help="measure this FERG-layout tree instead of a generated one")
    ap.add_argument("--work", type=Path, default=Path("/tmp/deid-bench-ingest"))
    ap.add_argument("--costs", action="store_true", help="also time each check alone")
    ap.add_argument("--child", nargs="+", help=argparse.SUPPRESS)
    a = ap.parse_args()
    if a.child:
        _reference_child(a.child[1]) if a.child[0] == "ref" else _ingest_child(*a.child[1:3], int(a.child[3]))
        return
    from deid.provenance import loadavg

    print(f"machine: {os.cpu_count()} cores; python {sys.version.split()[0]}; load average before: {loadavg()}")
    print(f"{'images':>8} {'path':>12} {'img/s':>8} {'× bare':>7} {'peak RSS main MB':>17} {'worker MB':>10}")
    for n in ([0] if a.tree else a.sizes):
        root = a.tree or _tree(a.work, n, a.image_size)
        _warm(root)
        refs = [_child("ref", str(root))]
        runs = {}
        for w in a.workers:
            out = a.work / f"out-{n}-{w}"
            subprocess.run(["rm", "-rf", str(out)], check=True)
            runs[w] = _child("ingest", str(root), str(out), str(w))
        refs.append(_child("ref", str(root)))
        bare = sum(r["images"] for r in refs) / sum(r["seconds"] for r in refs)
        each = ", ".join(f"{r['images'] / r['seconds']:.0f}" for r in refs)
        print(f"{refs[0]['images']:>8} {'bare loop':>12} {bare:>8.0f} {1.0:>7.2f} {'-':>17} {'-':>10}   "
              f"(before and after: {each} img/s; listing {refs[0]['listing_s']:.2f} s)")
        for w, m in runs.items():
            ips = m["images"] / m["seconds"]
            print(f"{m['images']:>8} {f'ingest ×{w}':>12} {ips:>8.0f} {ips / bare:>7.2f} {m['peak_rss_main_mb']:>17.0f} "
                  f"{m['peak_rss_worker_mb']:>10.0f}   ({m['seconds']:.2f} s, reconciles: {m['reconciles']})", flush=True)
        if a.costs and 1 in runs:
            _print_costs(_costs(root, 2000, runs[1]["seconds"], runs[1]["images"]),
                         runs[1]["seconds"] / runs[1]["images"] * 1e3)
    print(f"load average after: {loadavg()}")


if __name__ == "__main__":
    main()
