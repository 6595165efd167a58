"""The configuration path to more than one machine, against real servers on loopback: a Dask
scheduler with a separate worker process, and an MLflow tracking server with a database backend."""

from __future__ import annotations

import subprocess
import sys
from pathlib import Path

import pytest
import yaml
from loopback import wait_http

pytestmark = pytest.mark.slow
BIN = Path(sys.executable).parent


@pytest.fixture
def servers(tmp_path):
    """A Dask scheduler with one separate worker process, and an MLflow tracking server on a SQLite
    database, all on 127.0.0.1 and started at once (MLflow boots while the cluster comes up); every
    one stopped when the test ends, whether it passed or not. Yields (scheduler address, MLflow URL)."""
    import os

    from distributed import Client

    from flows.stack import free_port, stop

    port, dash, mlflow_port = free_port(), free_port(), free_port()
    procs: list[subprocess.Popen] = []
    with open(tmp_path / "sched.log", "w") as slog, open(tmp_path / "worker.log", "w") as wlog, \
            open(tmp_path / "mlflow.log", "w") as mlog:
        try:
            sched = subprocess.Popen([str(BIN / "dask"), "scheduler", "--host", "127.0.0.1", "--port", str(port),
                                      "--dashboard-address", f"127.0.0.1:{dash}"], stdout=slog,
                                     stderr=subprocess.STDOUT, start_new_session=True)
            procs.append(sched)
            mlflow_proc = subprocess.Popen(
                [str(BIN / "mlflow"), "server", "--backend-store-uri", f"sqlite:///{tmp_path / 'mlflow.db'}",
                 "--artifacts-destination", str(tmp_path / "artifacts"), "--host", "127.0.0.1",
                 "--port", str(mlflow_port), "--workers", "1"], stdout=mlog, stderr=subprocess.STDOUT,
                start_new_session=True, env={**os.environ, "MLFLOW_DISABLE_TELEMETRY": "true"})
            procs.append(mlflow_proc)
            wait_http(f"http://127.0.0.1:{dash}/health", 60, sched)
            procs.append(subprocess.Popen([str(BIN / "dask"), "worker", f"tcp://127.0.0.1:{port}", "--nworkers", "1",
                                           "--nthreads", "1", "--host", "127.0.0.1", "--no-dashboard",
                                           "--local-directory", str(tmp_path / "dask-worker")],
                                          stdout=wlog, stderr=subprocess.STDOUT, start_new_session=True))
            with Client(f"tcp://127.0.0.1:{port}", timeout=30) as c:
                c.wait_for_workers(1, timeout=60)
            wait_http(f"http://127.0.0.1:{mlflow_port}/health", 120, mlflow_proc)
            yield f"tcp://127.0.0.1:{port}", f"http://127.0.0.1:{mlflow_port}"
        finally:
            stop(*reversed(procs))


def test_flow_with_dask_scheduler_and_mlflow_server(servers, prefect_server, tmp_path):
    import mlflow

    from flows.anonymize import run_anonymization
    from prefect import flow

    dask_cluster, mlflow_server = servers
    cfg = {
        "name": "remote",
        "dataset": {"name": "ferg", "source": "builtin",
                    "synthetic": {"n_characters": 3, "images_per_cell": 5, "size": 64},
                    "preprocess": {"size": 32}, "split": {"val": 0.0, "test": 0.4}},
        "include_baselines": False, "methods": [{"name": "blur"}, {"name": "pixelate"}],
        "audit": {"attackers": ["linear"], "linkage_repeats": 1, "cnn_epochs": 1, "cnn_width": 4},
        "tracking": {"uri": mlflow_server, "experiment": "remote-test"},
        "dask": {"address": dask_cluster},
        "work_dir": str(tmp_path / "work"),
    }
    p = tmp_path / "remote.yaml"
    p.write_text(yaml.safe_dump(cfg))
    out = flow(name="anonymize-remote-test")(run_anonymization)(str(p), None, str(tmp_path))
    assert out.ingest["written"] == 3 * 7 * 5
    # The scheduler ran the ingest chunks and the audit's part (on its separate worker process).
    from distributed import Client

    with Client(dask_cluster, timeout=30) as c:
        prefixes = c.run_on_scheduler(lambda dask_scheduler: sorted(dask_scheduler.task_prefixes))
    assert any("process_chunk" in x for x in prefixes), prefixes
    assert "audit_part" in prefixes, prefixes
    assert [r["method"] for r in out.table][:3] == ["original", "blur", "pixelate"]
    mlflow.set_tracking_uri(mlflow_server)
    runs = mlflow.search_runs(experiment_names=["remote-test"], output_format="list")
    assert {r.info.run_id for r in runs} >= {out.mlflow_run_id}
    parent = mlflow.get_run(out.mlflow_run_id)
    assert parent.data.tags["deid.dataset"] == "ferg"
    arts = {a.path for a in mlflow.MlflowClient().list_artifacts(out.mlflow_run_id)}
    assert "report.html" in arts
