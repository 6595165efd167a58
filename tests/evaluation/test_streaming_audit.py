"""The audit on images kept on disk, read in small chunks, gives the figures of the audit in memory."""

from __future__ import annotations

import math

import numpy as np
import pytest

import deid.pixels
from deid.data import ImageSet, load_image_set, open_image_set
from deid.evaluation.audit import AuditConfig, audit
from deid.imageio import to_uint8
from deid.methods import get_method
from deid.pixels import write_pixels

ALL = AuditConfig(attackers=["cnn", "linear", "knn-pixels", "knn-hog", "hog-svm", "fisher", "exclusion",
                             "label-linkage"], cnn_epochs=2, cnn_width=8, cnn_min_steps=0, cnn_augment=False, pca_components=16, linkage_repeats=2)


@pytest.mark.slow
@pytest.mark.parametrize("folds", [None, 3])
def test_streaming_audit_equals_the_in_memory_audit(ferg_images, tmp_path, monkeypatch, folds):
    cfg = ALL.model_copy(update={"folds": folds})
    mem = load_image_set(ferg_images)
    blurred = to_uint8(get_method("blur", sigma=1.5).fit(mem.X[:1]).transform(mem.X))  # as a table stores it
    blur_mem = ImageSet(blurred.astype(np.float32) / np.float32(255), mem.image_id, mem.split, mem.identity,
                        mem.label)
    in_memory = audit(mem, {"blur": blur_mem}, cfg, dataset="ferg")

    monkeypatch.setattr(deid.pixels, "CHUNK_VALUES", 7_000)  # ~7 images of 32 × 32 a chunk: many chunks
    disk = open_image_set(ferg_images, tmp_path)
    order = np.random.default_rng(1).permutation(len(mem))  # stored in another row order: aligned by id
    blur_disk = ImageSet(write_pixels(tmp_path / "blur.npy", blurred.shape, [blurred[order]]), mem.image_id[order],
                         mem.split[order], mem.identity[order], mem.label[order])
    streamed = audit(disk, {"blur": blur_disk}, cfg, dataset="ferg", scratch=tmp_path)

    assert streamed.methods.keys() == in_memory.methods.keys() == {"original", "blur", "blackout"}
    for name, ref in in_memory.methods.items():
        got = streamed.methods[name].metrics
        assert got.keys() == ref.metrics.keys()
        for k, v in ref.metrics.items():
            if k == "seconds":
                continue
            assert math.isclose(got[k], v, rel_tol=1e-6, abs_tol=1e-6) or (math.isnan(v) and math.isnan(got[k])), \
                f"{name} {k}: streamed {got[k]} in memory {v}"


def _blurred_on_disk(ferg_images, tmp_path):
    """A small audit's settings, the set in memory, its blurred pixels, the set on disk and its blurred outputs on disk."""
    cfg = AuditConfig(attackers=["linear"], cnn_epochs=1, cnn_width=4, cnn_min_steps=0, cnn_augment=False,
                      pca_components=8, linkage_repeats=1)
    mem = load_image_set(ferg_images)
    blurred = to_uint8(get_method("blur", sigma=1.5).fit(mem.X[:1]).transform(mem.X))
    disk = open_image_set(ferg_images, tmp_path)
    blur = ImageSet(write_pixels(tmp_path / "blur.npy", blurred.shape, [blurred]), mem.image_id, mem.split,
                    mem.identity, mem.label)
    return cfg, mem, blurred, disk, blur


@pytest.mark.reliability(section='6. Crash and concurrency', case='run killed during the audit (a 90-minute audit at FERG\'s size)',
                         before='the whole audit computed again',
                         after='the rerun keeps every finished row (keyed by pixels, settings, code) and audits the rest')
def test_an_interrupted_audit_resumes_at_the_row_it_was_on(ferg_images, tmp_path, monkeypatch):
    import deid.evaluation.audit as audit_mod

    cfg, mem, blurred, disk, blur = _blurred_on_disk(ferg_images, tmp_path)
    rows = tmp_path / "rows"

    real, calls = audit_mod.fidelity, []

    def dies_on_the_second_row(*a, **k):  # the machine goes down while the audit is on its second row
        calls.append(1)
        if len(calls) == 2:
            raise KeyboardInterrupt
        return real(*a, **k)

    monkeypatch.setattr(audit_mod, "fidelity", dies_on_the_second_row)
    with pytest.raises(KeyboardInterrupt):
        audit(disk, {"blur": blur}, cfg, dataset="ferg", scratch=tmp_path, row_cache=rows)
    assert len(list(rows.glob("*.json"))) == 1  # the finished row, and nothing half-written
    monkeypatch.setattr(audit_mod, "fidelity", real)

    said: list[str] = []
    resumed = audit(disk, {"blur": blur}, cfg, dataset="ferg", scratch=tmp_path, row_cache=rows, progress=said.append)
    assert any("'original'" in m and "kept" in m for m in said)
    assert not any(m == "auditing 'original'" for m in said) and "auditing 'blur'" in said
    fresh = audit(disk, {"blur": blur}, cfg, dataset="ferg", scratch=tmp_path)
    for name, ref in fresh.methods.items():
        for k, v in ref.metrics.items():
            if k != "seconds":
                got = resumed.methods[name].metrics[k]
                assert math.isclose(got, v, rel_tol=1e-6, abs_tol=1e-6) or (math.isnan(v) and math.isnan(got)), k
    # another audit setting is another row: nothing is reused across settings
    said.clear()
    audit(disk, {"blur": blur}, cfg.model_copy(update={"seed": 1}), dataset="ferg", scratch=tmp_path, row_cache=rows,
          progress=said.append)
    assert "auditing 'original'" in said


def test_an_audit_of_unchanged_data_trains_no_reference(ferg_images, tmp_path, monkeypatch):
    """A scheduled run on unchanged data: every row (the controls too) is read back, no classifier is
    trained, and the figures are the first audit's."""
    import deid.evaluation.audit as audit_mod

    cfg, mem, blurred, disk, blur = _blurred_on_disk(ferg_images, tmp_path)
    rows = tmp_path / "rows"
    first = audit(disk, {"blur": blur}, cfg, dataset="ferg", scratch=tmp_path, row_cache=rows)

    def no_training(*a, **k):
        raise AssertionError("a reference classifier was trained on unchanged data")

    monkeypatch.setattr(audit_mod, "get_attacker", no_training)
    said: list[str] = []
    again = audit(disk, {"blur": blur}, cfg, dataset="ferg", scratch=tmp_path, row_cache=rows, progress=said.append)
    assert any("no reference trained" in m for m in said) and not any(m.startswith("auditing") for m in said)
    assert set(again.methods) == set(first.methods) == {"original", "blur", "blackout"}
    for name, ref in first.methods.items():
        assert again.methods[name].metrics == ref.metrics
    # one new output: the references are trained again for it, the other rows kept
    monkeypatch.undo()
    pix = ImageSet(write_pixels(tmp_path / "pix.npy", blurred.shape, [to_uint8(get_method("pixelate").fit(
        mem.X[:1]).transform(mem.X))]), mem.image_id, mem.split, mem.identity, mem.label)
    said.clear()
    audit(disk, {"blur": blur, "pixelate": pix}, cfg, dataset="ferg", scratch=tmp_path, row_cache=rows,
          progress=said.append)
    assert "training reference classifiers on original images" in said and "auditing 'pixelate'" in said
    assert "auditing 'blur'" not in said
