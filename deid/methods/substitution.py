"""Substitution step — Feutry, Piantanida, Duhamel: "Learning Semi-Supervised Anonymized Representations by Mutual Information" (ICASSP 2020), FERG protocol.

Each image is replaced by the nearest (pixel L2) real training image of one chosen identity.
After the intertwined mutual-information autoencoder (``mi-adversarial`` with a
``target_identity``), whose outputs already look like that identity, this picks the real image
closest in expression. Used alone it maps every input to that identity's nearest image.

Caveat, to be carried into every audit: the released images are real images of the chosen
identity, so that identity must be consenting or artificial (a template identity added to the
training set for this purpose). ``target_identity`` names it in the config.
"""

from __future__ import annotations

import numpy as np

from deid.errors import ConfigError, MethodError
from deid.methods.base import DeidMethod
from deid.methods.registry import register_method

__all__ = ["Substitution", "nearest_in_bank", "identity_bank"]


def nearest_in_bank(bank: np.ndarray, X: np.ndarray, chunk: int = 512) -> np.ndarray:
    """Index into ``bank`` ``(M, C, H, W)`` of the pixel-L2 nearest image for each of ``X`` ``(N, C, H, W)``."""
    B = bank.reshape(len(bank), -1).astype(np.float64)
    bb = (B**2).sum(1)
    out = np.empty(len(X), dtype=np.int64)
    for s in range(0, len(X), chunk):
        Q = X[s : s + chunk].reshape(-1, B.shape[1]).astype(np.float64)
        d = bb[None, :] - 2.0 * Q @ B.T  # ‖q‖² is constant per row; ties go to the lowest index
        out[s : s + chunk] = d.argmin(1)
    return out


def identity_bank(X: np.ndarray, identity: np.ndarray | None, target: str | None, where: str) -> np.ndarray:
    """The training images ``(M, C, H, W)`` of identity ``target``, or a :class:`MethodError` saying why not."""
    if target is None:
        raise MethodError(f"{where}: substitution needs target_identity, the consenting or artificial "
                          "template identity whose real images will be released")
    if identity is None:
        raise MethodError(f"{where}: substitution needs identity labels at fit to find '{target}' images")
    mask = np.asarray([str(v) for v in identity]) == str(target)
    if not mask.any():
        raise MethodError(f"{where}: target_identity '{target}' has no training images; "
                          f"identities present: {sorted({str(v) for v in identity})[:20]}")
    return np.ascontiguousarray(X[mask], dtype=np.float32)


@register_method("substitution")
class Substitution(DeidMethod):
    """Replace each image by the nearest real training image of ``target_identity`` (pixel L2).

    Learned state: ``bank_`` ``(M, C, H, W)``, the target identity's training images.
    Compose it after another method with ``mi-adversarial(substitute=True)`` (one saved model),
    or by running that method's ``transform`` first and this one's on its output.
    """

    holds_training_images = True  # bank_ is real training images of target_identity
    test_params = {"target_identity": "id0"}

    guarantee = ("every output is a real training image of the one target identity (who must be consenting or "
                 "artificial)")
    param_docs = {"target_identity": "the identity every image is replaced with ('@i': the i-th of the training split)"}

    def __init__(self, target_identity: str | None = None) -> None:
        self.target_identity = target_identity

    def _validate(self) -> None:
        if self.target_identity is None:
            raise ConfigError("substitution: target_identity must name the consenting or artificial template "
                              "identity whose real images will be released")

    def _fit(self, X, identity, utility):
        self.bank_ = identity_bank(X, identity, self.target_identity, "substitution.fit")

    def _transform(self, X, identity, utility):
        return self.bank_[nearest_in_bank(self.bank_, X)].copy()
