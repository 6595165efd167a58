"""The naive baselines every audit reports next to a method: blur, pixelation, blackout.

Reference points from the de-identification literature (e.g. Newton, Sweeney, Malin 2005;
Gross et al. 2006); stateless, so ``fit`` only records the input shape. ``none`` returns its
input unchanged: the audit's reference for "nothing was done".
"""

from __future__ import annotations

import cv2
import numpy as np

from deid.methods.base import DeidMethod, PositiveFloat, PositiveInt, UnitInterval
from deid.methods.registry import register_method

__all__ = ["NoOp", "GaussianBlur", "Pixelate", "Blackout"]


@register_method("none")
class NoOp(DeidMethod):
    """Returns the input: the original data run through the same pipeline."""

    learns = False  # a fixed filter: fitted on one image, not the training split

    def __init__(self) -> None:
        pass

    def _transform(self, X, identity, utility):
        return X.copy()


@register_method("blur")
class GaussianBlur(DeidMethod):
    """Gaussian blur with standard deviation ``sigma`` pixels (kernel covers ±3σ)."""

    learns = False  # a fixed filter: fitted on one image, not the training split

    param_docs = {"sigma": "standard deviation of the Gaussian, in pixels"}

    def __init__(self, sigma: PositiveFloat = 3.0) -> None:
        self.sigma = sigma

    def _fit(self, X, identity, utility):
        if self.sigma <= 0:
            raise ValueError(f"blur: sigma must be positive, got {self.sigma}")

    def _transform(self, X, identity, utility):
        k = 2 * int(np.ceil(3 * self.sigma)) + 1
        out = np.empty_like(X)
        for i in range(X.shape[0]):
            for c in range(X.shape[1]):
                out[i, c] = cv2.GaussianBlur(X[i, c], (k, k), self.sigma, borderType=cv2.BORDER_REFLECT)
        return out


@register_method("pixelate")
class Pixelate(DeidMethod):
    """Average over ``block`` × ``block`` pixel cells (mosaic)."""

    learns = False  # a fixed filter: fitted on one image, not the training split

    param_docs = {"block": "side of each averaged cell, in pixels"}

    def __init__(self, block: PositiveInt = 8) -> None:
        self.block = block

    def _fit(self, X, identity, utility):
        if int(self.block) < 1:
            raise ValueError(f"pixelate: block must be at least 1, got {self.block}")

    def _transform(self, X, identity, utility):
        n, c, h, w = X.shape
        b = int(self.block)
        gh, gw = max(1, int(np.ceil(h / b))), max(1, int(np.ceil(w / b)))
        out = np.empty_like(X)
        for i in range(n):
            for ch in range(c):
                small = cv2.resize(X[i, ch], (gw, gh), interpolation=cv2.INTER_AREA)
                out[i, ch] = cv2.resize(small, (w, h), interpolation=cv2.INTER_NEAREST)
        return out


@register_method("blackout")
class Blackout(DeidMethod):
    """Replace every pixel with ``value``: nothing of the face survives (nor its expression)."""

    learns = False  # a fixed filter: fitted on one image, not the training split

    param_docs = {"value": "the grey level every pixel is set to (0 black, 1 white)"}

    def __init__(self, value: UnitInterval = 0.0) -> None:
        self.value = value

    def _fit(self, X, identity, utility):
        if not 0.0 <= float(self.value) <= 1.0:
            raise ValueError(f"blackout: value must lie in [0, 1], got {self.value}")

    def _transform(self, X, identity, utility):
        return np.full_like(X, float(self.value))
