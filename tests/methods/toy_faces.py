"""Toy face sets for method tests: data with a known answer, made on the fly."""

from __future__ import annotations

import numpy as np
import torch

__all__ = ["templates"]


def templates(n_per: int, seed: int):
    """6 identities, each a smooth random 32×32 template, images = template + noise: easy to recognise.

    Returns ``X`` ``(6·n_per, 1, 32, 32)`` float32 in [0, 1] and the identity labels ``p0``..``p5``.
    """
    rng = np.random.default_rng(0)
    base = rng.random((6, 1, 8, 8)).astype(np.float32)
    base = torch.nn.functional.interpolate(torch.from_numpy(base), size=32, mode="bilinear").numpy()
    r = np.random.default_rng(seed)
    ident = np.repeat(np.arange(6), n_per)
    X = np.clip(0.2 + 0.6 * base[ident] + 0.08 * r.standard_normal((len(ident), 1, 32, 32)), 0, 1).astype(np.float32)
    return X, np.array([f"p{i}" for i in ident], dtype=object)
