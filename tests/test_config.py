"""Typed config: every name is checked before any work, and errors name the field."""

from __future__ import annotations

from pathlib import Path

import pytest

from deid.config import load_config, validate_config
from deid.errors import ConfigError

CONFIGS = sorted((Path(__file__).resolve().parents[1] / "configs").glob("*.yaml"))


@pytest.mark.parametrize("path", CONFIGS, ids=lambda p: p.name)
def test_shipped_configs_validate(path):
    cfg = load_config(path)
    assert cfg.dataset.name in path.stem and cfg.all_methods()


def _base(**kw):
    d = {"name": "t", "dataset": {"name": "ferg"}}
    d.update(kw)
    return d


@pytest.mark.parametrize("data, message", [
    (_base(dataset={"name": "ferg2"}), "dataset.name: .*unknown dataset 'ferg2'; allowed"),
    (_base(dataset={"name": "jaffe"}), "source 'builtin' generates a FERG-like set"),
    (_base(methods=[{"name": "blur", "params": {"radius": 2}}]), "no parameter.*radius.*allowed: \\['sigma'\\]"),
    (_base(methods=[{"name": "blur"}, {"name": "blur", "params": {"sigma": 5}}]), "appear twice"),
    (_base(release={"enabled": True}), "release.method must name"),
    (_base(release={"enabled": True, "method": "ksame-pixel"}), "not among the run's methods"),
    (_base(gates={"extra": [{"metric": "div", "min": 0.5}]}), "face metrics, not measured"),
    (_base(gates={"attacker_margin": 2}), "gates.attacker_margin"),
    (_base(audit={"attackers": ["svm"]}), "audit.attackers.0"),
    (_base(colour=True), "colour: Extra inputs are not permitted"),
])
def test_invalid_configs_name_the_field(data, message):
    with pytest.raises(ConfigError, match=message):
        validate_config(data)


def test_yaml_is_loaded_safely(tmp_path):
    p = tmp_path / "evil.yaml"
    p.write_text("name: !!python/object/apply:os.system ['echo pwned']\ndataset: {name: ferg}\n")
    with pytest.raises(ConfigError, match="not valid YAML"):
        load_config(p)


def test_overrides_use_dotted_keys(tmp_path):
    cfg = load_config(CONFIGS[0], {"audit.cnn_epochs": 2, "methods": [{"name": "ksame-select", "params": {"k": 3}}]})
    assert cfg.audit.cnn_epochs == 2 and [m.key for m in cfg.all_methods()][-1] == "ksame-select"
