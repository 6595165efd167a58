"""A real Prefect server on a free loopback port, the deployments served, and a run started the
way users start it: ``prefect deployment run 'anonymize-ferg/<name>'``."""

from __future__ import annotations

import json
import subprocess
import sys
from pathlib import Path

import pytest
import yaml

pytestmark = pytest.mark.slow


def _tiny_config(tmp: Path) -> Path:
    cfg = {
        "name": "tiny-served",
        "dataset": {"name": "ferg", "source": "builtin",
                    "synthetic": {"n_characters": 3, "images_per_cell": 5, "size": 64},
                    "preprocess": {"size": 32}, "split": {"val": 0.0, "test": 0.4}},
        "include_baselines": False,
        "methods": [{"name": "blackout"}],
        "audit": {"attackers": ["linear"], "cnn_epochs": 1, "cnn_width": 4, "linkage_repeats": 1},
        "gates": {"attacker_margin": 1.0, "min_utility_retention": 0.0},
        "release": {"enabled": True, "method": "blackout", "root": str(tmp / "release")},
        "work_dir": str(tmp / "work"),
        "schedule": "0 3 * * 1",
    }
    p = tmp / "tiny-served.yaml"
    p.write_text(yaml.safe_dump(cfg))
    return p


def test_served_deployment_runs_from_the_cli(tmp_path):
    from flows.stack import free_port, prefect_env, start_server, start_serving, stop, wait_healthy

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
            r = subprocess.run([prefect, "deployment", "inspect", "anonymize-ferg/tiny-served"], env=env,
                               capture_output=True, text=True)
            if r.returncode == 0:
                break
            import time

            time.sleep(2)
        assert r.returncode == 0, (r.stdout, r.stderr, (tmp_path / "serve.log").read_text()[-3000:])
        assert "0 3 * * 1" in r.stdout and "'active': False" in r.stdout.replace('"', "'")
        run = subprocess.run([prefect, "deployment", "run", "anonymize-ferg/tiny-served", "--watch",
                              "--watch-timeout", "600"], env=env, capture_output=True, text=True, timeout=700)
        assert run.returncode == 0 and "Completed" in run.stdout, (run.stdout[-3000:], run.stderr[-3000:],
                                                                  (tmp_path / "serve.log").read_text()[-3000:])
        manifests = list((tmp_path / "release" / "ferg").glob("v-*/manifest.json"))
        assert len(manifests) == 1 and json.loads(manifests[0].read_text())["method"] == "blackout"
        assert (tmp_path / "work" / "runs" / "tiny-served" / "report" / "report.html").exists()
    finally:
        stop(*[p for p in (serving, server) if p is not None])
    assert server.poll() is not None
