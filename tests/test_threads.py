"""Thread pools are sized to the cores a process was given (DEID_THREADS, affinity, cgroup quota)."""

from __future__ import annotations

import os
import subprocess
import sys
from pathlib import Path

from deid.threads import POOL_VARIABLES, available_cores, thread_env

ROOT = Path(__file__).resolve().parents[1]


def test_cores_come_from_deid_threads_then_affinity_then_the_cgroup_quota(tmp_path):
    assert available_cores({"DEID_THREADS": "3"}) == 3
    affinity = len(os.sched_getaffinity(0))
    assert available_cores({}, cgroup=tmp_path) == affinity  # no cpu.max: the affinity mask
    (tmp_path / "cpu.max").write_text("50000 100000\n")  # half a core
    assert available_cores({}, cgroup=tmp_path) == 1
    (tmp_path / "cpu.max").write_text("max 100000\n")
    assert available_cores({}, cgroup=tmp_path) == affinity


def test_the_users_own_settings_win_and_waiting_threads_sleep():
    env = thread_env(2, {"OMP_NUM_THREADS": "7"})
    assert "OMP_NUM_THREADS" not in env and env["OPENBLAS_NUM_THREADS"] == "2" and env["OMP_WAIT_POLICY"] == "PASSIVE"
    assert set(thread_env(4, {})) == {*POOL_VARIABLES, "OMP_WAIT_POLICY"}


def test_the_cli_sizes_torch_and_blas_from_the_environment():
    env = {k: v for k, v in os.environ.items() if k not in (*POOL_VARIABLES, "OMP_WAIT_POLICY")}
    env["DEID_THREADS"] = "1"
    code = "import flows.cli, os, torch; print(torch.get_num_threads(), os.environ['OMP_NUM_THREADS'], os.environ['OMP_WAIT_POLICY'])"
    out = subprocess.run([sys.executable, "-c", code], cwd=str(ROOT), env=env, capture_output=True, text=True, timeout=120)
    assert out.returncode == 0, out.stderr
    assert out.stdout.split() == ["1", "1", "PASSIVE"]
