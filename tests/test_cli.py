"""The ``deid`` command: entry points and clear errors with an exit code."""

from __future__ import annotations

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
