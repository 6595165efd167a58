"""The informed attacker (Feutry et al., ICASSP 2020): classifiers trained on de-identified
training images with their true labels and tested on de-identified test images.

Used for the private label (identity: lower is better) and the utility label (expression:
higher is better). Several attackers run and the worst case is reported, because a weak
attacker flatters privacy.
"""

from __future__ import annotations

from dataclasses import dataclass, field

import numpy as np
from sklearn.decomposition import PCA
from sklearn.linear_model import LogisticRegression
from sklearn.metrics import confusion_matrix
from sklearn.pipeline import make_pipeline
from sklearn.preprocessing import StandardScaler

from deid.errors import EvaluationError
from deid.models import CNNClassifier

__all__ = ["AttackerConfig", "AttackResult", "train_attackers", "LinearPixelClassifier", "check_split_labels"]


@dataclass(frozen=True)
class AttackerConfig:
    """Which attackers to train and how. ``cnn`` is a small CNN, ``linear`` PCA + logistic regression."""

    attackers: tuple[str, ...] = ("cnn", "linear")
    cnn_epochs: int = 15
    cnn_width: int = 32
    pca_components: int = 64
    random_state: int = 0
    device: str = "auto"


@dataclass
class AttackResult:
    label: str
    accuracy: dict[str, float]
    chance: float
    classes: list[str]
    confusion: dict[str, np.ndarray] = field(repr=False, default_factory=dict)

    @property
    def worst(self) -> float:
        """The strongest attacker's accuracy (the highest)."""
        return max(self.accuracy.values())


class LinearPixelClassifier:
    """Standardised pixels → PCA → multinomial logistic regression."""

    def __init__(self, n_components: int = 64, random_state: int = 0):
        self.n_components = n_components
        self.random_state = random_state

    def fit(self, X: np.ndarray, y) -> "LinearPixelClassifier":
        import warnings

        flat = X.reshape(len(X), -1)
        k = int(min(self.n_components, flat.shape[0] - 1, flat.shape[1]))
        self.model_ = make_pipeline(StandardScaler(), PCA(k, random_state=self.random_state),
                                    LogisticRegression(max_iter=2000, C=1.0))
        with warnings.catch_warnings():  # constant inputs (blackout) have no variance to explain
            warnings.simplefilter("ignore", RuntimeWarning)
            self.model_.fit(flat, np.asarray(y))
        return self

    def predict(self, X: np.ndarray) -> np.ndarray:
        return self.model_.predict(X.reshape(len(X), -1))


class _MajorityClass:
    """The most frequent training label, for training sets whose images are all identical."""

    def fit(self, X: np.ndarray, y) -> "_MajorityClass":
        values, counts = np.unique(np.asarray(y), return_counts=True)
        self.label_ = values[np.argmax(counts)]
        return self

    def predict(self, X: np.ndarray) -> np.ndarray:
        return np.full(len(X), self.label_, dtype=object)


def check_split_labels(y_train, y_test, label: str, where: str) -> None:
    classes = np.unique(y_train)
    if len(classes) < 2:
        raise EvaluationError(f"{where}: the training split has one {label} class ({list(classes)}); "
                              "an attacker cannot be trained; use more data or another split")
    unseen = sorted(set(np.unique(y_test)) - set(classes))
    if unseen:
        raise EvaluationError(f"{where}: {label} classes {unseen} occur in the test split but not in training")


def train_attackers(X_train: np.ndarray, y_train, X_test: np.ndarray, y_test, *, label: str,
                    cfg: AttackerConfig = AttackerConfig(), where: str = "audit",
                    pretrained: dict | None = None) -> AttackResult:
    """Train every configured attacker on (X_train, y_train); accuracy on (X_test, y_test).

    ``pretrained`` maps an attacker name to a model already trained on exactly (X_train, y_train)
    with this configuration (the audit's reference classifiers on the original data), which is
    then reused instead of trained twice.
    """
    y_train, y_test = np.asarray(y_train), np.asarray(y_test)
    check_split_labels(y_train, y_test, label, where)
    classes = sorted(set(y_train.tolist()) | set(y_test.tolist()))
    acc: dict[str, float] = {}
    conf: dict[str, np.ndarray] = {}
    constant = bool(np.all(X_train == X_train[:1]))  # every training image identical (e.g. blackout)
    for name in cfg.attackers:
        if pretrained and name in pretrained:
            model = pretrained[name]
        elif constant:
            model = _MajorityClass().fit(X_train, y_train)  # all any classifier can learn from one input
        elif name == "cnn":
            model = CNNClassifier(epochs=cfg.cnn_epochs, width=cfg.cnn_width, random_state=cfg.random_state,
                                  device=cfg.device).fit(X_train, y_train)
        elif name == "linear":
            model = LinearPixelClassifier(cfg.pca_components, cfg.random_state).fit(X_train, y_train)
        else:
            raise EvaluationError(f"unknown attacker '{name}'; known: cnn, linear")
        pred = model.predict(X_test)
        acc[name] = float((pred == y_test).mean())
        conf[name] = confusion_matrix(y_test, pred, labels=classes)
    chance = 1.0 / len(np.unique(y_train))
    return AttackResult(label=label, accuracy=acc, chance=chance, classes=classes, confusion=conf)
