"""k-Same speed and guarantee: ours at several sizes (near-linear?), beside anonypyx when installed.

Data: random 64 × 64 grayscale images. "random" sets: 50 identities in equal shares; the
FERG-sized set: 55,767 images of 6 identities with unequal counts, as in FERG-DB. Each row
reports fit (PCA of the search space) and transform (clustering + averaging) time, and the
identity-level figures of the output: k-anonymity (distinct identities per identical output)
and the worst attribution probability.

    .venv/bin/python bench/bench_ksame.py                  # 2,000 / 5,000 / 20,000 / 55,767 images, k = 5
    .venv/bin/python bench/bench_ksame.py --sizes 5000 --k 5
"""

from __future__ import annotations

import argparse
import os
import time

import numpy as np

FERG_COUNTS = (9_893, 9_412, 9_307, 9_201, 9_077, 8_877)  # 55,767 in all, unequal like FERG's characters


def _data(n: int, seed: int = 0) -> tuple[np.ndarray, np.ndarray]:
    rng = np.random.default_rng(seed)
    if n == sum(FERG_COUNTS):
        identity = np.repeat(np.arange(len(FERG_COUNTS)), FERG_COUNTS)
    else:
        identity = np.arange(n) % 50
    X = rng.random((n, 1, 64, 64), dtype=np.float32)
    return X, identity.astype(str).astype(object)


def _ours(X: np.ndarray, identity: np.ndarray, k: int, method: str) -> dict:
    from deid.clustering.anonymity import attribution_risk, k_anonymity
    from deid.methods import get_method

    m = get_method(method, k=k, n_components=32)
    t = time.perf_counter()
    m.fit(X, identity)
    fit_s = time.perf_counter() - t
    t = time.perf_counter()
    Y = m.transform(X, identity)
    tr_s = time.perf_counter() - t
    return {"fit_s": fit_s, "transform_s": tr_s, "k_anon": k_anonymity(Y, identity),
            "risk": attribution_risk(Y, identity)}


def _anonypyx(X: np.ndarray, identity: np.ndarray, k: int, algorithm: str) -> dict | None:
    try:
        import anonypyx
    except ImportError:
        return None
    from deid.clustering.anonymity import attribution_risk, k_anonymity

    imgs = X[:, 0].astype(np.float64)
    t = time.perf_counter()
    anonymized, mapping = anonypyx.kSame(imgs, imgs.shape[2], imgs.shape[1], k=k, variant="pixel",
                                         clustering_implementation=algorithm).anonymize()
    wall = time.perf_counter() - t
    out = np.stack([anonymized[mapping[i]] for i in range(len(X))])
    return {"transform_s": wall, "k_anon": k_anonymity(out, identity), "risk": attribution_risk(out, identity)}


def main() -> None:
    ap = argparse.ArgumentParser()
    ap.add_argument("--sizes", default=f"2000,5000,20000,{sum(FERG_COUNTS)}")
    ap.add_argument("--k", type=int, default=5)
    ap.add_argument("--methods", default="ksame-pixel,ksame-eigen")
    ap.add_argument("--anonypyx-max", type=int, default=5000, help="largest size to run anonypyx on")
    a = ap.parse_args()
    print(f"cores: {os.cpu_count()}, OMP_NUM_THREADS={os.environ.get('OMP_NUM_THREADS', 'unset')}, k = {a.k}")
    print(f"{'N':>7} {'ids':>4} {'method':<22} {'fit s':>7} {'transform s':>11} {'µs/img':>7} {'k-anon':>6} {'worst p':>7}")
    have_anonypyx = True
    for n in (int(s) for s in a.sizes.split(",")):
        X, identity = _data(n)
        ids = len(np.unique(identity))
        for method in a.methods.split(","):
            r = _ours(X, identity, a.k, method)
            per = 1e6 * r["transform_s"] / n
            print(f"{n:>7} {ids:>4} {method:<22} {r['fit_s']:>7.2f} {r['transform_s']:>11.2f} {per:>7.0f} "
                  f"{r['k_anon']:>6} {r['risk']:>7.3f}", flush=True)
        if have_anonypyx and n <= a.anonypyx_max:
            for algo in ("Random Choice", "MDAV-Generic"):
                r = _anonypyx(X, identity, a.k, algo)
                if r is None:
                    have_anonypyx = False
                    print("anonypyx is not installed: its comparison is skipped "
                          "(pip install anonypyx==0.2.11, or put it on PYTHONPATH, to run it)")
                    break
                print(f"{n:>7} {ids:>4} {'anonypyx ' + algo:<22} {'':>7} {r['transform_s']:>11.2f} "
                      f"{1e6 * r['transform_s'] / n:>7.0f} {r['k_anon']!s:>6} {r['risk'] if r['risk'] is None else round(r['risk'], 3)!s:>7}",
                      flush=True)
        del X


if __name__ == "__main__":
    main()
