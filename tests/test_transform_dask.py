"""The transform on Dask writes the same table as the in-process path: against a LocalCluster and
against a real ``dask scheduler`` + ``dask worker`` on loopback; the model loads once per worker;
set-level methods stay in one process."""

from __future__ import annotations

import subprocess
import sys
from pathlib import Path

import pytest

from data_contracts import ANONYMIZED_SCHEMA, read_table, table_files
from deid.errors import MethodError
from deid.faces_dask import DaskConfig
from deid.pipeline import anonymize_table, fit_and_anonymize, fit_method
from deid.transform_dask import anonymize_table_dask, model_payload, pick_device, worker_loads
from loopback import wait_http

BIN = Path(sys.executable).parent
BATCH = 16  # ferg_images has 168 rows: 11 batches, more than the workers


def _learned() -> tuple[str, dict]:
    from deid.methods import method_class

    return "latent-shift", {**method_class("latent-shift").test_params, "device": "cpu", "random_state": 0}


CHEAP = [("blur", {"sigma": 1.5}), ("pixelate", {})]


def _assert_same_table(a: Path, b: Path) -> None:
    """Same files, byte for byte, and the same rows read back."""
    fa = [p.relative_to(a) for p in table_files(a)]
    fb = [p.relative_to(b) for p in table_files(b)]
    assert fa == fb and fa
    for rel in fa:
        assert (a / rel).read_bytes() == (b / rel).read_bytes(), f"{rel} differs"
    ta, tb = read_table(a, ANONYMIZED_SCHEMA), read_table(b, ANONYMIZED_SCHEMA)
    assert ta.num_rows > 0 and ta.equals(tb)


def _fit_reference(name: str, params: dict, images: Path, tmp: Path) -> tuple[Path, Path]:
    """Fit ``name``, save it, and transform in-process with one torch thread (as the workers run)."""
    import torch

    model_dir, ref = tmp / f"model-{name}", tmp / f"ref-{name}"
    n = torch.get_num_threads()
    torch.set_num_threads(1)
    try:
        method = fit_method(name, params, images, model_dir)
        anonymize_table(method, images, ref, batch_size=BATCH)
    finally:
        torch.set_num_threads(n)
    return model_dir, ref


@pytest.fixture(scope="module")
def references(ferg_images, tmp_path_factory):
    """``name → (saved model, in-process table)`` of ``ferg_images``, each fitted once for this module
    (the Dask tests only read them)."""
    done: dict[str, tuple[Path, Path]] = {}

    def reference(name: str, params: dict) -> tuple[Path, Path]:
        if name not in done:
            done[name] = _fit_reference(name, params, ferg_images, tmp_path_factory.mktemp(f"ref-{name}"))
        return done[name]

    return reference


# -- fast checks --------------------------------------------------------------------------------------------
def test_pick_device_gives_each_worker_its_gpu_and_leaves_explicit_devices():
    assert [pick_device("auto", i, 2) for i in range(4)] == ["cuda:0", "cuda:1", "cuda:0", "cuda:1"]
    assert pick_device("auto", 3, 0) == "auto"  # no GPU: the method resolves auto to the CPU
    assert pick_device("cpu", 1, 2) == "cpu" and pick_device("cuda:1", 0, 4) == "cuda:1"


def test_unsaved_model_is_one_line(tmp_path):
    with pytest.raises(MethodError, match="no saved method"):
        model_payload(tmp_path)


def test_set_level_method_is_refused_on_dask_and_routed_in_process(ferg_images, tmp_path):
    method = fit_method("ksame-pixel", {"k": 2}, ferg_images, tmp_path / "model")
    with pytest.raises(MethodError, match="set-level.*one process"):
        anonymize_table_dask(tmp_path / "model", ferg_images, tmp_path / "out", dask=DaskConfig(n_workers=2))
    assert not (tmp_path / "out").exists()
    # fit_and_anonymize with workers > 1 keeps it in this process (no cluster started) and writes
    # what the in-process path writes.
    stats = fit_and_anonymize("ksame-pixel", {"k": 2}, ferg_images, tmp_path / "model2", tmp_path / "routed",
                              workers=2)
    assert stats["workers"] == 1 and stats["rows"] == 168
    anonymize_table(method, ferg_images, tmp_path / "ref")
    _assert_same_table(tmp_path / "ref", tmp_path / "routed")


# -- a LocalCluster ------------------------------------------------------------------------------------------
@pytest.mark.slow
def test_local_cluster_writes_the_in_process_table_and_loads_each_model_once_per_worker(ferg_images, references,
                                                                                       tmp_path):
    from deid.faces_dask import open_client

    methods = CHEAP + [_learned()]
    refs = {name: references(name, params) for name, params in methods}
    with open_client(DaskConfig(n_workers=2)) as client:
        for name, _ in methods:
            before = sum(client.run(worker_loads).values())
            stats = anonymize_table_dask(refs[name][0], ferg_images, tmp_path / f"dask-{name}", batch_size=BATCH,
                                         client=client)
            loads = sum(client.run(worker_loads).values()) - before
            assert stats["workers"] == 2 and stats["rows"] == 168
            # 11 batches, at most one load per worker process
            assert 1 <= loads <= 2, (name, loads)
            _assert_same_table(refs[name][1], tmp_path / f"dask-{name}")


@pytest.mark.slow
def test_workers_above_one_start_a_local_cluster(ferg_images, references, tmp_path):
    """``workers > 1`` without a Dask config: a LocalCluster of that many workers, the same table."""
    name, params = CHEAP[0]
    _, ref = references(name, params)
    stats = fit_and_anonymize(name, params, ferg_images, tmp_path / "m", tmp_path / "out", batch_size=BATCH,
                              workers=2)
    assert stats["workers"] == 2 and stats["rows"] == 168 and stats["fit_seconds"] >= 0
    _assert_same_table(ref, tmp_path / "out")


# -- a real scheduler and worker on loopback -----------------------------------------------------------------
@pytest.fixture
def scheduler_and_worker(tmp_path):
    """A ``dask scheduler`` and a ``dask worker`` (two single-threaded processes) on 127.0.0.1, run from
    a folder of their own; both stopped when the test ends, whether it passed or not."""
    from distributed import Client

    from flows.stack import free_port, stop

    port, dash = free_port(), free_port()
    run_dir = tmp_path / "cluster"
    run_dir.mkdir()
    procs: list[subprocess.Popen] = []
    with open(run_dir / "scheduler.log", "w") as slog, open(run_dir / "worker.log", "w") as wlog:
        try:
            procs.append(subprocess.Popen(
                [str(BIN / "dask"), "scheduler", "--host", "127.0.0.1", "--port", str(port),
                 "--dashboard-address", f"127.0.0.1:{dash}"], cwd=run_dir, stdout=slog, stderr=subprocess.STDOUT,
                start_new_session=True))
            wait_http(f"http://127.0.0.1:{dash}/health", 60, procs[0])
            procs.append(subprocess.Popen(
                [str(BIN / "dask"), "worker", f"tcp://127.0.0.1:{port}", "--nworkers", "2", "--nthreads", "1",
                 "--host", "127.0.0.1", "--no-dashboard", "--local-directory", str(run_dir / "scratch")],
                cwd=run_dir, stdout=wlog, stderr=subprocess.STDOUT, start_new_session=True))
            with Client(f"tcp://127.0.0.1:{port}", timeout=30) as c:
                c.wait_for_workers(2, timeout=90)
            yield f"tcp://127.0.0.1:{port}"
        finally:
            stop(*reversed(procs))


@pytest.mark.slow
def test_real_scheduler_and_worker_write_the_in_process_table(scheduler_and_worker, ferg_images, references,
                                                              tmp_path):
    from distributed import Client

    methods = [CHEAP[0], _learned()]
    refs = {name: references(name, params) for name, params in methods}
    for name, _ in methods:
        stats = anonymize_table_dask(refs[name][0], ferg_images, tmp_path / f"dask-{name}", batch_size=BATCH,
                                     dask=DaskConfig(address=scheduler_and_worker))
        assert stats["workers"] == 2 and stats["rows"] == 168
        _assert_same_table(refs[name][1], tmp_path / f"dask-{name}")
    with Client(scheduler_and_worker, timeout=30) as c:
        prefixes = c.run_on_scheduler(lambda dask_scheduler: sorted(dask_scheduler.task_prefixes))
        loads = c.run(worker_loads)
    # The batches ran on the separate worker processes, each of which loaded each model at most once.
    assert "run_batch" in prefixes, prefixes
    assert len(loads) == 2 and 1 <= sum(loads.values()) <= 2 * len(methods), loads
