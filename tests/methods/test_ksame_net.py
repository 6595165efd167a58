"""k-Same-Net (Meden et al.): generator, proxy mixtures, k-anonymity of the output, kept expression."""

from __future__ import annotations

import numpy as np
import pytest
import torch

from deid.errors import ConfigError, MethodError
from deid.clustering.anonymity import k_anonymity
from deid.methods import get_method
from deid.methods.ksame_net import expression_groups, proxy_mixtures
from deid.models.generator import FaceGenerator

SMALL = dict(image_size=16, width=8, hidden=64, epochs=30, batch_size=16, lr=2e-3, classifier_epochs=8,
             classifier_width=8, n_components=8)


pytestmark = pytest.mark.usefixtures("torch_one_thread")


def _faces(n_id: int = 6, n_ex: int = 3, per: int = 4, size: int = 16, seed: int = 0):
    """Top half carries identity, bottom half a strong expression pattern: ``(N, 1, size, size)``."""
    rng = np.random.default_rng(seed)
    id_pat = rng.random((n_id, size // 2, size))
    ex_pat = np.zeros((n_ex, size // 2, size))
    for e in range(n_ex):
        ex_pat[e, :, e * size // n_ex: (e + 1) * size // n_ex] = 1.0
    X, ident, expr = [], [], []
    for i in range(n_id):
        for e in range(n_ex):
            for _ in range(per):
                img = np.concatenate([id_pat[i], ex_pat[e]], axis=0) * 0.85 + 0.15 * rng.random((size, size))
                X.append(img[None])
                ident.append(f"id{i}")
                expr.append(f"ex{e}")
    return np.asarray(X, np.float32), np.array(ident, object), np.array(expr, object)


def test_generator_shapes_and_size_check():
    g = FaceGenerator(5, 3, 1, 16, width=8, hidden=32).eval()
    with torch.no_grad():
        out = g(torch.rand(4, 5), torch.rand(4, 3))
    assert out.shape == (4, 1, 16, 16) and float(out.min()) >= 0 and float(out.max()) <= 1
    assert g.packed(torch.rand(2, 8)).shape == (2, 1, 16, 16)
    with pytest.raises(ConfigError, match="power of two"):
        FaceGenerator(5, 3, 1, 50)


def test_proxy_mixtures_are_distinct_k_mixtures_avoiding_members():
    members = [np.array([0, 1]), np.array([2, 3]), np.array([0, 4])] * 10
    mix = proxy_mixtures(30, 6, 2, members, random_state=0)
    assert len(np.unique(mix, axis=0)) == 30
    assert ((mix > 0).sum(1) == 2).all()
    np.testing.assert_allclose(mix.sum(1), 1.0, atol=1e-6)
    for c, m in enumerate(members):
        assert (mix[c, m] == 0).all()
    first = proxy_mixtures(15, 6, 2, random_state=1)  # 15 = C(6, 2): every subset once, equal weights
    assert set(np.round(first[first > 0], 6)) == {0.5}
    with pytest.raises(ConfigError, match="proxy set"):
        proxy_mixtures(3, 2, 3)


def test_expression_groups_move_rows_to_a_viable_expression():
    ident = np.array(["a", "b", "c", "a", "b"])
    proba = np.array([[0.9, 0.1], [0.8, 0.2], [0.7, 0.3], [0.4, 0.6], [0.2, 0.8]])
    label, moved = expression_groups(proba, ident, 2)
    assert list(label) == [0, 0, 0, 1, 1] and moved == 0
    label, moved = expression_groups(proba, ident, 3)  # expression 1 holds only a and b
    assert list(label) == [0, 0, 0, 0, 0] and moved == 2


@pytest.mark.parametrize("k", [2, 3])
def test_output_is_k_anonymous_and_keeps_expression(k):
    X, ident, expr = _faces()
    m = get_method("ksame-net", k=k, **{**SMALL, "classifier_epochs": 15}).fit(X, ident, expr)
    hist = m.history_["generator"]
    assert hist[-1] < 0.5 * hist[0], hist
    Xt, it, et = _faces(seed=1)
    Y = m.transform(Xt, it)
    assert k_anonymity(Y, it) >= k
    assert m.last_report_["k_anonymity"] >= k
    # every cluster shares one surrogate; different clusters get different faces
    for g in np.unique(m.last_clusters_):
        rows = np.flatnonzero(m.last_clusters_ == g)
        assert len(set(it[rows])) >= k
        assert all(np.array_equal(Y[rows[0]], Y[r]) for r in rows)
    assert len(np.unique(Y.reshape(len(Y), -1), axis=0)) == len(np.unique(m.last_clusters_))
    # the recognised expression (kept) matches the true one for most images
    recognised = np.array(m.expressions_)[m.recognise(Xt).argmax(1)]
    assert (recognised == et).mean() > 0.8
    # the surrogate is far from every input image of its cluster
    assert np.abs(Y - Xt).mean() > 0.05


def test_needs_enough_identities():
    X, ident, expr = _faces(n_id=3, per=1)
    with pytest.raises(ConfigError, match="only 3 identities"):
        get_method("ksame-net", k=4, **SMALL).fit(X, ident, expr)
    m = get_method("ksame-net", k=3, **{**SMALL, "epochs": 1, "classifier_epochs": 1}).fit(X, ident, expr)
    with pytest.raises(MethodError, match="fewer than k"):
        m.transform(X[ident != "id0"], ident[ident != "id0"])


def test_without_utility_labels_one_surrogate_per_cluster():
    X, ident, _ = _faces(per=2)
    m = get_method("ksame-net", k=2, **{**SMALL, "epochs": 3}).fit(X, ident)
    assert m.expressions_ == ["<none>"] and m.utility_net_ is None
    Y = m.transform(X, ident)
    assert k_anonymity(Y, ident) >= 2


@pytest.mark.gpu
def test_k_anonymous_on_cuda():
    X, ident, expr = _faces()
    m = get_method("ksame-net", k=2, device="cuda", **SMALL).fit(X, ident, expr)
    assert next(m.generator_.parameters()).device.type == "cuda"
    assert k_anonymity(m.transform(X, ident), ident) >= 2
