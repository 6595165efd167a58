"""Utility the method never saw: nuisance attributes of the FERG-like set, read by attackers."""

from __future__ import annotations

from types import SimpleNamespace

import numpy as np
import pytest

from data_contracts import IMAGES_SCHEMA, read_table
from deid.data import ImageSet, load_image_set
from deid.errors import EvaluationError
from deid.evaluation.attackers import LinearPixelClassifier, majority_rate
from deid.evaluation.unseen import attribute_metric, unseen_attributes, unseen_retention


def _linear_attack(X_train, y_train, X_test, y_test, label):
    model = LinearPixelClassifier(n_components=32).fit(X_train, y_train)
    acc = float(np.mean(model.predict(X_test) == y_test))
    return SimpleNamespace(accuracy={"linear": acc}, chance=majority_rate(y_test))


def _pool_attack(X_train, y_train, X_test, y_test, label):
    from deid.evaluation.attackers import AttackerConfig, train_attackers

    return train_attackers(X_train, y_train, X_test, y_test, label=label, cfg=AttackerConfig(attackers=("linear",)))


@pytest.fixture(scope="module")
def nuisance_set(tmp_path_factory) -> ImageSet:
    from deid.datasets.synthetic import SyntheticFergConfig, generate_ferg_like
    from deid.ingest import ingest_dataset
    from deid.preprocessing import PreprocessConfig

    tmp = tmp_path_factory.mktemp("unseen")
    root = generate_ferg_like(tmp / "raw", SyntheticFergConfig(n_characters=3, images_per_cell=12, size=48), workers=1)
    ingest_dataset("ferg", root, tmp / "ferg", preprocess=PreprocessConfig(size=24), workers=1)
    table = read_table(tmp / "ferg" / "images", IMAGES_SCHEMA, columns=["attributes"])
    rows = table.column("attributes").to_pylist()
    assert all(r is not None and {a["name"] for a in r} == {"pose_bin", "light_bin", "scale_bin"} for r in rows)
    return load_image_set(tmp / "ferg" / "images")


@pytest.mark.slow
def test_a_linear_attacker_reads_pose_from_originals_and_nothing_from_blackout(nuisance_set):
    s = nuisance_set
    assert set(s.attributes) == {"pose_bin", "light_bin", "scale_bin"}
    assert all(v.shape == (len(s),) and v.dtype.kind == "f" for v in s.attributes.values())
    test = s.of_split("test")
    assert np.array_equal(test.attributes["pose_bin"], s.attributes["pose_bin"][s.split == "test"])
    train, test_mask = np.isin(s.split, ["train", "val"]), s.split == "test"
    names = ["pose_bin", "light_bin"]
    orig = unseen_attributes(s, s, train, test_mask, names, _linear_attack)
    assert orig["attr_pose_bin_acc_best"] >= orig["attr_pose_bin_chance"] + 0.2, orig
    assert orig["attr_light_bin_acc_best"] >= orig["attr_light_bin_chance"] + 0.3, orig
    blackout = ImageSet(np.zeros_like(s.X), s.image_id, s.split, s.identity, s.label)
    black = unseen_attributes(s, blackout, train, test_mask, names, _linear_attack)
    assert black["attr_pose_bin_acc_best"] <= black["attr_pose_bin_chance"] + 1e-9, black
    assert black["attr_pose_bin_chance"] == orig["attr_pose_bin_chance"]
    assert unseen_retention(black, orig, names) == 0.0
    assert unseen_retention(orig, orig, names) == 1.0
    # the audit's own attacker pool (which sees that every blackout image is the same) agrees
    pool = unseen_attributes(s, blackout, train, test_mask, ["pose_bin"], _pool_attack)
    assert pool["attr_pose_bin_acc_best"] <= pool["attr_pose_bin_chance"] + 1e-9, pool


def _tiny(attrs: dict | None) -> ImageSet:
    n = 12
    X = np.arange(n, dtype=np.float32).reshape(n, 1, 1, 1) / n
    ids = np.array([f"i{k}" for k in range(n)], dtype=object)
    split = np.array(["train"] * 8 + ["test"] * 4, dtype=object)
    lab = np.array(["a"] * n, dtype=object)
    return ImageSet(X, ids, split, lab, lab, attrs)


def test_each_attribute_is_attacked_on_the_output_with_its_own_labels():
    s = _tiny({"pose_bin": np.array([0, 1, 2] * 4, dtype=float), "light_bin": np.array([1.0] * 6 + [0.0] * 6)})
    out = s.X + 5
    calls = []

    def attack(X_train, y_train, X_test, y_test, label):
        calls.append((label, X_train.copy(), y_train.copy(), X_test.copy(), y_test.copy()))
        return SimpleNamespace(accuracy={"a": 0.25, "b": 0.75}, chance=0.5)

    m = unseen_attributes(s, out, s.split == "train", s.split == "test", ["pose_bin", "light_bin"], attack)
    assert m == {"attr_pose_bin_acc_best": 0.75, "attr_pose_bin_chance": 0.5,
                 "attr_light_bin_acc_best": 0.75, "attr_light_bin_chance": 0.5}
    label, Xtr, ytr, Xte, yte = calls[0]
    assert label == "pose_bin"
    assert np.array_equal(Xtr, out[:8]) and np.array_equal(Xte, out[8:])
    assert ytr.tolist() == ["0", "1", "2", "0", "1", "2", "0", "1"] and yte.tolist() == ["2", "0", "1", "2"]
    assert calls[1][4].tolist() == ["0", "0", "0", "0"]
    assert attribute_metric("pose_bin", "chance") == "attr_pose_bin_chance"


def test_bad_inputs_raise_a_named_error():
    s = _tiny({"pose_bin": np.linspace(0, 1, 12)})
    tr, te = s.split == "train", s.split == "test"

    def attack(*a):
        raise AssertionError("not reached")

    with pytest.raises(EvaluationError, match="whole numbers"):
        unseen_attributes(s, s, tr, te, ["pose_bin"], attack)
    with pytest.raises(EvaluationError, match="no attribute 'light_bin'"):
        unseen_attributes(s, s, tr, te, ["light_bin"], attack)
    with pytest.raises(EvaluationError, match="no attribute"):
        unseen_attributes(_tiny(None), s.X, tr, te, ["pose_bin"], attack)
    shuffled = s.subset(np.arange(len(s))[::-1])
    with pytest.raises(EvaluationError, match="align"):
        unseen_attributes(s, shuffled, tr, te, ["pose_bin"], attack)
    with pytest.raises(EvaluationError, match="train_mask"):
        unseen_attributes(s, s, tr[:5], te, ["pose_bin"], attack)


def test_subset_carries_attributes_and_old_positional_construction_still_works():
    s = _tiny({"pose_bin": np.arange(12, dtype=float)})
    sub = s.subset(np.array([3, 1]))
    assert sub.attributes["pose_bin"].tolist() == [3.0, 1.0]
    assert s.of_split("test").attributes["pose_bin"].tolist() == [8.0, 9.0, 10.0, 11.0]
    plain = ImageSet(s.X, s.image_id, s.split, s.identity, s.label)
    assert plain.attributes is None and plain.subset([0]).attributes is None


def _m(**acc_chance):
    out = {}
    for name, (acc, chance) in acc_chance.items():
        out[f"attr_{name}_acc_best"], out[f"attr_{name}_chance"] = acc, chance
    return out


def test_retention_is_the_worst_share_of_above_chance_accuracy_kept():
    orig = _m(pose=(0.9, 0.3), light=(0.7, 0.3), flat=(0.33, 0.34))
    assert unseen_retention(_m(pose=(0.6, 0.3), light=(0.7, 0.3), flat=(0.2, 0.34)), orig,
                            ["pose", "light", "flat"]) == pytest.approx(0.5)  # flat: the original is at chance
    assert unseen_retention(_m(pose=(0.95, 0.3), light=(0.8, 0.3)), orig, ["pose", "light"]) == 1.0  # clipped
    assert unseen_retention(_m(pose=(0.1, 0.3)), orig, ["pose"]) == 0.0
    assert unseen_retention(_m(flat=(0.9, 0.34)), orig, ["flat"]) is None
    assert unseen_retention({}, {}, []) is None
