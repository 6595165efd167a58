"""kill -9 in the middle of a flow run, run again: the same result, no partial or duplicate output."""

from __future__ import annotations

import json
import os
import signal
import subprocess
import sys
import time
from pathlib import Path

import pytest
import yaml

from tests.flows.settings import FAST_POOLED_AUDIT, MECHANICS_GATES, SMALL_DECIDABLE

pytestmark = pytest.mark.slow
ROOT = Path(__file__).resolve().parents[2]


def _config(tmp: Path) -> Path:
    cfg = {
        "name": "tiny-kill",
        "dataset": {"name": "ferg", "source": "builtin",
                    "synthetic": SMALL_DECIDABLE, "preprocess": {"size": 40}, "split": {"val": 0.0, "test": 0.4}},
        "include_baselines": False,  # the audit adds blackout, its control, by itself
        "methods": [{"name": "proxy-morph", "params": {"k": 3, "draw_seed": 0}}, {"name": "pixelate"}],
        "audit": FAST_POOLED_AUDIT,
        "gates": MECHANICS_GATES,
        "release": {"enabled": True, "method": "proxy-morph", "root": str(tmp / "release")},
        "work_dir": str(tmp / "work"),
    }
    tmp.mkdir(parents=True, exist_ok=True)
    p = tmp / "tiny-kill.yaml"
    p.write_text(yaml.safe_dump(cfg))
    return p


def _start(tmp: Path, log: Path) -> subprocess.Popen:
    """The run of ``tmp``'s config in a new process, its output to ``log`` (a file: nothing blocks on a
    pipe nobody reads while another run is watched)."""
    from flows.stack import prefect_env

    code = ("from flows.anonymize import anonymize_ferg; import json, sys; "
            f"r = anonymize_ferg(config={str(_config(tmp))!r}, base={str(tmp)!r}); "
            "print('RESULT', json.dumps(r['release']))")
    with open(log, "w") as out:
        p = subprocess.Popen([sys.executable, "-c", code], cwd=str(ROOT), env=prefect_env(tmp / "prefect"),
                             stdout=out, stderr=subprocess.STDOUT, text=True, start_new_session=True)
    p.log = log
    return p


def _finish(p: subprocess.Popen) -> dict:
    p.wait(timeout=900)
    out = p.log.read_text()
    assert p.returncode == 0, out[-4000:]
    return json.loads(out.rsplit("RESULT", 1)[1].splitlines()[0])


def _kill(p: subprocess.Popen) -> None:
    if p.poll() is None:
        try:
            os.killpg(p.pid, signal.SIGKILL)
        except ProcessLookupError:
            pass
        p.wait()


def _released_images(path: Path) -> list[bytes]:
    from data_contracts import RELEASE_SCHEMA, read_table

    t = read_table(path / "data", RELEASE_SCHEMA, columns=["image"])
    return sorted(t.column("image").combine_chunks().field("bytes").to_pylist())


def test_killed_run_reruns_to_the_same_release(tmp_path, seed_small_decidable):
    victim = tmp_path / "victim"
    for run in (tmp_path / "clean", victim):
        seed_small_decidable(run / "work")
    # The clean run and the victim run at once: separate work dirs and Prefect homes.
    procs = [_start(tmp_path / "clean", tmp_path / "clean.log")]
    try:
        procs.append(p := _start(victim, tmp_path / "victim-killed.log"))
        anon = victim / "work" / "runs" / "tiny-kill" / "anonymized"
        deadline = time.monotonic() + 600
        while time.monotonic() < deadline and not (anon.exists() and len(list(anon.iterdir())) >= 2):
            assert p.poll() is None, p.log.read_text()[-4000:]
            time.sleep(0.05)
        os.killpg(p.pid, signal.SIGKILL)  # mid-run: some methods written, the audit and release not yet
        p.wait()
        assert not any((victim / "release").rglob("manifest.json")) if (victim / "release").exists() else True
        procs.append(rerun := _start(victim, tmp_path / "victim-rerun.log"))
        clean = _finish(procs[0])
        again = _finish(rerun)
    finally:
        for q in procs:
            _kill(q)
    assert not again["reused"] and again["rows"] == clean["rows"]
    # Versions are drawn at random (a release is not a function of its data); the same content was published.
    assert again["version"] != clean["version"]
    assert _released_images(Path(again["path"])) == _released_images(Path(clean["path"]))
    leftovers = [q for q in victim.rglob("*") if ".tmp-" in q.name or ".old-" in q.name]
    assert leftovers == []
    assert len(list((victim / "release" / "ferg").glob("v-*"))) == 1
