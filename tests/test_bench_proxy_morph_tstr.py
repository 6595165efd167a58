"""The proxy-morph TSTR bench's helpers: its any-identity linkage and the proxies it records."""

from __future__ import annotations

import numpy as np
import pytest

from bench.bench_proxy_morph_tstr import any_identity_linkage, record_proxies, variant_params


def test_linkage_counts_a_named_proxy_and_sets_it_beside_a_blind_permutation():
    labels = np.array(["a", "a", "a", "a"])
    proxies = [["p0", "p1"], ["p2", "p3"], ["p0", "p2"], ["p1", "p3"]]
    top = ["p0", "p2", "p2", "p3"]
    named = np.array(["p1", "p2", "p0", "p3"])  # every named identity is one of its own output's proxies
    m = any_identity_linkage(named, proxies, top, labels, permutations=200, seed=0)
    assert m["link_any"] == 1.0 and m["link_top"] == 0.5  # outputs 0 and 2 name their lighter proxy
    # a random same-label output's proxies (its own among them) hold each named identity in 2 of 4 lists
    assert m["link_any_blind"] == pytest.approx(0.5, abs=0.05)


def test_blind_linkage_permutes_only_within_a_label():
    labels = np.array(["a", "a", "b", "b"])
    proxies = [["p0"], ["p0"], ["p1"], ["p1"]]
    m = any_identity_linkage(np.array(["p0", "p0", "p1", "p1"]), proxies, ["p0", "p0", "p1", "p1"], labels)
    assert m["link_any_blind"] == 1.0  # within a label every output shares the proxies


def test_recorded_proxies_are_the_last_draw_per_input():
    class Fake:
        def __init__(self):
            self.calls = 0

        def _proxies(self, label, own_hash, rng):
            self.calls += 1
            return [self.calls, 7], np.array([0.6, 0.4])

    m = Fake()
    seen = record_proxies(m)
    m._proxies("x", "h1", None)
    m._proxies("x", "h1", None)  # a redraw replaces the first
    m._proxies("x", "h2", None)
    assert seen["h1"][0] == [2, 7] and seen["h2"][0] == [3, 7]


def test_variants_take_parameters():
    assert variant_params("k2:alpha=0.5") == {"k": 2, "max_weight": 0.7, "alpha": 0.5}
    with pytest.raises(SystemExit, match="unknown variant"):
        variant_params("nope")


def test_each_split_draws_from_its_own_seed():
    from bench.bench_proxy_morph_tstr import split_seeds, transform_reseeded

    seeds = split_seeds(2, np.array(["train", "test", "val", "test"]))
    assert len(set(seeds.values())) == 3 and seeds == split_seeds(2, np.array(["val", "train", "test"]))
    assert not set(seeds.values()) & set(split_seeds(3, np.array(["train", "test", "val"])).values())

    class Method:
        draw_seed = None

        def transform(self, X, identity, utility):
            return np.full_like(X, self.draw_seed)

    class Orig:
        split = np.array(["train", "test", "train"])
        X = np.zeros((3, 1, 2, 2), np.float32)
        identity = label = np.array(["a", "b", "a"])

    Y = transform_reseeded(Method(), Orig(), {"train": 5, "test": 7})
    assert Y[:, 0, 0, 0].tolist() == [5, 7, 5]
