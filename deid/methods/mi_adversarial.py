"""Mutual-information adversarial autoencoder — Feutry, Piantanida, Duhamel: "Learning Semi-Supervised Anonymized Representations by Mutual Information" (ICASSP 2020).

Three networks (images ``(B, C, H, W)``):
- the autoencoder ``q(x̂|x)`` (:class:`~deid.models.unet.ConvAutoencoder`);
- the discriminator ``q(ŷ|v)``: a selector feeds it the original ``x`` when ``y = 1`` and the
  reconstruction ``x̂`` otherwise; it minimises its binary cross-entropy (eq. 13);
- the private branch ``q(ẑ|x̂)``: an identity classifier on reconstructions, minimising its
  cross-entropy (eq. 14).
The autoencoder minimises ``BCE_disc + λ·|CE(p̂_Z, q(ẑ|x̂)) − CE(e(z), q(ẑ|x̂))|`` (eq. 12, with
``p̂_Z`` the empirical identity distribution, eq. 15). ``BCE_disc`` for the autoencoder is the
discriminator's cross-entropy with its reconstructions labelled "original" (``y = 1``): the usual
generator side of a GAN, which is how the paper's "minimising the cross-entropy loss with
respect to the Ŷ predictor" is read here.

Training as the paper: (1) autoencoder pre-trained on pixel MSE for ``pretrain_epochs``;
(2) discriminator pre-training, alternating discriminator (+ private branch) updates with the
autoencoder frozen and autoencoder updates (adversarial term only) with them frozen, for
``disc_pretrain_epochs`` (``disc_steps`` adversary updates per autoencoder update, so the
discriminator gets ahead); (3) alternating autoencoder (eq. 12) against discriminator + private
branch for ``epochs``, early-stopped on the eq. 12 loss of a validation slice. Each phase runs
at least ``min_steps`` optimiser steps (epochs are raised on small sets: with JAFFE's ~130
training images, one epoch is 5 batches and the adversaries never learn).

``target_identity`` (optional) selects the *intertwined* variant: the discriminator's real
samples are restricted to that identity's training images, which pushes every output toward
it. ``substitute=True`` (requires ``target_identity``) then replaces each output by the nearest
real training image of that identity (the paper's FERG substitution; see
:mod:`deid.methods.substitution` for the consent caveat: the released images are real images of
``target_identity``, so it must be a consenting or artificial template identity).
"""

from __future__ import annotations

import warnings
from dataclasses import dataclass
from typing import TYPE_CHECKING

import numpy as np

from deid.errors import ConfigError, MethodError
from deid.lazy_torch import no_grad
from deid.methods.base import (DeidMethod, Device, Fraction, NonNegativeFloat, NonNegativeInt, PositiveFloat,
                               PositiveInt, Seed)
from deid.methods.registry import register_method
from deid.methods.substitution import identity_bank, nearest_in_bank

if TYPE_CHECKING:
    import torch

__all__ = ["MIAdversarial"]


class _StepLog:
    """The fit's history: one numbered record per training step, and one per validation pass."""

    def __init__(self, records: list[dict]) -> None:
        self.records, self.step = records, 0

    def __call__(self, phase: str, epoch: int, **values) -> None:
        self.records.append({"phase": phase, "epoch": epoch, "step": self.step,
                             **{k: float(x) for k, x in values.items()}})
        self.step += 1

    def validation(self, epoch: int, record: dict) -> None:
        self.records.append({"phase": "val", "epoch": epoch, "step": self.step, **record})


@dataclass
class _Training:
    """One fit's working set: the modules, optimisers, data as tensors, row indices, random stream and log."""

    ae: "torch.nn.Module"  # the autoencoder
    D: "torch.nn.Module"  # the discriminator
    P: "torch.nn.Module"  # the private (identity) branch
    opt_ae: "torch.optim.Optimizer"
    opt_dp: "torch.optim.Optimizer"  # discriminator and private branch
    Xt: "torch.Tensor"  # (N, C, H, W)
    zt: "torch.Tensor"  # (N,) identity index
    p_hat: "torch.Tensor"  # identity frequencies
    train: np.ndarray  # training rows
    check: np.ndarray  # rows of the check batch: the validation slice, else the training rows
    real_pool: np.ndarray  # rows the discriminator sees as real
    g: "torch.Generator"
    dev: "torch.device"
    log: _StepLog


@register_method("mi-adversarial")
class MIAdversarial(DeidMethod):
    """Mutual-information adversarial autoencoder (optionally intertwined, optionally substituted).

    ``lam`` is λ of eq. 12 (the paper sweeps [0, 4]); ``pixel_weight`` adds an optional MSE
    term to the autoencoder's main-phase loss (0 = the paper). Needs identity labels at fit.
    ``target_identity`` must name an identity present in the training labels (as a string); it
    is required when ``substitute=True``.

    Learned state: ``autoencoder_``, ``discriminator_``, ``private_``, ``classes_``, ``p_hat_``,
    ``history_`` (one dict per step and per validation pass), ``adversary_check_`` (accuracies
    of discriminator and private branch on a check batch, against chance), ``bank_`` (the target
    identity's training images when substituting).
    """

    needs_identity = False  # needed to fit (checked in _fit), not to transform
    holds_training_images = True  # bank_ (substitute=True) is real training images
    #: settings for a bigger run on a GPU (full FERG, 55k images)
    gpu_params = {"epochs": 30, "pretrain_epochs": 5, "disc_pretrain_epochs": 3, "width": 32, "depth": 3, "latent": 64,
                  "disc_width": 32, "private_width": 32, "batch_size": 128, "device": "cuda"}
    test_params = {"epochs": 1, "pretrain_epochs": 1, "disc_pretrain_epochs": 1, "width": 4, "latent": 4,
                   "disc_width": 4, "private_width": 4, "batch_size": 12, "min_steps": 0}

    param_docs = {"lam": "weight λ of the identity (private branch) term against the discriminator's",
                  "target_identity": "the intertwined variant: outputs drawn toward this identity ('@i': the i-th)",
                  "substitute": "replace each output by the target identity's nearest real training image",
                  "epochs": "epochs of the adversarial phase (early-stopped)",
                  "pretrain_epochs": "epochs of autoencoder pre-training on pixel error",
                  "disc_pretrain_epochs": "epochs of discriminator pre-training",
                  "depth": "down-sampling levels of the autoencoder",
                  "latent": "channels of the autoencoder's code",
                  "disc_width": "width of the discriminator",
                  "private_width": "width of the private (identity) branch",
                  "disc_steps": "adversary updates per autoencoder update",
                  "pixel_weight": "weight of a pixel reconstruction term in the adversarial phase"}

    def __init__(self, lam: NonNegativeFloat = 1.0, target_identity: str | None = None, substitute: bool = False,
                 epochs: PositiveInt = 5, pretrain_epochs: NonNegativeInt = 2, disc_pretrain_epochs: NonNegativeInt = 1,
                 batch_size: PositiveInt = 32, lr: PositiveFloat = 1e-3, width: PositiveInt = 8, depth: PositiveInt = 2,
                 latent: PositiveInt = 16, disc_width: PositiveInt = 8, private_width: PositiveInt = 8,
                 disc_steps: PositiveInt = 3, pixel_weight: NonNegativeFloat = 0.0, val_fraction: Fraction = 0.1,
                 patience: NonNegativeInt = 3, clip: NonNegativeFloat = 1.0, min_steps: NonNegativeInt = 150,
                 random_state: Seed = 0, device: Device = "auto") -> None:
        self.lam = lam
        self.min_steps = min_steps
        self.target_identity = target_identity
        self.substitute = substitute
        self.epochs = epochs
        self.pretrain_epochs = pretrain_epochs
        self.disc_pretrain_epochs = disc_pretrain_epochs
        self.batch_size = batch_size
        self.lr = lr
        self.width = width
        self.depth = depth
        self.latent = latent
        self.disc_width = disc_width
        self.private_width = private_width
        self.disc_steps = disc_steps
        self.pixel_weight = pixel_weight
        self.val_fraction = val_fraction
        self.patience = patience
        self.clip = clip
        self.random_state = random_state
        self.device = device

    def _init_modules(self) -> None:
        from deid.models.adversarial import Discriminator, PrivateBranch
        from deid.models.unet import ConvAutoencoder

        c = int(self.input_shape_[0])
        self.autoencoder_ = ConvAutoencoder(c, int(self.width), int(self.depth), int(self.latent))
        self.discriminator_ = Discriminator(c, int(self.disc_width), int(self.depth) + 1)
        self.private_ = PrivateBranch(c, len(self.classes_), width=int(self.private_width))

    def _validate(self) -> None:
        if self.substitute and self.target_identity is None:
            raise ConfigError("mi-adversarial: substitute=True needs target_identity (the consenting or "
                              "artificial template identity whose real images are released)")

    # -- fit -----------------------------------------------------------------------------
    def _fit(self, X, identity, utility):
        """Pre-train the autoencoder, then the adversaries, then train them against each other (early-stopped)."""
        ids = self._learn_identities(X, identity)
        run = self._start_training(X, ids)
        self._pretrain_pixels(run)
        self._pretrain_adversaries(run)
        self.adversary_check_ = {"after_pretrain": self._check(run.Xt, run.zt, run.check, run.real_pool, run.p_hat,
                                                               run.dev)}
        self._train_adversarially(run)
        self._report_adversaries(run)
        if self.substitute:
            self.bank_ = identity_bank(X, ids, self.target_identity, "mi-adversarial.fit")

    def _learn_identities(self, X, identity) -> np.ndarray:
        """The identities (the private label) and their frequencies; refuses settings that cannot train.
        Returns each image's identity as a string."""
        if identity is None:
            raise MethodError("method 'mi-adversarial' needs identity labels (the private label) to fit")
        if self.lam < 0:
            raise MethodError(f"mi-adversarial: lam must be >= 0, got {self.lam}")
        if self.substitute and self.target_identity is None:
            raise MethodError("mi-adversarial: substitute=True needs target_identity (the consenting or "
                              "artificial template identity whose real images are released)")
        ids = np.asarray([str(v) for v in identity])
        self.classes_ = np.unique(ids)
        if len(self.classes_) < 2:
            raise MethodError("mi-adversarial needs at least two identities")
        z_np = np.searchsorted(self.classes_, ids)
        self.p_hat_ = (np.bincount(z_np, minlength=len(self.classes_)) / len(z_np)).astype(np.float32)
        if self.target_identity is not None:
            identity_bank(X, ids, self.target_identity, "mi-adversarial.fit")  # fails early with a clear message
        return ids

    def _start_training(self, X, ids: np.ndarray) -> "_Training":
        """Seeded fresh modules on the device, the validation slice, the real images the discriminator sees
        (the target identity's, when there is one), the optimisers and the data as tensors."""
        import torch

        from deid.device import resolve_device
        from deid.models.classifier import seed_everything

        dev = resolve_device(self.device)
        g = seed_everything(int(self.random_state))
        rng = np.random.default_rng(int(self.random_state))
        n = len(X)
        n_val = int(round(n * self.val_fraction)) if self.val_fraction and n >= 20 else 0
        order = rng.permutation(n)
        val, train = np.sort(order[:n_val]), np.sort(order[n_val:])
        real_pool = train if self.target_identity is None else train[ids[train] == str(self.target_identity)]
        if len(real_pool) == 0:
            real_pool = np.flatnonzero(ids == str(self.target_identity))
        self._init_modules()
        ae, D, P = self.autoencoder_.to(dev), self.discriminator_.to(dev), self.private_.to(dev)
        opt_ae = torch.optim.Adam(ae.parameters(), lr=float(self.lr), betas=(0.5, 0.999))
        opt_dp = torch.optim.Adam(list(D.parameters()) + list(P.parameters()), lr=float(self.lr), betas=(0.5, 0.999))
        Xt = torch.from_numpy(np.ascontiguousarray(X, dtype=np.float32))
        zt = torch.from_numpy(np.searchsorted(self.classes_, ids).astype(np.int64))
        p_hat = torch.from_numpy(self.p_hat_).to(dev)
        self.history_ = []
        return _Training(ae=ae, D=D, P=P, opt_ae=opt_ae, opt_dp=opt_dp, Xt=Xt, zt=zt, p_hat=p_hat, train=train,
                         check=val if n_val else train, real_pool=real_pool, g=g, dev=dev, log=_StepLog(self.history_))

    def _epochs(self, run: "_Training", epochs: int) -> int:
        """Epochs of a phase asked ``epochs``: at least ``min_steps`` steps, however small the set."""
        from deid.models.classifier import epochs_for

        return epochs_for(int(epochs), len(run.train), int(self.batch_size), int(self.min_steps))

    def _pretrain_pixels(self, run: "_Training") -> None:
        """Phase 1: the autoencoder learns to reconstruct (pixel error only)."""
        from torch.nn import functional as F

        from deid.models.adversarial import batches, clip_

        ae = run.ae
        for epoch in range(self._epochs(run, self.pretrain_epochs)):
            ae.train()
            for b in batches(len(run.train), int(self.batch_size), run.g):
                x = run.Xt[run.train[b.numpy()]].to(run.dev)
                loss = F.mse_loss(ae(x), x)
                run.opt_ae.zero_grad(set_to_none=True)
                loss.backward()
                clip_(ae, float(self.clip))
                run.opt_ae.step()
                run.log("pretrain", epoch, mse=loss.detach())

    def _pretrain_adversaries(self, run: "_Training") -> None:
        """Phase 2: the discriminator and private branch learn, alternating with adversarial-only autoencoder updates."""
        from deid.models.adversarial import batches

        for epoch in range(self._epochs(run, self.disc_pretrain_epochs)):
            for b in batches(len(run.train), int(self.batch_size), run.g):
                idx = run.train[b.numpy()]
                for _ in range(max(1, int(self.disc_steps))):
                    self._adversary_step(run.ae, run.D, run.P, run.opt_dp, run.Xt, run.zt, idx, run.real_pool, run.g,
                                         run.dev, run.log, "disc_pretrain", epoch)
                self._autoencoder_step(run.ae, run.D, run.P, run.opt_ae, run.Xt, run.zt, idx, run.p_hat, 0.0, run.dev,
                                       run.log, "disc_pretrain", epoch)

    def _train_adversarially(self, run: "_Training") -> None:
        """Phase 3: the autoencoder against the discriminator and private branch, early-stopped on the check
        batch; the best epoch's weights are kept and the modules left on the CPU in eval mode."""
        from deid.models.adversarial import BestState, batches

        best = BestState(int(self.patience))
        for epoch in range(self._epochs(run, self.epochs)):
            for b in batches(len(run.train), int(self.batch_size), run.g):
                idx = run.train[b.numpy()]
                self._adversary_step(run.ae, run.D, run.P, run.opt_dp, run.Xt, run.zt, idx, run.real_pool, run.g,
                                     run.dev, run.log, "adversarial", epoch)
                self._autoencoder_step(run.ae, run.D, run.P, run.opt_ae, run.Xt, run.zt, idx, run.p_hat,
                                       float(self.lam), run.dev, run.log, "adversarial", epoch)
            rec = self._check(run.Xt, run.zt, run.check, run.real_pool, run.p_hat, run.dev)
            run.log.validation(epoch, rec)
            if best.update(rec["loss"], epoch, autoencoder=run.ae, discriminator=run.D, private=run.P):
                break
        best.restore(autoencoder=run.ae, discriminator=run.D, private=run.P)
        self.best_epoch_ = int(best.epoch)
        for m in (run.ae, run.D, run.P):
            m.cpu().eval()

    def _report_adversaries(self, run: "_Training") -> None:
        """``adversary_check_``: the final check, and whether each adversary learned while pre-trained (scored on
        each batch before updating on it); warns when one did not, as privacy figures would then flatter."""
        import torch

        final = self._check(run.Xt, run.zt, run.check, run.real_pool, run.p_hat, torch.device("cpu"))
        k = len(self.classes_)
        # each batch is scored before the adversaries update on it: a held-out figure per step
        pre_steps = [h for h in self.history_ if h["phase"] == "disc_pretrain/adversary"]
        pre_steps = pre_steps[len(pre_steps) // 2:]
        disc_acc = float(np.mean([h["disc_acc"] for h in pre_steps])) if pre_steps else float("nan")
        priv_acc = float(np.mean([h["private_acc"] for h in pre_steps])) if pre_steps else float("nan")
        self.adversary_check_ = {
            "after_pretrain": self.adversary_check_["after_pretrain"], "final": final,
            "disc_acc_pretrain_steps": disc_acc, "private_acc_pretrain_steps": priv_acc,
            "private_chance": 1.0 / k, "disc_chance": 0.5,
            "disc_learned": bool(disc_acc > 0.5 + 0.05),
            "private_learned": bool(priv_acc > 1.0 / k + 0.05),
        }
        if not (self.adversary_check_["disc_learned"] and self.adversary_check_["private_learned"]):
            warnings.warn(f"mi-adversarial: an adversary did not learn before the adversarial phase "
                          f"(discriminator {disc_acc:.2f} vs 0.5, private branch {priv_acc:.2f} "
                          f"vs {1 / k:.2f}); privacy figures from this model would be flattering", stacklevel=4)

    def _adversary_step(self, ae, D, P, opt, Xt, zt, idx, real_pool, g, dev, log, phase, epoch):
        """Eq. 13 and 14: discriminator on selector output ``v``, private branch on ``x̂``."""
        import torch
        from torch.nn import functional as F

        from deid.models.adversarial import clip_

        ae.eval()
        D.train()
        P.train()
        x, z = Xt[idx].to(dev), zt[idx].to(dev)
        with torch.no_grad():
            xh = ae(x)
        real = Xt[real_pool[torch.randint(len(real_pool), (len(idx),), generator=g).numpy()]].to(dev)
        y = (torch.rand(len(idx), generator=g) < 0.5).float().to(dev)
        v = torch.where(y.view(-1, 1, 1, 1) > 0, real, xh)  # the selector S
        d_logit = D(v)
        l_d = F.binary_cross_entropy_with_logits(d_logit, y)
        p_logit = P(xh)
        l_p = F.cross_entropy(p_logit, z)
        opt.zero_grad(set_to_none=True)
        (l_d + l_p).backward()
        clip_(D, float(self.clip))
        clip_(P, float(self.clip))
        opt.step()
        log(phase + "/adversary", epoch, disc_bce=l_d.detach(), private_ce=l_p.detach(),
            disc_acc=((d_logit > 0).float() == y).float().mean(), private_acc=(p_logit.argmax(1) == z).float().mean())

    def _ae_loss(self, ae, D, P, x, z, p_hat, lam):
        import torch
        from torch.nn import functional as F

        from deid.models.adversarial import mi_surrogate

        xh = ae(x)
        adv = F.binary_cross_entropy_with_logits(D(xh), torch.ones(len(x), device=x.device))
        mi, ce_obj, ce = mi_surrogate(P(xh), z, p_hat)
        mse = F.mse_loss(xh, x)
        loss = adv + lam * mi + float(self.pixel_weight) * mse
        return loss, adv, mi, ce_obj, ce, mse

    def _autoencoder_step(self, ae, D, P, opt, Xt, zt, idx, p_hat, lam, dev, log, phase, epoch):
        """Eq. 12 with discriminator and private branch frozen (their gradients are discarded)."""
        from deid.models.adversarial import clip_

        ae.train()
        D.eval()
        P.eval()
        x, z = Xt[idx].to(dev), zt[idx].to(dev)
        loss, adv, mi, ce_obj, ce, mse = self._ae_loss(ae, D, P, x, z, p_hat, lam)
        opt.zero_grad(set_to_none=True)
        loss.backward()
        clip_(ae, float(self.clip))
        opt.step()
        log(phase + "/autoencoder", epoch, loss=loss.detach(), adv_bce=adv.detach(), mi=mi.detach(),
            ce_obj=ce_obj.detach(), private_ce=ce.detach(), mse=mse.detach())

    @no_grad
    def _check(self, Xt, zt, idx, real_pool, p_hat, dev) -> dict:
        """Accuracies and eq. 12 loss on a fixed check batch (the validation slice)."""
        ae, D, P = self.autoencoder_, self.discriminator_, self.private_
        for m in (ae, D, P):
            m.eval()
        x, z = Xt[idx].to(dev), zt[idx].to(dev)
        real = Xt[real_pool[: len(idx)] if len(real_pool) >= len(idx) else real_pool].to(dev)
        xh = ae(x)
        loss, adv, mi, _, ce, mse = self._ae_loss(ae, D, P, x, z, p_hat, float(self.lam))
        d_real, d_fake = (D(real) > 0).float().mean(), (D(xh) <= 0).float().mean()
        return {"loss": float(loss), "adv_bce": float(adv), "mi": float(mi), "private_ce": float(ce), "mse": float(mse),
                "disc_acc": float((d_real + d_fake) / 2),
                "private_acc": float((P(xh).argmax(1) == z).float().mean()),
                "private_acc_on_originals": float((P(x).argmax(1) == z).float().mean())}

    # -- transform -----------------------------------------------------------------------
    @no_grad
    def _transform(self, X, identity, utility):
        import torch

        from deid.device import resolve_device

        dev = resolve_device(self.device)
        ae = self.autoencoder_.to(dev).eval()
        out = np.concatenate([ae(torch.from_numpy(np.ascontiguousarray(X[s : s + 256])).to(dev)).cpu().numpy()
                              for s in range(0, len(X), 256)]).astype(np.float32)
        ae.cpu()
        if self.substitute:
            out = self.bank_[nearest_in_bank(self.bank_, out)].copy()
        return out
