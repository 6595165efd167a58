"""Image classifiers used across deid: attackers, utility judges, identity critics.

:class:`SmallCNN` is a compact conv net for 32–128 px faces; :class:`CNNClassifier` trains it
in batches on the chosen device (CUDA when present) with a seed, early stopping on a held-out
slice of the training data, and returns features for linkage.
"""

from __future__ import annotations

import copy
from dataclasses import dataclass, field

import numpy as np
import torch
from torch import nn

from deid.device import resolve_device

__all__ = ["SmallCNN", "CNNClassifier", "seed_everything", "epochs_for"]


def seed_everything(seed: int) -> torch.Generator:
    torch.manual_seed(seed)
    np.random.seed(seed % (2**32))
    g = torch.Generator()
    g.manual_seed(seed)
    return g


def epochs_for(epochs: int, n: int, batch_size: int, min_steps: int = 0) -> int:
    """``epochs``, raised so that training takes at least ``min_steps`` optimiser steps on ``n`` rows.

    Epochs count passes over the data; what a network needs is updates. On a small set (JAFFE's
    ~140 training images are 3–5 batches) a fixed epoch budget leaves it untrained.
    """
    per_epoch = max(1, -(-int(n) // max(1, int(batch_size))))
    return max(int(epochs), -(-int(min_steps) // per_epoch))


class SmallCNN(nn.Module):
    """Three conv blocks → global pooling → ``feature_dim`` features → logits.

    Input ``(B, C, H, W)``; ``features(x)`` is ``(B, feature_dim)``; ``forward(x)`` logits ``(B, K)``.
    """

    def __init__(self, in_channels: int, n_classes: int, width: int = 32, feature_dim: int = 128):
        super().__init__()
        w = width

        def block(i, o):
            return nn.Sequential(nn.Conv2d(i, o, 3, padding=1), nn.BatchNorm2d(o), nn.ReLU(inplace=True),
                                 nn.Conv2d(o, o, 3, padding=1), nn.BatchNorm2d(o), nn.ReLU(inplace=True),
                                 nn.MaxPool2d(2))

        self.body = nn.Sequential(block(in_channels, w), block(w, 2 * w), block(2 * w, 4 * w))
        self.pool = nn.AdaptiveAvgPool2d(2)
        self.embed = nn.Sequential(nn.Flatten(), nn.Linear(4 * w * 4, feature_dim), nn.ReLU(inplace=True))
        self.head = nn.Sequential(nn.Dropout(0.2), nn.Linear(feature_dim, n_classes))

    def features(self, x: torch.Tensor) -> torch.Tensor:
        return self.embed(self.pool(self.body(x)))

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return self.head(self.features(x))


@dataclass
class CNNClassifier:
    """Train :class:`SmallCNN` on ``(N, C, H, W)`` float images with string or int labels.

    ``X`` may be an array or a :class:`~deid.pixels.Pixels` view: each batch is read when it is used.
    """

    epochs: int = 15
    batch_size: int = 64
    lr: float = 2e-3
    width: int = 32
    weight_decay: float = 1e-4
    augment: bool = True
    shift: int = 2  # augmentation: random shift of up to this many pixels (one per batch)
    flip: bool = False  # augmentation: mirror each image left-right with probability 1/2
    early_stopping: int = 4
    holdout: float = 0.1
    min_steps: int = 0  # at least this many optimiser steps (epochs raised on small sets)
    random_state: int = 0
    device: str = "auto"
    history_: list[dict] = field(default_factory=list, init=False, repr=False)

    def fit(self, X: np.ndarray, y) -> "CNNClassifier":
        y = np.asarray(y)
        self.classes_, yi = np.unique(y, return_inverse=True)
        if len(self.classes_) < 2:
            raise ValueError(f"a classifier needs at least two classes, got {list(self.classes_)}")
        dev = resolve_device(self.device)
        g = seed_everything(self.random_state)
        rng = np.random.default_rng(self.random_state)
        n = len(X)
        idx = rng.permutation(n)
        n_hold = int(round(n * self.holdout)) if self.early_stopping and n >= 50 else 0
        hold, train = idx[:n_hold], idx[n_hold:]
        self.model_ = SmallCNN(X.shape[1], len(self.classes_), self.width).to(dev)
        epochs = epochs_for(self.epochs, len(train), self.batch_size, self.min_steps)
        opt = torch.optim.AdamW(self.model_.parameters(), lr=self.lr, weight_decay=self.weight_decay)
        sched = torch.optim.lr_scheduler.OneCycleLR(opt, max_lr=self.lr, total_steps=epochs * max(1, -(-len(train) // self.batch_size)))
        yt = torch.from_numpy(yi.astype(np.int64))
        loss_fn = nn.CrossEntropyLoss()
        best, best_state, bad = -1.0, None, 0
        self.history_ = []
        for epoch in range(epochs):
            self.model_.train()
            perm = torch.from_numpy(train[torch.randperm(len(train), generator=g).numpy()])
            total = 0.0
            for s in range(0, len(perm), self.batch_size):
                b = perm[s : s + self.batch_size]
                if len(b) < 2:
                    continue
                xb = _rows(X, b.numpy()).to(dev, non_blocking=True)
                if self.augment:
                    xb = _augment(xb, g, self.shift, self.flip)
                opt.zero_grad(set_to_none=True)
                with torch.autocast(dev.type, enabled=dev.type == "cuda"):
                    loss = loss_fn(self.model_(xb), yt[b].to(dev))
                loss.backward()
                opt.step()
                sched.step()
                total += float(loss.detach()) * len(b)
            rec = {"epoch": epoch, "loss": total / max(1, len(train))}
            if n_hold:
                acc = float((self._predict_index(X[hold]) == yi[hold]).mean())
                rec["holdout_accuracy"] = acc
                if acc > best + 1e-9:
                    best, best_state, bad = acc, copy.deepcopy(self.model_.state_dict()), 0
                else:
                    bad += 1
            self.history_.append(rec)
            if n_hold and bad >= self.early_stopping and epoch + 1 >= epochs // 2:
                break  # patience runs out only after the warm-up half of the one-cycle schedule
        if best_state is not None:
            self.model_.load_state_dict(best_state)
        self.model_.eval()
        return self

    @torch.no_grad()
    def _logits(self, X: np.ndarray) -> np.ndarray:
        dev = next(self.model_.parameters()).device
        self.model_.eval()
        out = []
        for s in range(0, len(X), 512):
            xb = torch.from_numpy(np.ascontiguousarray(X[s : s + 512], dtype=np.float32)).to(dev)
            out.append(self.model_(xb).float().cpu().numpy())
        return np.concatenate(out)

    def _predict_index(self, X: np.ndarray) -> np.ndarray:
        was = self.model_.training
        r = self._logits(X).argmax(1)
        self.model_.train(was)
        return r

    def predict(self, X: np.ndarray) -> np.ndarray:
        return self.classes_[self._logits(X).argmax(1)]

    def score(self, X: np.ndarray, y) -> float:
        return float((self.predict(X) == np.asarray(y)).mean())

    @torch.no_grad()
    def features(self, X: np.ndarray) -> np.ndarray:
        """Penultimate-layer features ``(N, feature_dim)`` (for linkage)."""
        dev = next(self.model_.parameters()).device
        self.model_.eval()
        out = []
        for s in range(0, len(X), 512):
            xb = torch.from_numpy(np.ascontiguousarray(X[s : s + 512], dtype=np.float32)).to(dev)
            out.append(self.model_.features(xb).float().cpu().numpy())
        return np.concatenate(out)


def _rows(X, index: np.ndarray) -> torch.Tensor:
    """Rows ``index`` of ``X`` (an array or a :class:`~deid.pixels.Pixels` view read from disk) as a tensor."""
    return torch.from_numpy(np.ascontiguousarray(X[index], dtype=np.float32))


def _augment(x: torch.Tensor, g: torch.Generator, shift: int = 2, flip: bool = False) -> torch.Tensor:
    """Random shifts (±``shift`` px), brightness jitter and, with ``flip``, each image mirrored
    left-right with probability 1/2; keeps shape ``(B, C, H, W)``."""
    b = x.shape[0]
    dx, dy = (int(v) for v in torch.randint(-shift, shift + 1, (2,), generator=g))
    x = torch.roll(x, shifts=(dy, dx), dims=(2, 3))
    gain = 1.0 + 0.1 * (torch.rand(b, 1, 1, 1, generator=g) - 0.5).to(x.device)
    x = (x * gain).clamp(0, 1)
    if flip:
        mirror = (torch.rand(b, generator=g) < 0.5).to(x.device).view(b, 1, 1, 1)
        x = torch.where(mirror, x.flip(3), x)
    return x
