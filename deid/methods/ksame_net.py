"""Meden, Emeršič, Štruc, Peer: "k-Same-Net: k-Anonymity with Generative Deep Neural Networks for Face Deidentification", Entropy 20(1):60, 2018 (arXiv:1712.06450).

``fit`` trains a conditional generator ``D = G(x, y)`` (:class:`deid.models.FaceGenerator`) on
the proxy set, the training split: ``x`` one-hot over its identities, ``y`` one-hot over its
utility labels (expressions). It also trains the utility recogniser that probes inputs
(:class:`deid.models.CNNClassifier`) and the PCA space in which clusters are formed.

``transform`` (set-level) follows the paper's Algorithm 1:

1. recognise each input's expression with the utility classifier;
2. form k-Same clusters of the input set (:func:`deid.clustering.ksame_clusters`: every
   cluster holds images of ≥ k distinct identities), *within* each recognised expression, so
   the images of one cluster share their expression as well as their surrogate;
3. map every input cluster one-to-one to a proxy cluster of k proxy identities (distinct
   k-subsets while there are enough; when subsets must repeat, their mixing weights differ);
   the proxy identities avoid the identities inside the cluster when the proxy set has enough
   others;
4. generate ``G(mix of the k proxy identities, expression)`` once per cluster and give it to
   every member.

Step 2 is a departure from the paper, where one cluster shares a surrogate but members keep
their own expressions: here all members of a cluster receive the bitwise same image, so the
audit's k-anonymity (identical outputs shared by ≥ k distinct identities) holds exactly. An
expression recognised for fewer than k identities in the set cannot form a cluster of its own;
those images take their next most likely expression that can (counted in
``last_report_["reassigned"]``).
"""

from __future__ import annotations

import itertools
from typing import Annotated

import numpy as np
from pydantic import Field

from deid.clustering.features import PCAFeatures
from deid.clustering.ksame import ksame_clusters
from deid.errors import ConfigError, MethodError
from deid.clustering.anonymity import group_report
from deid.methods.base import AnonymityK, DeidMethod, Device, PositiveFloat, PositiveInt, PowerOfTwo, Seed
from deid.methods.registry import register_method

__all__ = ["KSameNet", "proxy_mixtures", "expression_groups"]

_NO_UTILITY = "<none>"


def expression_groups(proba: np.ndarray, identity: np.ndarray, k: int) -> tuple[np.ndarray, int]:
    """Expression index per row ``(N,)`` such that each used expression has ≥ k distinct identities.

    ``proba`` ``(N, E)`` class probabilities. Rows whose most likely expression is held by fewer
    than k identities move to their most likely expression that is; returns (labels, moved).
    """
    label = proba.argmax(1)
    order = np.argsort(-proba, axis=1, kind="stable")
    moved = np.zeros(len(label), bool)
    for _ in range(proba.shape[1]):
        viable = np.array([len(np.unique(identity[label == e])) >= k for e in range(proba.shape[1])])
        bad = ~viable[label]
        if not bad.any():
            return label, int(moved.sum())
        if not viable.any():  # no expression holds k identities: one group, the most frequent label
            label[:] = np.bincount(label, minlength=proba.shape[1]).argmax()
            return label, int(len(label))
        for i in np.flatnonzero(bad):
            label[i] = next(e for e in order[i] if viable[e])
        moved |= bad
    return label, int(moved.sum())


def proxy_mixtures(n_clusters: int, n_proxies: int, k: int, members: list[np.ndarray] | None = None,
                   random_state: int = 0) -> np.ndarray:
    """Mixture vectors ``(n_clusters, n_proxies)`` over k proxy identities, one distinct row per cluster.

    Distinct k-subsets are used while they last (least-used first); a repeated subset gets new
    near-uniform Dirichlet weights. ``members[c]`` lists proxy indices to avoid for cluster c
    (identities present in it) when at least k others remain.
    """
    if k > n_proxies:
        raise ConfigError(f"k-Same-Net: k = {k} but the proxy set holds only {n_proxies} identities")
    rng = np.random.default_rng(random_state)
    use: dict[tuple[int, ...], int] = {}
    n_subsets = float(np.prod([(n_proxies - i) / (i + 1) for i in range(k)]))
    all_subsets = list(itertools.combinations(range(n_proxies), k)) if n_subsets <= 20000 else None
    if all_subsets is not None:
        all_subsets = [all_subsets[i] for i in rng.permutation(len(all_subsets))]
    out = np.zeros((n_clusters, n_proxies), np.float32)
    for c in range(n_clusters):
        avoid = set() if members is None else {int(m) for m in members[c]}
        if n_proxies - len(avoid) < k:
            avoid = set()
        if all_subsets is not None:
            cands = [s for s in all_subsets if not avoid.intersection(s)]
            subset = min(cands, key=lambda s: use.get(s, 0))
        else:
            pool = np.array([p for p in range(n_proxies) if p not in avoid])
            subset = tuple(sorted(rng.choice(pool, k, replace=False).tolist()))
        times = use.get(subset, 0)
        use[subset] = times + 1
        w = np.full(k, 1.0 / k) if times == 0 else rng.dirichlet(np.full(k, 8.0))
        out[c, list(subset)] = w
    return out


@register_method("ksame-net")
class KSameNet(DeidMethod):
    """k-Same-Net: k-Same clusters, each replaced by a generated face mixing k proxy identities."""

    k_within = "split"
    guarantee = ("k-anonymity: every member of a cluster of at least k distinct identities receives the bitwise "
                 "same generated face, a mixture of k proxy identities")
    param_docs = {"k": "identities per cluster, and proxy identities mixed into its face",
                  "hidden": "units of the generator's fully connected layer",
                  "epochs": "passes of the generator over the training split",
                  "classifier_epochs": "epochs of the utility recogniser that reads each input's expression",
                  "classifier_width": "width of the utility recogniser",
                  "n_components": "principal components of the space in which clusters are formed"}

    set_level = True
    needs_identity = True
    holds_training_images = True  # pca_mean_ and pca_components_: the training set's mean face and eigenfaces
    test_params = {"k": 2, "image_size": 8, "width": 8, "hidden": 32, "epochs": 3, "classifier_epochs": 1,
                   "classifier_width": 4, "n_components": 8}

    def __init__(self, k: AnonymityK = 2, image_size: Annotated[PowerOfTwo, Field(ge=8)] = 32, width: PositiveInt = 16,
                 hidden: PositiveInt = 256, epochs: PositiveInt = 15, batch_size: PositiveInt = 64,
                 lr: PositiveFloat = 2e-3, classifier_epochs: PositiveInt = 10, classifier_width: PositiveInt = 16,
                 n_components: PositiveInt = 32, device: Device = "auto", random_state: Seed = 0) -> None:
        self.k = k
        self.image_size = image_size
        self.width = width
        self.hidden = hidden
        self.epochs = epochs
        self.batch_size = batch_size
        self.lr = lr
        self.classifier_epochs = classifier_epochs
        self.classifier_width = classifier_width
        self.n_components = n_components
        self.device = device
        self.random_state = random_state

    # -- building -----------------------------------------------------------------------
    def _init_modules(self) -> None:
        from deid.models.classifier import SmallCNN
        from deid.models.generator import FaceGenerator

        c = self.input_shape_[0]
        self.generator_ = FaceGenerator(len(self.proxies_), len(self.expressions_), c, self.image_size, self.width,
                                        self.hidden)
        self.utility_net_ = (SmallCNN(c, len(self.expressions_), self.classifier_width)
                             if len(self.expressions_) > 1 else None)

    def _pca(self) -> PCAFeatures:
        pca = PCAFeatures(self.n_components, self.random_state)
        pca.mean_, pca.components_ = self.pca_mean_, self.pca_components_
        return pca

    # -- fitting ------------------------------------------------------------------------
    def _fit(self, X, identity, utility):
        import torch

        from deid.device import resolve_device
        from deid.models.autoencoder import to_net, train_regression
        from deid.models.classifier import CNNClassifier

        self.proxies_ = sorted(str(v) for v in np.unique(identity))
        if self.k > len(self.proxies_):
            raise ConfigError(f"ksame-net: k = {self.k} but the proxy (training) set holds only "
                              f"{len(self.proxies_)} identities; lower k or train on more identities")
        util = np.full(len(X), _NO_UTILITY, object) if utility is None else np.asarray(utility).astype(str)
        self.expressions_ = sorted(str(v) for v in np.unique(util))
        seed = int(self.random_state)
        dev = resolve_device(self.device)
        pca = PCAFeatures(self.n_components, seed).fit(X)
        self.pca_mean_, self.pca_components_ = pca.mean_, pca.components_
        torch.manual_seed(seed)
        self._init_modules()
        qi = np.searchsorted(self.proxies_, np.asarray(identity).astype(str))
        ei = np.searchsorted(self.expressions_, util)
        xy = np.zeros((len(X), len(self.proxies_) + len(self.expressions_)), np.float32)
        xy[np.arange(len(X)), qi] = 1.0
        xy[np.arange(len(X)), len(self.proxies_) + ei] = 1.0
        target = to_net(torch.from_numpy(np.ascontiguousarray(X)), int(self.image_size))
        gen = self.generator_.to(dev)
        self.history_ = {"generator": train_regression(gen.packed, gen.parameters(), xy, target, epochs=self.epochs,
                                                       batch_size=int(self.batch_size), lr=float(self.lr),
                                                       device=dev, seed=seed, modules=[gen])}
        if self.utility_net_ is not None:
            clf = CNNClassifier(epochs=int(self.classifier_epochs), width=int(self.classifier_width),
                                batch_size=int(np.clip(len(X) // 16, 8, 64)),  # enough steps on small sets
                                random_state=seed, device=self.device).fit(X, util)
            if list(clf.classes_) != self.expressions_:  # pragma: no cover - np.unique sorts both
                raise MethodError("ksame-net: utility classifier classes do not match the expressions")
            self.utility_net_ = clf.model_.eval()
            self.history_["utility_classifier"] = [h["loss"] for h in clf.history_]

    # -- transforming -------------------------------------------------------------------
    def recognise(self, X: np.ndarray) -> np.ndarray:
        """Expression probabilities ``(N, E)`` for images ``(N, C, H, W)`` (all ones when E = 1)."""
        from deid.device import resolve_device
        from deid.models.autoencoder import predict

        self._check_fitted()
        if self.utility_net_ is None:
            return np.ones((len(X), 1), np.float32)
        dev = resolve_device(self.device)
        net = self.utility_net_.to(dev).eval()
        z = predict(net, X, batch_size=512, device=dev).astype(np.float64)
        z = np.exp(z - z.max(1, keepdims=True))
        return (z / z.sum(1, keepdims=True)).astype(np.float32)

    def assign(self, X: np.ndarray, identity: np.ndarray) -> tuple[np.ndarray, np.ndarray, np.ndarray, int]:
        """Clusters ``(N,)``, per-cluster expression ``(G,)`` and mixtures ``(G, Q)``, and rows moved."""
        k = int(self.k)
        identity = np.asarray(identity).astype(str)
        if len(np.unique(identity)) < k:
            raise MethodError(f"method 'ksame-net': the set holds {len(np.unique(identity))} identities, "
                              f"fewer than k = {k}; k-anonymity cannot be reached")
        expr, moved = expression_groups(self.recognise(X), identity, k)
        feats = self._pca().transform(X)
        clusters = np.full(len(X), -1, np.int64)
        cluster_expr: list[int] = []
        for e in np.unique(expr):
            rows = np.flatnonzero(expr == e)
            local = ksame_clusters(feats[rows], identity[rows], k, random_state=int(self.random_state))
            clusters[rows] = local + len(cluster_expr)
            cluster_expr += [int(e)] * (int(local.max()) + 1)
        G = len(cluster_expr)
        pos = {p: i for i, p in enumerate(self.proxies_)}
        members = [np.array([pos[i] for i in np.unique(identity[clusters == g]) if i in pos]) for g in range(G)]
        mix = proxy_mixtures(G, len(self.proxies_), k, members, int(self.random_state))
        return clusters, np.asarray(cluster_expr, np.int64), mix, moved

    def _transform(self, X, identity, utility):
        import torch

        from deid.device import resolve_device
        from deid.models.autoencoder import from_net, predict

        clusters, cexpr, mix, moved = self.assign(X, identity)
        dev = resolve_device(self.device)
        gen = self.generator_.to(dev).eval()
        y = np.zeros((len(cexpr), len(self.expressions_)), np.float32)
        y[np.arange(len(cexpr)), cexpr] = 1.0
        faces = predict(gen.packed, np.concatenate([mix, y], axis=1), batch_size=256, device=dev)
        faces = from_net(torch.from_numpy(faces), tuple(X.shape[-2:])).numpy()
        self.last_clusters_ = clusters
        self.last_report_ = {**group_report(clusters, identity), "reassigned": moved}
        return np.ascontiguousarray(faces[clusters], dtype=np.float32)
