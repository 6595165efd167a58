"""A U-Net image-to-image transformer (Ronneberger, Fischer, Brox 2015) sized for small faces.

Used by FaDeNet as its transformer network. The contracting path repeats two 3×3 convolutions
with ReLU and a 2×2 max pooling that doubles the channels; the expanding path up-samples with a
2×2 transposed convolution that halves them, concatenates the skip features and applies two
3×3 convolutions; a final 1×1 convolution maps to ``out_channels``. Inputs of any size work:
they are padded (reflect) to a multiple of ``2**depth`` and the output is cropped back.
"""

from __future__ import annotations

import torch
from torch import nn
from torch.nn import functional as F

__all__ = ["UNet", "ConvAutoencoder"]


def _double_conv(i: int, o: int) -> nn.Sequential:
    return nn.Sequential(nn.Conv2d(i, o, 3, padding=1), nn.ReLU(inplace=True),
                         nn.Conv2d(o, o, 3, padding=1), nn.ReLU(inplace=True))


def _pad_to(x: torch.Tensor, multiple: int) -> tuple[torch.Tensor, int, int]:
    h, w = x.shape[-2:]
    ph, pw = (-h) % multiple, (-w) % multiple
    if ph or pw:
        mode = "reflect" if min(h, w) > max(ph, pw) else "replicate"
        x = F.pad(x, (0, pw, 0, ph), mode=mode)
    return x, h, w


class UNet(nn.Module):
    """``(B, C_in, H, W)`` → ``(B, C_out, H, W)``; ``depth`` poolings, ``width`` channels at the top.

    ``residual=True`` adds the output to the input (the net learns a perturbation), which starts
    training at the identity map; the output is not squashed (callers clip or normalise).
    """

    def __init__(self, in_channels: int = 1, out_channels: int | None = None, width: int = 16,
                 depth: int = 3, residual: bool = True):
        super().__init__()
        out_channels = in_channels if out_channels is None else out_channels
        if residual and out_channels != in_channels:
            raise ValueError("a residual U-Net needs out_channels == in_channels")
        self.depth, self.residual = depth, residual
        chans = [width * 2**i for i in range(depth + 1)]
        self.down = nn.ModuleList([_double_conv(in_channels, chans[0])] +
                                  [_double_conv(chans[i], chans[i + 1]) for i in range(depth)])
        self.up = nn.ModuleList([nn.ConvTranspose2d(chans[i + 1], chans[i], 2, stride=2) for i in reversed(range(depth))])
        self.up_conv = nn.ModuleList([_double_conv(2 * chans[i], chans[i]) for i in reversed(range(depth))])
        self.out = nn.Conv2d(chans[0], out_channels, 1)
        if residual:  # start at the identity map: the perturbation is learned from zero
            nn.init.zeros_(self.out.weight)
            nn.init.zeros_(self.out.bias)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        xp, h, w = _pad_to(x, 2**self.depth)
        skips, y = [], xp
        for i, block in enumerate(self.down):
            y = block(y if i == 0 else F.max_pool2d(y, 2))
            skips.append(y)
        skips.pop()
        for up, conv in zip(self.up, self.up_conv):
            y = conv(torch.cat([skips.pop(), up(y)], dim=1))
        y = self.out(y)[..., :h, :w]
        return x + y if self.residual else y


class ConvAutoencoder(nn.Module):
    """Encoder–decoder without skips: ``(B, C, H, W)`` → code ``(B, latent, H/2^d, W/2^d)`` → ``(B, C, H, W)``.

    Strided 4×4 convolutions down, transposed ones up, sigmoid output in ``[0, 1]``. Without
    skip connections every output pixel passes through the code, so the decoder can change
    identity traits rather than copy them through.
    """

    def __init__(self, in_channels: int = 1, width: int = 32, depth: int = 3, latent: int = 32):
        super().__init__()
        self.depth = depth
        enc, c = [], in_channels
        for i in range(depth):
            o = width * 2**i
            enc += [nn.Conv2d(c, o, 4, stride=2, padding=1), nn.BatchNorm2d(o), nn.LeakyReLU(0.2, inplace=True)]
            c = o
        enc += [nn.Conv2d(c, latent, 3, padding=1)]
        dec = [nn.Conv2d(latent, c, 3, padding=1), nn.BatchNorm2d(c), nn.ReLU(inplace=True)]
        for i in reversed(range(depth)):
            o = width * 2 ** max(i - 1, 0)
            dec += [nn.ConvTranspose2d(c, o, 4, stride=2, padding=1), nn.BatchNorm2d(o), nn.ReLU(inplace=True)]
            c = o
        dec += [nn.Conv2d(c, in_channels, 3, padding=1)]
        self.encoder, self.decoder = nn.Sequential(*enc), nn.Sequential(*dec)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        xp, h, w = _pad_to(x, 2**self.depth)
        return torch.sigmoid(self.decoder(self.encoder(xp))[..., :h, :w])
