"""The audit on Dask: the methods dealt into one part per worker, merged into the in-process audit's
figures; a worker that cannot see the run's tables says so in one line."""

from __future__ import annotations

import pytest

from deid.audit_dask import _audit_part, audit_on_dask, split_methods
from deid.errors import EvaluationError
from deid.evaluation.audit_config import AuditConfig
from deid.faces_dask import DaskConfig

CFG = AuditConfig(attackers=["linear"], cnn_epochs=1, cnn_width=4, cnn_min_steps=0, pca_components=8,
                  linkage_repeats=1)


def test_methods_are_dealt_into_parts_and_every_method_is_audited_once():
    methods = {f"m{i}": f"/t/{i}" for i in range(5)}
    parts = split_methods(methods, 2)
    assert len(parts) == 2 and sorted(len(p) for p in parts) == [2, 3]
    assert sorted(k for p in parts for k in p) == sorted(methods)
    assert split_methods({"a": "x"}, 4) == [{"a": "x"}]  # never an empty part


def test_a_worker_that_cannot_see_the_tables_says_so(ferg_images, tmp_path):
    job = {"images_dir": str(ferg_images), "anonymized": {"blur": str(tmp_path / "gone")}, "cfg": CFG,
           "dataset": "ferg", "real_faces": False, "descriptor_cache": None, "pixel_cache": str(tmp_path),
           "row_cache": None}
    with pytest.raises(EvaluationError, match=r"cannot see .*gone; .*filesystem every worker sees"):
        _audit_part(job)


@pytest.mark.slow
def test_an_audit_on_two_workers_gives_the_in_process_audit(ferg_images, tmp_path):
    import torch

    from deid.data import open_image_set
    from deid.evaluation.audit import audit
    from deid.pipeline import fit_and_anonymize

    outs = {}
    for name, params in [("blur", {"sigma": 2.0}), ("pixelate", {}), ("blackout", {})]:
        fit_and_anonymize(name, params, ferg_images, tmp_path / f"m-{name}", tmp_path / name)
        outs[name] = str(tmp_path / name)
    cache = tmp_path / "pixels"
    n = torch.get_num_threads()
    torch.set_num_threads(1)  # as each worker runs
    try:
        whole = audit(open_image_set(ferg_images, cache),
                      {k: open_image_set(p, cache, anonymized=True) for k, p in outs.items()}, CFG, dataset="ferg")
    finally:
        torch.set_num_threads(n)
    said: list[str] = []
    rows = tmp_path / "rows"
    got = audit_on_dask(ferg_images, outs, CFG, dask=DaskConfig(n_workers=2), dataset="ferg", real_faces=False,
                        pixel_cache=cache, row_cache=rows, say=said.append)
    assert "3 method(s) in 2 part(s) on 2 Dask worker(s)" in said[0]
    assert sum("done" in s for s in said) == 2
    assert list(got.methods) == list(whole.methods)  # the reference row first, then the methods in their order
    for name, row in whole.methods.items():
        assert {k: v for k, v in got.methods[name].metrics.items() if k != "seconds"} == pytest.approx(
            {k: v for k, v in row.metrics.items() if k != "seconds"}, nan_ok=True), name
    assert len(list(rows.glob("*.json"))) >= len(outs) + 1  # every row kept for a resumed run
