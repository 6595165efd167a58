"""The ``deid`` command: entry points and clear errors with an exit code."""

from __future__ import annotations

import re
from pathlib import Path

import pytest
from typer.testing import CliRunner

from flows.cli import app

runner = CliRunner()
ROOT = Path(__file__).resolve().parents[1]
CONFIGS = sorted((ROOT / "configs").glob("*.yaml"))


def test_methods_lists_every_registered_method():
    from deid.methods import available_methods

    r = runner.invoke(app, ["methods"])
    assert r.exit_code == 0
    assert all(name in r.output for name in available_methods())


def test_methods_shows_each_parameters_type_default_range_and_meaning():
    from deid.methods import available_methods, method_class

    out = "\n" + runner.invoke(app, ["methods"]).output
    for name in available_methods():
        block = out.split(f"\n{name} ", 1)[1].split("\n")[1:]
        params = method_class(name).param_names()
        lines = block[:len(params)] if params else block[:1]
        for p, line in zip(params, lines):
            cells = line.split()
            assert cells[0] == p, (name, line)
            assert cells[-1] != "-", f"{name}.{p} has no one-line doc"  # every parameter says what it is
    ks = next(line for line in out.splitlines() if line.split()[:1] == ["k"])
    assert re.search(r"\bint\s+\d+\s+≥ 2\s+\w", ks), ks
    space = out.split("\nksame-select ", 1)[1]
    assert re.search(r"^  space\s+str\s+'pixel'\s+pixel \| eigen\s+where", space, re.MULTILINE)
    assert re.search(r"^  max_weight\s+float \| None\s+0\.5\s+\(0\.0, 1\.0\]", out.split("\nproxy-mix ", 1)[1],
                     re.MULTILINE)


def test_methods_name_shows_the_paper_and_the_guarantee():
    r = runner.invoke(app, ["methods", "ksame-select"])
    assert r.exit_code == 0, r.output
    assert re.search(r"^paper: .*Gross et al\., PET 2005", r.output, re.MULTILINE)
    assert re.search(r"^guarantee: k-anonymity within each utility label", r.output, re.MULTILINE)
    assert "each utility label of every split" in r.output and re.search(r"^  k\s+int\s+2\s+≥ 2", r.output, re.MULTILINE)
    r = runner.invoke(app, ["methods", "blur"])
    assert "paper:     none" in r.output and "guarantee: none by construction" in r.output
    r = runner.invoke(app, ["methods", "ksame-selct"])
    assert r.exit_code == 2 and r.output.count("\n") == 1 and "did you mean 'ksame-select'" in r.output


def test_ingest_reports_and_errors(ferg_tree, tmp_path):
    r = runner.invoke(app, ["ingest", "ferg", str(ferg_tree), "--out", str(tmp_path / "o"), "--size", "16"])
    assert r.exit_code == 0, r.output
    assert '"written": 168' in r.output and '"quarantined": 0' in r.output
    r = runner.invoke(app, ["ingest", "ferg", str(tmp_path / "missing"), "--out", str(tmp_path / "o2")])
    assert r.exit_code == 2 and "does not exist" in r.output


def test_ingest_lists_every_registered_loader_and_takes_loader_options(tmp_path):
    import cv2
    import numpy as np

    from deid.datasets import available_loaders, get_loader

    r = runner.invoke(app, ["ingest", "--help"], env={"COLUMNS": "400"})
    assert r.exit_code == 0
    for name in available_loaders():  # every loader, from the registry, with the options it takes
        line = next(x for x in r.output.splitlines() if f"- {name}: " in x)
        assert all(o in line for o in get_loader(name).option_names()), line
    rows = ["file,identity,label"]
    for i in range(3):
        for label in ("anger", "joy"):
            for k in range(3):
                cv2.imwrite(str(tmp_path / f"{i}{label}{k}.png"), np.random.default_rng(len(rows)).integers(
                    0, 255, (20, 20), np.uint8))
                rows.append(f"{i}{label}{k}.png,p{i},{label}")
    (tmp_path / "labels.csv").write_text("\n".join(rows) + "\n")
    args = ["ingest", "manifest", str(tmp_path / "labels.csv"), "--out", str(tmp_path / "o"), "--size", "16"]
    r = runner.invoke(app, [*args, "--option", "path_column=file"])
    assert r.exit_code == 0, r.output
    assert '"written": 18' in r.output and '"quarantined": 0' in r.output
    r = runner.invoke(app, [*args, "--option", "path_column=file", "--option", "labels=[joy]"])  # values are YAML
    assert r.exit_code == 0 and '"written": 9' in r.output and '"quarantined": 9' in r.output, r.output
    r = runner.invoke(app, [*args, "--option", "path_colum=file"])
    assert r.exit_code == 2 and r.output.count("\n") == 1 and "did you mean 'path_column'" in r.output
    r = runner.invoke(app, [*args, "--option", "path_column"])
    assert r.exit_code == 2 and "--option wants key=value" in r.output


def test_run_with_bad_override_fails_before_work(tmp_path):
    r = runner.invoke(app, ["run", "configs/ferg.yaml", "--set", "methods=[{name: nope}]"])
    assert r.exit_code == 2 and "unknown method 'nope'" in r.output
    r = runner.invoke(app, ["run", "configs/ferg.yaml", "--set", "audit.cnn_epochs"])
    assert r.exit_code == 2 and r.output == "error: --set wants key=value, got 'audit.cnn_epochs'\n"


def test_version_prints_the_package_version_and_the_commit():
    from importlib.metadata import version

    from deid.provenance import git_commit

    r = runner.invoke(app, ["--version"])
    assert r.exit_code == 0, r.output
    commit = git_commit()
    assert r.output == f"deid {version('deid')}" + (f" (commit {commit[:12]})" if commit != "unknown" else "") + "\n"
    assert re.fullmatch(r"deid \d+\.\d+\S*( \(commit [0-9a-f]{12}\))?\n", r.output)


def test_methods_lists_current_names_only():
    r = runner.invoke(app, ["methods"])
    names = [line.split()[0] for line in r.output.splitlines() if line and not line.startswith((" ", "`"))]
    assert "latent-shift" in names and "ksame-net" in names
    assert all(re.fullmatch(r"[a-z0-9]+(-[a-z0-9]+)*", n) for n in names), names


@pytest.fixture
def shipped_configs_base(tmp_path, monkeypatch):
    """A project folder in which every relative dataset path of configs/ exists (empty), as the current directory."""
    import yaml

    base = tmp_path / "project"
    base.mkdir()
    for c in CONFIGS:
        source = yaml.safe_load(c.read_text())["dataset"].get("source", "builtin")
        if source != "builtin" and not Path(source).is_absolute():
            (base / source).mkdir(parents=True, exist_ok=True)
    monkeypatch.chdir(base)
    return base


def test_validate_passes_every_shipped_config(shipped_configs_base, no_flow, no_server):
    r = runner.invoke(app, ["validate", *map(str, CONFIGS)])
    assert r.exit_code == 0, r.output
    lines = r.output.splitlines()
    assert [line.split(": ")[1] for line in lines] == [str(c) for c in CONFIGS]
    assert all(line.startswith("ok: ") and f"work dir {shipped_configs_base / 'work'}" in line for line in lines)
    assert "methods blur, pixelate, blackout, proxy-morph, ksame-select" in lines[[c.name for c in CONFIGS].index("ferg.yaml")]
    assert not (shipped_configs_base / "work").exists()  # checked, not claimed


def test_validate_reports_each_bad_config_and_exits_2(shipped_configs_base, tmp_path):
    bad = _config_file(tmp_path, methods=[{"name": "blur", "params": {"sigma": "abc"}}], colour=True)
    r = runner.invoke(app, ["validate", str(CONFIGS[0]), str(bad), str(tmp_path / "missing.yaml")])
    assert r.exit_code == 2, r.output
    lines = r.output.splitlines()
    assert lines[0].startswith(f"ok: {CONFIGS[0]}: ")
    assert lines[1:] == [
        f"error: {bad}: methods.0: method 'blur': sigma: Input should be a valid number (got 'abc')",
        f"error: {bad}: colour: unknown key; allowed: {list(_run_config_keys())}",
        f"error: config file {tmp_path / 'missing.yaml'} does not exist"], lines


def _run_config_keys():
    from deid.config import RunConfig

    return RunConfig.model_fields


def test_dry_run_checks_like_validate_and_starts_nothing(tmp_path, no_flow, no_server):
    r = runner.invoke(app, ["run", "--dry-run", str(_config_file(tmp_path))])
    assert r.exit_code == 0, r.output
    assert r.output.startswith("ok: ") and "run 't', dataset ferg (built-in generator)" in r.output
    assert not (tmp_path / "work").exists()
    r = runner.invoke(app, ["run", "--dry-run", str(_config_file(tmp_path, work_dir="/etc"))])
    assert r.exit_code == 2 and r.output == f"error: {tmp_path / 'c.yaml'}: work_dir: /etc is a system directory; " \
                                            "choose a folder of its own\n"


def test_former_method_names_validate_as_the_current_ones(tmp_path):
    r = runner.invoke(app, ["validate", str(_config_file(tmp_path, methods=[{"name": "latent_shift"}]))])
    assert r.exit_code == 0, r.output
    assert "methods blur, pixelate, blackout, latent-shift;" in r.output


def _config_file(tmp_path, **fields):
    import yaml

    cfg = {"name": "t", "dataset": {"name": "ferg"}, "work_dir": str(tmp_path / "work"), **fields}
    p = tmp_path / "c.yaml"
    p.write_text(yaml.safe_dump(cfg))
    return p


@pytest.fixture
def no_server(monkeypatch):
    """The run's Prefect server replaced by a failure: a configuration error must come first."""
    from flows import server_keeper

    monkeypatch.setattr(server_keeper, "run_server", lambda *a, **kw: pytest.fail("a Prefect server was started"))


@pytest.fixture
def no_flow(monkeypatch):
    """Every flow replaced by one that records it was called: a check that fails must come first."""
    from flows import anonymize

    calls = []
    fake = lambda **kw: calls.append(kw) or pytest.fail("a flow started")  # noqa: E731
    monkeypatch.setattr(anonymize, "anonymize", fake)
    for name in anonymize.FLOWS:
        monkeypatch.setitem(anonymize.FLOWS, name, fake)
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
def test_run_fails_in_one_line_before_any_flow(tmp_path, no_flow, no_server, fields, message):
    r = runner.invoke(app, ["run", str(_config_file(tmp_path, **fields))])
    assert r.exit_code == 2, r.output
    assert r.output.startswith("error: ") and re.search(message, r.output), r.output
    assert len(r.output.splitlines()) == 1, r.output
    assert "Traceback" not in r.output and isinstance(r.exception, SystemExit)
    assert no_flow == []


def _fake_flow(tmp_path, started, *, sound=True, release="not requested", blocked=False):
    """A flow that writes the run's summary.json as the real one does, and records its call; ``blocked``:
    its release is refused after the audit, as the real flow refuses a FAIL (ReleaseBlocked)."""
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
        if blocked:
            doc.release = ReleaseSummary(status="blocked", method="m", reason="the audit's verdict is FAIL")
        write_summary(doc, tmp_path / "work" / "runs" / "t")
        if blocked:
            from flows.anonymize import ReleaseBlocked

            raise ReleaseBlocked("release of 'm' blocked: the audit's verdict is FAIL")
        return {}

    return flow


def test_demo_runs_its_shipped_config_from_any_folder_and_its_help_says_what_it_runs(tmp_path, monkeypatch, no_server):
    import yaml

    from deid.errors import DeidError
    from flows import anonymize

    config = yaml.safe_load((ROOT / "configs" / "ferg.yaml").read_text())
    help_text = " ".join(runner.invoke(app, ["demo", "--help"], env={"COLUMNS": "400"}).output.split())
    for m in config["methods"]:  # every method the demo runs, not only the baselines
        assert f"{m['name']} (k={m['params']['k']})" in help_text
    assert "the naive baselines" in help_text and f"{config['release']['method']}'s output is published" in help_text
    started = []

    def flow(**kw):
        started.append(kw)
        raise DeidError("stopped by the test")

    monkeypatch.setattr(anonymize, "anonymize", flow)
    monkeypatch.chdir(tmp_path)  # no configs/ here
    r = runner.invoke(app, ["demo", "--set", "audit.cnn_epochs=1"])
    assert r.exit_code == 2 and r.output.startswith("starting: ") and r.output.endswith("\nerror: stopped by the test\n")
    assert len(r.output.splitlines()) == 2, r.output
    (kw,) = started  # the config as the command resolved it (overrides applied), not a path to parse again
    assert kw["config"].name == config["name"] and kw["base"] == str(tmp_path) and "overrides" not in kw
    assert kw["config"].audit.cnn_epochs == 1 and (tmp_path / "work" / ".deid-workspace").is_file()


@pytest.mark.slow
def test_a_built_wheel_ships_the_demo_config(tmp_path):
    import shutil
    import subprocess
    import sys
    import zipfile

    src = tmp_path / "src"  # a copy: setuptools builds in the source tree
    src.mkdir()
    for name in ("pyproject.toml", "README.md"):
        shutil.copy(ROOT / name, src / name)
    for name in ("deid", "data_contracts", "tasks", "flows", "bench", "configs"):
        shutil.copytree(ROOT / name, src / name, symlinks=True, ignore=shutil.ignore_patterns("__pycache__"))
    r = subprocess.run([sys.executable, "-m", "pip", "wheel", "--no-deps", "--no-build-isolation", "-q", "-w",
                        str(tmp_path), str(src)], capture_output=True, text=True, timeout=600, cwd=str(tmp_path))
    assert r.returncode == 0, r.stderr[-2000:]
    (wheel,) = tmp_path.glob("deid-*.whl")
    with zipfile.ZipFile(wheel) as z:
        assert z.read("flows/demo.yaml") == (ROOT / "configs" / "ferg.yaml").read_bytes()


def test_run_claims_the_work_dir_then_starts_the_flow_and_prints_its_summary(tmp_path, monkeypatch):
    from flows import anonymize

    started = []
    monkeypatch.setattr(anonymize, "anonymize", _fake_flow(tmp_path, started))
    r = runner.invoke(app, ["run", str(_config_file(tmp_path))])
    assert r.exit_code == 0, r.output
    assert len(started) == 1 and (tmp_path / "work" / ".deid-workspace").is_file()
    assert "PASS" in r.output and "summary.json" in r.output and "release: not requested" in r.output
    # the first line says what is starting, before prefect or torch is imported
    assert r.output.splitlines()[0].startswith(f"starting: {_config_file(tmp_path)}: run 't', dataset ferg")


def test_an_inconclusive_audit_exits_3(tmp_path, monkeypatch):
    from flows import anonymize

    monkeypatch.setattr(anonymize, "anonymize", _fake_flow(tmp_path, [], sound=False))
    r = runner.invoke(app, ["run", str(_config_file(tmp_path))])
    assert r.exit_code == 3, r.output
    assert "INCONCLUSIVE" in r.output and "the reference did not learn" in r.output


@pytest.mark.reliability(section='3. Gates a run cannot loosen', case='release refused after the audit (deid run, deid demo)',
                         before='a Prefect traceback and exit 1, no verdict table',
                         after="the verdict table, one 'release refused' line, exit 4")
def test_a_refused_release_prints_the_table_and_exits_4_without_a_traceback(tmp_path, monkeypatch):
    from flows import anonymize

    monkeypatch.setattr(anonymize, "anonymize", _fake_flow(tmp_path, [], blocked=True))
    r = runner.invoke(app, ["run", str(_config_file(tmp_path))])
    assert r.exit_code == 4, r.output
    assert "summary.json" in r.output and "release: blocked" in r.output
    assert "release refused: release of 'm' blocked" in r.output
    assert "Traceback" not in r.output and isinstance(r.exception, SystemExit)


def _real_command(tmp_path, *args: str):
    """``deid ARGS`` in a new process; returns it and whether it imported prefect or mlflow (which start servers).

    That it imports no torch or scikit-learn either is tests/test_config.py's concern."""
    import json
    import os
    import subprocess
    import sys

    seen = tmp_path / "imported.json"
    code = ("import atexit, json, sys\n"
            "out = sys.argv[1]\n"
            "def seen():\n"
            "    with open(out, 'w') as f:\n"
            "        json.dump(sorted({m.split('.')[0] for m in sys.modules} & {'prefect', 'mlflow'}), f)\n"
            "atexit.register(seen)\n"
            "sys.argv = ['deid', *sys.argv[2:]]\n"
            "from flows.cli import main\n"
            "main()\n")
    env = {**os.environ, "DEID_WORK": str(tmp_path / "work"), "PREFECT_HOME": str(tmp_path / "prefect")}
    env.pop("PREFECT_API_URL", None)
    r = subprocess.run([sys.executable, "-c", code, str(seen), *args], capture_output=True, text=True, env=env,
                       timeout=120, cwd=str(ROOT))
    return r, json.loads(seen.read_text())


def _nothing_started(tmp_path, imported):
    """No Prefect server can have started: prefect was never imported, and its database and log were not written."""
    assert imported == [], imported
    assert not (tmp_path / "prefect").exists() and not (tmp_path / "work" / "logs").exists()


@pytest.mark.reliability(section='5. Config types checked before any work', case='missing dataset path',
                         before='reported after 31 s with a Prefect traceback',
                         after='one stderr line, exit 2, no Prefect database created')
def test_missing_dataset_is_one_line_from_the_real_command(tmp_path):
    cfg = _config_file(tmp_path, dataset={"name": "jaffe", "source": str(tmp_path / "nowhere")})
    r, imported = _real_command(tmp_path, "run", str(cfg))
    assert r.returncode == 2, r.stderr
    assert r.stderr.splitlines() == [f"error: {cfg}: dataset.source: {tmp_path / 'nowhere'} does not exist (dataset 'jaffe')"]
    assert r.stdout == ""
    _nothing_started(tmp_path, imported)


@pytest.mark.parametrize("fields, sets, line", [
    ({"methods": [{"name": "blur", "params": {"sigma": "abc"}}]}, [],
     "methods.0: method 'blur': sigma: Input should be a valid number (got 'abc')"),
    ({}, ["--set", "audit.cnn_epoch=5"], "audit.cnn_epoch: unknown key (did you mean 'cnn_epochs'?); allowed: ["),
    ({"methods": [{"name": "ksame_select"}]}, [], "methods.0: unknown method 'ksame_select' (did you mean 'ksame-select'?)"),
])
@pytest.mark.parametrize("command", [["run"], ["validate"], ["run", "--dry-run"]])
def test_config_errors_are_one_line_from_the_real_command_and_start_nothing(tmp_path, command, fields, sets, line):
    cfg = _config_file(tmp_path, **fields)
    r, imported = _real_command(tmp_path, *command, str(cfg), *sets)
    assert r.returncode == 2, r.stderr
    assert len(r.stderr.splitlines()) == 1 and r.stderr.startswith(f"error: {cfg}: {line}"), r.stderr
    assert r.stdout == "" and "Traceback" not in r.stderr
    _nothing_started(tmp_path, imported)


# -- deid ui and deid stack: the work directory and port they are given ---------------------------------
@pytest.fixture
def no_exec(monkeypatch):
    """``os.execv`` and Prefect's home recorded instead of done: (commands, work dirs given Prefect's state)."""
    from flows import cli

    execs, homes = [], []
    monkeypatch.setattr(cli.os, "execv", lambda exe, cmd: execs.append(cmd))
    monkeypatch.setattr(cli, "_prefect_home", lambda work=None: homes.append(work) or Path(work or "x") / "prefect")
    return execs, homes


def _store(cmd: list[str]) -> str:
    return cmd[cmd.index("--backend-store-uri") + 1]


def test_ui_opens_the_store_of_the_configs_work_dir(tmp_path, monkeypatch, no_exec):
    from flows import cli

    execs, homes = no_exec
    cfg = _config_file(tmp_path, work_dir=str(tmp_path / "w1"))
    r = runner.invoke(app, ["ui", str(cfg), "--port", "5123"])
    assert r.exit_code == 0, r.output
    assert _store(execs[-1]) == f"sqlite:///{tmp_path / 'w1' / 'mlflow' / 'mlflow.db'}" and execs[-1][-1] == "5123"
    assert homes[-1] == tmp_path / "w1"
    # A run made with --set work_dir=... is found the same way, or with --work-dir.
    r = runner.invoke(app, ["ui", str(cfg), "--set", f"work_dir={tmp_path / 'w2'}"])
    assert r.exit_code == 0 and _store(execs[-1]) == f"sqlite:///{tmp_path / 'w2' / 'mlflow' / 'mlflow.db'}"
    r = runner.invoke(app, ["ui", "--work-dir", str(tmp_path / "w3")])
    assert r.exit_code == 0 and _store(execs[-1]) == f"sqlite:///{tmp_path / 'w3' / 'mlflow' / 'mlflow.db'}"
    # Neither: DEID_WORK's folder (./work by default).
    monkeypatch.setattr(cli, "_WORK", tmp_path / "deid-work")
    r = runner.invoke(app, ["ui"])
    assert r.exit_code == 0 and _store(execs[-1]) == f"sqlite:///{tmp_path / 'deid-work' / 'mlflow' / 'mlflow.db'}"
    assert "no runs recorded under" in r.output


def test_ui_on_a_tracking_server_or_a_bad_config_starts_nothing(tmp_path, no_exec):
    execs, _ = no_exec
    cfg = _config_file(tmp_path, tracking={"uri": "http://127.0.0.1:5999"})
    r = runner.invoke(app, ["ui", str(cfg)])
    assert r.exit_code == 0 and "MLflow server http://127.0.0.1:5999" in r.output
    r = runner.invoke(app, ["ui", str(_config_file(tmp_path, work_dri="x"))])
    assert r.exit_code == 2 and r.output.startswith("error: ") and "work_dri: unknown key" in r.output
    r = runner.invoke(app, ["ui", str(cfg), "--work-dir", str(tmp_path)])
    assert r.exit_code == 2 and r.output == "error: give a config or --work-dir, not both\n"
    assert execs == []


def test_stack_port_and_work_dir_reach_the_stack(tmp_path, monkeypatch, no_exec):
    from flows import stack

    _, homes = no_exec
    got = {}
    monkeypatch.setattr(stack, "run_stack", lambda home, port, configs, logs, base, say: got.update(
        home=home, port=port, configs=configs, logs=logs) or 0)
    cfg = _config_file(tmp_path)
    r = runner.invoke(app, ["stack", "--port", "4317", "--work-dir", str(tmp_path / "sw"), str(cfg)])
    assert r.exit_code == 0, r.output
    assert got == {"home": tmp_path / "sw" / "prefect", "port": 4317, "configs": [cfg], "logs": tmp_path / "sw" / "logs"}
    assert homes == [tmp_path / "sw"]


def test_validate_on_a_fresh_clone_warns_of_missing_datasets_and_exits_0(tmp_path, monkeypatch, no_flow, no_server):
    """`deid validate configs/*.yaml`, as the README shows it, where none of the example datasets is on disk."""
    import yaml

    monkeypatch.chdir(tmp_path)
    r = runner.invoke(app, ["validate", *map(str, CONFIGS)])
    assert r.exit_code == 0, r.output
    on_disk = [c for c in CONFIGS if yaml.safe_load(c.read_text())["dataset"].get("source", "builtin") != "builtin"
               and not Path(yaml.safe_load(c.read_text())["dataset"]["source"]).is_absolute()]
    warned = [line for line in r.output.splitlines() if line.startswith("warning: ")]
    assert len(warned) == len(on_disk) and all("does not exist" in w for w in warned)
    r = runner.invoke(app, ["run", "--dry-run", str(on_disk[0])]) if on_disk else None
    assert r is None or r.exit_code == 2  # `run` still needs the data
