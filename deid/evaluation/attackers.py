"""The informed attacker (Feutry et al., ICASSP 2020): classifiers trained on de-identified
training images with their true labels and tested on de-identified test images.

Used for the private label (identity: lower is better) and the utility label (expression:
higher is better). Several attackers run and the worst case is reported, because a weak
attacker flatters privacy. Attackers are registered by name
(:mod:`deid.evaluation.attacker_registry`): ``cnn``, ``linear``, ``knn-pixels``, ``knn-hog``, ``hog-svm`` here;
``fisher`` (:mod:`deid.evaluation.fisherfaces`), ``dlib-descriptor`` (:mod:`deid.evaluation.descriptor_attacker`),
``exclusion`` and ``label-linkage`` (:mod:`deid.evaluation.method_attackers`) in their own modules.

An attacker that holds the original images (``uses_gallery = True``) is given them by :func:`train_attackers`
as a :class:`Gallery`: ``fit(X, y, gallery=...)`` and ``predict(X, public=...)``.
"""

from __future__ import annotations

import dataclasses
import hashlib
import warnings
from dataclasses import dataclass, field
from typing import Any

import numpy as np
from sklearn.linear_model import LogisticRegression
from sklearn.metrics import confusion_matrix
from sklearn.neighbors import KNeighborsClassifier
from sklearn.pipeline import Pipeline, make_pipeline
from sklearn.preprocessing import StandardScaler
from sklearn.svm import LinearSVC

from deid.errors import EvaluationError
from deid.clustering.anonymity import row_digests
from deid.evaluation.attacker_registry import (DEFAULT_ATTACKERS, AttackerConfig, attacker_class, available_attackers, get_attacker,
                                              register_attacker)
from deid.models import CNNClassifier
from deid.pixels import chunk_rows, chunks, is_lazy

__all__ = ["AttackerConfig", "AttackResult", "Gallery", "train_attackers", "uses_gallery", "check_split_labels",
           "DEFAULT_ATTACKERS", "CNNAttacker", "LinearPixelClassifier", "KNNPixelAttacker", "KNNHogAttacker",
           "HogSVMAttacker", "hog_features", "hog_of", "content_key", "majority_rate", "register_attacker",
           "available_attackers", "get_attacker"]


@dataclass(frozen=True)
class Gallery:
    """What an attacker holding the original images knows (attackers with ``uses_gallery = True``).

    ``originals`` ``(N_train, C, H, W)``: the original images of the attacker's training rows, row-aligned
    with the training outputs (so the original of a test output is never among them). ``public_train``,
    ``public_test``: a label published with every image (the utility label a release carries), or ``None``.
    """

    originals: Any
    public_train: np.ndarray | None = None
    public_test: np.ndarray | None = None


@dataclass
class AttackResult:
    """Per attacker: test accuracy, confusion matrix and the count of correct test predictions.

    ``chance`` is the majority-class rate of the test split (1/classes only when it is balanced).
    """

    label: str
    accuracy: dict[str, float]
    chance: float
    classes: list[str]
    confusion: dict[str, np.ndarray] = field(repr=False, default_factory=dict)
    correct: dict[str, int] = field(default_factory=dict)
    n_test: int = 0
    #: per extra test set (``train_attackers(also=...)``): attacker → correct predictions on it
    also: dict[str, dict[str, int]] = field(default_factory=dict)

    @property
    def worst(self) -> float:
        """The strongest attacker's accuracy (the highest)."""
        return max(self.accuracy.values())


def _flat(X: np.ndarray) -> np.ndarray:
    return np.asarray(X, dtype=np.float32).reshape(len(X), -1)


# -- streaming pieces: statistics and distances a chunk of rows at a time ------------------------------
#: above this many values per image the PCA is fitted incrementally instead of from the covariance
_COVARIANCE_MAX_DIM = 4096


class _Standardise:
    """Per-pixel mean and standard deviation of ``X``, gathered in chunks (StandardScaler's figures)."""

    def __init__(self, X):
        n = len(X)
        s1 = s2 = 0.0
        for _, c in chunks(X):
            c = c.reshape(len(c), -1).astype(np.float64)
            s1 = s1 + c.sum(0)
            s2 = s2 + np.square(c).sum(0)
        self.mean = s1 / n
        var = np.maximum(s2 / n - np.square(self.mean), 0.0)
        scale = np.sqrt(var)
        scale[scale < 10 * np.finfo(np.float64).eps] = 1.0  # constant pixels are left as they are, as sklearn does
        self.scale = scale
        self._m32, self._s32 = self.mean.astype(np.float32), scale.astype(np.float32)

    def __call__(self, chunk: np.ndarray) -> np.ndarray:
        return (np.asarray(chunk, dtype=np.float32).reshape(len(chunk), -1) - self._m32) / self._s32


class _StreamingPCA:
    """Standardised pixels → their ``k`` leading principal components, fitted without holding ``X``.

    Up to :data:`_COVARIANCE_MAX_DIM` values per image the components are the exact eigenvectors of the
    standardised pixels' covariance, summed a chunk at a time; above it, scikit-learn's
    :class:`~sklearn.decomposition.IncrementalPCA` over the same chunks.
    """

    def __init__(self, X, k: int):
        self.std = _Standardise(X)
        d = len(self.std.mean)
        k = int(min(k, len(X) - 1, d))
        if d <= _COVARIANCE_MAX_DIM:
            cov = np.zeros((d, d), dtype=np.float64)
            for _, c in chunks(X):
                z = self.std(c)
                cov += z.T @ z  # float32 products per chunk, summed in float64
            from scipy.linalg import eigh

            w, v = eigh(cov / max(1, len(X) - 1), subset_by_index=[d - k, d - 1])  # the k largest only
            comps = v[:, np.argsort(w)[::-1]].T
            # the sign convention of scikit-learn's svd_flip: each component's largest entry is positive
            comps *= np.sign(comps[np.arange(k), np.abs(comps).argmax(1)])[:, None]
            self.components = comps.astype(np.float32)
        else:
            from sklearn.decomposition import IncrementalPCA

            ipca = IncrementalPCA(k)
            rows = max(k, chunk_rows((1, d)))
            for _, c in chunks(X, rows):
                if len(c) >= k:
                    ipca.partial_fit(self.std(c))
            self.components = (ipca.components_ * 1.0).astype(np.float32)
            self._ipca_mean = ipca.mean_.astype(np.float32)
        self.k = k

    def transform(self, X) -> np.ndarray:
        out = np.empty((len(X), self.k), dtype=np.float32)
        for s, c in chunks(X):
            z = self.std(c)
            if hasattr(self, "_ipca_mean"):
                z = z - self._ipca_mean
            out[s:s + len(c)] = z @ self.components.T
        return out


_MEMO: dict = {}
_MEMO_SIZE = 8  # a row's PCAs (linear, exclusion and fisher's), HOG of its outputs and of the gallery, descriptors


def _memo(key: tuple, make):
    """``make()`` remembered under ``key`` (the last few): work on the same rows of images on disk, which
    the audit repeats for identity, the utility label and each attribute."""
    if key not in _MEMO:
        while len(_MEMO) >= _MEMO_SIZE:
            _MEMO.pop(next(iter(_MEMO)))
        _MEMO[key] = make()
    return _MEMO[key]


def content_key(X) -> str:
    """What identifies the images ``X``: a :class:`~deid.pixels.Pixels` view's rows of its file, an array's
    bytes and shape (for memoising work on the same images)."""
    if is_lazy(X):
        return X.key()
    h = hashlib.blake2b(row_digests(X).tobytes(), digest_size=16)
    h.update(repr(np.shape(X)).encode())
    return h.hexdigest()


def _pca(X, k: int) -> _StreamingPCA:
    """The PCA of ``X``, remembered by :func:`content_key` (``linear`` and ``exclusion`` fit the same one)."""
    return _memo(("pca", content_key(X), k), lambda: _StreamingPCA(X, k))


def _nearest(train, test, prep) -> np.ndarray:
    """Index of each test row's nearest training row (Euclidean after ``prep``), in chunks of both."""
    n_test = len(test)
    best_d = np.full(n_test, np.inf, dtype=np.float64)
    best_i = np.zeros(n_test, dtype=np.int64)
    d = int(np.prod(train.shape[1:], dtype=np.int64)) or 1
    rows = max(1, chunk_rows((1, d)))
    for ts, tc in chunks(test, rows):
        a = prep(tc)
        a2 = np.einsum("nd,nd->n", a, a, dtype=np.float64)
        for s, c in chunks(train, rows):
            b = prep(c)
            dist = a2[:, None] - 2.0 * (a @ b.T) + np.einsum("nd,nd->n", b, b, dtype=np.float64)[None, :]
            j = dist.argmin(1)
            v = dist[np.arange(len(a)), j]
            better = v < best_d[ts:ts + len(a)]  # ties keep the earlier training row, as scikit-learn does
            best_d[ts:ts + len(a)][better] = v[better]
            best_i[ts:ts + len(a)][better] = s + j[better]
    return best_i


@register_attacker("cnn")
class CNNAttacker(CNNClassifier):
    """A small CNN (:class:`~deid.models.SmallCNN`) with light augmentation and a floor on optimiser steps."""

    @classmethod
    def from_config(cls, cfg: AttackerConfig) -> "CNNAttacker":
        return cls(epochs=cfg.cnn_epochs, width=cfg.cnn_width, augment=cfg.cnn_augment, shift=cfg.cnn_shift,
                   flip=cfg.cnn_augment and cfg.cnn_flip, min_steps=cfg.cnn_min_steps,
                   random_state=cfg.random_state, device=cfg.device)


class _PipelineAttacker:
    """Shared by the scikit-learn attackers: an input representation (:meth:`_inputs`) and a pipeline
    fitted on it; :meth:`features` is what the pipeline's last step sees."""

    def _inputs(self, X: np.ndarray) -> np.ndarray:
        return _flat(X)

    def _pipeline(self, inputs: np.ndarray) -> Pipeline:
        raise NotImplementedError

    def fit(self, X: np.ndarray, y):
        inputs = self._inputs(X)
        self.model_ = self._pipeline(inputs)
        with warnings.catch_warnings():  # constant inputs (blackout) have no variance to explain; a LinearSVC
            warnings.simplefilter("ignore")  # that has not converged in max_iter still separates
            self.model_.fit(inputs, np.asarray(y))
        return self

    def predict(self, X: np.ndarray) -> np.ndarray:
        return self.model_.predict(self._inputs(X))

    def features(self, X: np.ndarray) -> np.ndarray:
        """The representation the classifier works on ``(N, D)``."""
        return self.model_[:-1].transform(self._inputs(X)) if len(self.model_) > 1 else self._inputs(X)


@register_attacker("linear")
class LinearPixelClassifier:
    """Standardised pixels → PCA → multinomial logistic regression."""

    # Streams: the standardisation and the components are gathered a chunk of images at a time
    # (_StreamingPCA), so only the (N, n_components) codes are held in memory.

    def __init__(self, n_components: int = 64, random_state: int = 0):
        self.n_components = n_components
        self.random_state = random_state

    @classmethod
    def from_config(cls, cfg: AttackerConfig) -> "LinearPixelClassifier":
        return cls(cfg.pca_components, cfg.random_state)

    def fit(self, X, y) -> "LinearPixelClassifier":
        self.pca_ = _pca(X, self.n_components)
        # the codes are standardised before the regression: their spreads differ by 15× on the built-in
        # set, which made L-BFGS take 100–200 iterations where it now takes 10–30, for the same accuracy
        self.model_ = make_pipeline(StandardScaler(), LogisticRegression(max_iter=2000, C=1.0))
        with warnings.catch_warnings():  # constant inputs have no variance to explain
            warnings.simplefilter("ignore")
            self.model_.fit(self.pca_.transform(X), np.asarray(y))
        return self

    def predict(self, X) -> np.ndarray:
        return self.model_.predict(self.pca_.transform(X))

    def features(self, X) -> np.ndarray:
        """The principal-component codes ``(N, n_components)``."""
        return self.pca_.transform(X)


@register_attacker("knn-pixels")
class KNNPixelAttacker:
    """1-nearest neighbour on standardised pixels, optionally PCA-reduced."""

    # Streams: distances a chunk of test images against a chunk of training images at a time; the
    # training images are not copied (a Pixels view stays on disk).

    def __init__(self, n_components: int | None = None, random_state: int = 0):
        self.n_components = n_components
        self.random_state = random_state

    @classmethod
    def from_config(cls, cfg: AttackerConfig) -> "KNNPixelAttacker":
        return cls(cfg.knn_pca_components, cfg.random_state)

    def fit(self, X, y) -> "KNNPixelAttacker":
        self.y_ = np.asarray(y)
        if self.n_components:
            self.pca_ = _pca(X, self.n_components)
            self.codes_ = self.pca_.transform(X)
        else:
            self.std_ = _Standardise(X)
            self.X_ = X
        return self

    def predict(self, X) -> np.ndarray:
        if self.n_components:
            return self.y_[_nearest(self.codes_, self.pca_.transform(X), lambda c: c)]
        return self.y_[_nearest(self.X_, X, self.std_)]

    def features(self, X) -> np.ndarray:
        if self.n_components:
            return self.pca_.transform(X)
        return np.concatenate([self.std_(c) for _, c in chunks(X)])


def hog_features(X: np.ndarray, cell: int = 8, orientations: int = 9) -> np.ndarray:
    """HOG descriptors (:func:`skimage.feature.hog`, 2×2-cell blocks, L2-Hys) of ``(N, C, H, W)`` images → ``(N, D)``.

    ``X`` may be a :class:`~deid.pixels.Pixels` view: images are read a chunk at a time.

    The cell shrinks on images smaller than two cells a side.
    """
    from skimage.feature import hog

    if not is_lazy(X):
        X = np.asarray(X, dtype=np.float32)
    if X.ndim != 4:
        raise ValueError(f"expected images (N, C, H, W), got shape {X.shape}")
    cell = int(max(1, min(cell, min(X.shape[2:]) // 2)))
    kw = dict(orientations=orientations, pixels_per_cell=(cell, cell), cells_per_block=(2, 2),
              block_norm="L2-Hys", feature_vector=True)
    out = []
    for _, c in chunks(X):  # images are read a chunk at a time; the descriptors are kept
        if X.shape[1] == 1:
            out.extend(hog(x[0], **kw).astype(np.float32) for x in c)
        else:
            out.extend(hog(x, channel_axis=0, **kw).astype(np.float32) for x in c)
    return np.stack(out)


def hog_of(X, cell: int = 8) -> np.ndarray:
    """:func:`hog_features` of ``X``, remembered by :func:`content_key` (the HOG attackers, for identity and
    for the utility label, describe the same rows)."""
    return _memo(("hog", content_key(X), cell), lambda: hog_features(X, cell))


class _HogAttacker(_PipelineAttacker):
    """Shared by the HOG attackers: a classifier on :func:`hog_features`."""

    def __init__(self, cell: int = 8, c: float = 1.0, random_state: int = 0):
        self.cell = cell
        self.c = c
        self.random_state = random_state

    @classmethod
    def from_config(cls, cfg: AttackerConfig):
        return cls(cfg.hog_cell, cfg.svm_c, cfg.random_state)

    def _inputs(self, X: np.ndarray) -> np.ndarray:
        return hog_of(X, self.cell)


@register_attacker("knn-hog")
class KNNHogAttacker(_HogAttacker):
    """1-nearest neighbour on HOG descriptors."""

    def _pipeline(self, inputs: np.ndarray) -> Pipeline:
        return make_pipeline(KNeighborsClassifier(n_neighbors=1))


@register_attacker("hog-svm")
class HogSVMAttacker(_HogAttacker):
    """Linear SVM (one-vs-rest) on standardised HOG descriptors."""

    def _pipeline(self, inputs: np.ndarray) -> Pipeline:
        # 300 iterations: as accurate as 5,000 on the built-in set's expressions (0.80) in a twentieth of
        # the time, and on outputs that repeat one image under several labels (k-Same), where the solver
        # cannot converge, it gives up in a second or two instead of a minute.
        # The dual solver (coordinate descent) for the same objective: on 8,820 HOG descriptors of the
        # built-in set it fits the expressions in 7 s where the primal one takes 37 s, with the same accuracy.
        return make_pipeline(StandardScaler(), LinearSVC(C=self.c, dual=True, max_iter=300,
                                                         random_state=self.random_state))


class _MajorityClass:
    """The most frequent training label, for training sets whose images are all identical."""

    def fit(self, X: np.ndarray, y) -> "_MajorityClass":
        values, counts = np.unique(np.asarray(y), return_counts=True)
        self.label_ = values[np.argmax(counts)]
        return self

    def predict(self, X: np.ndarray) -> np.ndarray:
        return np.full(len(X), self.label_, dtype=np.asarray([self.label_]).dtype)

    def features(self, X: np.ndarray) -> np.ndarray:
        return np.zeros((len(X), 1), dtype=np.float32)


def check_split_labels(y_train, y_test, label: str, where: str) -> None:
    classes = np.unique(y_train)
    if len(classes) < 2:
        raise EvaluationError(f"{where}: the training split has one {label} class ({list(classes)}); "
                              "an attacker cannot be trained; use more data or another split")
    unseen = sorted(set(np.unique(y_test)) - set(classes))
    if unseen:
        raise EvaluationError(f"{where}: {label} classes {unseen} occur in the test split but not in training")


def _hyperparameters(model: CNNClassifier) -> dict:
    return {f.name: getattr(model, f.name) for f in dataclasses.fields(CNNClassifier) if f.init}


def _reusable(built, model) -> bool:
    """Whether a pretrained ``model`` stands for the attacker ``built`` from this configuration: a CNN only
    when it was trained with the same hyperparameters (augmentation, step floor, ...)."""
    if isinstance(built, CNNClassifier):
        return isinstance(model, CNNClassifier) and _hyperparameters(model) == _hyperparameters(built)
    return True


def _all_identical(X) -> bool:
    """Whether every row of ``X`` equals the first, read a chunk at a time."""
    first = np.asarray(X[:1], dtype=np.float32)
    return all(np.array_equal(c, np.broadcast_to(first, c.shape)) for _, c in chunks(X))


def majority_rate(y) -> float:
    """The share of the most frequent label in ``y`` (what always guessing it scores)."""
    _, counts = np.unique(np.asarray(y), return_counts=True)
    return float(counts.max() / counts.sum())


def uses_gallery(name: str) -> bool:
    """Whether attacker ``name`` is given the original images (a :class:`Gallery`)."""
    return bool(getattr(attacker_class(name), "uses_gallery", False))


def train_attackers(X_train: np.ndarray, y_train, X_test: np.ndarray, y_test, *, label: str,
                    cfg: AttackerConfig = AttackerConfig(), where: str = "audit",
                    pretrained: dict | None = None, also: dict | None = None,
                    gallery: Gallery | None = None) -> AttackResult:
    """Train every configured attacker on (X_train, y_train); accuracy on (X_test, y_test).

    ``also`` maps a name to another test set ``(X, y)`` the same trained models predict (the audit's
    train-on-outputs, test-on-originals figure); correct counts land in ``AttackResult.also``.

    ``pretrained`` maps an attacker name to a model already trained on exactly (X_train, y_train)
    (the audit's reference classifiers on the original data), which is then reused instead of
    trained twice; a pretrained CNN whose hyperparameters differ from ``cfg``'s is not reused.

    ``gallery``: the originals of the training rows, for the attackers that hold them (:class:`Gallery`);
    they do not train on the outputs, so they have no figure on the ``also`` sets.
    """
    y_train, y_test = np.asarray(y_train), np.asarray(y_test)
    check_split_labels(y_train, y_test, label, where)
    for name in cfg.attackers:
        attacker_class(name)  # unknown names fail before any training
    classes = sorted(set(y_train.tolist()) | set(y_test.tolist()))
    acc: dict[str, float] = {}
    conf: dict[str, np.ndarray] = {}
    correct: dict[str, int] = {}
    extra: dict[str, dict[str, int]] = {}
    constant = _all_identical(X_train)  # every training image identical (e.g. blackout)
    for name in cfg.attackers:
        built = get_attacker(name, cfg)
        held = uses_gallery(name)
        if held:
            model = built.fit(X_train, y_train, gallery=gallery)
        elif pretrained and name in pretrained and _reusable(built, pretrained[name]):
            model = pretrained[name]
        elif constant:
            model = _MajorityClass().fit(X_train, y_train)  # all any classifier can learn from one input
        else:
            model = built.fit(X_train, y_train)
        pred = np.asarray(model.predict(X_test, public=gallery.public_test if gallery else None) if held
                          else model.predict(X_test))
        hits = pred == y_test
        correct[name] = int(hits.sum())
        acc[name] = float(hits.mean())
        conf[name] = confusion_matrix(y_test, pred, labels=classes)
        for other, (Xo, yo) in ({} if held else also or {}).items():
            extra.setdefault(other, {})[name] = int((np.asarray(model.predict(Xo)) == np.asarray(yo)).sum())
    return AttackResult(label=label, accuracy=acc, chance=majority_rate(y_test), classes=classes,
                        confusion=conf, correct=correct, n_test=int(len(y_test)), also=extra)
