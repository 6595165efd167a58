"""The local stack: a Prefect server on its SQLite database, bound to 127.0.0.1, and the process
that serves the deployments. Used by ``deid stack`` and by the deployment test."""

from __future__ import annotations

import os
import socket
import subprocess
import sys
import time
import urllib.request
from pathlib import Path

__all__ = ["free_port", "prefect_env", "start_server", "wait_healthy", "start_serving", "stop"]

ROOT = Path(__file__).resolve().parents[1]


def free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]


def prefect_env(home: Path, api_url: str | None = None) -> dict[str, str]:
    env = dict(os.environ, PREFECT_HOME=str(home), PREFECT_SERVER_ANALYTICS_ENABLED="false",
               MLFLOW_DISABLE_TELEMETRY="true", DO_NOT_TRACK="1", PYTHONUNBUFFERED="1")
    if api_url:
        env["PREFECT_API_URL"] = api_url
    else:
        env.pop("PREFECT_API_URL", None)
    home.mkdir(parents=True, exist_ok=True)
    return env


def start_server(home: Path, port: int, log: Path) -> subprocess.Popen:
    """``prefect server start`` on 127.0.0.1:port with its database under ``home``."""
    exe = Path(sys.executable).with_name("prefect")
    return subprocess.Popen([str(exe), "server", "start", "--host", "127.0.0.1", "--port", str(port)],
                            env=prefect_env(home), stdout=open(log, "w"), stderr=subprocess.STDOUT,
                            start_new_session=True)


def wait_healthy(api_url: str, timeout: float = 120.0, proc: subprocess.Popen | None = None) -> None:
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        if proc is not None and proc.poll() is not None:
            raise RuntimeError(f"the Prefect server exited with code {proc.returncode}")
        try:
            with urllib.request.urlopen(f"{api_url}/health", timeout=2) as r:
                if r.status == 200:
                    return
        except OSError:
            pass
        time.sleep(1)
    raise TimeoutError(f"Prefect server at {api_url} not healthy after {timeout:.0f} s")


def start_serving(home: Path, api_url: str, configs: list[Path], log: Path, base: Path = ROOT) -> subprocess.Popen:
    """``python -m flows.deployments`` against the server at ``api_url``."""
    return subprocess.Popen([sys.executable, "-m", "flows.deployments", "--base", str(base), *map(str, configs)],
                            cwd=str(ROOT), env=prefect_env(home, api_url), stdout=open(log, "w"),
                            stderr=subprocess.STDOUT, start_new_session=True)


def stop(*procs: subprocess.Popen, timeout: float = 20.0) -> None:
    """SIGTERM each process group, then SIGKILL what is left (a served runner wants two signals)."""
    import signal

    for p in procs:
        if p.poll() is None:
            try:
                os.killpg(p.pid, signal.SIGTERM)
            except ProcessLookupError:
                pass
    for p in procs:
        try:
            p.wait(timeout=timeout)
        except subprocess.TimeoutExpired:
            try:
                os.killpg(p.pid, signal.SIGKILL)
            except ProcessLookupError:
                pass
            p.wait(timeout=10)
