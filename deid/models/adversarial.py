"""Adversarial training parts: discriminator, private branch, losses and loop helpers.

Shared by FaDeNet (identity critic) and the mutual-information adversarial autoencoder
(Feutry, Piantanida, Duhamel, ICASSP 2020). Images are ``(B, C, H, W)`` float tensors.
"""

from __future__ import annotations

import copy
import math

import numpy as np
import torch
from torch import nn
from torch.nn import functional as F

from deid.models.classifier import SmallCNN

__all__ = [
    "Discriminator",
    "PrivateBranch",
    "random_affine",
    "mi_surrogate",
    "batches",
    "BestState",
    "unit_normalise",
    "clip_",
]


class Discriminator(nn.Module):
    """``q(ŷ|v)``: one logit per image ``(B, C, H, W)`` → ``(B,)``, positive for "original".

    Strided convolutions with LeakyReLU and no batch norm (the selector mixes originals and
    reconstructions in one batch, but the autoencoder's update shows it reconstructions only).
    """

    def __init__(self, in_channels: int = 1, width: int = 32, depth: int = 3, dropout: float = 0.2):
        super().__init__()
        layers, c = [], in_channels
        for i in range(depth):
            o = width * 2**i
            layers += [nn.Conv2d(c, o, 4, stride=2, padding=1), nn.LeakyReLU(0.2, inplace=True)]
            c = o
        self.body = nn.Sequential(*layers, nn.AdaptiveAvgPool2d(2), nn.Flatten(), nn.Dropout(dropout))
        self.head = nn.Linear(4 * c, 1)

    def forward(self, v: torch.Tensor) -> torch.Tensor:
        return self.head(self.body(v)).squeeze(1)


class PrivateBranch(SmallCNN):
    """``q(ẑ|x̂)``: the private-label (identity) classifier, ``(B, C, H, W)`` → logits ``(B, K)``."""


def unit_normalise(x: torch.Tensor, eps: float = 1e-8) -> tuple[torch.Tensor, torch.Tensor]:
    """Each image of ``(B, C, H, W)`` divided by its Euclidean norm (FaDeNet's "unit circle").

    Returns the normalised batch and the norms ``(B, 1, 1, 1)`` to undo it.
    """
    norm = x.flatten(1).norm(dim=1).clamp_min(eps).view(-1, 1, 1, 1)
    return x / norm, norm


def random_affine(x: torch.Tensor, g: torch.Generator, *, flip: float = 0.5, crop_pad: tuple[float, float] = (-0.05, 0.10),
                  scale: tuple[float, float] = (0.8, 1.2), rotate: float = 5.0) -> torch.Tensor:
    """FaDeNet's augmentation on ``(B, C, H, W)``: horizontal flips (probability ``flip``),
    crop/pad of each side by a fraction in ``crop_pad`` (negative crops), scaling by a factor in
    ``scale`` per axis and rotation within ``±rotate`` degrees. Uncovered pixels are zero.
    """
    b = x.shape[0]

    def u(lo, hi, *shape):
        return lo + (hi - lo) * torch.rand(*shape, generator=g)

    sides = u(crop_pad[0], crop_pad[1], b, 4)  # left, right, top, bottom
    ext_x, ext_y = 1 + sides[:, 0] + sides[:, 1], 1 + sides[:, 2] + sides[:, 3]
    off_x, off_y = sides[:, 1] - sides[:, 0], sides[:, 3] - sides[:, 2]
    sx, sy = u(scale[0], scale[1], b), u(scale[0], scale[1], b)
    th = u(-rotate, rotate, b) * math.pi / 180
    fl = torch.where(torch.rand(b, generator=g) < flip, -1.0, 1.0)
    cos, sin = torch.cos(th), torch.sin(th)
    # input coords = CropPad( Rot( Scale^-1 ( Flip(u) ) ) )
    a11, a12 = cos * fl / sx, -sin / sy
    a21, a22 = sin * fl / sx, cos / sy
    theta = torch.stack([
        torch.stack([a11 * ext_x, a12 * ext_x, off_x], 1),
        torch.stack([a21 * ext_y, a22 * ext_y, off_y], 1),
    ], 1).to(x.device, x.dtype)
    grid = F.affine_grid(theta, list(x.shape), align_corners=False)
    return F.grid_sample(x, grid, mode="bilinear", padding_mode="zeros", align_corners=False)


def mi_surrogate(logits: torch.Tensor, z: torch.Tensor, p_hat: torch.Tensor) -> tuple[torch.Tensor, torch.Tensor, torch.Tensor]:
    """Feutry et al. eq. 11: ``|CE(p̂_Z, q(ẑ|x̂)) − CE(e(z), q(ẑ|x̂))|`` over a batch.

    ``logits`` ``(B, K)`` from the private branch on reconstructions, ``z`` ``(B,)`` label
    indices, ``p_hat`` ``(K,)`` the empirical label distribution (eq. 15). Returns
    ``(|difference|, objective CE (eq. 15), private CE (eq. 14))``.
    """
    logp = F.log_softmax(logits, dim=1)
    ce_obj = -(logp * p_hat.view(1, -1)).sum(1).mean()
    ce = F.nll_loss(logp, z)
    return (ce_obj - ce).abs(), ce_obj, ce


def batches(n: int, size: int, g: torch.Generator, *, shuffle: bool = True, min_size: int = 2):
    """Index tensors of consecutive (shuffled) mini-batches; a last batch under ``min_size`` is dropped."""
    order = torch.randperm(n, generator=g) if shuffle else torch.arange(n)
    for s in range(0, n, size):
        b = order[s : s + size]
        if len(b) >= min_size:
            yield b


def clip_(module: nn.Module, max_norm: float) -> float:
    """Clip the gradient norm of ``module``'s parameters in place; returns the norm before clipping."""
    if not max_norm:
        return float("nan")
    return float(nn.utils.clip_grad_norm_(module.parameters(), max_norm))


class BestState:
    """Early stopping on a validation figure (lower is better): keeps copies of the best weights."""

    def __init__(self, patience: int):
        self.patience, self.best, self.bad, self.state, self.epoch = patience, math.inf, 0, None, -1

    def update(self, value: float, epoch: int, **modules: nn.Module) -> bool:
        """Record ``value``; returns True when training should stop."""
        if not np.isfinite(value):
            self.bad += 1
        elif value < self.best - 1e-6:
            self.best, self.bad, self.epoch = value, 0, epoch
            self.state = {k: copy.deepcopy(m.state_dict()) for k, m in modules.items()}
        else:
            self.bad += 1
        return bool(self.patience) and self.bad >= self.patience

    def restore(self, **modules: nn.Module) -> None:
        if self.state is not None:
            for k, m in modules.items():
                m.load_state_dict(self.state[k])
