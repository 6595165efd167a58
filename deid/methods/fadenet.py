"""FaDeNet — Meden, Peer, Štruc: "Selective Face Deidentification with End-to-End Perceptual Loss Learning" (IWOBI 2018).

A U-Net transformer ``f`` is trained against a frozen identity critic ``c`` (an identity
classifier trained first on the same training split) with

    L = ‖x̃ − f(x̃)‖² − λ · CE(c(f(x)), identity)

where ``x̃`` is the image normalised to unit Euclidean norm (the paper's "unit circle"), so the
pixel term is scale free. The paper uses λ = 0.001 with a critic trained on another dataset
(XM2VTS → RaFD); here the critic is trained on the same split and is saturated on it
(cross-entropy ≈ 0.003), so its gradient is tiny and λ = 0.001 leaves the images unchanged.
The default λ = 0.1 is where the critic's accuracy first breaks on the built-in set (0.03:
no effect; 0.3: half the image energy changed); see docs/adversarial-methods.md. The output stays close to the input for a person but scrambles the critic's
identity evidence. Training uses the paper's augmentation (flips, crop/pad −5 %..10 %, scale
80–120 %, rotation ±5°), fixed seeds, gradient clipping, per-step losses in ``history_`` and
early stopping on a validation slice of the training images.
"""

from __future__ import annotations

from typing import TYPE_CHECKING

import numpy as np

from deid.errors import MethodError
from deid.lazy_torch import no_grad
from deid.methods.base import (DeidMethod, Device, Fraction, NonNegativeFloat, NonNegativeInt, PositiveFloat,
                               PositiveInt, Seed)
from deid.methods.registry import register_method

if TYPE_CHECKING:
    import torch

__all__ = ["FaDeNet"]


@register_method("fadenet")
class FaDeNet(DeidMethod):
    """Identity-critic transformer.

    Parameters: ``lam`` the weight λ of the critic term; ``epochs``/``batch_size``/``lr`` for the
    transformer (Adam); ``width``/``depth`` of the U-Net; ``critic_epochs``/``critic_width`` for
    the identity critic (:class:`~deid.models.classifier.SmallCNN`); ``augment`` the paper's
    augmentation; ``val_fraction`` and ``patience`` for early stopping on the validation loss;
    ``clip`` the gradient-norm bound; ``min_steps`` the fewest optimiser steps of the critic and of
    the transformer (epochs are raised on small sets: JAFFE's training split is 5 batches, and 6
    epochs of it leave the critic at chance). Needs identity labels at fit only.

    Learned state: ``transformer_`` (UNet), ``critic_`` (SmallCNN, frozen), ``critic_classes_``,
    ``history_`` (one dict per step and per validation pass), ``critic_check_`` (the critic's
    accuracy on the validation slice before and after the transform).
    """

    needs_identity = False  # identities are needed to fit (checked in _fit), not to transform
    #: settings for a bigger run on a GPU (224 px colour faces, the paper's schedule)
    gpu_params = {"epochs": 40, "lr": 1e-5, "width": 64, "depth": 4, "critic_epochs": 40, "critic_width": 64,
                  "batch_size": 32, "device": "cuda"}
    test_params = {"epochs": 2, "critic_epochs": 2, "width": 4, "depth": 2, "critic_width": 8, "batch_size": 12,
                   "min_steps": 0}

    param_docs = {"lam": "weight λ of the identity critic's cross-entropy against the pixel term",
                  "depth": "down-sampling levels of the U-Net",
                  "critic_epochs": "epochs of the identity critic, trained first on the training split",
                  "critic_width": "width of the identity critic",
                  "augment": "the paper's augmentation: flips, crops, scale and small rotations"}

    def __init__(self, lam: NonNegativeFloat = 0.1, epochs: PositiveInt = 6, batch_size: PositiveInt = 32,
                 lr: PositiveFloat = 1e-3, width: PositiveInt = 8, depth: PositiveInt = 2,
                 critic_epochs: PositiveInt = 6, critic_width: PositiveInt = 16, augment: bool = True,
                 val_fraction: Fraction = 0.1, patience: NonNegativeInt = 4, clip: NonNegativeFloat = 1.0,
                 min_steps: NonNegativeInt = 200, random_state: Seed = 0, device: Device = "auto") -> None:
        self.lam = lam
        self.min_steps = min_steps
        self.epochs = epochs
        self.batch_size = batch_size
        self.lr = lr
        self.width = width
        self.depth = depth
        self.critic_epochs = critic_epochs
        self.critic_width = critic_width
        self.augment = augment
        self.val_fraction = val_fraction
        self.patience = patience
        self.clip = clip
        self.random_state = random_state
        self.device = device

    # -- modules -------------------------------------------------------------------------
    def _init_modules(self) -> None:
        from deid.models.classifier import SmallCNN
        from deid.models.unet import UNet

        c = int(self.input_shape_[0])
        self.transformer_ = UNet(c, c, width=int(self.width), depth=int(self.depth), residual=True)
        self.critic_ = SmallCNN(c, len(self.critic_classes_), width=int(self.critic_width))
        self.critic_.eval()

    def _apply(self, x: torch.Tensor, raw: bool = False):
        """``(B, C, H, W)`` in [0, 1] → de-identified ``(B, C, H, W)`` in [0, 1] (differentiable).

        ``raw=True`` also returns the unclipped normalised output and the input's normalised
        form and norms, for the pixel loss (which must see values the clip would flatten).
        """
        from deid.models.adversarial import unit_normalise

        xn, norm = unit_normalise(x)
        yn = self.transformer_(xn)
        y = (yn * norm).clamp(0.0, 1.0)
        return (y, yn, xn) if raw else y

    # -- fit -----------------------------------------------------------------------------
    def _fit(self, X, identity, utility):
        """Train the identity critic, freeze it, then train the transformer against it (early-stopped)."""
        import torch

        from deid.device import resolve_device
        from deid.models.classifier import seed_everything

        if identity is None:
            raise MethodError("method 'fadenet' needs identity labels to fit (they train its identity critic)")
        if len(np.unique(identity)) < 2:
            raise MethodError("method 'fadenet' needs at least two identities to train its critic")
        if self.lam < 0:
            raise MethodError(f"fadenet: lam must be >= 0, got {self.lam}")
        dev = resolve_device(self.device)
        g = seed_everything(int(self.random_state))
        rng = np.random.default_rng(int(self.random_state))
        n = len(X)
        n_val = int(round(n * self.val_fraction)) if self.val_fraction and n >= 20 else 0
        order = rng.permutation(n)
        val, train = order[:n_val], order[n_val:]
        self._train_critic(X[train], identity[train], dev)
        Xt, z_all = self._train_transformer(X, identity, train, val, g, dev)
        self.transformer_.cpu().eval()
        self.critic_.cpu().eval()
        check = self._evaluate(Xt[val] if n_val else Xt, z_all[val] if n_val else z_all, torch.device("cpu"))
        self.critic_check_ = {"on": "validation" if n_val else "train", **check}

    def _train_critic(self, X, identity, dev) -> None:
        """Phase 1: the identity critic, trained on the training rows then frozen on ``dev``; starts the history."""
        from deid.models.classifier import CNNClassifier

        critic = CNNClassifier(epochs=int(self.critic_epochs), width=int(self.critic_width), batch_size=int(self.batch_size),
                               min_steps=int(self.min_steps), random_state=int(self.random_state),
                               device=self.device).fit(X, identity)
        self.critic_classes_ = np.asarray(critic.classes_).astype(str)
        self.history_ = [{"phase": "critic", **h} for h in critic.history_]
        self._init_modules()
        self.critic_.load_state_dict(critic.model_.state_dict())
        self.critic_.to(dev).eval()
        for p in self.critic_.parameters():
            p.requires_grad_(False)

    def _train_transformer(self, X, identity, train, val, g, dev) -> "tuple[torch.Tensor, torch.Tensor]":
        """Phase 2: the transformer against the frozen critic, early-stopped on the validation rows (if any),
        its best epoch kept; returns the images and their critic classes as tensors."""
        import torch

        from deid.models.adversarial import BestState, batches, clip_, random_affine
        from deid.models.classifier import epochs_for, seed_everything

        seed_everything(int(self.random_state) + 1)
        self.transformer_.to(dev)
        opt = torch.optim.Adam(self.transformer_.parameters(), lr=float(self.lr))
        lookup = {k: i for i, k in enumerate(self.critic_classes_)}
        z_all = torch.tensor([lookup[str(v)] for v in identity], dtype=torch.long)
        Xt = torch.from_numpy(np.ascontiguousarray(X, dtype=np.float32))
        best = BestState(int(self.patience))
        step = 0
        for epoch in range(epochs_for(int(self.epochs), len(train), int(self.batch_size), int(self.min_steps))):
            self.transformer_.train()
            for b in batches(len(train), int(self.batch_size), g):
                idx = torch.from_numpy(train)[b]
                xb, zb = Xt[idx], z_all[idx]
                if self.augment:
                    xb = random_affine(xb, g)
                loss, pix, ce = self._loss(xb.to(dev), zb.to(dev))
                opt.zero_grad(set_to_none=True)
                loss.backward()
                gnorm = clip_(self.transformer_, float(self.clip))
                opt.step()
                self.history_.append({"phase": "transformer", "epoch": epoch, "step": step, "loss": float(loss.detach()),
                                      "pixel": float(pix.detach()), "ce": float(ce.detach()), "grad_norm": gnorm})
                step += 1
            if len(val):
                rec = self._evaluate(Xt[val], z_all[val], dev)
                self.history_.append({"phase": "val", "epoch": epoch, **rec})
                if best.update(rec["loss"], epoch, transformer=self.transformer_):
                    break
        best.restore(transformer=self.transformer_)
        self.best_epoch_ = int(best.epoch)
        return Xt, z_all

    def _loss(self, x: torch.Tensor, z: torch.Tensor):
        from torch.nn import functional as F

        y, yn, xn = self._apply(x, raw=True)
        pix = ((xn - yn) ** 2).flatten(1).sum(1).mean()
        ce = F.cross_entropy(self.critic_(y), z)
        return pix - float(self.lam) * ce, pix, ce

    @no_grad
    def _evaluate(self, X: torch.Tensor, z: torch.Tensor, dev: torch.device) -> dict:
        self.transformer_.eval()
        tot = {"loss": 0.0, "pixel": 0.0, "ce": 0.0, "critic_acc_original": 0.0, "critic_acc_deid": 0.0}
        for s in range(0, len(X), 256):
            xb, zb = X[s : s + 256].to(dev), z[s : s + 256].to(dev)
            loss, pix, ce = self._loss(xb, zb)
            k = len(xb)
            tot["loss"] += float(loss) * k
            tot["pixel"] += float(pix) * k
            tot["ce"] += float(ce) * k
            tot["critic_acc_original"] += float((self.critic_(xb).argmax(1) == zb).sum())
            tot["critic_acc_deid"] += float((self.critic_(self._apply(xb)).argmax(1) == zb).sum())
        return {k: v / max(1, len(X)) for k, v in tot.items()}

    # -- transform -----------------------------------------------------------------------
    @no_grad
    def _transform(self, X, identity, utility):
        import torch

        from deid.device import resolve_device

        dev = resolve_device(self.device)
        self.transformer_.to(dev).eval()
        out = []
        for s in range(0, len(X), 256):
            xb = torch.from_numpy(np.ascontiguousarray(X[s : s + 256])).to(dev)
            out.append(self._apply(xb).cpu().numpy())
        self.transformer_.cpu()
        return np.concatenate(out).astype(np.float32)

    @no_grad
    def critic_features(self, X: np.ndarray) -> np.ndarray:
        """The frozen critic's penultimate features ``(N, D)`` for ``X`` ``(N, C, H, W)`` (linkage)."""
        import torch

        self._check_fitted()
        self.critic_.eval()
        return np.concatenate([self.critic_.features(torch.from_numpy(np.ascontiguousarray(X[s : s + 256], np.float32))).numpy()
                               for s in range(0, len(X), 256)])

    def critic_predict(self, X: np.ndarray) -> np.ndarray:
        """The critic's identity predictions (labels as strings) for ``X`` ``(N, C, H, W)``."""
        import torch

        self._check_fitted()
        with torch.no_grad():
            z = np.concatenate([self.critic_(torch.from_numpy(np.ascontiguousarray(X[s : s + 256], np.float32))).numpy()
                                for s in range(0, len(X), 256)])
        return self.critic_classes_[z.argmax(1)]
