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

Prints images/s, the speed ratio to the bare loop (target: ≥ 0.8 on one worker, ≥ 1.5 on two), the CPU
seconds per image (workers included; unlike the wall clock, about the same on a busy machine), peak memory,
the load averages before and after, and with ``--costs`` what each check costs per image: the main
process's steps timed where they run, the workers' by an ingest without the one step (measurement only).
"""

from __future__ import annotations

import argparse
import json
import math
import os
import resource
import shlex
import shutil
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
    c0, t0 = _cpu(), time.perf_counter()
    files = _files(Path(root))  # the loop lists the tree too, as ingest does
    listing = time.perf_counter() - t0
    secs = listing + ingest_reference(files)
    print(json.dumps({"images": len(files), "seconds": secs, "cpu_s": _cpu() - c0, "listing_s": listing}))


def _cpu() -> float:
    """CPU seconds of this process and of its children that ended (the workers): unlike the wall clock, the same
    on a busy machine."""
    me, kids = resource.getrusage(resource.RUSAGE_SELF), resource.getrusage(resource.RUSAGE_CHILDREN)
    return me.ru_utime + me.ru_stime + kids.ru_utime + kids.ru_stime


# what each check costs, in place: the main process's steps timed where they run, the workers' checks by
# running ingest once more without one of them (here only, to measure; the product has no switch to drop one)
_PHASES = {  # step of deid.ingest timed in place → what it checks
    "_scan": "path containment, labels, skip rules (the loader's scan)",
    "_content_hashes": "content hash pass (read + sha256 of every file, before any decode)",
    "_screen": "label conflicts (same bytes under two identities)",
    "_fingerprint": "fingerprint of settings, paths, labels and hashes (reuse keyed on content)",
    "_near_duplicates": "near-duplicate search across splits (indexed by hash blocks)",
}
_WITHOUT = {  # variant → the worker step it leaves out
    "no-header": "header check (size, pages; Pillow, no pixel decoded)",
    "no-phash": "perceptual hash of the written image",
    "png-default": "PNG level 3 (the product's) over OpenCV's default",
}


def _leave_out(variant: str, ingest) -> None:
    """Measurement only: take one worker step out of ``deid.ingest`` in this process (one worker)."""
    import itertools

    import cv2

    from deid.imageio import ImageHeader

    if variant == "no-header":
        ingest.check_header = lambda data, **kw: ImageHeader("?", 0, 0, 1)
    elif variant == "no-phash":  # distinct hashes, so the near-duplicate search does the same work
        ingest.image_hash64 = lambda img, c=itertools.count(): (next(c) * 0x9E3779B97F4A7C15) % 2**63
    elif variant == "png-default":
        ingest.encode_png = lambda img: cv2.imencode(".png", img)[1].tobytes()


def _timed_phases(ingest) -> dict[str, float]:
    spent = dict.fromkeys(_PHASES, 0.0)
    for name in _PHASES:
        def timed(*a, _f=getattr(ingest, name), _name=name, **kw):
            t = time.process_time()
            try:
                return _f(*a, **kw)
            finally:
                spent[_name] += time.process_time() - t
        setattr(ingest, name, timed)
    return spent


def _ingest_child(root: str, out: str, workers: int, variant: str = "all") -> None:
    import pandas  # noqa: F401  pyarrow imports it on its first array; the import floor, not the work
    import tqdm.auto  # noqa: F401

    import deid.ingest as ingest
    from deid.preprocessing import PreprocessConfig

    shutil.rmtree(out, ignore_errors=True)  # a fresh output: nothing to reuse
    phases = _timed_phases(ingest)
    _leave_out(variant, ingest)
    c0, t0 = _cpu(), time.perf_counter()
    s = ingest.ingest_dataset("ferg", root, out, preprocess=PreprocessConfig(size=50), workers=workers, chunk=128)
    secs, cpu = time.perf_counter() - t0, _cpu() - c0
    peak_self = resource.getrusage(resource.RUSAGE_SELF).ru_maxrss / 1024
    peak_children = resource.getrusage(resource.RUSAGE_CHILDREN).ru_maxrss / 1024
    print(json.dumps({"images": s.input, "written": s.written, "seconds": secs, "cpu_s": cpu,
                      "peak_rss_main_mb": peak_self,
                      "peak_rss_worker_mb": peak_children, "reconciles": s.reconciles(), "phases": phases}))


def _child(*args: str) -> dict:
    r = subprocess.run([sys.executable, __file__, "--child", *args], capture_output=True, text=True, check=True)
    return json.loads(r.stdout.strip().splitlines()[-1])


def _costs(root: Path, out: Path, full: dict) -> list[tuple[str, float]]:
    """CPU seconds per image of each check (CPU time: a busy machine moves it much less than the wall clock):
    the main process's steps from ``full`` (one worker), the workers' by ingest runs without one step, against a
    second full run (their mean is the base); the sha256 of the bytes decoded (the changed-during-ingest guard)
    and the size check are timed alone, too small to see so."""
    import hashlib as hl

    from deid.preprocessing import PreprocessConfig

    n = full["images"]
    rows = [(_PHASES[k], v / n) for k, v in full["phases"].items()]
    again = _child("ingest", str(root), str(out), "1", "all")
    base = (full["cpu_s"] + again["cpu_s"]) / 2
    for variant, what in _WITHOUT.items():
        rows.append((what, (base - _child("ingest", str(root), str(out), "1", variant)["cpu_s"]) / n))
    files = _files(root)[:2000]
    datas = [f.read_bytes() for f in files]
    limit = PreprocessConfig().max_file_bytes
    t = time.process_time()
    for d in datas:
        hl.sha256(d).digest()
    guard = (time.process_time() - t) / len(datas)
    t = time.process_time()
    for f in files:
        os.stat(f).st_size > limit
    size_check = (time.process_time() - t) / len(files)
    rows += [("changed-during-ingest guard (sha256 of the bytes decoded)", guard),
             ("max_file_bytes and regular-file check (stat, before any byte is read)", size_check)]
    return rows


def _costs_md(costs: list[tuple[str, float]], per_image: float) -> list[str]:
    out = [f"What each check costs, one worker, in CPU time (ingest at {per_image * 1e3:.3f} CPU ms per image):", "",
           "| check | CPU ms per image | % of ingest |", "|---|---|---|"]
    out += [f"| {name} | {s * 1e3:.4f} | {100 * s / per_image:.1f} |" for name, s in costs]
    return out


def _size_md(refs: list[dict], runs: dict[int, dict]) -> list[str]:
    bare = sum(r["images"] for r in refs) / sum(r["seconds"] for r in refs)
    bare_cpu = sum(r["cpu_s"] for r in refs) / sum(r["images"] for r in refs)
    each = ", ".join(f"{r['images'] / r['seconds']:,.0f}" for r in refs)
    out = [f"| {refs[0]['images']:,} | bare loop | {bare:,.0f} | 1.00 | {bare_cpu * 1e3:.3f} | 1.00 | - | - | "
           f"before and after the ingests: {each} img/s; listing {refs[0]['listing_s']:.2f} s |"]
    for w, m in runs.items():
        ips, cpu = m["images"] / m["seconds"], m["cpu_s"] / m["images"]
        out.append(f"| {m['images']:,} | ingest ×{w} | {ips:,.0f} | {ips / bare:.2f} | {cpu * 1e3:.3f} | "
                   f"{bare_cpu / cpu:.2f} | {m['peak_rss_main_mb']:.0f} | {m['peak_rss_worker_mb']:.0f} | "
                   f"{m['seconds']:.2f} s, reconciles: {m['reconciles']} |")
    return out


def _measure(root: Path, work: Path, n: int, workers: list[int]) -> tuple[list[dict], dict[int, dict]]:
    _warm(root)
    refs = [_child("ref", str(root))]
    runs = {w: _child("ingest", str(root), str(work / f"out-{n}-{w}"), str(w)) for w in workers}
    refs.append(_child("ref", str(root)))
    return refs, runs


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    ap.add_argument("--sizes", type=int, nargs="+", default=[10000])
    ap.add_argument("--workers", type=int, nargs="+", default=[1, 2])
    ap.add_argument("--image-size", type=int, default=64, choices=[64, 256])
    ap.add_argument("--tree", type=Path, help="measure this FERG-layout tree instead of a generated one")
    ap.add_argument("--work", type=Path, default=Path("/tmp/deid-bench-ingest"))
    ap.add_argument("--costs", action="store_true", help="also measure what each check costs")
    ap.add_argument("--doc", type=Path, help="write the results into this file's bench_ingest section")
    ap.add_argument("--child", nargs="+", help=argparse.SUPPRESS)
    a = ap.parse_args()
    if a.child:
        _reference_child(a.child[1]) if a.child[0] == "ref" else _ingest_child(*a.child[1:3], int(a.child[3]),
                                                                                *a.child[4:])
        return
    from deid.provenance import loadavg, machine

    command = " ".join([".venv/bin/python bench/bench_ingest.py", *map(shlex.quote, sys.argv[1:])])
    md = [f"- command: `{command}`", f"- machine: {machine()}", f"- load average (1/5/15 min) before: {loadavg()}"]
    table = ["| images | path | images/s | × bare loop | CPU ms per image | × bare loop, CPU | peak RSS main MB | "
             "peak RSS worker MB | |", "|---|---|---|---|---|---|---|---|---|"]
    costs: list[str] = []
    for n in ([0] if a.tree else a.sizes):
        root = a.tree or _tree(a.work, n, a.image_size)
        refs, runs = _measure(root, a.work, n, a.workers)
        table += _size_md(refs, runs)
        print("\n".join(table[-len(runs) - 1:]), flush=True)
        if a.costs and 1 in runs:
            per_image = runs[1]["cpu_s"] / runs[1]["images"]
            costs += [""] + _costs_md(_costs(root, a.work / f"out-{n}-costs", runs[1]), per_image)
            print("\n".join(costs[-12:]), flush=True)
    md += [f"- load average after: {loadavg()}", "", *table, *costs]
    print(md[2], md[3], sep="\n")
    if a.doc:
        from bench.common import write_section

        what = f"tree {a.tree.name}" if a.tree else f"{a.image_size}×{a.image_size} PNGs"
        write_section(a.doc, f"bench_ingest {a.tree.name if a.tree else a.image_size}",
                      f"### Measured by bench_ingest ({what})"
                      "\n\n" + "\n".join(md))


if __name__ == "__main__":
    main()
