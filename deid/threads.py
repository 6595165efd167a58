"""Thread pools sized to the cores a process was given, not to the machine's.

torch, OpenBLAS/MKL and OpenMP each start one thread per *machine* core in every process, and spin
while they wait. On a shared machine (a Prefect worker running several flows, a CI runner, a cgroup
with a CPU quota) that oversubscribes the cores many times over: a fit measured 20× slower beside
another run. :func:`configure_threads` sizes every pool to :func:`available_cores` and makes waiting
threads sleep (``OMP_WAIT_POLICY=PASSIVE``). A value the user exported wins.

The cores a process may use are, in order: ``DEID_THREADS`` if set, else the CPU affinity mask
(``taskset``, ``docker --cpuset-cpus``, Slurm), capped by a cgroup v2 ``cpu.max`` quota
(``docker --cpus``, Kubernetes limits).
"""

from __future__ import annotations

import math
import os
import sys
from pathlib import Path

__all__ = ["available_cores", "thread_env", "configure_threads", "POOL_VARIABLES"]

#: the environment variables each native pool reads at start
POOL_VARIABLES = ("OMP_NUM_THREADS", "OPENBLAS_NUM_THREADS", "MKL_NUM_THREADS", "NUMEXPR_NUM_THREADS",
                  "VECLIB_MAXIMUM_THREADS")


def _cgroup_quota(root: Path = Path("/sys/fs/cgroup")) -> float | None:
    """Cores a cgroup v2 CPU quota allows (``cpu.max``: ``quota period``), or None without one."""
    try:
        quota, period = (root / "cpu.max").read_text().split()[:2]
    except (OSError, ValueError):
        return None
    if quota == "max":
        return None
    try:
        return max(1.0, int(quota) / int(period))
    except (ValueError, ZeroDivisionError):
        return None


def available_cores(environ: dict[str, str] | None = None, cgroup: Path = Path("/sys/fs/cgroup")) -> int:
    """The cores this process may use (see the module docstring); at least 1."""
    env = os.environ if environ is None else environ
    if (v := env.get("DEID_THREADS", "").strip()):
        try:
            return max(1, int(v))
        except ValueError:
            raise ValueError(f"DEID_THREADS must be a whole number of threads, got {v!r}") from None
    try:
        n = len(os.sched_getaffinity(0))
    except (AttributeError, OSError):
        n = os.cpu_count() or 1
    quota = _cgroup_quota(cgroup)
    if quota is not None:
        n = min(n, math.ceil(quota))
    return max(1, n)


def thread_env(cores: int | None = None, environ: dict[str, str] | None = None) -> dict[str, str]:
    """The pool variables for ``cores`` threads and passive waiting, leaving any the user set."""
    env = os.environ if environ is None else environ
    n = str(cores or available_cores(env))
    out = {k: n for k in POOL_VARIABLES if not env.get(k)}
    if not env.get("OMP_WAIT_POLICY"):
        out["OMP_WAIT_POLICY"] = "PASSIVE"
    return out


def configure_threads(cores: int | None = None) -> int:
    """Export :func:`thread_env` (read by pools not yet started) and, when torch is already loaded, size
    its pools too; returns the thread count. Call it early: a native pool reads its variable once."""
    os.environ.update(thread_env(cores))
    n = int(os.environ.get("OMP_NUM_THREADS") or cores or available_cores())
    torch = sys.modules.get("torch")
    if torch is not None:
        torch.set_num_threads(n)
    return n
