"""Three `deid run` started at once on one fresh work dir: one Prefect server and database for the three,
started once; two of them run the same config, and each run reports its own summary and MLflow run.
``DEID_CONCURRENT_ROUNDS`` repeats it on a fresh work dir each round (1 in the suite; docs/reliability.md
says how many rounds ran once)."""

from __future__ import annotations

import json
import os
import re
import subprocess
import sys
from pathlib import Path

import pytest
import yaml

from tests.flows.settings import FAST_POOLED_AUDIT, SMALL_DECIDABLE


def _config(tmp: Path, name: str, method: str) -> Path:
    cfg = {"name": name, "dataset": {"name": "ferg", "source": "builtin", "synthetic": SMALL_DECIDABLE,
                                     "preprocess": {"size": 40}, "split": {"val": 0.0, "test": 0.4}},
           "include_baselines": False, "methods": [{"name": method}], "audit": FAST_POOLED_AUDIT,
           "work_dir": str(tmp / "work")}
    p = tmp / f"{name}.yaml"
    p.write_text(yaml.safe_dump(cfg))
    return p


ROUNDS = int(os.environ.get("DEID_CONCURRENT_ROUNDS", "1"))


def _three_at_once(tmp_path: Path, seed) -> None:
    seed(tmp_path / "work")
    env = {k: v for k, v in os.environ.items() if not k.startswith("PREFECT_") and k != "DEID_WORK"}
    exe = str(Path(sys.executable).parent / "deid")
    c0, c1 = _config(tmp_path, "c0", "pixelate"), _config(tmp_path, "c1", "blur")
    configs = [c0, c1, c0]  # the first config twice at once
    procs = [subprocess.Popen([exe, "run", str(c)], cwd=str(tmp_path), env=env, stdout=subprocess.PIPE,
                              stderr=subprocess.PIPE, text=True) for c in configs]
    outs = [p.communicate(timeout=900) for p in procs]
    for p, (out, err) in zip(procs, outs):
        assert p.returncode in (0, 3, 4) and "Traceback" not in err, err[-3000:]
    # one server for the three, started by one of them and joined by the others
    apis = [re.search(r"server for this run at (\S+) \((\w+)", err).groups() for _, err in outs]
    assert len({api for api, _ in apis}) == 1 and sorted(how for _, how in apis) == ["shared", "shared", "started"]
    assert len(list((tmp_path / "work" / "logs").glob("prefect-server-*.log"))) == 1
    assert all((tmp_path / "work" / "runs" / f"c{i}" / "summary.json").is_file() for i in range(2))
    # each run prints its own summary (not the latest of its config) and its own MLflow run
    own = [Path(re.search(r"^summary: (.+)$", out, re.MULTILINE).group(1)) for out, _ in outs]
    assert len(set(own)) == 3 and [p.parent.parent.name for p in own] == ["c0", "c1", "c0"]
    ids = [json.loads(p.read_text())["mlflow_run_id"] for p in own]
    assert len(set(ids)) == 3 and all(ids)
    assert [re.search(r"^mlflow:  run ([0-9a-f]{32})", out, re.MULTILINE).group(1) for out, _ in outs] == ids
    # the server stops when the last of them ends
    assert _gone(tmp_path / "work" / "prefect")


def _gone(home: Path, timeout: float = 15.0) -> bool:
    import time

    from flows.server_keeper import live_server

    deadline = time.monotonic() + timeout
    while live_server(home) is not None and time.monotonic() < deadline:
        time.sleep(0.5)
    return live_server(home) is None


@pytest.mark.slow
@pytest.mark.timeout(900 * ROUNDS)
@pytest.mark.reliability(section='6. Crash and concurrency', case='three deid run at once on a fresh work dir (Prefect servers on one SQLite file), two of one config',
                         before="1 of 3 crashed creating Prefect's database ('table work_queue already exists'); one server log for all; two runs of one config shared summary.json and reported one MLflow run",
                         after='one server per work dir, started under a lock and shared (stopped when the last run ends); all three finish, each reporting its own summary (runs/<config>/summaries/) and MLflow run; 10 of 10 rounds passed (DEID_CONCURRENT_ROUNDS=10, 23.8 min, load average 5–9 beside other jobs)')
def test_three_fresh_runs_at_once_all_finish(tmp_path, seed_small_decidable):
    for r in range(ROUNDS):
        _three_at_once(tmp_path / f"round-{r}", seed_small_decidable)
