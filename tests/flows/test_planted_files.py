"""A work folder is data, never code: files planted in it run nothing on the next `deid run`.

Each payload, if anything ever executed or unpickled it, creates a marker file (``open(marker, "w")``,
nothing else). The files the pipeline reads back from a work dir are enumerated in docs/reliability.md,
"Planted files"; each has a payload here.
"""

from __future__ import annotations

import json
import os
import pickle
import subprocess
import sys
from pathlib import Path

import pytest
import yaml

from tests.flows.settings import FAST_POOLED_AUDIT, SMALL_DECIDABLE

ROOT = Path(__file__).resolve().parents[2]


class _Payload:
    """Unpickling it opens ``marker`` for writing (creating it)."""

    def __init__(self, marker: Path):
        self.marker = str(marker)

    def __reduce__(self):
        return (open, (self.marker, "w"))


def _pickle_payload(marker: Path) -> bytes:
    return pickle.dumps(_Payload(marker))


def _logging_payload(marker: Path) -> str:
    """A logging config whose handler factory is ``open(file=marker, mode='w')``."""
    return yaml.safe_dump({"version": 1, "handlers": {"h": {"()": "builtins.open", "file": str(marker), "mode": "w"}},
                           "root": {"handlers": ["h"], "level": "INFO"}})


def test_unpickling_payload_would_create_the_marker(tmp_path):
    # the payload is live: if any reader below loaded it, the marker would appear
    marker = tmp_path / "marker"
    pickle.loads(_pickle_payload(marker)).close()
    assert marker.exists()


@pytest.mark.reliability(section='7. Planted files', case='audit row cache (cache/audit-rows) replaced by a pickle, or an array record of object dtype',
                         before='pickle.load ran it on the next run', after='JSON rows read as numbers and strings; anything else is a miss, computed again')
def test_a_planted_audit_row_is_a_cache_miss_and_runs_nothing(tmp_path):
    from deid.evaluation.audit import MethodAudit, row_from_json, row_to_json

    marker = tmp_path / "marker"
    row = MethodAudit("m", {"identity_acc_worst": 0.25}, {"linear": __import__("numpy").eye(3, dtype=int)},
                      {"linear": ["a", "b", "c"]})
    again = row_from_json(row_to_json(row))
    assert again.metrics == row.metrics and (again.confusion["linear"] == row.confusion["linear"]).all()
    for bad in (_pickle_payload(marker).decode("latin-1"),
                json.dumps({"method": "m", "metrics": {}, "confusion": {"x": {"dtype": "|O", "shape": [1],
                                                                               "data": [1]}},
                            "classes": {}, "cmc": {}})):
        with pytest.raises((ValueError, TypeError, KeyError)):
            row_from_json(bad)
    assert not marker.exists()


@pytest.mark.reliability(section='7. Planted files', case="a fit's reuse record (Prefect's persisted task result, now fit.json in the model folder) planted",
                         before='Prefect unpickled cache/task-results/* with cloudpickle on a cache hit', after='Prefect caching and persistence off; fit.json is JSON of finite numbers under a key, else the fit runs again')
def test_a_planted_fit_record_is_a_cache_miss_and_runs_nothing(tmp_path):
    from tasks.methods import FIT_RECORD, read_fit_record

    marker = tmp_path / "marker"
    (tmp_path / FIT_RECORD).write_bytes(_pickle_payload(marker))
    assert read_fit_record(tmp_path, "k") is None
    (tmp_path / FIT_RECORD).write_text(json.dumps({"key": "k", "stats": {"rows": "__import__('os')"}}))
    assert read_fit_record(tmp_path, "k") is None
    (tmp_path / FIT_RECORD).write_text(json.dumps({"key": "k", "stats": {"rows": 12, "fit_seconds": 0.5}}))
    assert read_fit_record(tmp_path, "k") == {"rows": 12, "fit_seconds": 0.5}
    assert read_fit_record(tmp_path, "other") is None
    assert not marker.exists()


@pytest.mark.reliability(section='7. Planted files', case='<work_dir>/prefect/logging.yml or profiles.toml planted',
                         before="Prefect loaded the work dir's logging.yml at start: a handler '(): os.system' ran on every run", after="logging config and profiles come from the prefect package or the user's own exported path, never from inside PREFECT_HOME")
def test_prefect_reads_no_logging_config_or_profile_from_its_home(tmp_path):
    from flows.prefect_env import prefect_package, prefect_settings

    home = tmp_path / "work" / "prefect"
    env = prefect_settings(home, {"PREFECT_LOGGING_CONFIG_PATH": str(home / "logging.yml"),
                                  "PREFECT_PROFILES_PATH": str(home / "profiles.toml")})
    pkg = prefect_package()
    assert Path(env["PREFECT_LOGGING_CONFIG_PATH"]) == pkg / "logging" / "logging.yml"
    assert Path(env["PREFECT_PROFILES_PATH"]) == pkg / "settings" / "profiles.toml"
    assert env["PREFECT_TASKS_DISABLE_CACHING"] == "true" and env["PREFECT_RESULTS_PERSIST_BY_DEFAULT"] == "false"
    mine = tmp_path / "mine.yml"  # the user's own, outside the work dir, is theirs
    assert prefect_settings(home, {"PREFECT_LOGGING_CONFIG_PATH": str(mine)})["PREFECT_LOGGING_CONFIG_PATH"] == str(mine)


def _config(tmp: Path) -> Path:
    cfg = {"name": "planted", "seed": 0,
           "dataset": {"name": "ferg", "source": "builtin", "synthetic": SMALL_DECIDABLE, "preprocess": {"size": 40},
                       "split": {"val": 0.0, "test": 0.4}},
           "include_baselines": False, "methods": [{"name": "pixelate"}], "audit": FAST_POOLED_AUDIT,
           "work_dir": str(tmp / "work")}
    p = tmp / "planted.yaml"
    p.write_text(yaml.safe_dump(cfg))
    return p


def _deid_run(config: Path, tmp: Path) -> subprocess.CompletedProcess:
    env = {k: v for k, v in os.environ.items() if not k.startswith("PREFECT_") and k != "DEID_WORK"}
    exe = Path(sys.executable).parent / "deid"
    return subprocess.run([str(exe), "run", str(config)], cwd=str(tmp), env=env, capture_output=True, text=True,
                          timeout=900)


def _plant(work: Path, marker: Path) -> list[Path]:
    """Every file the pipeline (or Prefect under it) reads back from ``work``, replaced or joined by a payload."""
    planted = []

    def put(p: Path, data: bytes | str) -> None:
        p.parent.mkdir(parents=True, exist_ok=True)
        p.write_bytes(data if isinstance(data, bytes) else data.encode())
        planted.append(p)

    home = work / "prefect"
    put(home / "logging.yml", _logging_payload(marker))
    put(work / "planted-logging.yml", _logging_payload(marker))
    put(home / "profiles.toml", f'active = "planted"\n[profiles.planted]\n'
                                f'PREFECT_LOGGING_CONFIG_PATH = "{work / "planted-logging.yml"}"\n')
    for name in ("a" * 32, "results", "0" * 64):  # Prefect's result storage and its default folder
        put(work / "cache" / "task-results" / name, _pickle_payload(marker))
        put(home / "storage" / name, _pickle_payload(marker))
    rows = sorted((work / "cache" / "audit-rows").glob("*.json"))
    assert rows, "the first run kept no audit rows"
    for r in rows:
        put(r, _pickle_payload(marker))
        put(r.with_suffix(".pkl"), _pickle_payload(marker))
    # a fit record is read only to be compared (tests above); tampering it would refit, change the outputs'
    # versions and so the rows' keys, and the planted rows would never be looked up: kept here
    assert sorted(work.rglob("fit.json")), "the first run kept no fit record"
    return planted


@pytest.mark.slow
@pytest.mark.reliability(section='7. Planted files', case='every file a run reads back, planted at once, then deid run',
                         before='a marker written 5 times in one run, then a crash', after='no marker; the same exit code; tampered caches recomputed; fits reused')
def test_files_planted_in_a_work_dir_run_nothing_on_the_next_run(tmp_path, seed_small_decidable):
    config = _config(tmp_path)
    seed_small_decidable(tmp_path / "work")
    first = _deid_run(config, tmp_path)
    assert first.returncode in (0, 3, 4), first.stdout[-3000:] + first.stderr[-3000:]
    marker = tmp_path / "MARKER-planted-code-ran"
    planted = _plant(tmp_path / "work", marker)
    second = _deid_run(config, tmp_path)
    assert not marker.exists(), f"a planted file ran code ({len(planted)} planted)"
    assert second.returncode == first.returncode, second.stdout[-3000:] + second.stderr[-3000:]
    assert "Traceback" not in second.stderr
    # the tampered caches were misses: recomputed and written back as data
    for r in sorted((tmp_path / "work" / "cache" / "audit-rows").glob("*.json")):
        assert r.read_bytes().startswith(b"{"), (r, second.stdout[-3000:], second.stderr[-5000:])
    assert "fitted and transformed before with the same inputs; reused" in second.stdout + second.stderr


@pytest.mark.reliability(section='7. Planted files', case='a new reader of work-dir files that can execute code',
                         before='pickle.load, cloudpickle (through Prefect) in two caches', after='no pickle, cloudpickle, joblib or unsafe yaml load, no allow_pickle=True, torch.load only with weights_only=True, anywhere in the product code')
def test_product_code_has_no_code_executing_loader():
    import re

    bad = re.compile(r"\b(c?pickle\.loads?|cloudpickle\.loads?|joblib\.load|dill\.loads?|shelve\.open|yaml\.load\(|"
                     r"yaml\.unsafe_load|marshal\.loads?)|allow_pickle\s*=\s*True")
    found = []
    for folder in ("deid", "tasks", "flows", "data_contracts", "bench"):
        for f in sorted((ROOT / folder).rglob("*.py")):
            for i, line in enumerate(f.read_text().splitlines(), 1):
                if bad.search(line) or ("torch.load(" in line and "weights_only=True" not in line):
                    found.append(f"{f.relative_to(ROOT)}:{i}: {line.strip()}")
    assert found == []
