"""`deid run` leaves nothing listening when it is stopped: SIGTERM unwinds like Ctrl-C, and the
Prefect server it starts dies with it even on kill -9."""

from __future__ import annotations

import os
import re
import signal
import socket
import subprocess
import sys
import time
from pathlib import Path

import pytest
import yaml

from tests.flows.settings import FAST_POOLED_AUDIT, SMALL_DECIDABLE

pytestmark = pytest.mark.slow
ROOT = Path(__file__).resolve().parents[2]


def _listening(port: int) -> bool:
    with socket.socket() as s:
        s.settimeout(0.5)
        return s.connect_ex(("127.0.0.1", port)) == 0


def _start(tmp_path: Path) -> tuple[subprocess.Popen, int]:
    cfg = {"name": "sig", "dataset": {"name": "ferg", "synthetic": SMALL_DECIDABLE, "preprocess": {"size": 40}},
           "audit": FAST_POOLED_AUDIT, "work_dir": str(tmp_path / "work")}
    p = tmp_path / "sig.yaml"
    p.write_text(yaml.safe_dump(cfg))
    env = {k: v for k, v in os.environ.items() if k != "PREFECT_API_URL"}
    env.update(DEID_WORK=str(tmp_path / "work"), PREFECT_HOME=str(tmp_path / "prefect"))
    proc = subprocess.Popen([sys.executable, "-m", "flows.cli", "run", str(p)], cwd=str(ROOT), env=env,
                            stdout=subprocess.DEVNULL, stderr=subprocess.PIPE, text=True)
    deadline = time.monotonic() + 240
    for line in proc.stderr:
        if m := re.search(r"server for this run at http://127\.0\.0\.1:(\d+)/api", line):
            return proc, int(m.group(1))
        if time.monotonic() > deadline:
            break
    proc.kill()
    pytest.fail("deid run never reported its Prefect server")


@pytest.mark.reliability(section="6. Crash and concurrency", case="kill -9 or SIGTERM of deid run",
                         before="Prefect's server for the run left listening",
                         after="SIGTERM: the run unwinds (exit 130) and stops it; kill -9: it dies with the run")
@pytest.mark.parametrize("how", ["sigterm", "kill-9"])
def test_stopping_deid_run_leaves_no_server_listening(tmp_path, how):
    proc, port = _start(tmp_path)
    try:
        assert _listening(port)
        proc.send_signal(signal.SIGTERM if how == "sigterm" else signal.SIGKILL)
        code = proc.wait(timeout=60)
        assert code == (130 if how == "sigterm" else -signal.SIGKILL)
        deadline = time.monotonic() + 30
        while _listening(port) and time.monotonic() < deadline:
            time.sleep(0.5)
        assert not _listening(port)
    finally:
        if proc.poll() is None:
            proc.kill()


def _api_url_seen_by_a_child() -> str | None:
    return os.environ.get("PREFECT_API_URL")


def test_worker_processes_of_a_run_use_its_server(tmp_path, monkeypatch):
    """A process the run starts (a process pool's worker, a Dask worker) reports to the run's server
    from birth, instead of starting a temporary server of its own; the environment is restored after."""
    import multiprocessing

    from flows.server_keeper import run_server

    monkeypatch.delenv("PREFECT_API_URL", raising=False)
    with run_server(tmp_path / "prefect", tmp_path / "server.log", say=lambda m: None) as api:
        with multiprocessing.get_context("spawn").Pool(1) as pool:
            assert pool.apply(_api_url_seen_by_a_child) == api
    assert "PREFECT_API_URL" not in os.environ
