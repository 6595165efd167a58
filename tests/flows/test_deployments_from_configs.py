"""One flow for any config, one deployment per config file, and the prefect.yaml written from them
(no server: what is registered is tests/flows/test_work_pool.py's concern)."""

from __future__ import annotations

from pathlib import Path

import pytest
import yaml

from deid.errors import ConfigError

ROOT = Path(__file__).resolve().parents[2]


def _write(folder: Path, name: str, dataset: dict, **fields) -> Path:
    p = folder / f"{name}.yaml"
    p.write_text(yaml.safe_dump({"name": name, "dataset": dataset, **fields}))
    return p


def test_the_alias_flows_are_the_registered_loaders():
    from deid.datasets import available_loaders
    from flows import anonymize

    assert anonymize.anonymize.name == "anonymize"
    assert set(anonymize.FLOWS) == set(available_loaders())
    for dataset, alias in anonymize.FLOWS.items():
        assert alias.name == f"anonymize-{dataset}"
        assert getattr(anonymize, alias.fn.__name__) is alias  # a deployment's entrypoint finds it by name
    assert anonymize.anonymize_ferg is anonymize.FLOWS["ferg"]


def test_an_alias_flow_refuses_a_config_of_another_dataset(tmp_path):
    from flows.anonymize import run_anonymization

    cfg = _write(tmp_path, "mine", {"name": "manifest", "source": str(tmp_path / "m.csv")}, work_dir=str(tmp_path / "w"))
    with pytest.raises(ConfigError, match="^flow 'anonymize-ferg' runs 'ferg' configs, but config 'mine' reads "
                                          "dataset 'manifest': run it with the 'anonymize' flow$"):
        run_anonymization(str(cfg), dataset="ferg")
    assert not (tmp_path / "w").exists()  # refused before any work


def test_one_deployment_per_config_file_in_a_folder(tmp_path):
    from flows.deployments import build_deployments, configs_in

    folder = tmp_path / "configs"
    folder.mkdir()
    _write(folder, "weekly", {"name": "ferg"}, schedule="0 3 * * 1")
    (folder / "notes.txt").write_text("not a config")
    got = build_deployments(configs_in(folder), base=tmp_path)
    assert sorted((d.flow_name, d.name) for d in got) == [("anonymize", "weekly"), ("anonymize-ferg", "weekly")]
    # Adding a dataset is adding a YAML file: a manifest dataset no flow was written for.
    _write(folder, "mine", {"name": "manifest", "source": "data/m.csv"})
    got = {(d.flow_name, d.name): d for d in build_deployments(configs_in(folder), base=tmp_path)}
    assert set(got) == {("anonymize", "weekly"), ("anonymize-ferg", "weekly"), ("anonymize", "mine"),
                        ("anonymize-manifest", "mine")}
    assert got[("anonymize", "mine")].parameters == {"config": str(folder / "mine.yaml"), "base": str(tmp_path)}
    # The schedule is on anonymize/<name> only, inactive unless schedule_enabled.
    (weekly,) = got[("anonymize", "weekly")].schedules
    assert weekly.schedule.cron == "0 3 * * 1" and weekly.active is False
    assert not got[("anonymize-ferg", "weekly")].schedules and not got[("anonymize", "mine")].schedules


def test_two_configs_of_one_name_are_one_line(tmp_path):
    from flows.deployments import configs_in, load_configs

    _write(tmp_path, "a", {"name": "ferg"})
    (tmp_path / "b.yaml").write_text(yaml.safe_dump({"name": "a", "dataset": {"name": "ferg"}}))
    with pytest.raises(ConfigError, match=r"b\.yaml: name 'a' is already the name of .*a\.yaml"):
        load_configs(configs_in(tmp_path))
    with pytest.raises(ConfigError, match="not a folder of configs"):
        configs_in(tmp_path / "missing")


def test_prefect_yaml_holds_every_shipped_config():
    """prefect.yaml is written from configs/; a config added without rewriting it fails here."""
    import prefect

    from flows.deployments import WORK_POOL, configs_in, load_configs, prefect_yaml

    shipped = yaml.safe_load((ROOT / "prefect.yaml").read_text())
    want = prefect_yaml(configs_in(ROOT / "configs"), root=ROOT)
    want["prefect-version"] = prefect.__version__
    assert shipped == want, "prefect.yaml is out of date: run `python -m flows.deployments --write-prefect-yaml`"
    names = sorted((d["entrypoint"].rsplit(":", 1)[1], d["name"]) for d in shipped["deployments"])
    configs = load_configs(configs_in(ROOT / "configs"))
    assert len(names) == 2 * len(configs)
    for path, cfg in configs:
        assert ("anonymize", cfg.name) in names
        assert (f"anonymize_{cfg.dataset.name}", cfg.name) in names
    assert {d["work_pool"]["name"] for d in shipped["deployments"]} == {WORK_POOL}
    assert all(not Path(d["parameters"]["config"]).is_absolute() for d in shipped["deployments"])


def test_the_scheduled_example_ships_its_schedule_inactive():
    from deid.config import load_config

    cfg = load_config(ROOT / "configs" / "ferg-weekly.yaml")
    assert cfg.schedule == "0 3 * * 1" and cfg.schedule_enabled is False
    assert cfg.release.enabled and cfg.release.license != "unknown"
    shipped = yaml.safe_load((ROOT / "prefect.yaml").read_text())
    entries = {(d["entrypoint"], d["name"]): d for d in shipped["deployments"]}
    assert entries[("flows/anonymize.py:anonymize", "ferg-weekly")]["schedules"] == [
        {"cron": "0 3 * * 1", "timezone": "UTC", "active": False}]
    assert entries[("flows/anonymize.py:anonymize_ferg", "ferg-weekly")]["schedules"] == []


def test_the_server_ui_is_pointed_at_its_own_port(tmp_path, monkeypatch):
    from flows.stack import server_env

    monkeypatch.setenv("PREFECT_API_URL", "http://127.0.0.1:4200/api")  # another server's: never inherited
    env = server_env(tmp_path / "prefect", 4317)
    assert env["PREFECT_UI_API_URL"] == "http://127.0.0.1:4317/api"
    assert env["PREFECT_SERVER_API_PORT"] == "4317" and env["PREFECT_SERVER_API_HOST"] == "127.0.0.1"
    assert "PREFECT_API_URL" not in env and env["PREFECT_HOME"] == str(tmp_path / "prefect")
