"""The local stack: a Prefect server on its SQLite database, bound to 127.0.0.1, and the process
that serves the deployments. Used by ``deid stack`` and by the deployment test.

Nothing it starts outlives it (a run's server, shared by the runs of one work dir, ends about a second
after the last of them: :func:`flows.server_keeper.run_server`). Each child runs in its own process group (so a terminal's Ctrl-C
reaches only ``deid stack``, which then stops them in order), and on Linux each child is also
asked to receive SIGKILL when the process that started it dies, so even ``kill -9`` of the parent
leaves no server listening. SIGTERM and SIGHUP are handled like Ctrl-C.
"""

from __future__ import annotations

import ctypes
import ctypes.util
import json
import os
import signal
import socket
import subprocess
import sys
import time
import urllib.request
from collections.abc import Callable
from datetime import datetime, timezone
from pathlib import Path

__all__ = ["free_port", "prefect_env", "server_env", "start_server", "healthy", "wait_healthy", "start_serving", "stop", "run_stack",
           "die_with_parent", "stop_requested", "deployment_names", "registered_deployments",
           "wait_registered"]

ROOT = Path(__file__).resolve().parents[1]
_PR_SET_PDEATHSIG = 1


def free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]


def prefect_env(home: Path, api_url: str | None = None) -> dict[str, str]:
    from flows.prefect_env import prefect_settings

    env = dict(os.environ, **prefect_settings(home), MLFLOW_DISABLE_TELEMETRY="true", DO_NOT_TRACK="1",
               PYTHONUNBUFFERED="1")
    if api_url:
        env["PREFECT_API_URL"] = api_url
    else:
        env.pop("PREFECT_API_URL", None)
    home.mkdir(parents=True, exist_ok=True)
    return env


def die_with_parent() -> Callable[[], None] | None:
    """A ``preexec_fn`` that makes the child get SIGKILL when this process dies, even by ``kill -9``.

    Linux only (``prctl(PR_SET_PDEATHSIG)``); None elsewhere. The signal follows the thread that
    started the child, so start children from the main thread. Everything the child calls is
    resolved here, before the fork.
    """
    if not sys.platform.startswith("linux"):
        return None
    prctl = ctypes.CDLL(ctypes.util.find_library("c") or None, use_errno=True).prctl
    parent = os.getpid()

    def preexec() -> None:
        prctl(_PR_SET_PDEATHSIG, int(signal.SIGKILL), 0, 0, 0)
        if os.getppid() != parent:  # the parent died before prctl took effect
            os.kill(os.getpid(), signal.SIGKILL)

    return preexec


def server_env(home: Path, port: int) -> dict[str, str]:
    """The environment of a Prefect server on 127.0.0.1:``port``: its UI calls the API on that port.

    ``prefect server start --port`` binds the port but its UI asks ``PREFECT_UI_API_URL`` (by default
    ``PREFECT_API_URL``, else port 4200) where the API is; both are set to this server."""
    api = f"http://127.0.0.1:{port}/api"
    return dict(prefect_env(home), PREFECT_SERVER_API_HOST="127.0.0.1", PREFECT_SERVER_API_PORT=str(port),
                PREFECT_UI_API_URL=api, PREFECT_UI_URL=f"http://127.0.0.1:{port}")


def start_server(home: Path, port: int, log: Path) -> subprocess.Popen:
    """``prefect server start`` on 127.0.0.1:port with its database under ``home``."""
    exe = Path(sys.executable).with_name("prefect")
    with open(log, "w") as out:
        return subprocess.Popen([str(exe), "server", "start", "--host", "127.0.0.1", "--port", str(port)],
                                env=server_env(home, port), stdout=out, stderr=subprocess.STDOUT,
                                start_new_session=True, preexec_fn=die_with_parent())


def healthy(api_url: str, timeout: float = 2.0) -> bool:
    """Whether the Prefect API at ``api_url`` answers its health check."""
    try:
        with urllib.request.urlopen(f"{api_url}/health", timeout=timeout) as r:
            return r.status == 200
    except OSError:
        return False


def wait_healthy(api_url: str, timeout: float = 120.0, proc: subprocess.Popen | None = None) -> None:
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        if proc is not None and proc.poll() is not None:
            raise RuntimeError(f"the Prefect server exited with code {proc.returncode}")
        if healthy(api_url):
            return
        time.sleep(1)
    raise TimeoutError(f"Prefect server at {api_url} not healthy after {timeout:.0f} s")


def start_serving(home: Path, api_url: str, configs: list[Path], log: Path, base: Path = ROOT) -> subprocess.Popen:
    """``python -m flows.deployments`` against the server at ``api_url``."""
    with open(log, "w") as out:
        return subprocess.Popen([sys.executable, "-m", "flows.deployments", "--base", str(base), *map(str, configs)],
                                cwd=str(ROOT), env=prefect_env(home, api_url), stdout=out,
                                stderr=subprocess.STDOUT, start_new_session=True, preexec_fn=die_with_parent())


def deployment_names(configs: list[Path], base: Path = ROOT) -> list[str]:
    """``flow/deployment`` of every deployment ``python -m flows.deployments`` serves for ``configs``, in its
    order: what :func:`flows.deployments.build_deployments` makes of them."""
    from flows.deployments import build_deployments

    return [f"{d.flow_name}/{d.name}" for d in build_deployments(configs, base=Path(base).resolve())]


_LIST = ("import json, sys; from pathlib import Path; from flows.stack import deployment_names; "
         "print(json.dumps(deployment_names([Path(c) for c in sys.argv[2:]], Path(sys.argv[1]))))")


def _start_listing(home: Path, api_url: str, configs: list[Path], base: Path) -> subprocess.Popen:
    """:func:`deployment_names` in a child that ends when it has printed them: the flows import torch
    (~0.5 GB), which the stack's own long-lived process need not hold."""
    return subprocess.Popen([sys.executable, "-c", _LIST, str(base), *map(str, configs)], cwd=str(ROOT),
                            env=prefect_env(home, api_url), stdout=subprocess.PIPE, stderr=subprocess.PIPE,
                            text=True, start_new_session=True, preexec_fn=die_with_parent())


def _listed(lister: subprocess.Popen, timeout: float) -> list[str]:
    try:
        out, err = lister.communicate(timeout=timeout)
    except subprocess.TimeoutExpired:
        raise TimeoutError(f"listing the deployments took more than {timeout:.0f} s") from None
    if lister.returncode != 0:
        last = (err.strip().splitlines() or [f"exit code {lister.returncode}"])[-1]
        raise RuntimeError(f"could not list the deployments to serve: {last}")
    return json.loads(out.strip().splitlines()[-1])


def registered_deployments(client, names: list[str], since: datetime) -> list[str]:
    """Which of ``names`` (``flow/deployment``) the Prefect API behind ``client`` holds, registered (created
    or updated) at ``since`` or later: a deployment left in the database by an earlier stack does not count."""
    from prefect.client.schemas.filters import DeploymentFilter, DeploymentFilterName, FlowFilter, FlowFilterId

    wanted = DeploymentFilter(name=DeploymentFilterName(any_=sorted({n.split("/", 1)[1] for n in names})))
    fresh = [d for d in client.read_deployments(deployment_filter=wanted) if d.updated and d.updated >= since]
    if not fresh:
        return []
    flows = {f.id: f.name for f in client.read_flows(flow_filter=FlowFilter(id=FlowFilterId(any_=[d.flow_id for d in fresh])))}
    have = {f"{flows.get(d.flow_id)}/{d.name}" for d in fresh}
    return [n for n in names if n in have]


def wait_registered(poll: Callable[[], list[str]], names: list[str], *, timeout: float = 300.0,
                    say: Callable[[str], None] = print, alive: Callable[[], bool] = lambda: True,
                    interval: float = 1.0, progress_every: float = 5.0) -> list[str]:
    """Call ``poll`` (the names registered so far) until it returns every one of ``names``; returns them.

    Says ``registering deployments: k/n`` when k changed, at most once per ``progress_every`` seconds.
    Returns what is registered as soon as ``alive()`` is false (a child ended); raises :class:`TimeoutError`,
    one line naming what is missing, after ``timeout`` seconds. A poll the server fails is asked again."""
    import httpx

    deadline = time.monotonic() + timeout
    said, said_at = None, float("-inf")
    have: list[str] = []
    while True:
        try:
            have = poll()
        except httpx.HTTPError:  # the server is busy (SQLite): the next poll asks again
            pass
        if len(have) == len(names) or not alive():
            return have
        now = time.monotonic()
        if len(have) != said and now - said_at >= progress_every:
            say(f"registering deployments: {len(have)}/{len(names)}")
            said, said_at = len(have), now
        if now >= deadline:
            missing = [n for n in names if n not in have]
            raise TimeoutError(f"not ready after {timeout:.0f} s: {len(have)}/{len(names)} deployments registered; "
                               f"missing {', '.join(missing)}")
        time.sleep(interval)


def _signal_group(p: subprocess.Popen, sig: int) -> None:
    try:
        os.killpg(p.pid, sig)
    except (ProcessLookupError, PermissionError):
        pass


def stop(*procs: subprocess.Popen | None, timeout: float = 20.0, second_signal_after: float = 3.0) -> None:
    """Stop each child and its whole process group.

    SIGTERM to every group; SIGINT after ``second_signal_after`` seconds to the groups still alive
    (a served runner ignores the first signal); SIGKILL at ``timeout``; then SIGKILL once more to
    every group, for processes its leader left behind (flow runs of a runner).
    """
    procs = tuple(p for p in procs if p is not None)
    for p in procs:
        if p.poll() is None:
            _signal_group(p, signal.SIGTERM)
    start = time.monotonic()
    second_sent = False
    while any(p.poll() is None for p in procs) and time.monotonic() - start < timeout:
        if not second_sent and time.monotonic() - start >= second_signal_after:
            for p in procs:
                if p.poll() is None:
                    _signal_group(p, signal.SIGINT)
            second_sent = True
        time.sleep(0.1)
    for p in procs:
        _signal_group(p, signal.SIGKILL)
    for p in procs:
        try:
            p.wait(timeout=10)
        except subprocess.TimeoutExpired:  # pragma: no cover - SIGKILL not delivered in 10 s
            pass


class _Stopped(BaseException):
    """SIGTERM or SIGHUP arrived: unwind like Ctrl-C does."""


_STOP_REQUESTED: list[str] = []


def _raise_stopped(signum, frame) -> None:
    _STOP_REQUESTED.append(signal.Signals(signum).name)
    raise _Stopped(signal.Signals(signum).name)


def stop_requested() -> bool:
    """Whether SIGTERM or SIGHUP arrived (libraries may re-wrap the exception it raised)."""
    return bool(_STOP_REQUESTED)


def run_stack(home: Path, port: int, configs: list[Path], logs: Path, base: Path,
              say: Callable[[str], None] = print, health_timeout: float = 180.0, ready_timeout: float = 300.0) -> int:
    """Start the server, then the serving process; say ``ready: N deployments registered (...)`` once the
    Prefect API holds every deployment of ``configs`` (every config in ``configs/`` when empty), with
    ``registering deployments: k/N`` lines until then, or one line naming the missing ones after
    ``ready_timeout`` seconds (the stack keeps running). Run until Ctrl-C, SIGTERM or SIGHUP, or until
    either child exits; stop both (whole process groups) in every case. Returns an exit code: 0 after a
    signal, 1 if a child ended by itself. A config that does not load raises
    :class:`~deid.errors.ConfigError` before anything starts."""
    from flows.deployments import configs_in, load_configs

    configs = [Path(c).resolve() for c in configs] or configs_in(ROOT / "configs")  # the serving child runs in ROOT
    load_configs(configs)
    api = f"http://127.0.0.1:{port}/api"
    logs.mkdir(parents=True, exist_ok=True)
    previous = {signal.SIGINT: signal.getsignal(signal.SIGINT)}
    previous.update({s: signal.signal(s, _raise_stopped) for s in (signal.SIGTERM, signal.SIGHUP)})
    server = serving = lister = None
    code = 0
    try:
        server = start_server(home, port, logs / "prefect-server.log")
        lister = _start_listing(home, api, configs, base)  # while the server starts
        wait_healthy(api, timeout=health_timeout, proc=server)
        since = datetime.now(timezone.utc)
        serving = start_serving(home, api, configs, logs / "deployments.log", base=base)
        say(f"Prefect server and UI: http://127.0.0.1:{port}  (logs in {logs})")
        say(f"run a deployment:  PREFECT_API_URL={api} {Path(sys.executable).with_name('prefect')} "
            "deployment run 'anonymize/ferg-baselines'")
        say("Ctrl-C (or SIGTERM) stops both.")
        names = _listed(lister, timeout=health_timeout)
        _say_when_ready(api, names, since, say, ready_timeout,
                        alive=lambda: server.poll() is None and serving.poll() is None,
                        log=logs / "deployments.log")
        while server.poll() is None and serving.poll() is None:
            time.sleep(0.5)
        ended, log = (server, "prefect-server.log") if server.poll() is not None else (serving, "deployments.log")
        say(f"{'the Prefect server' if ended is server else 'the serving process'} exited with code "
            f"{ended.returncode}; see {logs / log}")
        code = 1
    except (KeyboardInterrupt, _Stopped):
        pass
    finally:
        # No second signal may interrupt the cleanup; stop() escalates to SIGKILL by itself.
        for s in (signal.SIGINT, signal.SIGTERM, signal.SIGHUP):
            signal.signal(s, signal.SIG_IGN)
        try:
            stop(lister, serving, server)
        finally:
            for s, h in previous.items():
                signal.signal(s, h)
    return code


def _say_when_ready(api: str, names: list[str], since: datetime, say: Callable[[str], None], timeout: float,
                    alive: Callable[[], bool], log: Path) -> None:
    from prefect.client.orchestration import get_client
    from prefect.settings import PREFECT_API_URL, temporary_settings

    with temporary_settings(updates={PREFECT_API_URL: api}), get_client(sync_client=True) as client:
        try:
            have = wait_registered(lambda: registered_deployments(client, names, since), names, timeout=timeout,
                                   say=say, alive=alive)
        except TimeoutError as exc:
            say(f"{exc} (the stack keeps running; see {log})")
            return
    if len(have) == len(names):
        say(f"ready: {len(names)} deployments registered ({', '.join(names)})")
