"""Fail before fitting: what the ingested table alone refuses (a method's k against the identities where it
needs them, empty splits, gates the dataset cannot produce) is one line each, with the fix that works, raised
right after ingest, before any method is fitted."""

from __future__ import annotations

from pathlib import Path

import pyarrow as pa
import pytest

from deid.config import load_config, validate_config
from deid.errors import ConfigError
from deid.prefit import check_ingested, prefit_problems, recorded_attributes
from deid.run import resolve_run

ROOT = Path(__file__).resolve().parents[1]


def _table(val_fear: int = 2, attributes: bool = False, splits=("train", "val", "test")) -> pa.Table:
    """Six people × three labels in every split, but only ``val_fear`` people with 'fear' in val."""
    rows = []
    for s in splits:
        for i in range(6):
            for label in ("anger", "fear", "joy"):
                if s == "val" and label == "fear" and i >= val_fear:
                    continue
                rows.append({"split": s, "identity": f"p{i}", "label": label,
                             "attributes": [{"name": "pose", "value": float(i % 2)}] if attributes else None})
    return pa.Table.from_pylist(rows)


def _cfg(methods=(), **fields) -> object:
    """A run resolved from a config with these methods and fields."""
    return resolve_run(validate_config({"name": "t", "dataset": {"name": "ferg"}, "methods": list(methods), **fields}))


def test_k_is_checked_against_every_label_of_every_split_and_the_largest_k_that_works_is_named():
    # the run: ksame-select k = 6 where a small val split holds 2 identities for one label
    (line,) = prefit_problems(_cfg([{"name": "ksame-select", "params": {"k": 6}}]), _table(val_fear=2))
    assert line.startswith("method 'ksame-select': k = 6 but label 'fear' of split 'val' holds images of 2 identities")
    assert "set methods.0.params.k to 2 or less" in line and "dataset.split.val to 0 (k up to 6 then)" in line
    assert prefit_problems(_cfg([{"name": "ksame-select", "params": {"k": 2}}]), _table(val_fear=2)) == []
    # a method whose k is about the whole split, or the training split's labels, is judged there
    assert prefit_problems(_cfg([{"name": "ksame-pixel", "params": {"k": 6}}]), _table(val_fear=2)) == []
    (line,) = prefit_problems(_cfg([{"name": "proxy-morph", "params": {"k": 7}}]), _table())
    assert "of split 'train' holds images of 6 identities" in line and "to 6 or less" in line
    (line,) = prefit_problems(_cfg([{"name": "ksame-select", "params": {"k": 3}}]), _table(val_fear=1))
    assert "holds images of 1 identity" in line and "no k works" in line and "dataset.split.val to 0" in line


def test_gates_the_dataset_cannot_produce_are_refused():
    cfg = _cfg(gates={"extra": [{"metric": "unseen_retention", "min": 0.7}]})
    (line,) = prefit_problems(cfg, _table())
    assert line.startswith("gates.extra.0: unseen_retention cannot be measured") and "remove that gate" in line
    assert prefit_problems(cfg, _table(attributes=True)) == []
    assert recorded_attributes(_table(attributes=True)) == ["pose"]
    cfg = _cfg(audit={"unseen_attributes": ["age"]})
    (line,) = prefit_problems(cfg, _table(attributes=True))
    assert line.startswith("audit.unseen_attributes: ['age'] are not recorded for every image (recorded: ['pose'])")


@pytest.mark.parametrize("split,splits,fix", [
    ({"val": 0.1, "test": 0.0}, ("train", "val"), "set dataset.split.test above 0"),
    ({"val": 0.0, "test": 0.3}, ("train",), "found no identity with two images or groups"),
])
def test_a_split_the_audit_needs_with_no_rows_is_refused(split, splits, fix):
    cfg = _cfg(dataset={"name": "ferg", "split": split})
    (line,) = prefit_problems(cfg, _table(splits=splits))
    assert line.startswith("split 'test' has no rows after ingest (the audit tests on it)") and fix in line


def test_the_flow_checks_right_after_ingest_before_any_fit(ferg_images, monkeypatch, tmp_path):
    import flows.anonymize as fa

    cfg = load_config(ROOT / "configs" / "ferg.yaml").model_copy(update={"work_dir": str(tmp_path)})
    check_ingested(resolve_run(cfg.model_copy(update={"methods": []})), ferg_images)  # 4 characters: baselines fine
    with pytest.raises(ConfigError) as e:  # k = 6 for 4 characters
        check_ingested(resolve_run(cfg), ferg_images)
    assert len(str(e.value).splitlines()) == 1 and "set methods.1.params.k to 4 or less" in str(e.value)

    def fitted(*a, **k):
        raise AssertionError("a method was fitted")

    monkeypatch.setattr(fa, "_preflight", lambda *a: None)
    monkeypatch.setattr(fa, "get_run_logger", lambda: None)
    monkeypatch.setattr(fa, "configure_tracking", lambda *a: "")
    monkeypatch.setattr(fa, "ingest_run", lambda run: (ferg_images, None))
    monkeypatch.setattr(fa, "submit_methods", fitted)
    with pytest.raises(ConfigError, match="k = 6 but"):
        fa.run_anonymization(cfg, base=str(tmp_path))
