"""One Prefect server per Prefect home (a work dir's ``prefect/``), shared by the runs that use it.

A run (:func:`shared_server`) takes the home's lock and reads ``server.json``. When the keeper it names
is alive (a process of this user whose command line is this module for this home) and its server
answers, the run leaves a lease (``leases/<pid>.json``: its pid and start time) and uses that server.
Otherwise it starts a keeper, ``python -m flows.server_keeper HOME LOG``, in a session of its own; the
keeper starts ``prefect server start`` on a free loopback port as its child (which gets SIGKILL when the
keeper dies, even by ``kill -9``), writes ``server.json`` once the server is healthy, then checks the
leases twice a second. A lease whose process is gone (ended, killed, or its pid reused) is removed;
when none is left the keeper removes ``server.json``, stops the server and exits. So concurrent runs
of one work dir share one server and one database, and the server outlives the last of them by about
a second whatever way it ended.

``server.json`` and the leases are data (JSON, a port and pids): nothing read from them can run code,
and a ``server.json`` is believed only when the process it names is this user's keeper for this home.
"""

from __future__ import annotations

import json
import os
import signal
import subprocess
import sys
import time
from collections.abc import Callable
from contextlib import contextmanager
from pathlib import Path

__all__ = ["run_server", "shared_server", "SERVER_FILE", "LEASES", "live_server", "keep"]

SERVER_FILE = "server.json"
LEASES = "leases"
_LOCK = ".server.lock"
_POLL = 0.5
_GRACE = 1.0


def _start_time(pid: int) -> str | None:
    """The process's start time (clock ticks since boot, Linux) or ``""`` where /proc is absent; None
    when no process has that pid."""
    try:
        os.kill(pid, 0)
    except ProcessLookupError:
        return None
    except PermissionError:
        pass
    try:
        stat = Path(f"/proc/{pid}/stat").read_text()
    except FileNotFoundError:
        return "" if not Path("/proc/self/stat").exists() else None
    except OSError:
        return ""
    return stat.rsplit(")", 1)[1].split()[19]  # field 22 of stat, counted after the command name


def _is_keeper(pid: int, home: Path) -> bool:
    """Whether ``pid`` is this user's keeper of ``home`` (on Linux; elsewhere: whether it is alive)."""
    proc = Path(f"/proc/{pid}")
    if not Path("/proc/self").exists():
        return _start_time(pid) is not None
    try:
        if proc.stat().st_uid != os.getuid():
            return False
        argv = proc.joinpath("cmdline").read_bytes().split(b"\0")
    except OSError:
        return False
    return b"flows.server_keeper" in argv and os.fsencode(str(home)) in argv


def live_server(home: Path) -> dict | None:
    """``server.json`` of ``home`` when its keeper is alive and its server answers, else None."""
    try:
        info = json.loads((home / SERVER_FILE).read_text())
        pid, api = int(info["pid"]), str(info["api"])
    except (OSError, ValueError, KeyError, TypeError):
        return None
    from flows.stack import healthy

    if not api.startswith("http://127.0.0.1:") or not _is_keeper(pid, home) or not healthy(api):
        return None
    return info


def _write_json(path: Path, doc: dict) -> None:
    from data_contracts.atomic import write_text_atomic

    path.parent.mkdir(parents=True, exist_ok=True)
    write_text_atomic(path, json.dumps(doc))


def _live_leases(home: Path) -> list[int]:
    """The pids of the leases whose process still runs; the others are removed."""
    alive = []
    for p in (home / LEASES).glob("*.json"):
        try:
            lease = json.loads(p.read_text())
            pid, started = int(lease["pid"]), lease["start_time"]
        except (OSError, ValueError, KeyError, TypeError):
            pid, started = None, None
        if pid is not None and _start_time(pid) == started:
            alive.append(pid)
        else:
            p.unlink(missing_ok=True)
    return alive


def _lock(home: Path, timeout: float):
    from filelock import FileLock

    return FileLock(str(home / _LOCK), timeout=timeout)


def keep(home: Path, log: Path, health_timeout: float = 180.0) -> int:
    """The keeper: start the server, publish ``server.json``, stop it when no lease is left."""
    from flows.stack import free_port, start_server, stop, wait_healthy

    port = free_port()
    api = f"http://127.0.0.1:{port}/api"
    server = start_server(home, port, log)
    stopping: list[int] = []
    for sig in (signal.SIGTERM, signal.SIGHUP, signal.SIGINT):
        signal.signal(sig, lambda signum, frame: stopping.append(signum))
    try:
        wait_healthy(api, timeout=health_timeout, proc=server)
        _write_json(home / SERVER_FILE, {"pid": os.getpid(), "port": port, "api": api, "log": str(log),
                                         "server_pid": server.pid, "started": time.time()})
        idle_since = None
        while not stopping and server.poll() is None:
            time.sleep(_POLL)
            with _lock(home, timeout=60):
                if _live_leases(home):
                    idle_since = None
                    continue
                idle_since = idle_since or time.monotonic()
                if time.monotonic() - idle_since >= _GRACE:
                    (home / SERVER_FILE).unlink(missing_ok=True)
                    break
        return 0 if server.poll() is None else 1
    finally:
        try:
            if json.loads((home / SERVER_FILE).read_text()).get("pid") == os.getpid():
                (home / SERVER_FILE).unlink(missing_ok=True)
        except (OSError, ValueError):
            pass
        stop(server)


def _start_keeper(home: Path, log: Path, health_timeout: float) -> dict:
    """Start a keeper of ``home`` and wait until its server is healthy; its ``server.json``."""
    from flows.stack import prefect_env

    log.parent.mkdir(parents=True, exist_ok=True)
    (home / SERVER_FILE).unlink(missing_ok=True)
    with open(home / "keeper.log", "a") as out:
        keeper = subprocess.Popen([sys.executable, "-m", "flows.server_keeper", str(home), str(log),
                                   str(health_timeout)], env=prefect_env(home), stdout=out,
                                  stderr=subprocess.STDOUT, stdin=subprocess.DEVNULL, start_new_session=True)
    deadline = time.monotonic() + health_timeout + 10
    while time.monotonic() < deadline:
        if keeper.poll() is not None:
            tail = (log.read_text(errors="replace").strip().splitlines() or ["no output"]) if log.exists() else ["no log"]
            raise RuntimeError(f"the Prefect server for {home} did not start (exit {keeper.returncode}): {tail[-1]}")
        info = live_server(home)
        if info is not None and info["pid"] == keeper.pid:
            return info
        time.sleep(0.2)
    os.killpg(keeper.pid, signal.SIGTERM)
    raise TimeoutError(f"the Prefect server for {home} was not healthy after {health_timeout:.0f} s (log {log})")


@contextmanager
def shared_server(home: Path, log: Path, health_timeout: float = 180.0,
                  say: Callable[[str], None] = print):
    """The API URL of ``home``'s server, started if no run of this home has one up, for as long as the
    context lasts; ``say`` tells whether it was started or joined."""
    home.mkdir(parents=True, exist_ok=True)
    lease = home / LEASES / f"{os.getpid()}.json"
    with _lock(home, timeout=health_timeout * 3):
        info = live_server(home)
        joined = info is not None
        if info is None:
            say("prefect: starting a server for this work dir (it answers in about 10 s on a quiet machine)")
            info = _start_keeper(home, log.with_name(f"{log.stem}-{os.getpid()}{log.suffix}"), health_timeout)
        _write_json(lease, {"pid": os.getpid(), "start_time": _start_time(os.getpid())})
        others = len(_live_leases(home)) - 1
    how = (f"shared with {others} other run(s) of this work dir" if joined and others
           else "joined, started by an earlier run" if joined else "started")
    say(f"prefect: server for this run at {info['api']} ({how}; stopped when the last run using it ends; "
        f"log {info['log']})")
    try:
        yield info["api"]
    finally:
        with _lock(home, timeout=60):
            lease.unlink(missing_ok=True)


@contextmanager
def run_server(home: Path, log: Path, say: Callable[[str], None] = print, health_timeout: float = 180.0):
    """The Prefect server of ``home`` (a work dir's ``prefect/``) for one run, yielding its API URL: the
    one a concurrent run of the same home already has up, else one started on a free loopback port
    (:func:`shared_server`). It stops about a second after the last run using it ends, even by
    ``kill -9``; SIGTERM unwinds the run like Ctrl-C. When ``PREFECT_API_URL`` is set, that server is used
    and nothing is started."""
    from prefect.settings import PREFECT_API_URL, temporary_settings

    from flows.stack import _raise_stopped, _Stopped

    if os.environ.get("PREFECT_API_URL"):
        yield os.environ["PREFECT_API_URL"]
        return
    previous = signal.getsignal(signal.SIGTERM)
    signal.signal(signal.SIGTERM, _raise_stopped)  # from here SIGTERM unwinds, also while the server starts
    try:
        with shared_server(home, log, health_timeout=health_timeout, say=say) as api:
            # Also in the environment: worker processes (a process pool, Dask) start from it, and a process
            # that meets Prefect before its settings arrive would start a temporary server of its own.
            os.environ["PREFECT_API_URL"] = api
            with temporary_settings(updates={PREFECT_API_URL: api}):
                try:
                    yield api
                finally:
                    signal.signal(signal.SIGTERM, signal.SIG_IGN)  # nothing may interrupt the cleanup
                    _drain_prefect_services()
    except _Stopped as exc:
        raise KeyboardInterrupt(str(exc)) from None
    finally:
        os.environ.pop("PREFECT_API_URL", None)
        signal.signal(signal.SIGTERM, previous)


def _drain_prefect_services(timeout: float = 15.0) -> None:
    """Send Prefect's queued logs and events while the server still listens; at exit they would
    otherwise retry against a stopped server."""
    from prefect.events.worker import EventsWorker
    from prefect.logging.handlers import APILogWorker

    for service in (APILogWorker, EventsWorker):
        try:
            service.drain_all(timeout=timeout)
        except Exception:  # noqa: BLE001 - draining is best effort; the run's outcome is already written
            pass


if __name__ == "__main__":
    sys.exit(keep(Path(sys.argv[1]), Path(sys.argv[2]), float(sys.argv[3])))
