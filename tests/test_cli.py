"""The ``deid`` command: entry points and clear errors with an exit code."""

from __future__ import annotations

import re
from pathlib import Path

import pytest
from typer.testing import CliRunner

from flows.cli import app

runner = CliRunner()


def test_methods_lists_every_registered_method():
    from deid.methods import available_methods

    r = runner.invoke(app, ["methods"])
    assert r.exit_code == 0
    assert all(name in r.output for name in available_methods())


def test_ingest_reports_and_errors(ferg_tree, tmp_path):
    r = runner.invoke(app, ["ingest", "ferg", str(ferg_tree), "--out", str(tmp_path / "o"), "--size", "16"])
    assert r.exit_code == 0, r.output
    assert '"written": 168' in r.output and '"quarantined": 0' in r.output
    r = runner.invoke(app, ["ingest", "ferg", str(tmp_path / "missing"), "--out", str(tmp_path / "o2")])
    assert r.exit_code == 2 and "does not exist" in r.output


def test_run_with_bad_override_fails_before_work(tmp_path):
    r = runner.invoke(app, ["run", "configs/ferg.yaml", "--set", "methods=[{name: nope}]"])
    assert r.exit_code == 2 and "unknown method 'nope'" in r.output


def _config_file(tmp_path, **fields):
    import yaml

    cfg = {"name": "t", "dataset": {"name": "ferg"}, "work_dir": str(tmp_path / "work"), **fields}
    p = tmp_path / "c.yaml"
    p.write_text(yaml.safe_dump(cfg))
    return p


@pytest.fixture
def no_flow(monkeypatch):
    """Every flow replaced by one that records it was called: a check that fails must come first."""
    from flows import anonymize

    calls = []
    for name in anonymize.FLOWS:
        monkeypatch.setitem(anonymize.FLOWS, name, lambda **kw: calls.append(kw) or pytest.fail("a flow started"))
    return calls


@pytest.mark.reliability(section='5. Config types checked before any work', case='bad parameter, label, work_dir, device, missing dataset through deid run',
                         before='tracebacks after seconds of work',
                         after="one 'error:' line, exit 2, no flow started")
@pytest.mark.parametrize("fields, message", [
    ({"dataset": {"name": "jaffe", "source": "missing/jaffe"}}, r"dataset.source: .*missing/jaffe does not exist"),
    ({"work_dir": "/etc"}, "work_dir: /etc is a system directory"),
    ({"release": {"enabled": True, "method": "blur", "root": "/etc/cron.d"}}, "release.root: /etc/cron.d is a system"),
    ({"device": "cuda:99"}, "device: 'cuda:99' was asked for but this machine has"),
    ({"methods": [{"name": "blur", "params": {"sigma": "abc"}}]}, "sigma: Input should be a valid number"),
    ({"methods": [{"name": "blur", "label": "../../x"}]}, "methods.0.label: '../../x' is not a plain name"),
])
def test_run_fails_in_one_line_before_any_flow(tmp_path, no_flow, fields, message):
    r = runner.invoke(app, ["run", str(_config_file(tmp_path, **fields))])
    assert r.exit_code == 2, r.output
    assert r.output.startswith("error: ") and re.search(message, r.output), r.output
    assert "Traceback" not in r.output and isinstance(r.exception, SystemExit)
    assert no_flow == []


def _fake_flow(tmp_path, started, *, sound=True, release="not requested"):
    """A flow that writes the run's summary.json as the real one does, and records its call."""
    from deid.evaluation.gates import AuditJudgement, Verdict
    from deid.reporting.summary import ReleaseSummary, build_summary, write_summary

    def flow(**kw):
        started.append(kw)
        metrics = {"identity_acc_worst": 1.0, "identity_chance": 0.5, "n_test": 10.0}
        verdict = "PASS" if sound else "INCONCLUSIVE"
        j = AuditJudgement({"m": Verdict("m", verdict, [])}, [] if sound else ["the reference did not learn"], [])
        doc = build_summary(config_name="t", dataset={"name": "ferg"}, date="2026-01-01", code_commit="x",
                            methods={"original": metrics, "m": metrics}, judgement=j, gates={},
                            release=ReleaseSummary(status=release), used_utility_label={"m": False},
                            controls=("original", "blackout"), reference="original")
        write_summary(doc, tmp_path / "work" / "runs" / "t")
        return {}

    return flow


def test_run_claims_the_work_dir_then_starts_the_flow_and_prints_its_summary(tmp_path, monkeypatch):
    from flows import anonymize

    started = []
    monkeypatch.setitem(anonymize.FLOWS, "ferg", _fake_flow(tmp_path, started))
    r = runner.invoke(app, ["run", str(_config_file(tmp_path))])
    assert r.exit_code == 0, r.output
    assert len(started) == 1 and (tmp_path / "work" / ".deid-workspace").is_file()
    assert "PASS" in r.output and "summary.json" in r.output and "release: not requested" in r.output


def test_an_inconclusive_audit_exits_3(tmp_path, monkeypatch):
    from flows import anonymize

    monkeypatch.setitem(anonymize.FLOWS, "ferg", _fake_flow(tmp_path, [], sound=False))
    r = runner.invoke(app, ["run", str(_config_file(tmp_path))])
    assert r.exit_code == 3, r.output
    assert "INCONCLUSIVE" in r.output and "the reference did not learn" in r.output


@pytest.mark.reliability(section='5. Config types checked before any work', case='missing dataset path',
                         before='reported after 31 s with a Prefect traceback',
                         after='one stderr line, exit 2, no Prefect database created')
@pytest.mark.slow
def test_missing_dataset_is_one_line_from_the_real_command(tmp_path):
    import os
    import subprocess
    import sys

    cfg = _config_file(tmp_path, dataset={"name": "jaffe", "source": str(tmp_path / "nowhere")})
    env = {**os.environ, "DEID_WORK": str(tmp_path / "work"), "PREFECT_HOME": str(tmp_path / "prefect")}
    r = subprocess.run([sys.executable, "-m", "flows.cli", "run", str(cfg)], capture_output=True, text=True,
                       env=env, timeout=300, cwd=str(Path(__file__).resolve().parents[1]))
    assert r.returncode == 2, r.stderr
    assert r.stderr.splitlines() == [f"error: dataset.source: {tmp_path / 'nowhere'} does not exist (dataset 'jaffe')"]
    assert r.stdout == "" and not (tmp_path / "prefect" / "prefect.db").exists()
