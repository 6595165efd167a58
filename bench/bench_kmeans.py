"""Dask k-means vs scikit-learn's KMeans and MiniBatchKMeans on the same float32 data.

Each run is its own process, so the peak resident memory (ru_maxrss) is that run's alone.
Data: standard-normal rows, written once to Parquet in 65,536-row row groups (block b drawn
from seed b, so smaller sizes are prefixes of larger ones). In-memory runs read the file whole;
``dask-parquet`` streams it by row group at every pass.

    .venv/bin/python bench/bench_kmeans.py                       # 100k × 128, K = 10, 50, 180, 300; then 1M, 5M at K = 50
    .venv/bin/python bench/bench_kmeans.py --sizes 100000 --ks 10
"""

from __future__ import annotations

import argparse
import json
import os
import resource
import subprocess
import sys
import tempfile
import time
from pathlib import Path

import numpy as np

ROWS_PER_GROUP = 65536
D = 128


def _data_file(workdir: Path, n: int) -> Path:
    f = workdir / f"features_{n}.parquet"
    if not f.exists():
        subprocess.run([sys.executable, __file__, "--gen", str(n), "--out", str(f)], check=True)
    return f


def _gen(n: int, out: Path) -> None:
    import pyarrow as pa
    import pyarrow.parquet as pq

    typ = pa.list_(pa.float32(), D)
    with pq.ParquetWriter(out, pa.schema([("features", typ)]), compression="none") as w:
        for b, a in enumerate(range(0, n, ROWS_PER_GROUP)):
            rows = min(ROWS_PER_GROUP, n - a)
            block = np.random.default_rng(b).standard_normal((rows, D), dtype=np.float32)
            w.write_table(pa.table({"features": pa.FixedSizeListArray.from_arrays(pa.array(block.reshape(-1)), D)}))


def _load(f: Path) -> np.ndarray:
    import pyarrow.parquet as pq

    col = pq.read_table(f).column("features").combine_chunks()
    return col.values.to_numpy().reshape(-1, D)


def _run(algo: str, f: Path, k: int, max_iter: int) -> dict:
    t0 = time.perf_counter()
    if algo == "sklearn-kmeans":
        from sklearn.cluster import KMeans

        X = _load(f)
        t0 = time.perf_counter()
        m = KMeans(k, random_state=0, max_iter=max_iter).fit(X)
        inertia, n_iter = m.inertia_, m.n_iter_
    elif algo == "sklearn-minibatch":
        from sklearn.cluster import MiniBatchKMeans

        X = _load(f)
        t0 = time.perf_counter()
        m = MiniBatchKMeans(k, random_state=0, batch_size=4096).fit(X)
        inertia, n_iter = m.inertia_, m.n_iter_
    else:
        from threadpoolctl import threadpool_limits

        from deid.clustering import DaskKMeans, FeatureTable, dask_client

        threadpool_limits(1, user_api="blas")  # one BLAS thread per Dask thread: no oversubscription
        source = FeatureTable(str(f)) if algo == "dask-parquet" else _load(f)
        with dask_client(n_workers=1, threads_per_worker=os.cpu_count() or 1) as client:
            t0 = time.perf_counter()
            m = DaskKMeans(k, random_state=0, max_iter=max_iter, partition_rows=ROWS_PER_GROUP).fit(source, client)
        inertia, n_iter = m.inertia_, m.n_iter_
    wall = time.perf_counter() - t0
    return {"algo": algo, "k": k, "wall_s": round(wall, 2), "inertia": float(inertia), "n_iter": int(n_iter),
            "peak_rss_mb": round(resource.getrusage(resource.RUSAGE_SELF).ru_maxrss / 1024, 1)}


def _child(algo: str, f: Path, k: int, max_iter: int) -> dict | None:
    p = subprocess.run([sys.executable, __file__, "--one", algo, "--file", str(f), "--k", str(k),
                        "--max-iter", str(max_iter)], capture_output=True, text=True)
    if p.returncode != 0:
        print(f"  {algo} K={k}: failed\n{p.stderr[-2000:]}", flush=True)
        return None
    return json.loads(p.stdout.strip().splitlines()[-1])


def _dask_ml_note() -> str:
    try:
        import dask_ml  # noqa: F401
    except ImportError:
        return "dask-ml is not installed: its comparison is skipped (install it into the venv to run it)"
    return ""


def main() -> None:
    ap = argparse.ArgumentParser()
    ap.add_argument("--sizes", default="100000,1000000,5000000")
    ap.add_argument("--ks", default="10,50,180,300", help="K values at the first size")
    ap.add_argument("--big-k", type=int, default=50, help="K at the larger sizes")
    ap.add_argument("--max-iter", type=int, default=300)
    ap.add_argument("--workdir", default=None)
    ap.add_argument("--algos", default="sklearn-kmeans,sklearn-minibatch,dask-memory,dask-parquet")
    ap.add_argument("--gen", type=int), ap.add_argument("--out"), ap.add_argument("--one"), ap.add_argument("--file")
    ap.add_argument("--k", type=int)
    a = ap.parse_args()
    if a.gen:
        return _gen(a.gen, Path(a.out))
    if a.one:
        print(json.dumps(_run(a.one, Path(a.file), a.k, a.max_iter)))
        return
    sizes = [int(s) for s in a.sizes.split(",")]
    work = Path(a.workdir or tempfile.mkdtemp(prefix="bench_kmeans_"))
    work.mkdir(parents=True, exist_ok=True)
    print(f"cores: {os.cpu_count()}, OMP_NUM_THREADS={os.environ.get('OMP_NUM_THREADS', 'unset')}, data in {work}")
    note = _dask_ml_note()
    if note:
        print(note)
    print(f"{'N':>9} {'K':>4} {'algo':<18} {'wall s':>8} {'iters':>5} {'inertia':>16} {'Δ vs KMeans':>11} {'peak MB':>8}")
    for i, n in enumerate(sizes):
        f = _data_file(work, n)
        ks = [int(k) for k in a.ks.split(",")] if i == 0 else [a.big_k]
        algos = a.algos.split(",")
        if n > 1_500_000:  # KMeans on 5M × 128 in memory: outside its comfortable range
            algos = [x for x in algos if x in ("sklearn-minibatch", "dask-parquet")]
        for k in ks:
            ref = None
            for algo in algos:
                r = _child(algo, f, k, a.max_iter)
                if r is None:
                    continue
                ref = r["inertia"] if algo == "sklearn-kmeans" else ref
                delta = f"{100 * (r['inertia'] - ref) / ref:+.2f}%" if ref else "—"
                print(f"{n:>9} {k:>4} {algo:<18} {r['wall_s']:>8.2f} {r['n_iter']:>5} {r['inertia']:>16.1f} "
                      f"{delta:>11} {r['peak_rss_mb']:>8.0f}", flush=True)


if __name__ == "__main__":
    main()
