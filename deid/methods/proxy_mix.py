"""Proxy-mixture generator: k-Same-Net's conditional generator (Meden et al., Entropy 2018) with a random identity mixture per image and a nuisance code cleaned of identity by Feutry et al.'s adversary (arXiv:1802.09386).

``fit`` trains, on the training split, a conditional VAE ``x ≈ G(z, e[id], label)``:

- ``z = E(x)`` a small Gaussian code (``code_dim``) for what the image holds besides identity and
  the utility label. A KL term (``kl_weight``) keeps it small: what the decoder can take from the
  identity code or the label it need not copy into ``z``. An adversary reading identity from ``z``
  is kept near the uniform distribution (``adversary_weight``; Feutry et al.'s eq. 12 applied to
  the code, not the image);
- ``e[id]`` a learned code per training identity (the proxy identities);
- ``label`` the image's utility label, one-hot.

Faces of drawn identity mixtures must show their label to a critic trained on real images
(``label_weight``) and, with ``cycle_weight`` > 0, give their code back when encoded again by the
encoder held fixed (render consistency: only the decoder can meet it, by showing on every mixture
face the pose and lighting the code says; it keeps lighting and costs diversity, docs/proxy-mix.md).

The decoder renders a face from the three and then applies what ``z`` alone decides: an in-plane
similarity warp (rotation, scale, shift) and a first-order illumination plane per channel. These
two heads carry head pose and lighting through a code of a few numbers; without them a decoder
this small (trained in a minute on a CPU) renders an average pose and light.

``transform`` (set-level):

1. encodes every image (the posterior mean; ``nuisance_noise`` adds that many posterior standard
   deviations of noise);
2. aligns the codes per identity (``align``): each identity's codes get the whole set's
   per-dimension mean and spread (``align_covariance``: the whole covariance), so what the code
   still says about identity in these moments is gone. This is the only use of identity labels at
   transform time;
3. draws, for every image, an identity code that is a random convex mixture of ``k`` distinct proxy
   identities' codes (uniform over k-subsets, Dirichlet(``alpha``) weights);
4. decodes with the image's own label; an output with its own input's perceptual hash (the release
   policy's copy test) is drawn again (``avoid_copies``). No proxy takes more than ``max_weight`` of a face.

The guarantee, by construction: the identity code of an output is drawn independently of the
input — neither its identity, nor its pixels, nor its row position choose it — so two inputs with
the same label and the same aligned code have outputs with the same distribution, whichever
identities they came from — up to the outputs drawn again as copies, whose share bounds the difference
(2 in 55,776 at FERG's size). What the aligned code still carries beyond its means and spreads is
left to the audit; its informed attackers measure exactly that. No output shows a single proxy
identity: every face mixes k of them.

Ablations (``docs/proxy-mix.md``): ``mixture: mean`` gives every image the proxies' mean code
instead of a drawn mixture; ``align: false`` with ``adversary_weight: 0`` leaves the code uncleaned;
``warp: false`` drops the warp and illumination heads.

The draws come from fresh operating-system entropy on each ``transform`` unless ``draw_seed`` is
set (tests, reproductions; each batch's stream keyed by it and the batch's pixels, :func:`deid.methods.base.draw_stream`):
anyone who knows a fixed draw seed and the inputs could re-create
the draws, so a release never sets it.
"""

from __future__ import annotations

import logging
from dataclasses import dataclass

from typing import TYPE_CHECKING, Annotated, Literal

import numpy as np
from pydantic import Field

from deid.errors import ConfigError, MethodError
from deid.lazy_torch import no_grad
from deid.methods.base import (AnonymityK, DeidMethod, Device, NonNegativeFloat, NonNegativeInt, PositiveFloat,
                               PositiveInt, PowerOfTwo, Seed, draw_stream)
from deid.methods.registry import register_method

if TYPE_CHECKING:
    import torch

__all__ = ["ProxyMix", "draw_mixtures", "align_codes"]

_log = logging.getLogger(__name__)


def draw_mixtures(n: int, n_proxies: int, k: int, alpha: float, rng: np.random.Generator,
                  max_weight: float | None = None) -> np.ndarray:
    """Mixture weights ``(n, n_proxies)``: each row k distinct proxies (uniform), Dirichlet(alpha) weights.

    ``max_weight``: no proxy gets more than this share of a face; a row whose largest weight is above it
    is drawn again (the Dirichlet truncated to the cap). The draws still read no input, so the
    guarantee is unchanged. It must exceed ``1 / k``.
    """
    if k > n_proxies:
        raise MethodError(f"proxy-mix: k = {k} but the model holds {n_proxies} proxy identities")
    if max_weight is not None and max_weight * k <= 1.0:
        raise MethodError(f"proxy-mix: max_weight = {max_weight} cannot be met by {k} weights summing to 1; "
                          f"raise it above 1/k = {1 / k:.3g} or raise k")
    keys = rng.random((n, n_proxies))
    chosen = np.argsort(keys, axis=1)[:, :k]  # a uniform k-subset per row
    w = rng.dirichlet(np.full(k, float(alpha)), size=n)
    if max_weight is not None:
        over = w.max(1) > max_weight
        while over.any():  # rejection: the kept rows follow the Dirichlet restricted to the cap
            w[over] = rng.dirichlet(np.full(k, float(alpha)), size=int(over.sum()))
            over = w.max(1) > max_weight
    w = w.astype(np.float32)
    out = np.zeros((n, n_proxies), np.float32)
    np.put_along_axis(out, chosen, w, axis=1)
    return out


def _sqrt_psd(c: np.ndarray, inverse: bool = False) -> np.ndarray:
    """Symmetric square root (or inverse square root) of a covariance, with a small ridge."""
    w, v = np.linalg.eigh(c + np.eye(len(c)) * (1e-3 * np.trace(c) / len(c) + 1e-9))
    w = np.clip(w, 1e-12, None)
    return (v * (w ** (-0.5 if inverse else 0.5))) @ v.T


def _cell_offsets(z: np.ndarray, lab: np.ndarray) -> dict[str, np.ndarray]:
    """Each label's mean code over ``z``'s rows; a label with a single row is left out (its own value
    would be its own mean)."""
    return {y: z[lab == y].mean(0) for y in np.unique(lab) if (lab == y).sum() > 1}


def align_codes(z: np.ndarray, identity, labels=None, reference: tuple | None = None,
                covariance: bool = False) -> np.ndarray:
    """Codes ``(N, Z)`` whose mean and per-dimension spread are the same for every identity.

    The mean is set per (identity, label) cell to that label's mean over every identity (``labels``;
    without them, per identity to the set's mean), so a person's own way of showing a label (their
    smile) leaves the code too; each identity's codes are then scaled, dimension by dimension, to the
    whole set's spread. ``covariance``: whiten each identity's codes with its own covariance and colour
    them with the set's instead, so that the whole covariance is the same too — at the price of a
    per-identity rotation estimated from that identity's few images, which moves every code, pose and
    lighting included (docs/proxy-mix.md, "Alignment"). A code that still carries identity in these
    moments loses it here. An identity with no more images than code dimensions is scaled per
    dimension either way; a single-image identity (or cell) gets the set's (or the label's) mean,
    since its own value would be its own mean.

    ``reference`` — ``(codes, identity, labels)`` of a larger set of the same identities, the method's
    training images — is where the moments are estimated when it holds an identity with more images
    than code dimensions (and its cells with two or more): a small batch (a test split, a week's
    intake) is then aligned with moments it could not estimate from its own few images per cell,
    whose own cell means would take each image's pose and lighting with them. Identities, cells and
    labels the reference lacks are estimated from ``z`` itself, as without a reference.
    """
    z = np.asarray(z, np.float64)
    d = z.shape[1]
    ident = np.asarray(identity).astype(str)
    lab = np.zeros(len(z), "U1") if labels is None else np.asarray(labels).astype(str)
    if reference is not None:
        zr = np.asarray(reference[0], np.float64).reshape(-1, d)
        ir = np.asarray(reference[1]).astype(str)
        lr = np.zeros(len(zr), "U1") if labels is None else np.asarray(reference[2]).astype(str)
    else:
        zr, ir, lr = z, ident, lab
    pool = zr if len(zr) > 1 else z
    cov_all = np.cov(pool, rowvar=False).reshape(d, d) if len(pool) > 1 else np.eye(d)
    colour = _sqrt_psd(cov_all) if covariance else None
    sd = np.sqrt(np.diag(cov_all)) + 1e-6
    label_mean = {y: z[lab == y].mean(0) for y in np.unique(lab)}
    label_mean.update({y: zr[lr == y].mean(0) for y in np.unique(lr)})
    out = np.empty_like(z)
    for i in np.unique(ident):
        rows = ident == i
        own_z, own_lab = z[rows], lab[rows]
        ref = ir == i
        src_z, src_lab = (zr[ref], lr[ref]) if ref.sum() > d else (own_z, own_lab)
        offsets = {**_cell_offsets(own_z, own_lab), **_cell_offsets(src_z, src_lab)}
        # centre every (identity, label) cell: on the source's cell mean, else on the cell itself
        centred = own_z - np.stack([offsets.get(y, own_z[k]) for k, y in enumerate(own_lab)])
        src_centred = src_z - np.stack([offsets.get(y, src_z[k]) for k, y in enumerate(src_lab)])
        n = len(src_z)
        if n > d and covariance:
            white = _sqrt_psd(np.cov(src_centred, rowvar=False).reshape(d, d), inverse=True)
            centred = centred @ white @ colour
        elif n > 1:
            centred = centred / (src_centred.std(0) + 1e-6) * sd
        out[rows] = centred + np.stack([label_mean[y] for y in own_lab])
    return out.astype(np.float32)


def _render_consistency(enc, faces, z):
    """``‖E(faces) − z‖²`` per image, with the encoder held fixed: its gradient reaches the decoder only.

    The encoder cannot meet it by putting less into the code (its weights get no gradient from it, and
    its batch-norm statistics are left as they were); the decoder meets it by rendering what the code
    says, pose and lighting, on every mixture face, not only on the face of the code's own identity.
    """
    from torch.func import functional_call

    fixed = {n: p.detach() for n, p in enc.named_parameters()}
    fixed.update({n: b.clone() for n, b in enc.named_buffers()})  # batch-norm statistics updated on copies
    mu, _ = functional_call(enc, fixed, (faces,))
    return (mu - z.detach()).pow(2).sum(1).mean()


@dataclass
class _Training:
    """One fit's working set: device, random streams, data as tensors, optimisers, schedule and sizes."""

    dev: "torch.device"
    g: "torch.Generator"  # batches and posterior noise
    rng: np.random.Generator  # identity mixtures
    x: "torch.Tensor"  # (N, C, S, S) images at the network's size
    identity: "torch.Tensor"  # (N,) proxy index
    label: "torch.Tensor"  # (N,) utility label index
    opt_g: "torch.optim.Optimizer"  # encoder, decoder and identity codes
    opt_a: "torch.optim.Optimizer"  # adversary
    opt_c: "torch.optim.Optimizer"  # label critic
    sched: "torch.optim.lr_scheduler.LRScheduler"
    steps: int
    epochs: int
    batch: int
    pixels: float  # values per image
    log_q: float  # log of the number of proxies


def _classifier_step(net, opt, inputs, targets):
    """One cross-entropy update of ``net`` on ``inputs``; returns its logits (before the update) and loss."""
    import torch.nn.functional as F

    logits = net(inputs)
    loss = F.cross_entropy(logits, targets)
    opt.zero_grad(set_to_none=True)
    loss.backward()
    opt.step()
    return logits, loss


@register_method("proxy-mix")
class ProxyMix(DeidMethod):
    """A face per image from a random mixture of k proxy identities, keeping its label, pose and lighting."""

    needs_identity = False  # needed to fit (checked in _fit); to transform only when align is on
    set_level = True  # align: each identity's codes are standardised over the whole set
    holds_training_images = True  # the identity table and decoder render the training identities: the model is private
    needs_utility = True
    test_params = {"k": 2, "max_weight": 0.9, "image_size": 8, "width": 4, "code_dim": 2, "id_dim": 4, "hidden": 16, "epochs": 2,
                   "min_steps": 0, "draw_seed": 0}
    k_within = "train"  # the proxies are the training split's identities
    guarantee = ("each output's identity code is a random mixture of k distinct proxy identities drawn "
                 "independently of the input (its identity, pixels and position choose nothing); no output shows "
                 "a single proxy")
    param_docs = {"image_size": "side in pixels the encoder and decoder work at",
                  "code_dim": "size of the nuisance code z (what an image holds besides identity and label)",
                  "id_dim": "size of each proxy identity's learned code",
                  "hidden": "units of the decoder's fully connected layer",
                  "max_steps": "at most this many optimiser steps (None: no cap)",
                  "kl_weight": "weight of the KL term that keeps the nuisance code small",
                  "adversary_weight": "weight of the adversary that keeps identity out of the nuisance code",
                  "nuisance_noise": "posterior standard deviations of noise added to each code at transform",
                  "label_weight": "weight of the label critic that mixture faces must convince",
                  "cycle_weight": "weight of render consistency (a face encoded again gives its code back)",
                  "align": "each identity's codes get the whole set's mean and spread at transform",
                  "align_covariance": "align the whole covariance, not only the per-dimension spread",
                  "mixture": "random: a drawn mixture per image; mean: the proxies' mean code (ablation)",
                  "warp": "decoder heads for in-plane pose and a lighting plane"}

    def __init__(self, k: AnonymityK = 3, alpha: PositiveFloat = 2.0,
                 image_size: Annotated[PowerOfTwo, Field(ge=8)] = 32, width: PositiveInt = 16,
                 code_dim: PositiveInt = 8, id_dim: PositiveInt = 16, hidden: PositiveInt = 256,
                 max_weight: Annotated[float, Field(gt=0.0, le=1.0)] | None = 0.5,
                 epochs: PositiveInt = 30, min_steps: NonNegativeInt = 800, max_steps: PositiveInt | None = 2000,
                 batch_size: PositiveInt = 64,
                 lr: PositiveFloat = 2e-3, kl_weight: NonNegativeFloat = 0.1,
                 adversary_weight: NonNegativeFloat = 0.05, nuisance_noise: NonNegativeFloat = 0.0,
                 label_weight: NonNegativeFloat = 1.0, cycle_weight: NonNegativeFloat = 0.0, align: bool = True, align_covariance: bool = False, avoid_copies: bool = True, mixture: Literal["random", "mean"] = "random", warp: bool = True,
                 device: Device = "auto", random_state: Seed = 0, draw_seed: Seed | None = None) -> None:
        self.k = k
        self.alpha = alpha
        self.max_weight = max_weight
        self.image_size = image_size
        self.width = width
        self.code_dim = code_dim
        self.id_dim = id_dim
        self.hidden = hidden
        self.epochs = epochs
        self.min_steps = min_steps
        self.max_steps = max_steps
        self.batch_size = batch_size
        self.lr = lr
        self.kl_weight = kl_weight
        self.adversary_weight = adversary_weight
        self.nuisance_noise = nuisance_noise
        self.label_weight = label_weight
        self.cycle_weight = cycle_weight
        self.align = align
        self.align_covariance = align_covariance
        self.avoid_copies = avoid_copies
        self.mixture = mixture
        self.warp = warp
        self.device = device
        self.random_state = random_state
        self.draw_seed = draw_seed

    # -- building -----------------------------------------------------------------------
    def _init_modules(self) -> None:
        import torch

        from deid.models.classifier import SmallCNN
        from deid.models.mixer import CodeAdversary, MixtureDecoder, NuisanceEncoder

        c, s = self.input_shape_[0], int(self.image_size)
        q, e = len(self.proxies_), len(self.labels_)
        self.encoder_ = NuisanceEncoder(c, s, int(self.width), int(self.code_dim))
        self.decoder_ = MixtureDecoder(c, s, int(self.width), int(self.code_dim), int(self.id_dim), e,
                                       int(self.hidden), bool(self.warp))
        self.identity_codes_ = torch.nn.Embedding(q, int(self.id_dim))
        self.adversary_ = CodeAdversary(int(self.code_dim), q, int(self.hidden) // 2 or 1)
        self.label_critic_ = SmallCNN(c, e, int(self.width))

    def _modules(self) -> "list[torch.nn.Module]":
        return [self.encoder_, self.decoder_, self.identity_codes_, self.adversary_, self.label_critic_]

    def _cap(self) -> float | None:
        return None if self.max_weight is None else float(self.max_weight)

    # -- fitting ------------------------------------------------------------------------
    def _fit(self, X, identity, utility):
        """Train the encoder, decoder, identity codes, adversary and label critic on ``X`` (the training split)."""
        from deid.device import resolve_device

        self._learn_labels(identity, utility)
        dev = resolve_device(self.device)
        run = self._start_training(X, identity, utility, dev)
        history, done = self._train(run)
        for m in self._modules():
            m.eval()
        # the training codes, the reference a smaller batch is aligned with (align_codes)
        self.ref_codes_ = self._encode(X, dev)[0]
        self.ref_identity_ = run.identity.numpy().astype(np.int32)
        self.ref_label_ = run.label.numpy().astype(np.int32)
        self.history_ = history
        self.train_report_ = {"epochs": len(history["reconstruction"]), "steps": done,
                              "identity_chance": 1.0 / len(self.proxies_),
                              "adversary_acc_last_epoch": history["adversary_acc"][-1]}

    def _learn_labels(self, identity, utility) -> None:
        """The proxy identities and utility labels the model knows; refuses a ``k`` or ``max_weight`` they cannot meet."""
        if identity is None:
            raise MethodError("method 'proxy-mix' needs identity labels to fit")
        if utility is None:
            raise MethodError("method 'proxy-mix' needs utility labels to fit (it keeps each image's label)")
        self.proxies_ = sorted(str(v) for v in np.unique(identity))
        if int(self.k) > len(self.proxies_):
            raise ConfigError(f"proxy-mix: k = {self.k} but the training set holds only {len(self.proxies_)} "
                              "identities; lower k or train on more identities")
        if self.max_weight is not None and float(self.max_weight) * int(self.k) <= 1.0:
            raise ConfigError(f"proxy-mix: max_weight = {self.max_weight} cannot be met by k = {self.k} weights "
                              f"summing to 1; raise it above 1/k or raise k")
        self.labels_ = sorted(str(v) for v in np.unique(utility))

    def _start_training(self, X, identity, utility, dev) -> "_Training":
        """Seeded fresh modules in train mode on ``dev``, the data as tensors, the optimisers and the schedule."""
        import torch

        from deid.models.autoencoder import to_net
        from deid.models.classifier import epochs_for, seed_everything

        seed = int(self.random_state)
        g = seed_everything(seed)
        self._init_modules()
        for m in self._modules():
            m.to(dev).train()
        rng = np.random.default_rng(seed)
        x_all = to_net(torch.from_numpy(np.ascontiguousarray(X)), int(self.image_size))
        qi = torch.from_numpy(np.searchsorted(self.proxies_, np.asarray(identity).astype(str)))
        ei = torch.from_numpy(np.searchsorted(self.labels_, np.asarray(utility).astype(str)))
        n = len(X)
        bs = int(min(self.batch_size, n))
        epochs = epochs_for(int(self.epochs), n, bs, int(self.min_steps))
        gen_params = [*self.encoder_.parameters(), *self.decoder_.parameters(), *self.identity_codes_.parameters()]
        opt_g = torch.optim.Adam(gen_params, lr=float(self.lr))
        opt_a = torch.optim.Adam(self.adversary_.parameters(), lr=float(self.lr))
        opt_c = torch.optim.Adam(self.label_critic_.parameters(), lr=float(self.lr))
        steps = max(1, epochs * -(-n // bs))
        if self.max_steps is not None:  # a bigger set is seen for the same number of updates, not more of them
            steps = min(steps, int(self.max_steps))
        sched = torch.optim.lr_scheduler.CosineAnnealingLR(opt_g, T_max=steps, eta_min=float(self.lr) * 0.05)
        return _Training(dev=dev, g=g, rng=rng, x=x_all, identity=qi, label=ei, opt_g=opt_g, opt_a=opt_a,
                         opt_c=opt_c, sched=sched, steps=steps, epochs=epochs, batch=bs,
                         pixels=float(np.prod(x_all.shape[1:])), log_q=float(np.log(len(self.proxies_))))

    def _train(self, run: "_Training") -> tuple[dict[str, list[float]], int]:
        """The training loop, until ``run.steps`` updates: the per-epoch history and the updates made."""
        import torch
        from tqdm.auto import tqdm

        history = {"reconstruction": [], "kl": [], "adversary_ce": [], "adversary_acc": [], "critic_acc": [],
                   "mixture_label_acc": []}
        done = 0
        bar = tqdm(total=run.steps, desc="fit proxy-mix", unit="step", mininterval=2.0)
        for epoch in range(run.epochs):
            if done >= run.steps:
                break
            tot = np.zeros(6)
            count = 0
            for idx in torch.randperm(len(run.x), generator=run.g).split(run.batch):
                if done >= run.steps:
                    break
                if len(idx) < 2:
                    continue
                done += 1
                bar.update(1)
                tot += self._train_step(run, idx) * len(idx)
                count += len(idx)
            for key, v in zip(history, tot / max(count, 1)):
                history[key].append(float(v))
            bar.set_postfix(rec=f"{history['reconstruction'][-1]:.4f}", adv=f"{history['adversary_acc'][-1]:.2f}")
            _log.info("proxy-mix epoch %d: step %d of %d, reconstruction %.4f, adversary accuracy %.2f", epoch + 1,
                      done, run.steps, history["reconstruction"][-1], history["adversary_acc"][-1])
        bar.close()
        return history, done

    def _train_step(self, run: "_Training", idx) -> np.ndarray:
        """One update of the adversary, the label critic, then the generator on the batch ``idx``: its
        reconstruction error per pixel, KL, adversary loss and accuracy, critic accuracy, mixture label accuracy."""
        import torch
        import torch.nn.functional as F

        dev = run.dev
        xb, ib, eb = run.x[idx].to(dev), run.identity[idx].to(dev), run.label[idx].to(dev)
        mu, logvar = self.encoder_(xb)
        z = mu + torch.randn(mu.shape, generator=run.g).to(dev) * (0.5 * logvar).exp()
        # the adversary learns to read identity from the code as it is now
        logits, loss_a = _classifier_step(self.adversary_, run.opt_a, z.detach(), ib)
        # the label critic learns the labels from real images
        c_logits, _ = _classifier_step(self.label_critic_, run.opt_c, xb, eb)
        # the encoder and decoder reconstruct, keep the code small, and leave the adversary at uniform
        onehot = F.one_hot(eb, len(self.labels_)).float()
        rec = self.decoder_(z, self.identity_codes_(ib), onehot)
        l_rec = F.mse_loss(rec, xb, reduction="sum") / len(xb)
        kl = -0.5 * (1 + logvar - mu.pow(2) - logvar.exp()).sum(1).mean()
        l_adv = -F.log_softmax(self.adversary_(z), dim=1).mean(1).mean() - run.log_q  # KL(uniform ‖ adversary) ≥ 0
        loss = l_rec + float(self.kl_weight) * kl + float(self.adversary_weight) * run.pixels ** 0.5 * l_adv
        mix_acc = 0.0
        if float(self.label_weight) > 0:
            mix_loss, mix_acc = self._mixture_loss(run, z, onehot, eb)
            loss = loss + mix_loss
        run.opt_g.zero_grad(set_to_none=True)
        loss.backward()
        run.opt_g.step()
        run.sched.step()
        acc = float((logits.argmax(1) == ib).float().mean())
        c_acc = float((c_logits.argmax(1) == eb).float().mean())
        return np.array([float(l_rec.detach()) / run.pixels, float(kl.detach()), float(loss_a.detach()), acc, c_acc,
                         mix_acc])

    def _mixture_loss(self, run: "_Training", z, onehot, eb) -> "tuple[torch.Tensor, float]":
        """Faces of drawn identity mixtures must show their label to the critic (and, with ``cycle_weight``,
        the code they were drawn with): the weighted loss and the critic's accuracy on them."""
        import torch
        import torch.nn.functional as F

        q = len(self.proxies_)
        w = torch.from_numpy(draw_mixtures(len(z), q, min(int(self.k), q), float(self.alpha), run.rng,
                                           self._cap())).to(run.dev)
        mixed = self.decoder_(z, w @ self.identity_codes_.weight, onehot)
        m_logits = self.label_critic_(mixed)
        loss = float(self.label_weight) * F.cross_entropy(m_logits, eb)
        mix_acc = float((m_logits.argmax(1) == eb).float().mean())
        if float(self.cycle_weight) > 0:  # the mixture face must show the code it was drawn with
            loss = loss + float(self.cycle_weight) * _render_consistency(self.encoder_, mixed, z)
        return loss, mix_acc

    # -- transforming -------------------------------------------------------------------
    def _label_index(self, utility) -> np.ndarray:
        if utility is None:
            raise MethodError("method 'proxy-mix' needs each image's utility label to transform")
        u = np.asarray(utility).astype(str)
        unknown = sorted(set(u.tolist()) - set(self.labels_))
        if unknown:
            raise MethodError(f"method 'proxy-mix': labels {unknown[:5]} were not seen in training; "
                              f"known: {self.labels_}")
        return np.searchsorted(self.labels_, u)

    @no_grad
    def _encode(self, X, dev) -> tuple[np.ndarray, np.ndarray]:
        """The encoder's posterior means and standard deviations ``(N, Z)`` each, 256 images at a time."""
        import torch

        from deid.models.autoencoder import to_net

        enc = self.encoder_.to(dev).eval()
        mus, sds = [], []
        for s in range(0, len(X), 256):
            xb = to_net(torch.from_numpy(np.ascontiguousarray(X[s:s + 256])), int(self.image_size)).to(dev)
            mu, logvar = enc(xb)
            mus.append(mu.float().cpu().numpy())
            sds.append((0.5 * logvar).exp().float().cpu().numpy())
        return np.concatenate(mus), np.concatenate(sds)

    @no_grad
    def _transform(self, X, identity, utility):
        import torch
        import torch.nn.functional as F

        from deid.device import resolve_device
        from deid.models.autoencoder import from_net

        ei = self._label_index(utility)
        rng = draw_stream(self.draw_seed, X)
        if self.mixture == "mean":  # ablation: one identity code, the proxies' mean, for every image
            mix = np.full((len(X), len(self.proxies_)), 1.0 / len(self.proxies_), np.float32)
        else:
            mix = draw_mixtures(len(X), len(self.proxies_), int(self.k), float(self.alpha), rng, self._cap())
        noise = rng.standard_normal((len(X), int(self.code_dim))).astype(np.float32)
        dev = resolve_device(self.device)
        dec, table = (m.to(dev).eval() for m in self._modules()[1:3])
        codes = table.weight.detach()
        mu, sd = self._encode(X, dev)
        z = mu + noise * float(self.nuisance_noise) * sd
        if self.align:
            if identity is None:
                raise MethodError("method 'proxy-mix' with align on needs identity labels to transform")
            reference = None
            if getattr(self, "ref_codes_", None) is not None:  # moments from the training codes where they hold them
                reference = (self.ref_codes_, np.asarray(self.proxies_)[self.ref_identity_],
                             np.asarray(self.labels_)[self.ref_label_])
            z = align_codes(z, identity, utility, reference, bool(self.align_covariance))
        e = len(self.labels_)

        def decode(rows: np.ndarray) -> np.ndarray:
            out = np.empty((len(rows), *X.shape[1:]), dtype=np.float32)
            for s in range(0, len(rows), 256):
                r = rows[s:s + 256]
                ident = torch.from_numpy(mix[r]).to(dev) @ codes
                lab = F.one_hot(torch.from_numpy(ei[r]).to(dev), e).float()
                y = dec(torch.from_numpy(z[r]).to(dev), ident, lab).float().cpu()
                out[s:s + len(r)] = from_net(y, tuple(X.shape[-2:])).clamp(0.0, 1.0).numpy()
            return out

        out = decode(np.arange(len(X)))
        self.redrawn = 0
        if self.avoid_copies and self.mixture == "random":
            from deid.release_policy import perceptual_hash

            # an output the release policy would call a copy of its input (the same perceptual hash) gets a
            # new mixture; the loop ends because each redraw is a fresh independent draw
            rows = np.arange(len(X))
            for _ in range(100):
                same = rows[[np.array_equal(perceptual_hash(X[i]), perceptual_hash(out[i])) for i in rows]]
                if not len(same):
                    break
                self.redrawn += len(same)
                mix[same] = draw_mixtures(len(same), len(self.proxies_), int(self.k), float(self.alpha), rng,
                                          self._cap())
                out[same] = decode(same)
                rows = same
        return out
