"""Face detection over a Dask cluster (Rocklin, "Dask: Parallel Computation with Blocked
algorithms and Task Scheduling", SciPy 2015): a bounded window of chunk tasks, results in order.

A ``LocalCluster`` of single-threaded worker processes by default, or any scheduler given by
address. At most ``max_in_flight`` chunks are submitted or held at a time, so memory stays flat
however many images stream through. Workers read the input files themselves: on a remote
cluster the dataset path must be visible to every worker.
"""

from __future__ import annotations

import logging
from collections import deque
from collections.abc import Callable, Iterable, Iterator
from contextlib import contextmanager
from typing import Any

from pydantic import BaseModel, ConfigDict, Field

__all__ = ["DaskConfig", "open_client", "map_ordered", "dask_map"]


class DaskConfig(BaseModel):
    """Where detection runs: ``address`` of a running scheduler, or a local cluster of ``n_workers``."""

    model_config = ConfigDict(extra="forbid", frozen=True)

    address: str | None = Field(None, description="tcp://host:port of a Dask scheduler; None starts a LocalCluster")
    n_workers: int = Field(2, ge=1, description="LocalCluster worker processes")
    threads_per_worker: int = Field(1, ge=1, description="dlib holds the GIL for part of a call: prefer processes")
    max_in_flight: int | None = Field(None, ge=1, description="chunks submitted at once; None: 2 × total threads")
    memory_limit: str = "2GiB"
    local_directory: str | None = Field(None, description="worker scratch space; None: the system temp dir")


# Worker housekeeping that competes with dlib for the cores: the statistical profiler samples
# every 10 ms and the memory monitor polls every 100 ms by default.
_QUIET_WORKERS = {
    "distributed.worker.profile.enabled": False,
    "distributed.worker.profile.interval": "1s",
    "distributed.worker.profile.cycle": "10s",
    "distributed.worker.memory.monitor-interval": "1s",
    "distributed.admin.tick.interval": "200ms",
}


@contextmanager
def open_client(cfg: DaskConfig) -> Iterator[Any]:
    """A ``distributed.Client`` on ``cfg.address`` or on a fresh ``LocalCluster`` closed on exit."""
    from distributed import Client, LocalCluster

    if cfg.address:
        client = Client(cfg.address, set_as_default=False)
        try:
            yield client
        finally:
            client.close()
        return
    import tempfile

    import dask

    with dask.config.set(_QUIET_WORKERS):  # the nannies hand this config to their workers
        cluster = LocalCluster(
            n_workers=cfg.n_workers, threads_per_worker=cfg.threads_per_worker, processes=True,
            memory_limit=cfg.memory_limit, dashboard_address=None, silence_logs=logging.ERROR,
            local_directory=cfg.local_directory or tempfile.gettempdir(),
        )
    client = Client(cluster, set_as_default=False)
    try:
        yield client
    finally:
        client.close()
        cluster.close()


def _total_threads(client: Any) -> int:
    info = client.scheduler_info().get("workers", {})
    return max(1, sum(w.get("nthreads", 1) for w in info.values()))


def map_ordered(client: Any, fn: Callable, jobs: Iterable, *, max_in_flight: int | None = None) -> Iterator:
    """``fn(job)`` for every job on ``client``'s cluster, yielded in job order, with a bounded window.

    ``jobs`` may be a generator: it is consumed only as the window frees up, and each result is
    released from the cluster as soon as it is yielded.
    """
    window = max_in_flight or 2 * _total_threads(client)
    pending: deque = deque()
    it = iter(jobs)
    for job in it:
        pending.append(client.submit(fn, job, pure=False))
        if len(pending) >= window:
            break
    while pending:
        fut = pending.popleft()
        res = fut.result()
        fut.release()
        nxt = next(it, None)
        if nxt is not None:
            pending.append(client.submit(fn, nxt, pure=False))
        yield res


def dask_map(fn: Callable, jobs: Iterable, cfg: DaskConfig = DaskConfig()) -> Iterator:
    """:func:`map_ordered` on a client opened from ``cfg`` (and closed when the iterator ends)."""
    with open_client(cfg) as client:
        yield from map_ordered(client, fn, jobs, max_in_flight=cfg.max_in_flight)
