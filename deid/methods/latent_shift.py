"""Nousi, Papadopoulos, Tefas, Pitas: "Deep Autoencoders for Attribute Preserving Face De-identification", Signal Processing: Image Communication 81 (2020).

An autoencoder is trained for reconstruction; then only its encoder is fine-tuned so that
each training face ``x_i`` encodes to the target ``z_i = (1 − α)·enc(x_i) + α·t_i``. At
transform time a face goes through the fine-tuned encoder and the frozen decoder (and the
optional deblurrer and smoother), which changes its identity but keeps what its neighbours
share. Targets ``t_i`` (``target=``):

- ``"kmeans"``: the centre of the sample's k-means cluster in code space (``n_clusters``);
- ``"mean_neighbour"``: of the sample's ``n_neighbors`` nearest codes, the one closest to the
  mean code (the "mean face");
- ``"grid_neighbour"`` (conv only): per cell of the ``(256, 2, 2)`` code, the cell vector's
  ``n_neighbors``-th nearest neighbour among the same cell of the other samples;
- ``"supervised"``: attraction ``y = (1 − α)x + α·P·X`` towards the ``n_neighbors`` nearest
  samples with the same utility label (expression) and another identity, then repulsion
  ``z = (1 + β)y − β·Q·Y`` from the ``n_neighbors`` nearest samples of the same identity
  (rows of ``P`` and ``Q`` are uniform over their sets);
- ``"none"``: no fine-tuning (the plain autoencoder, the paper's "no shift" row).
"""

from __future__ import annotations

import copy
import typing
import warnings
from typing import TYPE_CHECKING, Annotated, Literal

import numpy as np
from pydantic import AfterValidator

from deid.errors import ConfigError, MethodError
from deid.methods.base import (DeidMethod, Device, NonNegativeFloat, NonNegativeInt, PositiveFloat, PositiveInt,
                               Seed, UnitInterval)
from deid.methods.registry import register_method

if TYPE_CHECKING:
    import torch

__all__ = [
    "LatentShift",
    "TARGETS",
    "kmeans_targets",
    "mean_neighbour_targets",
    "grid_neighbour_targets",
    "supervised_targets",
    "parse_hidden",
]

Target = Literal["kmeans", "mean_neighbour", "grid_neighbour", "supervised", "none"]
TARGETS = typing.get_args(Target)


def parse_hidden(hidden: str) -> list[int]:
    """``"1024-768-512"`` → ``[1024, 768, 512]`` (the FC encoder's layer widths)."""
    try:
        sizes = [int(s) for s in str(hidden).replace(",", "-").split("-") if s.strip()]
    except ValueError:
        raise ConfigError(f"latent-shift: hidden must look like '1024-768-512', got {hidden!r}") from None
    if not sizes or min(sizes) < 1:
        raise ConfigError(f"latent-shift: hidden must list positive widths, got {hidden!r}")
    return sizes


def _check_hidden(hidden: str) -> str:
    """layer widths joined by '-'"""
    parse_hidden(hidden)
    return hidden


#: the FC encoder's layer widths, e.g. "1024-768-512"
Hidden = Annotated[str, AfterValidator(_check_hidden)]


# -- targets (pure functions over codes) --------------------------------------------------
def _neighbours(codes: np.ndarray, n: int, pool: np.ndarray | None = None) -> np.ndarray:
    """Indices ``(N, n)`` of each code's ``n`` nearest codes in ``codes[pool]``, never itself."""
    from sklearn.neighbors import NearestNeighbors

    pool = np.arange(len(codes)) if pool is None else pool
    n = int(min(n, len(pool) - 1))
    if n < 1:
        raise MethodError("latent-shift: need at least two samples to pick neighbours")
    nn = NearestNeighbors(n_neighbors=n + 1).fit(codes[pool])
    _, idx = nn.kneighbors(codes)
    idx = pool[idx]
    out = np.empty((len(codes), n), dtype=np.int64)
    for i, row in enumerate(idx):
        row = row[row != i]
        out[i] = row[:n]
    return out


def kmeans_targets(codes: np.ndarray, n_clusters: int, random_state: int = 0) -> np.ndarray:
    """Each code's k-means cluster centre: ``(N, D)`` → ``(N, D)``; ``K = min(n_clusters, N)``.

    Uses the shared cluster-centre step (:func:`deid.clustering.centre_targets`, in process).
    """
    from deid.clustering.centres import centre_targets

    k = int(max(1, min(n_clusters, len(codes))))
    return np.asarray(centre_targets(codes, k, random_state=random_state, client="sync").targets, np.float32)


def mean_neighbour_targets(codes: np.ndarray, n_neighbors: int) -> np.ndarray:
    """Of each code's ``n`` nearest neighbours, the one closest to the mean code: ``(N, D)`` → ``(N, D)``."""
    nb = _neighbours(codes, n_neighbors)
    mean = codes.mean(0)
    d = ((codes[nb] - mean) ** 2).sum(-1)  # (N, n)
    return codes[nb[np.arange(len(codes)), d.argmin(1)]]


def grid_neighbour_targets(codes: np.ndarray, n_neighbors: int) -> np.ndarray:
    """Per grid cell of ``(N, C, h, w)`` codes, the cell vector's ``n``-th nearest neighbour (same cell)."""
    if codes.ndim != 4:
        raise MethodError(f"latent-shift: grid targets need (N, C, h, w) codes, got shape {codes.shape}")
    out = np.empty_like(codes)
    for r in range(codes.shape[2]):
        for c in range(codes.shape[3]):
            v = np.ascontiguousarray(codes[:, :, r, c])
            nb = _neighbours(v, n_neighbors)
            out[:, :, r, c] = v[nb[:, -1]]
    return out


def supervised_targets(codes: np.ndarray, identity: np.ndarray, utility: np.ndarray, alpha: float, beta: float,
                       n_neighbors: int) -> np.ndarray:
    """Attraction to same-utility, other-identity neighbours; repulsion from same-identity ones.

    ``codes`` ``(N, D)``; returns ``z`` ``(N, D)`` with ``y = (1−α)x + α·P·X`` and
    ``z = (1+β)y − β·Q·Y``. A sample with no attraction set keeps ``y = x``; one with no
    repulsion set keeps ``z = y``.
    """
    n = len(codes)
    identity, utility = np.asarray(identity), np.asarray(utility)
    P = np.zeros_like(codes)
    has_p = np.zeros(n, bool)
    for u in np.unique(utility):
        members = np.flatnonzero(utility == u)
        for i in members:
            pool = members[identity[members] != identity[i]]
            if len(pool) == 0:
                continue
            k = min(n_neighbors, len(pool))
            d = ((codes[pool] - codes[i]) ** 2).sum(1)
            P[i] = codes[pool[np.argsort(d, kind="stable")[:k]]].mean(0)
            has_p[i] = True
    Y = np.where(has_p[:, None], (1 - alpha) * codes + alpha * P, codes)
    Z = Y.copy()
    for ident in np.unique(identity):
        members = np.flatnonzero(identity == ident)
        if len(members) < 2:
            continue
        for i in members:
            pool = members[members != i]
            k = min(n_neighbors, len(pool))
            d = ((codes[pool] - codes[i]) ** 2).sum(1)
            Z[i] = (1 + beta) * Y[i] - beta * Y[pool[np.argsort(d, kind="stable")[:k]]].mean(0)
    return Z.astype(np.float32)


# -- the method ---------------------------------------------------------------------------
@register_method("latent-shift")
class LatentShift(DeidMethod):
    """Autoencoder latent shift (Nousi et al.). Images ``(N, C, H, W)`` are resized to ``image_size``.

    Only ``target="supervised"`` uses labels (identity and utility).
    """

    test_params = {"hidden": "64-32", "image_size": 16, "width": 8, "code_channels": 16, "ae_epochs": 3,
                   "finetune_epochs": 2, "post_epochs": 1, "n_clusters": 4, "n_neighbors": 3,
                   "deblur": True, "smooth": True}

    param_docs = {"architecture": "fc: fully connected autoencoder; conv: convolutional",
                  "target": "where each code is shifted to: kmeans, mean_neighbour, grid_neighbour, supervised, none",
                  "alpha": "how far each code moves toward its target (0: not at all, 1: onto it)",
                  "beta": "supervised target: repulsion from the same identity's nearest codes",
                  "n_clusters": "kmeans target: clusters in code space",
                  "n_neighbors": "nearest codes the neighbour and supervised targets use",
                  "image_size": "side in pixels the autoencoder works at",
                  "hidden": "fc encoder's layer widths, e.g. 1024-768-512",
                  "code_channels": "conv autoencoder's code channels",
                  "ae_epochs": "epochs of autoencoder training for reconstruction",
                  "finetune_epochs": "epochs of encoder fine-tuning toward the shifted codes",
                  "deblur": "train a deblurring network on the decoder's output",
                  "smooth": "train a smoothing network on the decoder's output",
                  "post_epochs": "epochs of the deblur and smooth networks",
                  "blur_sigma": "blur the deblurrer learns to undo, in pixels",
                  "finetune_lr": "learning rate of the encoder fine-tuning"}

    def __init__(self, architecture: Literal["fc", "conv"] = "fc", target: Target = "kmeans", alpha: UnitInterval = 0.8,
                 beta: NonNegativeFloat = 0.5, n_clusters: PositiveInt = 50, n_neighbors: PositiveInt = 9,
                 image_size: PositiveInt = 32, hidden: Hidden = "1024-768-512", width: PositiveInt = 16,
                 code_channels: PositiveInt = 256, ae_epochs: NonNegativeInt = 20, finetune_epochs: NonNegativeInt = 10,
                 deblur: bool = False, smooth: bool = False, post_epochs: NonNegativeInt = 5,
                 blur_sigma: PositiveFloat = 1.0, batch_size: PositiveInt = 64, lr: PositiveFloat = 1e-3,
                 finetune_lr: PositiveFloat = 3e-4, device: Device = "auto", random_state: Seed = 0) -> None:
        self.architecture = architecture
        self.target = target
        self.alpha = alpha
        self.beta = beta
        self.n_clusters = n_clusters
        self.n_neighbors = n_neighbors
        self.image_size = image_size
        self.hidden = hidden
        self.width = width
        self.code_channels = code_channels
        self.ae_epochs = ae_epochs
        self.finetune_epochs = finetune_epochs
        self.deblur = deblur
        self.smooth = smooth
        self.post_epochs = post_epochs
        self.blur_sigma = blur_sigma
        self.batch_size = batch_size
        self.lr = lr
        self.finetune_lr = finetune_lr
        self.device = device
        self.random_state = random_state

    # -- building -----------------------------------------------------------------------
    def _validate(self) -> None:
        if self.architecture not in ("fc", "conv"):
            raise ConfigError(f"latent-shift: architecture must be 'fc' or 'conv', got {self.architecture!r}")
        if self.target not in TARGETS:
            raise ConfigError(f"latent-shift: target must be one of {TARGETS}, got {self.target!r}")
        if self.target == "grid_neighbour" and self.architecture != "conv":
            raise ConfigError("latent-shift: target 'grid_neighbour' needs architecture 'conv' (a grid code)")
        if not 0.0 <= float(self.alpha) <= 1.0:
            raise ConfigError(f"latent-shift: alpha must lie in [0, 1], got {self.alpha}")
        if float(self.beta) < 0:
            raise ConfigError(f"latent-shift: beta must be >= 0, got {self.beta}")
        if int(self.n_clusters) < 1 or int(self.n_neighbors) < 1:
            raise ConfigError("latent-shift: n_clusters and n_neighbors must be >= 1")
        s = int(self.image_size)
        if self.architecture == "conv" and (s < 4 or s & (s - 1)):
            raise ConfigError(f"latent-shift: architecture 'conv' needs image_size a power of two >= 4, got {s}")
        parse_hidden(self.hidden)

    def _build_ae(self) -> torch.nn.Module:
        from deid.models.autoencoder import ConvAutoencoder, FCAutoencoder

        c = self.input_shape_[0]
        if self.architecture == "fc":
            return FCAutoencoder(c, self.image_size, parse_hidden(self.hidden))
        return ConvAutoencoder(c, self.image_size, self.width, self.code_channels)

    def _init_modules(self) -> None:
        from deid.models.autoencoder import Deblurrer, Smoother

        c = self.input_shape_[0]
        self.ae_ = self._build_ae()
        self.deblur_ = Deblurrer(c, self.width) if self.deblur else None
        self.smooth_ = Smoother(c, self.width) if self.smooth else None

    # -- fitting ------------------------------------------------------------------------
    def _fit(self, X, identity, utility):
        self._validate()
        if self.target == "supervised" and (identity is None or utility is None):
            raise MethodError("method 'latent-shift' with target 'supervised' needs identity and utility labels")
        import torch

        from deid.device import resolve_device
        from deid.models.autoencoder import gaussian_blur, train_regression

        dev = resolve_device(self.device)
        seed = int(self.random_state)
        torch.manual_seed(seed)
        self._init_modules()
        ae = self.ae_.to(dev)
        xs = self._net_inputs(X)
        common = dict(batch_size=int(self.batch_size), lr=float(self.lr), device=dev)
        self.history_ = {"reconstruction": train_regression(ae, ae.parameters(), xs, epochs=self.ae_epochs,
                                                            seed=seed, modules=[ae], **common)}
        if self.deblur_ is not None:
            db = self.deblur_.to(dev)
            sig = float(self.blur_sigma)

            def blur(x, g):
                s = (0.5 + torch.rand(len(x), generator=g)) * sig
                return gaussian_blur(x, s.to(x.device))

            self.history_["deblur"] = train_regression(db, db.parameters(), xs, epochs=self.post_epochs,
                                                       seed=seed + 2, input_fn=blur, modules=[db], **common)
        if self.smooth_ is not None:
            sm = self.smooth_.to(dev)
            self.history_["smooth"] = train_regression(sm, sm.parameters(), xs, epochs=self.post_epochs,
                                                       seed=seed + 3, modules=[sm], **common)
        self.code_shape_ = list(self.ae_.code_shape)
        self.target_distance_ = None
        if self.target != "none":
            self._fine_tune(xs, identity, utility, dev)

    def _net_inputs(self, X: np.ndarray) -> torch.Tensor:
        import torch

        from deid.models.autoencoder import to_net

        return to_net(torch.from_numpy(np.ascontiguousarray(X, dtype=np.float32)), int(self.image_size))

    def fine_tune(self, X: np.ndarray, identity=None, utility=None) -> "LatentShift":
        """(Re-)run only the encoder step on ``X`` ``(N, C, H, W)`` with the current target settings.

        Codes come from the current encoder, so calling this on a copy of a method fitted with
        ``target="none"`` sweeps α, K, n without retraining the autoencoder.
        """
        self._check_fitted()
        self._validate()
        if self.target == "none":
            raise ConfigError("latent-shift: fine_tune needs a target other than 'none'")
        if self.target == "supervised" and (identity is None or utility is None):
            raise MethodError("method 'latent-shift' with target 'supervised' needs identity and utility labels")
        dev = self.modules_to(self.device)
        self._fine_tune(self._net_inputs(X), identity, utility, dev)
        return self

    def _fine_tune(self, xs: torch.Tensor, identity, utility, dev: torch.device) -> None:
        """Fit the encoder to the targets; keeps the epoch whose codes lie closest to them."""
        from deid.models.autoencoder import predict, train_regression

        ae = self.ae_
        codes = predict(ae.encode, xs, device=dev)
        targets = self._targets(codes, identity, utility)
        before = float(((codes - targets) ** 2).mean())
        best = {"distance": before, "epoch": -1, "state": copy.deepcopy(ae.encoder.state_dict())}

        def keep_best(epoch: int) -> None:
            d = float(((predict(ae.encode, xs, device=dev) - targets) ** 2).mean())
            if d < best["distance"]:
                best.update(distance=d, epoch=epoch, state=copy.deepcopy(ae.encoder.state_dict()))

        for p in ae.decoder.parameters():
            p.requires_grad_(False)
        try:
            self.history_["finetune"] = train_regression(
                ae.encode, ae.encoder.parameters(), xs, targets, epochs=self.finetune_epochs,
                seed=int(self.random_state) + 1, modules=[ae.encoder], batch_size=int(self.batch_size),
                lr=float(self.finetune_lr), device=dev, on_epoch=keep_best)
        finally:
            for p in ae.decoder.parameters():
                p.requires_grad_(True)
        ae.encoder.load_state_dict(best["state"])
        ae.eval()
        self.target_distance_ = {"before": before, "after": best["distance"], "best_epoch": best["epoch"]}
        if best["epoch"] < 0:
            warnings.warn(f"latent-shift: fine-tuning never brought the codes closer to their targets than the "
                          f"unshifted encoder (distance {before:.3g}); the outputs are the plain autoencoder's "
                          f"reconstructions, with no latent shift", stacklevel=2)

    def _targets(self, codes: np.ndarray, identity, utility) -> np.ndarray:
        """Fine-tuning targets ``z`` with the shape of ``codes`` ``(N, *code_shape)``."""
        a = float(self.alpha)
        if self.target == "grid_neighbour":
            t = grid_neighbour_targets(codes, int(self.n_neighbors))
            return ((1 - a) * codes + a * t).astype(np.float32)
        flat = codes.reshape(len(codes), -1)
        if self.target == "kmeans":
            t = kmeans_targets(flat, int(self.n_clusters), int(self.random_state))
        elif self.target == "mean_neighbour":
            t = mean_neighbour_targets(flat, int(self.n_neighbors))
        else:  # supervised
            z = supervised_targets(flat, identity, utility, a, float(self.beta), int(self.n_neighbors))
            return z.reshape(codes.shape)
        return ((1 - a) * flat + a * t).reshape(codes.shape).astype(np.float32)

    # -- transforming -------------------------------------------------------------------
    def forward(self, x: torch.Tensor) -> torch.Tensor:
        """The de-identifier on a batch ``(B, C, H, W)`` → ``(B, C, H, W)``, on the modules' device."""
        from deid.models.autoencoder import from_net, to_net

        hw = tuple(x.shape[-2:])
        y = self.ae_(to_net(x, self.image_size))
        if self.deblur_ is not None:
            y = self.deblur_(y)
        if self.smooth_ is not None:
            y = self.smooth_(y)
        return from_net(y, hw)

    def modules_to(self, device: str | torch.device = "auto") -> torch.device:
        """Move the fitted networks to ``device`` (``"auto"``: CUDA when present); returns it."""
        from deid.device import resolve_device

        dev = resolve_device(device) if isinstance(device, str) else device
        for m in (self.ae_, self.deblur_, self.smooth_):
            if m is not None:
                m.to(dev).eval()
        return dev

    def _transform(self, X, identity, utility):
        from deid.models.autoencoder import predict

        dev = self.modules_to(self.device)
        return predict(self.forward, X, batch_size=max(256, int(self.batch_size)), device=dev)
