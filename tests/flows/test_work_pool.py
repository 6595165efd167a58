"""The work-pool path against a real Prefect server on 127.0.0.1: ``prefect deploy --all`` from the
shipped prefect.yaml into a ``process`` pool (the weekly example's schedule registered, inactive), and
a flow run of a manifest dataset (a name no flow was written for) picked up by ``prefect worker start
--pool`` started in another folder, reaching Completed."""

from __future__ import annotations

import json
import subprocess
import sys
import urllib.request
from pathlib import Path

import pytest
import yaml

from tests.flows.own_dataset import manifest_config, manifest_tree

pytestmark = pytest.mark.slow
ROOT = Path(__file__).resolve().parents[2]
TINY_AUDIT = {"attackers": ["linear"], "unseen_attackers": ["linear"], "folds": 2, "cnn_epochs": 1, "cnn_width": 4,
              "cnn_min_steps": 0, "linkage_repeats": 1, "pca_components": 4}


def _api(api: str, path: str, body: dict | None = None):
    req = urllib.request.Request(f"{api}{path}", data=None if body is None else json.dumps(body).encode(),
                                 method="GET" if body is None else "POST", headers={"Content-Type": "application/json"})
    with urllib.request.urlopen(req, timeout=10) as r:
        return json.loads(r.read())


def test_prefect_deploy_into_a_process_pool_and_a_worker_completes_the_run(tmp_path):
    from flows.deployments import WORK_POOL, write_prefect_yaml
    from flows.stack import free_port, prefect_env, start_server, stop, wait_healthy

    home, port = tmp_path / "prefect", free_port()
    api = f"http://127.0.0.1:{port}/api"
    server = start_server(home, port, tmp_path / "server.log")
    prefect = str(Path(sys.executable).with_name("prefect"))
    env = prefect_env(home, api)

    def cli(*args: str, cwd: Path = ROOT, timeout: float = 300) -> subprocess.CompletedProcess:
        r = subprocess.run([prefect, *args], cwd=str(cwd), env=env, capture_output=True, text=True, timeout=timeout)
        assert r.returncode == 0, (args, r.stdout[-3000:], r.stderr[-3000:])
        return r

    try:
        # The tiny manifest dataset of the run below is drawn while the server starts.
        manifest = manifest_tree(tmp_path / "data", n_characters=3, images_per_cell=4)
        wait_healthy(api, timeout=180, proc=server)
        # The server's UI calls the API on the server's own port, not 4200.
        assert _api(f"http://127.0.0.1:{port}", "/ui-settings")["api_url"] == api
        cli("work-pool", "create", WORK_POOL, "--type", "process")
        # Every shipped deployment, as a user deploys them (from the project folder).
        cli("--no-prompt", "deploy", "--all")
        shipped = yaml.safe_load((ROOT / "prefect.yaml").read_text())["deployments"]
        assert len(_api(api, "/deployments/filter", {})) == len(shipped)
        for d in shipped:  # anonymize/<config name> and the alias anonymize-<dataset>/<config name>
            attr = d["entrypoint"].rsplit(":", 1)[1]
            flow = "anonymize" if attr == "anonymize" else "anonymize-" + attr.removeprefix("anonymize_")
            assert _api(api, f"/deployments/name/{flow}/{d['name']}")["work_pool_name"] == WORK_POOL
        weekly = _api(api, "/deployments/name/anonymize/ferg-weekly")
        assert weekly["work_pool_name"] == WORK_POOL and weekly["parameters"] == {"config": "configs/ferg-weekly.yaml"}
        (sched,) = weekly["schedules"]
        assert sched["schedule"]["cron"] == "0 3 * * 1" and sched["active"] is False
        assert _api(api, "/deployments/name/anonymize-ferg/ferg-weekly")["schedules"] == []
        assert weekly["pull_steps"] == [{"prefect.deployments.steps.set_working_directory": {"directory": str(ROOT)}}]

        # The tiny manifest dataset, deployed the same way, run by a worker started elsewhere.
        cfg = manifest_config(tmp_path / "tiny-pool.yaml", "tiny-pool", manifest, tmp_path / "work",
                              include_baselines=False, methods=[{"name": "blur"}], audit=TINY_AUDIT)
        write_prefect_yaml([cfg], tmp_path / "prefect.yaml")
        cli("--no-prompt", "deploy", "--all", "--prefect-file", str(tmp_path / "prefect.yaml"))
        run = cli("deployment", "run", "anonymize/tiny-pool")
        elsewhere = tmp_path / "elsewhere"
        elsewhere.mkdir()
        cli("worker", "start", "--pool", WORK_POOL, "--run-once", cwd=elsewhere, timeout=480)
        runs = _api(api, "/flow_runs/filter", {"deployments": {"name": {"any_": ["tiny-pool"]}}})
        assert [r["state_type"] for r in runs] == ["COMPLETED"], (run.stdout, runs)
        summary = json.loads((tmp_path / "work" / "runs" / "tiny-pool" / "summary.json").read_text())
        assert summary["dataset"]["name"] == "manifest" and summary["prefect_flow_run_id"] == runs[0]["id"]
        assert list(elsewhere.iterdir()) == []  # the run wrote to its config's work_dir only
    finally:
        stop(server)
    assert server.poll() is not None
