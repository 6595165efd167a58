"""Where a figure was made: the code commit, the machine, its load and the command line.

One definition for every report that states its provenance (``summary.json``, ``docs/RESULTS.md``,
``docs/PERFORMANCE.md``, the benchmark tables). Each helper answers with a string and never raises:
a value that cannot be read is reported as ``"unknown"`` or ``"unavailable"``.
"""

from __future__ import annotations

import os
import platform
import shlex
import subprocess
import sys
from pathlib import Path

__all__ = ["COMMIT_ENV", "git_commit", "loadavg", "machine", "command_line"]

#: Set where the source tree has no ``.git`` (a container image): the commit the code was built from.
COMMIT_ENV = "DEID_COMMIT"


def git_commit(where: str | Path | None = None) -> str:
    """The commit of the checkout holding ``where`` (default: this package), else ``$DEID_COMMIT``, else ``"unknown"``."""
    cwd = Path(where) if where is not None else Path(__file__).resolve().parent
    try:
        return subprocess.run(["git", "rev-parse", "HEAD"], capture_output=True, text=True, check=True,
                              cwd=cwd).stdout.strip()
    except (OSError, subprocess.CalledProcessError):
        return os.environ.get(COMMIT_ENV) or "unknown"


def loadavg() -> str:
    """The 1, 5 and 15 minute load averages as ``"0.52 / 0.61 / 0.70"``."""
    try:
        return " / ".join(f"{x:.2f}" for x in os.getloadavg())
    except OSError:
        return "unavailable"


def _cpu_name() -> str:
    cpu = platform.processor() or platform.machine()
    try:
        for line in Path("/proc/cpuinfo").read_text().splitlines():
            if line.startswith("model name"):
                return line.split(":", 1)[1].strip()
    except OSError:
        pass
    return cpu


def _memory() -> str:
    try:
        lines = Path("/proc/meminfo").read_text().splitlines()
        kb = int(next(ln for ln in lines if ln.startswith("MemTotal")).split()[1])
        return f", {kb / 1024 ** 2:.1f} GiB RAM"
    except (OSError, StopIteration, ValueError, IndexError):
        return ""


def machine() -> str:
    """One line: CPU, cores, memory, OS, Python, torch, ``OMP_NUM_THREADS`` and whether CUDA is present."""
    import torch

    return (f"{_cpu_name()}, {os.cpu_count()} logical cores{_memory()}, {platform.system()} {platform.release()}, "
            f"Python {platform.python_version()}, torch {torch.__version__}, "
            f"OMP_NUM_THREADS={os.environ.get('OMP_NUM_THREADS', 'unset')}, "
            f"CUDA {'yes' if torch.cuda.is_available() else 'no'}")


def command_line(program: str = "deid", argv: list[str] | None = None) -> str:
    """The command as a person would retype it: ``program`` and the arguments (default ``sys.argv[1:]``), shell-quoted."""
    args = sys.argv[1:] if argv is None else argv
    return " ".join(shlex.quote(a) for a in [program, *args])
