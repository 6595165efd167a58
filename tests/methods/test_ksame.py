"""k-Same family: the identity-level guarantee over random inputs, bad input, and an attacker at chance."""

from __future__ import annotations

import numpy as np
import pytest
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st

from deid.clustering import ksame_clusters, max_full_clusters
from deid.errors import ConfigError, MethodError
from deid.clustering.anonymity import attribution_risk, group_report, identical_groups, k_anonymity
from deid.methods import get_method


def _images(counts, seed, size=6):
    rng = np.random.default_rng(seed)
    identity = np.repeat(np.array([f"p{i}" for i in range(len(counts))], dtype=object), counts)
    X = rng.random((len(identity), 1, size, size), dtype=np.float32)
    return X, identity


@st.composite
def _sets(draw):
    m = draw(st.integers(2, 7))
    counts = draw(st.lists(st.integers(1, 9), min_size=m, max_size=m))
    k = draw(st.integers(2, m))
    return counts, k, draw(st.integers(0, 2**16))


@settings(max_examples=40, deadline=None, suppress_health_check=[HealthCheck.too_slow])
@given(_sets(), st.sampled_from(["ksame-pixel", "ksame-eigen"]))
def test_k_anonymity_at_least_k_over_random_inputs(case, name):
    counts, k, seed = case
    X, identity = _images(counts, seed)
    m = get_method(name, k=k, n_components=4, random_state=seed).fit(X, identity)
    Y = m.transform(X, identity)
    assert k_anonymity(Y, identity) >= k
    report = group_report(m.last_clusters_, identity)
    assert report["k_anonymity"] >= k
    assert report["n_groups"] == max_full_clusters(np.asarray(counts), k)
    # members of one cluster get bitwise-identical outputs, different clusters (random pixels) differ
    assert len(np.unique(identical_groups(Y))) == report["n_groups"]


@settings(max_examples=25, deadline=None)
@given(st.integers(2, 6), st.integers(1, 5), st.integers(0, 2**16))
def test_equal_counts_give_equal_shares(m, per_id, seed):
    X, identity = _images([per_id * m] * m, seed)  # k = m divides every count: no surplus at all
    Y = get_method("ksame-pixel", k=m, n_components=4).fit(X, identity).transform(X, identity)
    assert k_anonymity(Y, identity) == m
    assert attribution_risk(Y, identity) == pytest.approx(1.0 / m)


@settings(max_examples=25, deadline=None)
@given(st.integers(2, 5), st.integers(2, 4), st.integers(1, 3), st.integers(0, 2**16))
def test_select_keeps_utility_label_within_clusters(m, n_labels, per_cell, seed):
    counts = [n_labels * per_cell] * m
    X, identity = _images(counts, seed)
    utility = np.tile(np.repeat([f"e{j}" for j in range(n_labels)], per_cell), m)
    k = m
    meth = get_method("ksame-select", k=k, n_components=4).fit(X, identity, utility)
    Y = meth.transform(X, identity, utility)
    assert k_anonymity(Y, identity) >= k
    for c in np.unique(meth.last_clusters_):
        assert len(set(utility[meth.last_clusters_ == c])) == 1


def test_surplus_keeps_k_identities_and_reports_worst_share():
    X, identity = _images([10, 4, 4], seed=1)  # one identity holds more than its share
    clusters = ksame_clusters(X.reshape(len(X), -1), identity, 3)
    report = group_report(clusters, identity)
    assert report["n_groups"] == 4 and report["k_anonymity"] == 3
    assert report["attribution_risk"] == pytest.approx(3 / 5)  # 6 surplus images: 1 per cluster, then 2 more
    assert report["unequal_groups"] == 4


def test_pixel_outputs_are_cluster_means():
    X, identity = _images([3, 3, 3], seed=2)
    m = get_method("ksame-pixel", k=3, n_components=4).fit(X, identity)
    Y = m.transform(X, identity)
    for c in np.unique(m.last_clusters_):
        rows = m.last_clusters_ == c
        np.testing.assert_allclose(Y[rows][0], X[rows].mean(axis=0), atol=1e-6)
        assert len(set(identity[rows])) == 3


def test_k_anonymity_function():
    ident = np.array(["a", "a", "b", "c"])
    assert k_anonymity(np.arange(4.0)[:, None], ident) == 1
    same = np.zeros((4, 2))
    assert k_anonymity(same, ident) == 3 and attribution_risk(same, ident) == 0.5
    one_person = np.array([[0.0], [0.0], [1.0], [1.0]])
    assert k_anonymity(one_person, ident) == 1  # two images of 'a' share an output: protects nobody


def test_bad_input_says_what_to_change():
    X, identity = _images([4, 4, 4], seed=3)
    with pytest.raises(ConfigError, match="lower k to at most 3"):
        get_method("ksame-pixel", k=4).fit(X, identity)
    with pytest.raises(ConfigError, match="lower k to at most 3"):
        ksame_clusters(X.reshape(len(X), -1), identity, 4)
    feats = X.reshape(len(X), -1).copy()
    feats[5, 0] = np.nan
    with pytest.raises(MethodError, match="NaN"):
        ksame_clusters(feats, identity, 2)
    utility = np.array(["happy"] * 8 + ["sad"] * 4, dtype=object)  # 'sad' holds one identity only
    with pytest.raises(MethodError, match="'sad' holds images of only 1 identity, fewer than k = 2"):
        get_method("ksame-select", k=2).fit(X, identity, utility).transform(X, identity, utility)
    with pytest.raises(MethodError, match="needs identity"):
        get_method("ksame-eigen", k=2).fit(X)


def test_informed_attacker_at_chance_on_ksame_select(ferg_images):
    """k = number of identities: every output is shared by all characters in equal shares."""
    from deid.data import load_image_set
    from deid.models import CNNClassifier

    data = load_image_set(ferg_images)
    train, test = data.of_split("train"), data.of_split("test")
    ids = np.unique(data.identity)
    k = len(ids)
    anon = {}
    for part, s in (("train", train), ("test", test)):
        m = get_method("ksame-select", k=k, n_components=16).fit(s.X, s.identity, s.label)
        anon[part] = m.transform(s.X, s.identity, s.label)
        assert k_anonymity(anon[part], s.identity) == k
    from sklearn.linear_model import LogisticRegression

    chance, n = 1.0 / k, len(test)
    flat = lambda A: A.reshape(len(A), -1)  # noqa: E731
    attackers = {
        "cnn": CNNClassifier(epochs=6, width=16, early_stopping=0, random_state=0, device="cpu"),
        "logistic": LogisticRegression(max_iter=500),
    }
    for name, clf in attackers.items():
        Xtr, Xte = (anon["train"], anon["test"]) if name == "cnn" else (flat(anon["train"]), flat(anon["test"]))
        acc = float((clf.fit(Xtr, train.identity).predict(Xte) == test.identity).mean())
        assert abs(acc - chance) <= 2 * np.sqrt(chance * (1 - chance) / n), (name, acc)
    # the same kind of attacker on the original images is far above chance: the check can fail
    orig = LogisticRegression(max_iter=500).fit(flat(train.X), train.identity)
    assert float((orig.predict(flat(test.X)) == test.identity).mean()) > chance + 0.4
