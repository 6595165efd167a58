"""De-identification on a Dask cluster (Rocklin, "Dask: Parallel Computation with Blocked algorithms
and Task Scheduling", SciPy 2015): a fitted method shipped once to every worker and mapped over the
row groups of an images table, writing the same ``anonymized`` table as the in-process path.

The driver cuts the input exactly as :func:`deid.pipeline.anonymize_table` does (each row group,
sliced to ``batch_size``) and submits the batches through a bounded window, so memory stays flat;
each worker decodes, transforms and PNG-encodes its batch; the driver writes the rows back in input
order. For a deterministic method the table is byte-identical to the in-process one.

The saved model (the files of ``model_dir``) goes to every worker once
(``client.scatter(..., broadcast=True)``) and each worker process loads it once, however many
batches it runs: neither the model folder nor the images table has to be visible to the workers.
A method whose ``device`` is ``auto`` gets, on a worker that sees GPUs, ``cuda:<i mod n>`` where
``i`` is the worker's position in the cluster (one GPU per worker with as many workers as GPUs);
on workers without a GPU it runs on the CPU, with one torch thread per Dask thread.

Set-level methods (``set_level = True``: k-Same and its relatives) are refused here: their
guarantee is about the whole set, so they transform in one process
(:func:`deid.pipeline.fit_and_anonymize` routes them there).
"""

from __future__ import annotations

import hashlib
import json
import threading
import time
from collections import OrderedDict
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import pyarrow as pa

from data_contracts import atomic_dir, count_rows
from deid.errors import MethodError
from deid.faces_dask import DaskConfig, map_ordered, open_client
from deid.methods import DeidMethod
from deid.batches import SplitWriters, TransformStats, transform_batch, transform_batches

__all__ = ["ModelPayload", "model_payload", "anonymize_table_dask", "pick_device", "worker_loads"]


@dataclass(frozen=True)
class ModelPayload:
    """A saved method as bytes: ``files`` are (path relative to the model folder, content); ``key`` is
    their SHA-256, which names the loaded method in each worker's cache."""

    key: str
    name: str
    files: tuple[tuple[str, bytes], ...]


def model_payload(model_dir: str | Path) -> ModelPayload:
    """Read a folder written by :meth:`DeidMethod.save` into a :class:`ModelPayload`."""
    d = Path(model_dir)
    meta = d / "method.json"
    if not meta.is_file():
        raise MethodError(f"{d} holds no saved method (no method.json); fit and save the method first")
    files = tuple((p.relative_to(d).as_posix(), p.read_bytes()) for p in sorted(d.rglob("*")) if p.is_file())
    h = hashlib.sha256()
    for rel, data in files:
        h.update(rel.encode() + b"\0" + len(data).to_bytes(8, "little") + data)
    return ModelPayload(h.hexdigest(), json.loads(meta.read_text())["name"], files)


def pick_device(device: str, slot: int, n_gpus: int) -> str:
    """The device a worker at position ``slot`` uses for a method asking for ``device``: with ``auto``
    and ``n_gpus`` GPUs visible, ``cuda:<slot mod n_gpus>``; otherwise ``device`` unchanged."""
    if device == "auto" and n_gpus > 0:
        return f"cuda:{slot % n_gpus}"
    return device


# -- inside a worker process ------------------------------------------------------------------------------
_KEEP = 2  # loaded methods kept per worker process (a run transforms its methods one after another)
_loaded: OrderedDict[str, DeidMethod] = OrderedDict()
_loads = 0
_lock = threading.Lock()


def worker_loads() -> int:
    """How many times this process loaded a method from a payload (for tests and benchmarks)."""
    return _loads


def _method_for(payload: ModelPayload, slot: int) -> DeidMethod:
    """The method of ``payload``, loaded once per process and kept (at most ``_KEEP`` of them)."""
    global _loads
    with _lock:
        method = _loaded.get(payload.key)
        if method is not None:
            _loaded.move_to_end(payload.key)
            return method
        import tempfile

        import torch

        with tempfile.TemporaryDirectory(prefix="deid-model-") as tmp:
            for rel, data in payload.files:
                p = Path(tmp) / rel
                p.parent.mkdir(parents=True, exist_ok=True)
                p.write_bytes(data)
            method = DeidMethod.load(tmp)
        torch.set_num_threads(1)  # parallelism comes from the Dask threads and processes
        if isinstance(getattr(method, "device", None), str):
            method.device = pick_device(method.device, slot, torch.cuda.device_count())
        _loaded[payload.key] = method
        _loads += 1
        while len(_loaded) > _KEEP:
            _loaded.popitem(last=False)
        return method


def _run_batch(job: tuple[ModelPayload, pa.Table, str, dict[str, int]]) -> tuple[pa.Table, float, float, float]:
    """One batch on a worker: the ``anonymized`` rows and the decode / model / encode seconds."""
    from distributed import get_worker

    payload, batch, label, slots = job
    try:
        slot = slots.get(get_worker().address, 0)
    except ValueError:  # not on a worker (a synchronous client): the first slot
        slot = 0
    return transform_batch(_method_for(payload, slot), batch, label)


# -- the driver ------------------------------------------------------------------------------------------
def anonymize_table_dask(model_dir: str | Path, images_dir: str | Path, out_dir: str | Path, *,
                         label: str | None = None, batch_size: int = 256, dask: DaskConfig | None = None,
                         client: Any = None, progress: bool = False) -> TransformStats:
    """De-identify every row of an images table with the method saved in ``model_dir``, on Dask workers.

    ``client``: a ``distributed.Client`` to use (left open); otherwise one is opened from ``dask``
    (a scheduler ``address``, or a ``LocalCluster`` of ``n_workers``) and closed at the end. Writes
    ``out_dir`` atomically, the same table :func:`deid.pipeline.anonymize_table` writes; returns its
    timing (decode / model / encode seconds summed over the workers) and the number of ``workers``.
    A set-level method is a :class:`MethodError`: it transforms in one process.
    """
    from deid.methods import method_class

    payload = model_payload(model_dir)
    cls = method_class(payload.name)
    if cls.set_level:
        raise MethodError(f"method '{payload.name}' is set-level (it transforms the whole set at once) and "
                          "cannot be split over Dask workers; it transforms in one process "
                          "(deid.pipeline.anonymize_table)")
    label = label or payload.name
    dask = dask or DaskConfig()
    if client is None:
        with open_client(dask) as c:
            return _anonymize(c, payload, images_dir, out_dir, label, batch_size, dask.max_in_flight, progress)
    return _anonymize(client, payload, images_dir, out_dir, label, batch_size, dask.max_in_flight, progress)


def _anonymize(client: Any, payload: ModelPayload, images_dir: str | Path, out_dir: str | Path, label: str,
               batch_size: int, max_in_flight: int | None, progress: bool) -> TransformStats:
    from tqdm.auto import tqdm

    t0 = time.perf_counter()
    workers = sorted(client.scheduler_info(n_workers=-1).get("workers", {}))
    if not workers:
        client.wait_for_workers(1, timeout=60)
        workers = sorted(client.scheduler_info(n_workers=-1).get("workers", {}))
    slots = {addr: i for i, addr in enumerate(workers)}
    [shipped] = client.scatter([payload], broadcast=True, hash=False)
    bar = tqdm(total=count_rows(images_dir), desc=f"transform {label} on {len(workers)} Dask workers", unit="img",
               disable=not progress)
    try:
        with atomic_dir(out_dir) as tmp:
            writers = SplitWriters(tmp, images_dir)
            jobs = ((shipped, t, label, slots) for t in transform_batches(images_dir, batch_size))
            for out, dec, mod, enc in map_ordered(client, _run_batch, jobs, max_in_flight=max_in_flight):
                writers.write(out, dec, mod, enc)
                bar.update(out.num_rows)
            writers.close()
    finally:
        bar.close()
        shipped.release()
    return writers.stats(time.perf_counter() - t0, workers=len(workers))
