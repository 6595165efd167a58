"""What every driver resolves once, before any fit: '@i' identities, the run's seed and device."""

from __future__ import annotations

import pytest

from deid.errors import ConfigError


def test_target_identity_index_names_the_ith_training_identity(ferg_images):
    from deid.pipeline import identities_of, resolve_params

    ids = identities_of(ferg_images)
    assert ids == sorted(ids) and len(ids) == 4
    got = resolve_params("substitution", {"target_identity": "@2"}, identities=ids, random_state=7, device="cpu")
    assert got == {"target_identity": ids[2]}  # substitution declares neither random_state nor device
    assert resolve_params("substitution", {"target_identity": "Aia"}, identities=ids, random_state=0,
                          device="cpu")["target_identity"] == "Aia"  # a plain name stays as it is
    with pytest.raises(ConfigError, match=r"'@4' asks for identity 4, but the training split has 4 \(@0 to @3\)"):
        resolve_params("substitution", {"target_identity": "@4"}, identities=ids, random_state=0, device="cpu")
    with pytest.raises(ConfigError, match="must be '@' and an index"):
        resolve_params("substitution", {"target_identity": "@first"}, identities=ids, random_state=0, device="cpu")


def test_the_runs_seed_and_device_reach_the_methods_that_declare_them():
    from deid.config import validate_config
    from deid.pipeline import audit_config, resolve_methods

    cfg = validate_config({"name": "t", "dataset": {"name": "ferg"}, "seed": 7, "device": "cpu", "methods": [
        {"name": "ksame-pixel", "params": {"k": 2}},
        {"name": "ksame-eigen", "params": {"k": 2, "random_state": 3}},
        {"name": "mi-adversarial", "params": {"target_identity": "@1"}}]})
    got = {m.key: m.params for m in resolve_methods(cfg, ["a", "b"])}
    assert got["ksame-pixel"]["random_state"] == 7
    assert got["ksame-eigen"]["random_state"] == 3  # set in the config: kept
    assert got["mi-adversarial"] == {"target_identity": "b", "random_state": 7, "device": "cpu"}
    assert got["blur"] == {}  # a baseline declares neither
    assert audit_config(cfg).device == "cpu" and cfg.audit.device == "auto"
