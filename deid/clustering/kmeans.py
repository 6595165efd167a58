"""k-means on a Dask cluster: Lloyd's iterations as per-partition steps reduced on the cluster.

k-means++ seeding (Arthur & Vassilvitskii 2007) runs on a uniform sample; each Lloyd iteration
sends the centres to every partition, each partition returns its per-cluster sums, counts and
inertia, and one task on the cluster adds them up in partition order (so a seed gives the same
result bit for bit). Partitions are in-memory row blocks or Parquet row groups read afresh at
every pass (:class:`FeatureTable`), so memory stays flat as N grows. The stopping rule is
scikit-learn's (centre shift ≤ ``tol`` × mean feature variance) and the reported inertia is
measured with the final centres. An empty cluster keeps its previous centre.

dask-ml's KMeans is not used: with dask 2026.8 / scikit-learn 1.9 its k-means++ init raises,
k-means|| leaves singleton clusters and its inertia is wrong (see docs/clustering.md).
"""

from __future__ import annotations

import contextlib
import os
from collections.abc import Iterator
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import numpy as np

from deid.errors import ConfigError, MethodError

__all__ = ["DaskKMeans", "FeatureTable", "write_feature_table", "dask_client"]

_CHUNK = 8192  # rows per distance block inside a partition


@dataclass(frozen=True)
class FeatureTable:
    """Features ``(N, D)`` stored in Parquet as a ``fixed_size_list<float32>[D]`` column."""

    path: str
    column: str = "features"

    def parts(self) -> list[tuple[str, int, int]]:
        """(file, row group, rows) for every row group, in file order."""
        import pyarrow.parquet as pq

        p = Path(self.path)
        files = sorted(p.glob("*.parquet")) if p.is_dir() else [p]
        if not files:
            raise MethodError(f"{self.path}: no Parquet files found; write features with write_feature_table")
        out = []
        for f in files:
            md = pq.ParquetFile(f).metadata
            out += [(str(f), i, md.row_group(i).num_rows) for i in range(md.num_row_groups)]
        return out


def write_feature_table(path: str | Path, F: np.ndarray, *, row_group_rows: int = 65536,
                        column: str = "features") -> FeatureTable:
    """Write ``F`` ``(N, D)`` as float32 to one Parquet file, ``row_group_rows`` rows per row group."""
    import pyarrow as pa
    import pyarrow.parquet as pq

    F = np.ascontiguousarray(F, dtype=np.float32)
    path = Path(path)
    path.parent.mkdir(parents=True, exist_ok=True)
    typ = pa.list_(pa.float32(), F.shape[1])
    schema = pa.schema([(column, typ)])
    with pq.ParquetWriter(path, schema, compression="none") as w:
        for a in range(0, len(F), row_group_rows):
            block = F[a:a + row_group_rows]
            arr = pa.FixedSizeListArray.from_arrays(pa.array(block.reshape(-1)), F.shape[1])
            w.write_table(pa.table({column: arr}), row_group_size=row_group_rows)
    return FeatureTable(str(path), column)


def _read_part(part: Any, column: str | None) -> np.ndarray:
    if isinstance(part, np.ndarray):
        return part
    import pyarrow.parquet as pq

    f, rg, _ = part
    col = pq.ParquetFile(f).read_row_group(rg, columns=[column]).column(column).combine_chunks()
    d = col.type.list_size
    return col.values.to_numpy(zero_copy_only=False).reshape(-1, d)


def _scan(part: Any, column: str | None, rows: np.ndarray) -> tuple[int, np.ndarray, np.ndarray, np.ndarray, int]:
    """First pass: rows, sum, sum of squares, the sampled rows, NaN rows."""
    X = _read_part(part, column)
    bad = int((~np.isfinite(X).all(axis=1)).sum())
    X64 = X.astype(np.float64)
    return len(X), X64.sum(axis=0), (X64 * X64).sum(axis=0), np.array(X[rows]), bad


def _step(part: Any, column: str | None, centres: np.ndarray) -> tuple[np.ndarray, np.ndarray, float]:
    """One Lloyd step on a partition: per-cluster sums ``(K, D)``, counts ``(K,)``, inertia."""
    from scipy import sparse

    X = _read_part(part, column)
    C = centres.astype(X.dtype, copy=False)
    csq = np.einsum("ij,ij->i", C, C)
    K = len(C)
    sums = np.zeros(C.shape, dtype=np.float64)
    counts = np.zeros(K, dtype=np.int64)
    inertia = 0.0
    for a in range(0, len(X), _CHUNK):
        x = X[a:a + _CHUNK]
        d = x @ C.T
        d *= -2.0
        d += csq
        lab = np.argmin(d, axis=1)
        xsq = np.einsum("ij,ij->i", x, x)
        inertia += float(np.maximum(d[np.arange(len(x)), lab] + xsq, 0.0).sum(dtype=np.float64))
        onehot = sparse.csr_matrix((np.ones(len(x), dtype=x.dtype), (lab, np.arange(len(x)))), shape=(K, len(x)))
        sums += onehot @ x
        counts += np.bincount(lab, minlength=K)
    return sums, counts, inertia


def _labels(part: Any, column: str | None, centres: np.ndarray) -> np.ndarray:
    X = _read_part(part, column)
    C = centres.astype(X.dtype, copy=False)
    csq = np.einsum("ij,ij->i", C, C)
    return np.concatenate([np.argmin(csq - 2.0 * (X[a:a + _CHUNK] @ C.T), axis=1)
                           for a in range(0, len(X), _CHUNK)]).astype(np.int64)


def _reduce(parts: list[tuple[np.ndarray, np.ndarray, float]]) -> tuple[np.ndarray, np.ndarray, float]:
    sums = np.zeros_like(parts[0][0])
    counts = np.zeros_like(parts[0][1])
    inertia = 0.0
    for s, c, i in parts:  # fixed order: deterministic sums
        sums += s
        counts += c
        inertia += i
    return sums, counts, inertia


@contextlib.contextmanager
def dask_client(scheduler_address: str | None = None, *, n_workers: int = 1,
                threads_per_worker: int | None = None, processes: bool = False) -> Iterator[Any]:
    """A Dask client: the scheduler at ``scheduler_address``, else a LocalCluster on 127.0.0.1."""
    from distributed import Client, LocalCluster

    if scheduler_address:
        with Client(scheduler_address) as client:
            yield client
        return
    threads = threads_per_worker or max(1, (os.cpu_count() or 1) // n_workers)
    net = {"host": "127.0.0.1"} if processes else {}  # in-process clusters talk over inproc://, no socket
    with LocalCluster(n_workers=n_workers, threads_per_worker=threads, processes=processes, dashboard_address=None,
                      silence_logs=40, **net) as cluster, Client(cluster) as client:
        yield client


class _Sync:
    """Runs the same per-partition functions in this process, one after another (no cluster)."""

    def __init__(self, parts: list[Any]) -> None:
        self.parts = parts

    def each(self, fn, *per_part):
        return [fn(p, *a) for p, *a in zip(self.parts, *per_part)]

    def map(self, fn, *args):
        return [fn(p, *args) for p in self.parts]

    def reduce(self, results):
        return _reduce(results)

    def gather(self, results):
        return results


class _OnDask:
    def __init__(self, client: Any, parts: list[Any]) -> None:
        self.client = client
        arrays = [p for p in parts if isinstance(p, np.ndarray)]
        self.parts = client.scatter(parts, hash=False) if arrays else parts

    def each(self, fn, *per_part):
        return self.client.gather([self.client.submit(fn, p, *a, pure=False)
                                   for p, *a in zip(self.parts, *per_part)])

    def map(self, fn, *args):
        return [self.client.submit(fn, p, *args, pure=False) for p in self.parts]

    def gather(self, futures):
        return self.client.gather(futures)

    def reduce(self, futures):
        return self.client.submit(_reduce, futures, pure=False).result()


class DaskKMeans:
    """k-means (Lloyd's) whose passes over the data run as Dask tasks, one per partition.

    ``fit(source)`` takes an ``(N, D)`` array (split into ``partition_rows`` blocks) or a
    :class:`FeatureTable` (one task per row group, streamed). ``client``: a ``distributed.Client``;
    ``None`` opens :func:`dask_client` on ``scheduler_address`` (a LocalCluster when unset);
    ``"sync"`` runs the same steps in-process. Learned: ``cluster_centers_`` ``(K, D)``,
    ``inertia_``, ``n_iter_``, ``labels_`` (arrays only).
    """

    def __init__(self, n_clusters: int = 8, *, init: str | np.ndarray = "k-means++", max_iter: int = 300,
                 tol: float = 1e-4, random_state: int = 0, sample_size: int | None = None,
                 partition_rows: int = 65536, scheduler_address: str | None = None) -> None:
        self.n_clusters = n_clusters
        self.init = init
        self.max_iter = max_iter
        self.tol = tol
        self.random_state = random_state
        self.sample_size = sample_size
        self.partition_rows = partition_rows
        self.scheduler_address = scheduler_address

    def _parts(self, source: Any) -> tuple[list[Any], str | None, int]:
        if isinstance(source, FeatureTable):
            parts = source.parts()
            return parts, source.column, sum(p[2] for p in parts)
        X = np.asarray(source)
        if X.ndim != 2 or len(X) == 0:
            raise MethodError(f"k-means: features must be a non-empty (N, D) array, got shape {X.shape}")
        if X.dtype not in (np.float32, np.float64):
            X = X.astype(np.float32)
        step = max(1, int(self.partition_rows))
        return [X[a:a + step] for a in range(0, len(X), step)], None, len(X)

    def fit(self, source: Any, client: Any = None) -> "DaskKMeans":
        if client is None:
            with dask_client(self.scheduler_address) as c:
                return self.fit(source, c)
        parts, column, n = self._parts(source)
        K = int(self.n_clusters)
        if K < 1:
            raise ConfigError(f"k-means: n_clusters must be at least 1, got {self.n_clusters}")
        if K > n:
            raise ConfigError(f"k-means: n_clusters = {K} exceeds the number of rows N = {n}; "
                              f"lower n_clusters to at most {n} or add data")
        if isinstance(client, str) and client != "sync":
            raise ConfigError(f"k-means: client must be a distributed.Client, None or 'sync', got {client!r}")
        run = _Sync(parts) if isinstance(client, str) else _OnDask(client, parts)
        rng = np.random.default_rng(self.random_state)
        s = min(n, int(self.sample_size or max(20_000, 50 * K)))
        pick = np.sort(rng.choice(n, size=s, replace=False))
        bounds = np.cumsum([0] + [(len(p) if isinstance(p, np.ndarray) else p[2]) for p in parts])
        cols = [column] * len(parts)
        picks = [pick[(pick >= a) & (pick < b)] - a for a, b in zip(bounds[:-1], bounds[1:])]
        scans = run.each(_scan, cols, picks)
        bad = sum(sc[4] for sc in scans)
        if bad:
            raise MethodError(f"k-means: {bad} feature rows hold NaN or infinite values; drop or repair them first")
        total = sum(sc[1] for sc in scans)
        var = sum(sc[2] for sc in scans) / n - (total / n) ** 2
        tol = float(np.mean(var)) * float(self.tol)
        sample = np.concatenate([sc[3] for sc in scans])
        if isinstance(self.init, str) and self.init == "k-means++":
            from sklearn.cluster import kmeans_plusplus

            centres, _ = kmeans_plusplus(sample, K, random_state=int(rng.integers(2**31)))
        elif isinstance(self.init, str):
            raise ConfigError(f"k-means: init must be 'k-means++' or an array of centres, got {self.init!r}")
        else:
            centres = np.asarray(self.init, dtype=np.float64)
            if centres.shape != (K, sample.shape[1]):
                raise ConfigError(f"k-means: init centres must have shape {(K, sample.shape[1])}, got {centres.shape}")
        centres = centres.astype(np.float64)
        it = 0
        for it in range(1, int(self.max_iter) + 1):
            sums, counts, _ = run.reduce(run.map(_step, column, centres))
            new = centres.copy()
            nz = counts > 0
            new[nz] = sums[nz] / counts[nz, None]
            shift = float(((new - centres) ** 2).sum())
            centres = new
            if shift <= tol:
                break
        _, counts, inertia = run.reduce(run.map(_step, column, centres))
        self.cluster_centers_ = centres.astype(sample.dtype)
        self.inertia_ = float(inertia)
        self.n_iter_ = it
        self.counts_ = counts
        if column is None:
            labs = run.map(_labels, column, self.cluster_centers_)
            self.labels_ = np.concatenate(run.gather(labs))
        return self

    def predict(self, X: np.ndarray) -> np.ndarray:
        """Nearest centre per row of ``X`` ``(N, D)`` (in-process)."""
        if not hasattr(self, "cluster_centers_"):
            from deid.errors import NotFittedError

            raise NotFittedError("k-means is not fitted; call fit(source) first")
        return _labels(np.asarray(X, dtype=self.cluster_centers_.dtype), None, self.cluster_centers_)
