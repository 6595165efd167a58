from __future__ import annotations

from collections import Counter

import pytest

from deid.splits import SplitConfig, assign_splits


def _items():
    keys, ids, labs = [], [], []
    for i in range(5):
        for e in ("a", "b", "c"):
            for k in range(10):
                keys.append(f"p{i}/{e}/{k}.png")
                ids.append(f"p{i}")
                labs.append(e)
    return keys, ids, labs


def test_stratified_deterministic_and_order_free():
    keys, ids, labs = _items()
    cfg = SplitConfig(val=0.1, test=0.2, seed=3)
    a = assign_splits(keys, ids, labs, cfg)
    assert Counter(a) == {"train": 105, "test": 30, "val": 15}
    per_cell = Counter((i, l, s) for i, l, s in zip(ids, labs, a))
    assert all(per_cell[(i, l, "test")] == 2 for i in set(ids) for l in "abc")
    rev = assign_splits(keys[::-1], ids[::-1], labs[::-1], cfg)[::-1]
    assert rev == a
    assert assign_splits(keys, ids, labs, SplitConfig(val=0.1, test=0.2, seed=4)) != a


def test_identity_disjoint():
    keys, ids, labs = _items()
    s = assign_splits(keys, ids, labs, SplitConfig(val=0.2, test=0.2, identity_disjoint=True))
    by_id = {i: {x for j, x in zip(ids, s) if j == i} for i in set(ids)}
    assert all(len(v) == 1 for v in by_id.values())
    assert Counter(next(iter(v)) for v in by_id.values()) == {"train": 3, "test": 1, "val": 1}


def test_bad_fractions():
    with pytest.raises(ValueError, match="below 1"):
        SplitConfig(val=0.5, test=0.5)
