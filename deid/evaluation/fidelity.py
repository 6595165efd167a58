"""Fidelity to the original: SSIM and PSNR (scikit-image)."""

from __future__ import annotations

import numpy as np
from skimage.metrics import peak_signal_noise_ratio, structural_similarity

from deid.pixels import chunks

__all__ = ["fidelity", "ssim_psnr"]


def fidelity(original: np.ndarray, anonymized: np.ndarray) -> dict[str, float]:
    """Mean SSIM and PSNR (dB, capped at 100 for identical images) over ``(N, C, H, W)`` pairs."""
    if original.shape != anonymized.shape:
        raise ValueError(f"fidelity: shapes differ {original.shape} vs {anonymized.shape}")
    ssim, psnr = [], []
    for (s, ca), (_, cb) in zip(chunks(original), chunks(anonymized)):  # arrays or images on disk, a chunk at a time
        ssim_psnr(ca, cb, ssim, psnr)
    return {"ssim": float(np.mean(ssim)), "psnr": float(np.mean(psnr))}


def ssim_psnr(original: np.ndarray, anonymized: np.ndarray, ssim: list, psnr: list) -> None:
    """SSIM and PSNR of each pair, appended to ``ssim`` and ``psnr``."""
    for a, b in zip(original, anonymized):
        a2, b2 = a.transpose(1, 2, 0), b.transpose(1, 2, 0)
        win = min(7, a2.shape[0] - (1 - a2.shape[0] % 2), a2.shape[1] - (1 - a2.shape[1] % 2))
        ssim.append(structural_similarity(a2, b2, data_range=1.0, channel_axis=2, win_size=win))
        if np.array_equal(a2, b2):
            psnr.append(100.0)
        else:
            psnr.append(min(100.0, peak_signal_noise_ratio(a2, b2, data_range=1.0)))
