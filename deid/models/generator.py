"""Conditional face generator for k-Same-Net, shaped after Dosovitskiy et al.'s "upside-down" CNN.

``D = G(x, y)``: ``x`` ``(B, Q)`` a mixture over Q proxy identities (rows sum to 1; one-hot
while training), ``y`` ``(B, E)`` the appearance parameters (one-hot expression). Each input
goes through its own fully connected layer, the two are joined by two more fully connected
layers into a ``(width·2^(n-1), 4, 4)`` map, then ``n = log2(S/4)`` blocks of 4×4 stride-2
transposed convolution + 3×3 convolution bring it to ``(B, C, S, S)``.
"""

from __future__ import annotations

import math

import torch
from torch import nn

from deid.errors import ConfigError

__all__ = ["FaceGenerator"]


class FaceGenerator(nn.Module):
    """``forward(x (B, Q), y (B, E)) -> (B, C, S, S)``; clipped to ``[0, 1]`` in eval mode."""

    def __init__(self, n_identities: int, n_appearance: int, channels: int, image_size: int = 32,
                 width: int = 32, hidden: int = 512):
        super().__init__()
        s = int(image_size)
        if s < 8 or s & (s - 1):
            raise ConfigError(f"generator: image_size must be a power of two >= 8, got {image_size}")
        if n_identities < 1 or n_appearance < 1:
            raise ConfigError("generator: needs at least one identity and one appearance class")
        self.n_identities, self.n_appearance = int(n_identities), int(n_appearance)
        self.channels, self.image_size = int(channels), s
        n = int(math.log2(s // 4))
        base = int(width) * 2 ** (n - 1)
        self.base = base
        h = int(hidden)
        self.id_fc = nn.Sequential(nn.Linear(self.n_identities, h // 2), nn.LeakyReLU(0.2, inplace=True))
        self.app_fc = nn.Sequential(nn.Linear(self.n_appearance, h // 2), nn.LeakyReLU(0.2, inplace=True))
        self.joint = nn.Sequential(nn.Linear(h, h), nn.LeakyReLU(0.2, inplace=True),
                                   nn.Linear(h, base * 16), nn.LeakyReLU(0.2, inplace=True))
        blocks: list[nn.Module] = []
        c = base
        for i in range(n):
            o = max(int(width), c // 2) if i < n - 1 else int(width)
            blocks += [nn.ConvTranspose2d(c, o, 4, stride=2, padding=1), nn.LeakyReLU(0.2, inplace=True),
                       nn.Conv2d(o, o, 3, padding=1), nn.LeakyReLU(0.2, inplace=True)]
            c = o
        blocks.append(nn.Conv2d(c, self.channels, 3, padding=1))
        self.deconv = nn.Sequential(*blocks)

    def forward(self, x: torch.Tensor, y: torch.Tensor) -> torch.Tensor:
        """``x`` ``(B, Q)``, ``y`` ``(B, E)`` → images ``(B, C, S, S)``."""
        h = torch.cat([self.id_fc(x), self.app_fc(y)], dim=1)
        out = self.deconv(self.joint(h).view(-1, self.base, 4, 4))
        return out if self.training else out.clamp(0.0, 1.0)

    def packed(self, xy: torch.Tensor) -> torch.Tensor:
        """``forward`` on ``[x | y]`` packed as one ``(B, Q + E)`` tensor (for batch loaders)."""
        return self(xy[:, : self.n_identities], xy[:, self.n_identities :])
