"""A real Prefect server on a free loopback port, the deployments served, and a run started the
way users have started it: ``prefect deployment run 'anonymize-ferg/<name>'`` (the alias of
``anonymize/<name>``). And ``deid stack`` stopped by SIGTERM or killed with ``kill -9``: nothing it
started may stay running or listening."""

from __future__ import annotations

import json
import os
import signal
import socket
import subprocess
import sys
import time
import urllib.request
from pathlib import Path

import pytest
import yaml

from tests.flows.settings import FAST_POOLED_AUDIT, MECHANICS_GATES, SMALL_DECIDABLE

pytestmark = pytest.mark.slow
ROOT = Path(__file__).resolve().parents[2]


def _tiny_config(tmp: Path) -> Path:
    cfg = {
        "name": "tiny-served",
        "dataset": {"name": "ferg", "source": "builtin",
                    "synthetic": SMALL_DECIDABLE, "preprocess": {"size": 40}, "split": {"val": 0.0, "test": 0.4}},
        "include_baselines": False,
        "methods": [{"name": "proxy-morph", "params": {"k": 3, "draw_seed": 0}}],
        "audit": FAST_POOLED_AUDIT,
        "gates": MECHANICS_GATES,
        "release": {"enabled": True, "method": "proxy-morph", "root": str(tmp / "release")},
        "work_dir": str(tmp / "work"),
        "schedule": "0 3 * * 1",
    }
    p = tmp / "tiny-served.yaml"
    p.write_text(yaml.safe_dump(cfg))
    return p


def test_served_deployment_runs_from_the_cli(tmp_path, seed_small_decidable):
    from flows.stack import free_port, prefect_env, start_server, start_serving, stop, wait_healthy

    seed_small_decidable(tmp_path / "work")
    home = tmp_path / "prefect"
    port = free_port()
    api = f"http://127.0.0.1:{port}/api"
    server = start_server(home, port, tmp_path / "server.log")
    serving = None
    try:
        wait_healthy(api, timeout=180, proc=server)
        serving = start_serving(home, api, [_tiny_config(tmp_path)], tmp_path / "serve.log", base=tmp_path)
        prefect = str(Path(sys.executable).with_name("prefect"))
        env = prefect_env(home, api)
        # Wait until the served deployment is registered, then run it and watch it to the end.
        for _ in range(90):
            r = subprocess.run([prefect, "deployment", "inspect", "anonymize/tiny-served"], env=env,
                               capture_output=True, text=True)
            if r.returncode == 0:
                break
            time.sleep(2)
        assert r.returncode == 0, (r.stdout, r.stderr, (tmp_path / "serve.log").read_text()[-3000:])
        assert "0 3 * * 1" in r.stdout and "'active': False" in r.stdout.replace('"', "'")
        # The former name is served too, without the schedule; it is what is run here.
        alias = subprocess.run([prefect, "deployment", "inspect", "anonymize-ferg/tiny-served"], env=env,
                               capture_output=True, text=True)
        assert alias.returncode == 0 and "0 3 * * 1" not in alias.stdout, alias.stderr
        run = subprocess.run([prefect, "deployment", "run", "anonymize-ferg/tiny-served", "--watch",
                              "--watch-timeout", "600"], env=env, capture_output=True, text=True, timeout=700)
        assert run.returncode == 0 and "Completed" in run.stdout, (run.stdout[-3000:], run.stderr[-3000:],
                                                                  (tmp_path / "serve.log").read_text()[-3000:])
        manifests = list((tmp_path / "release" / "ferg").glob("v-*/manifest.json"))
        assert len(manifests) == 1 and json.loads(manifests[0].read_text())["method"] == "proxy-morph"
        assert (tmp_path / "work" / "runs" / "tiny-served" / "report" / "report.html").exists()
    finally:
        stop(*[p for p in (serving, server) if p is not None])
    assert server.poll() is not None
    assert not _listening(port)


def _listening(port: int) -> bool:
    with socket.socket() as s:
        s.settimeout(2)
        return s.connect_ex(("127.0.0.1", port)) == 0


def _descendants(pid: int) -> set[int]:
    """Every process below ``pid``, from /proc."""
    children: dict[int, list[int]] = {}
    for d in Path("/proc").iterdir():
        if d.name.isdigit():
            try:
                ppid = int((d / "stat").read_text().rsplit(")", 1)[1].split()[1])
            except (OSError, IndexError, ValueError):
                continue
            children.setdefault(ppid, []).append(int(d.name))
    out, todo = set(), [pid]
    while todo:
        for c in children.get(todo.pop(), []):
            out.add(c)
            todo.append(c)
    return out


def _alive(pid: int) -> bool:
    try:
        return (Path("/proc") / str(pid) / "stat").read_text().rsplit(")", 1)[1].split()[0] != "Z"
    except (OSError, IndexError):
        return False


def _deployments(api: str) -> list:
    req = urllib.request.Request(f"{api}/deployments/filter", data=b"{}", method="POST",
                                 headers={"Content-Type": "application/json"})
    try:
        with urllib.request.urlopen(req, timeout=5) as r:
            return json.loads(r.read())
    except OSError:
        return []


def _listeners(port: int) -> set[int]:
    """PIDs holding a listening socket on ``port`` (from /proc), for the failure message."""
    inodes = set()
    for table in ("/proc/net/tcp", "/proc/net/tcp6"):
        try:
            for line in Path(table).read_text().splitlines()[1:]:
                f = line.split()
                if f[3] == "0A" and int(f[1].rsplit(":", 1)[1], 16) == port:
                    inodes.add(f[9])
        except OSError:
            pass
    pids = set()
    for fd in Path("/proc").glob("[0-9]*/fd/*"):
        try:
            if os.readlink(fd).strip("socket:[]") in inodes:
                pids.add(int(fd.parts[2]))
        except OSError:
            pass
    return pids


@pytest.mark.skipif(not sys.platform.startswith("linux"), reason="reads /proc; dying with the parent is Linux-only")
@pytest.mark.parametrize("sig", [signal.SIGTERM, signal.SIGKILL], ids=["sigterm", "kill-9"])
@pytest.mark.reliability(section='6. Crash and concurrency', case='SIGTERM or kill -9 of deid stack',
                         before='Prefect server and runner left listening',
                         after='children stopped (SIGTERM) or killed with their parent (kill -9); port closed')
def test_stopping_deid_stack_leaves_nothing_running(tmp_path, sig):
    from flows.stack import free_port, prefect_env, wait_healthy

    port = free_port()
    api = f"http://127.0.0.1:{port}/api"
    env = dict(prefect_env(tmp_path / "prefect"), DEID_WORK=str(tmp_path / "work"))
    log = tmp_path / "stack.log"
    with open(log, "w") as out:
        stack = subprocess.Popen([sys.executable, "-m", "flows.cli", "stack", "--port", str(port),
                                  str(_tiny_config(tmp_path))], cwd=str(ROOT), env=env, stdout=out,
                                 stderr=subprocess.STDOUT, start_new_session=True)
    children: set[int] = set()
    try:
        wait_healthy(api, timeout=180, proc=stack)
        deadline = time.monotonic() + 180
        while "ready:" not in log.read_text() and time.monotonic() < deadline:  # it says when all are served
            assert stack.poll() is None, log.read_text()[-3000:]
            time.sleep(0.5)
        ready = [line for line in log.read_text().splitlines() if line.startswith("ready:")]
        assert ready == ["ready: 2 deployments registered (anonymize/tiny-served, anonymize-ferg/tiny-served)"], (
            log.read_text()[-3000:], (tmp_path / "work" / "logs" / "deployments.log").read_text()[-3000:])
        assert sorted(d["name"] for d in _deployments(api)) == ["tiny-served", "tiny-served"]  # what it said
        children = _descendants(stack.pid)
        assert len(children) >= 2, children  # the server and the serving process
        os.kill(stack.pid, sig)  # only the parent, as a service manager or a user does
        stack.wait(timeout=60)
        if sig == signal.SIGTERM:
            assert stack.returncode == 0, log.read_text()[-3000:]
        deadline = time.monotonic() + 30
        while any(_alive(p) for p in children) and time.monotonic() < deadline:
            time.sleep(0.2)
        assert not [p for p in children if _alive(p)], log.read_text()[-3000:]
        while _listening(port) and time.monotonic() < deadline + 30:  # the kernel closes the socket last
            time.sleep(0.5)
        assert not _listening(port), sorted(_listeners(port))
    finally:
        for p in [stack.pid, *children, *_descendants(stack.pid)]:
            if _alive(p):
                try:
                    os.kill(p, signal.SIGKILL)
                except ProcessLookupError:
                    pass
        stack.wait(timeout=10)
