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
