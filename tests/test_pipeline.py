"""Fitting from a table: a method that does not learn is not given the training split."""

from __future__ import annotations

import pytest

import deid.pipeline
from deid.methods import method_class
from deid.pipeline import fit_method


@pytest.mark.parametrize("name", ["blur", "pixelate", "blackout", "none"])
def test_a_fixed_filter_is_fitted_without_reading_the_training_split(name, ferg_images, tmp_path, monkeypatch):
    assert method_class(name).learns is False

    def refuse(*a, **k):
        raise AssertionError("the whole training split was read")

    monkeypatch.setattr(deid.pipeline, "load_image_set", refuse)
    m = fit_method(name, {}, ferg_images, tmp_path / "model")
    assert m.input_shape_[1:] == (32, 32) and (tmp_path / "model").is_dir()


def test_a_learning_method_reads_the_training_split(ferg_images, tmp_path, monkeypatch):
    calls = []
    real = deid.pipeline.load_image_set
    monkeypatch.setattr(deid.pipeline, "load_image_set", lambda *a, **k: calls.append(1) or real(*a, **k))
    fit_method("ksame-pixel", {"k": 2}, ferg_images, tmp_path / "model")
    assert calls


@pytest.mark.reliability(section='6. Crash and concurrency', case='a method\'s default changes between two runs on the same work dir',
                         before='the model fitted under the old default reused',
                         after='every parameter\'s value keys the model: fitted again')
def test_a_fitted_models_key_holds_every_parameter_so_a_changed_default_is_not_reused(monkeypatch):
    from deid.config import validate_config
    from deid.methods import method_class
    from deid.run import resolve_run

    def blur(params):
        cfg = validate_config({"name": "t", "dataset": {"name": "ferg"}, "include_baselines": False,
                               "methods": [{"name": "blur", "params": params}]})
        return resolve_run(cfg).method("blur")

    def key(params):
        return blur(params).content_key("digest")

    cls = method_class("blur")
    default = cls.param_model().model_fields["sigma"].default
    assert key({}) == key({"sigma": default})  # the default written out is the same setting
    before = key({})
    monkeypatch.setattr(cls.__init__, "__defaults__", (default + 1.0,))  # a new release changes the default
    monkeypatch.setattr(cls, "_param_model", None)
    assert blur({}).kwargs()["sigma"] == default + 1.0
    assert key({}) != before  # the model fitted under the old default is keyed apart
    assert key({"sigma": default}) == before
