"""Networks of the proxy-mixture generator: a nuisance encoder, a conditional decoder, a code adversary.

``NuisanceEncoder``: image ``(B, C, S, S)`` → a Gaussian code ``(μ, log σ²)`` of ``(B, Z)`` — what the
image holds besides identity and the utility label (pose, lighting, scale), kept small by a KL term
and cleaned of identity by :class:`CodeAdversary`.

``MixtureDecoder``: ``(z (B, Z), identity code (B, D), label one-hot (B, E))`` → image ``(B, C, S, S)``,
then (``warp``) an in-plane similarity warp and an illumination plane, both decided by ``z`` alone.
The identity code is a row of a learned table while training and a random convex mixture of rows
when de-identifying.

``CodeAdversary``: ``z`` → identity logits; the encoder is trained to leave it at the uniform
distribution (Feutry et al.'s adversarial MI term, applied to the code rather than the image).
"""

from __future__ import annotations

import math

import torch
import torch.nn.functional as F
from torch import nn

from deid.errors import ConfigError

__all__ = ["NuisanceEncoder", "MixtureDecoder", "CodeAdversary"]


def _levels(image_size: int) -> int:
    s = int(image_size)
    if s < 8 or s & (s - 1):
        raise ConfigError(f"proxy-mix: image_size must be a power of two >= 8, got {image_size}")
    return int(math.log2(s // 4))


class NuisanceEncoder(nn.Module):
    """``forward(x (B, C, S, S)) -> (mu (B, Z), logvar (B, Z))``."""

    def __init__(self, channels: int, image_size: int, width: int, code_dim: int):
        super().__init__()
        n = _levels(image_size)
        layers: list[nn.Module] = []
        c = channels
        for i in range(n):
            o = width * 2 ** min(i, 3)
            layers += [nn.Conv2d(c, o, 4, stride=2, padding=1), nn.BatchNorm2d(o), nn.LeakyReLU(0.2, inplace=True)]
            c = o
        self.conv = nn.Sequential(*layers)
        self.head = nn.Linear(c * 16, 2 * code_dim)
        self.code_dim = int(code_dim)

    def forward(self, x: torch.Tensor) -> tuple[torch.Tensor, torch.Tensor]:
        h = self.head(self.conv(x).flatten(1))
        mu, logvar = h.split(self.code_dim, dim=1)
        return mu, logvar.clamp(-8.0, 4.0)


class MixtureDecoder(nn.Module):
    """``forward(z (B, Z), ident (B, D), label (B, E)) -> (B, C, S, S)``; clipped to [0, 1] in eval mode."""

    def __init__(self, channels: int, image_size: int, width: int, code_dim: int, id_dim: int, n_labels: int,
                 hidden: int = 256, warp: bool = True):
        super().__init__()
        n = _levels(image_size)
        self.base = width * 2 ** min(n - 1, 3)
        self.fc = nn.Sequential(nn.Linear(code_dim + id_dim + n_labels, hidden), nn.LeakyReLU(0.2, inplace=True),
                                nn.Linear(hidden, self.base * 16), nn.LeakyReLU(0.2, inplace=True))
        blocks: list[nn.Module] = []
        c = self.base
        for i in range(n):
            o = width * 2 ** min(n - 2 - i, 3) if i < n - 1 else width
            blocks += [nn.Upsample(scale_factor=2, mode="nearest"), nn.Conv2d(c, o, 3, padding=1),
                       nn.BatchNorm2d(o), nn.LeakyReLU(0.2, inplace=True)]
            c = o
        blocks += [nn.Conv2d(c, channels, 3, padding=1), nn.Sigmoid()]
        self.deconv = nn.Sequential(*blocks)
        # what the nuisance code alone decides: an in-plane similarity warp (rotation, scale, shift) and a
        # first-order illumination plane per channel; both start at "no change"
        self.pose = nn.Linear(code_dim, 4)
        self.light = nn.Linear(code_dim, 3 * channels)
        for head in (self.pose, self.light):
            nn.init.zeros_(head.weight)
            nn.init.zeros_(head.bias)
        self.channels = int(channels)
        self.warp = bool(warp)

    def forward(self, z: torch.Tensor, ident: torch.Tensor, label: torch.Tensor) -> torch.Tensor:
        h = self.fc(torch.cat([z, ident, label], dim=1))
        face = self.deconv(h.view(-1, self.base, 4, 4))
        if not self.warp:
            return face if self.training else face.clamp(0.0, 1.0)
        b, c, s, _ = face.shape
        angle, log_scale, tx, ty = (0.5 * torch.tanh(self.pose(z))).unbind(1)
        scale = log_scale.exp()
        cos, sin = torch.cos(angle) * scale, torch.sin(angle) * scale
        theta = torch.stack([torch.stack([cos, -sin, tx], 1), torch.stack([sin, cos, ty], 1)], 1)
        grid = F.affine_grid(theta, (b, c, s, s), align_corners=False)
        face = F.grid_sample(face, grid, mode="bilinear", padding_mode="border", align_corners=False)
        ramp = torch.linspace(-1.0, 1.0, s, device=z.device, dtype=face.dtype)
        a, bb, off = self.light(z).view(b, 3, c, 1, 1).unbind(1)
        out = face + a * ramp.view(1, 1, 1, s) + bb * ramp.view(1, 1, s, 1) + off
        return out if self.training else out.clamp(0.0, 1.0)


class CodeAdversary(nn.Module):
    """``forward(z (B, Z)) -> identity logits (B, Q)``."""

    def __init__(self, code_dim: int, n_identities: int, hidden: int = 128):
        super().__init__()
        self.net = nn.Sequential(nn.Linear(code_dim, hidden), nn.LeakyReLU(0.2, inplace=True),
                                 nn.Linear(hidden, hidden), nn.LeakyReLU(0.2, inplace=True),
                                 nn.Linear(hidden, n_identities))

    def forward(self, z: torch.Tensor) -> torch.Tensor:
        return self.net(z)
