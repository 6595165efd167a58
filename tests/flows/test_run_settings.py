"""What every driver resolves once, before any fit (deid.run): the seeds, '@i' identities, the run's device,
each method's typed parameters and its k."""

from __future__ import annotations

import logging
from pathlib import Path

import pytest
import yaml

from deid.config import load_config, validate_config
from deid.errors import ConfigError
from deid.run import resolve_run

ROOT = Path(__file__).resolve().parents[2]


def _run(**fields):
    return resolve_run(validate_config({"name": "t", "dataset": {"name": "ferg"}, **fields}))


def test_target_identity_index_names_the_ith_training_identity(ferg_images):
    from deid.pipeline import identities_of

    ids = identities_of(ferg_images)
    assert ids == sorted(ids) and len(ids) == 4
    run = _run(seed=7, device="cpu", methods=[{"name": "substitution", "params": {"target_identity": "@2"}},
                                              {"name": "substitution", "label": "named",
                                               "params": {"target_identity": "Aia"}}])
    got = {m.key: m.kwargs() for m in run.methods_for(ids)}
    assert got["substitution"]["target_identity"] == ids[2]  # substitution declares neither random_state nor device
    assert got["named"]["target_identity"] == "Aia"  # a plain name stays as it is
    with pytest.raises(ConfigError, match=r"'@4' asks for identity 4, but the training split has 4 \(@0 to @3\)"):
        _run(methods=[{"name": "substitution", "params": {"target_identity": "@4"}}]).methods_for(ids)
    with pytest.raises(ConfigError, match="must be '@' and an index"):  # before any data is read
        _run(methods=[{"name": "substitution", "params": {"target_identity": "@first"}}])


def test_the_runs_seed_and_device_reach_the_methods_that_declare_them():
    run = _run(seed=7, device="cpu", methods=[
        {"name": "ksame-pixel", "params": {"k": 2}},
        {"name": "ksame-eigen", "params": {"k": 2, "random_state": 3}},
        {"name": "mi-adversarial", "params": {"target_identity": "@1"}}])
    got = {m.key: m for m in run.methods_for(["a", "b"])}
    assert got["ksame-pixel"].random_state == got["ksame-pixel"].kwargs()["random_state"] == 7
    assert got["ksame-eigen"].random_state == 3  # set in the config: kept
    adv = got["mi-adversarial"].kwargs()
    assert (adv["target_identity"], adv["random_state"], adv["device"]) == ("b", 7, "cpu")
    assert got["blur"].random_state is None and got["blur"].kwargs() == {"sigma": 3.0}  # every value, defaults too
    assert run.audit.device == "cpu" and run.config.audit.device == "auto"
    assert run.seed_record()["methods"] == {"ksame-pixel": 7, "ksame-eigen": 3, "mi-adversarial": 7}


def test_unset_sub_seeds_derive_from_the_run_seed_and_set_ones_are_kept():
    plain = _run()
    assert (plain.seeds.run, plain.seeds.split, plain.seeds.audit, plain.seeds.synthetic) == (0, 0, 0, 0)
    assert set(plain.seeds.derived) == {"split", "synthetic", "audit"}  # run seed 0: the old defaults exactly
    moved = _run(seed=5)
    assert (moved.seeds.split, moved.seeds.audit, moved.seeds.synthetic) == (5, 5, 5)
    assert moved.config.dataset.split.seed == moved.config.audit.seed == moved.config.dataset.synthetic.seed == 5
    pinned = _run(seed=5, dataset={"name": "ferg", "split": {"seed": 0}, "synthetic": {"seed": 2}}, audit={"seed": 9})
    assert (pinned.seeds.split, pinned.seeds.synthetic, pinned.seeds.audit, pinned.seeds.derived) == (0, 2, 9, ())
    # the resolved config resolves to the same run: a driver may pass it on without anything moving
    again = resolve_run(moved.config)
    assert again.seeds.record() == {**moved.seeds.record(), "derived": []} and again.config == moved.config
    # a dataset read from disk draws nothing: no synthetic seed is recorded
    assert "synthetic" not in _run(dataset={"name": "jaffe", "source": "x"}).seeds.record()


def test_every_shipped_config_keeps_its_seeds():
    for path in sorted((ROOT / "configs").rglob("*.yaml")):
        s = resolve_run(load_config(path)).seeds
        assert (s.run, s.split, s.audit) == (0, 0, 0) and s.synthetic in (None, 0), path


def test_set_seed_moves_every_derived_seed(tmp_path):
    from flows.cli import _checked

    p = tmp_path / "c.yaml"
    p.write_text(yaml.safe_dump({"name": "t", "dataset": {"name": "ferg"}, "work_dir": str(tmp_path / "work"),
                                 "methods": [{"name": "ksame-pixel", "params": {"k": 2}}]}))
    run, _ = _checked(p, ["seed=1"])
    assert run.seed_record() == {"run": 1, "split": 1, "audit": 1, "synthetic": 1,
                                  "derived": ["split", "synthetic", "audit"], "methods": {"ksame-pixel": 1}}
    assert run.config.dataset.split.seed == run.config.audit.seed == 1
    # a sub-seed set on the command line is kept
    run, _ = _checked(p, ["seed=1", "dataset.split.seed=0"])
    assert (run.seeds.split, run.seeds.audit) == (0, 1)


def test_a_former_release_seed_loads_with_a_deprecation_note(caplog):
    with caplog.at_level(logging.WARNING, logger="deid.config"):
        cfg = validate_config({"name": "t", "dataset": {"name": "ferg"}, "release": {"seed": 3}})
    assert "seed" not in cfg.release.model_dump() and "release.seed is deprecated" in caplog.text


def test_k_is_validated_once_with_one_bound_and_a_clear_error():
    from deid.methods import method_class

    for name in ("ksame-pixel", "ksame-net", "proxy-mix"):  # one bound for every k of k-anonymity: 2
        with pytest.raises(ConfigError, match=rf"methods\.0: method '{name}': k: Input should be greater than or "
                                              r"equal to 2 \(got 1\)"):
            _run(methods=[{"name": name, "params": {"k": 1}}])
    with pytest.raises(ConfigError, match=r"methods\.0\.params: method 'ksame-pixel': random_state: Input should be "
                                          r"greater than or equal to 0 \(got -1\)"):
        _run(seed=-1, methods=[{"name": "ksame-pixel", "params": {"k": 2}}])  # the run seed, checked as the method's
    # a method built directly is held to the same bound when it is fitted
    import numpy as np

    X = np.zeros((4, 1, 8, 8), np.float32)
    with pytest.raises(ConfigError, match=r"method 'ksame-pixel': k: Input should be greater than or equal to 2"):
        method_class("ksame-pixel")(k=1).fit(X, np.array(["a", "a", "b", "b"]))
    assert _run(methods=[{"name": "ksame-pixel", "params": {"k": 3}}]).method("ksame-pixel").k == 3
