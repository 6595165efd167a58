"""proxy-morph: real faces of k random proxy identities, aligned, mixed and put into the image's pose and light
(k-Same-M, Gross, Sweeney, de la Torre, Baker, PET 2005/2006, with proxy-mix's identity drawn independently of the input).

The identity of each output is drawn without reading the input's identity, as in proxy-mix: a uniform
k-subset of the training identities that have images with the input's label, mixed with
Dirichlet(``alpha``) weights capped at ``max_weight``. The pixels come from those people's real, aligned
faces instead of a small decoder, so the output keeps the dataset's resolution, sharpness and colour.

**Fit** (training split). The mean face is the template. Every training image is registered to it by
an affine warp (``cv2.findTransformECC``), its first-order lighting plane (left-right and top-bottom
slopes) is estimated and removed, and the result is kept in the template's frame: the *proxy bank*,
one entry per training image with its identity and label (the model is private). The warp and the
slopes are the image's *nuisance*; their mean per identity and over the set are kept too.

**Transform.** For each image:

1. register it to the template: its warp ``W`` and lighting slopes ``s``;
2. **align the nuisance per identity**: ``W - mean_W(identity) + mean_W(set)`` (the same for ``s``),
   so the output takes the image's pose, scale and light *relative to its own identity*, and nothing of
   what is typical of that identity (a wide face, a head usually held low) — proxy-mix's code alignment
   in parameter space. Identities the training set lacks use the batch's own mean;
3. draw the proxies: k distinct identities among those with images of the input's label (uniform;
   never the input image itself), one image each: the first at random, the others the nearest of their
   identity's images to the first in the template frame (``pick: similar``, fewer ghosts) or at random;
4. warp each proxy once, from its own pose straight into the image's aligned pose (its warp to its
   identity's mean face composed with the inverse of the image's), its own lighting slopes removed;
   ``morph`` then moves the proxies to their weighted mean geometry by dense optical flow (DIS, from
   the first proxy to each other one: no landmarks, so cartoons and real faces alike), so one face
   has one pair of eyes;
5. mix them with the drawn weights; ``detail`` restores the high-frequency energy mixing and
   resampling remove (the weighted mean of the proxies' Laplacian energy as taken, gain at most 2.5),
   and the image's aligned lighting slopes are added;
6. **no copies** (``avoid_copies``): an output with its input's perceptual hash — the release policy's
   copy test — is drawn again from new proxies.

Expression comes from the proxies, which share the label; the input's own face geometry is never used
beyond the nuisance of step 2. The draws come from operating-system entropy unless ``draw_seed`` is set
(then from a stream keyed by it and each batch's pixels: :func:`deid.methods.base.draw_stream`).
"""

from __future__ import annotations

from typing import Annotated, Literal

import numpy as np
from pydantic import Field

from deid.errors import ConfigError, MethodError
from deid.methods.base import AnonymityK, DeidMethod, PositiveFloat, Seed, draw_stream
from deid.methods.registry import register_method

__all__ = ["ProxyMorph", "register_to", "light_slopes"]

_ECC_ITERS, _ECC_EPS = 60, 1e-4
_MAX_GAIN = 2.5


def _gray(img: np.ndarray) -> np.ndarray:
    """(C, H, W) → (H, W) float32."""
    return img.mean(axis=0).astype(np.float32) if img.shape[0] > 1 else img[0].astype(np.float32)


def register_to(template: np.ndarray, img: np.ndarray) -> np.ndarray:
    """The 2×3 affine ``W`` with ``img(W x) ≈ template(x)`` (ECC on the grey images); the identity when
    ECC does not converge."""
    import cv2

    warp = np.eye(2, 3, dtype=np.float32)
    try:
        _, warp = cv2.findTransformECC(template, _gray(img), warp, cv2.MOTION_AFFINE,
                                       (cv2.TERM_CRITERIA_EPS | cv2.TERM_CRITERIA_COUNT, _ECC_ITERS, _ECC_EPS), None, 3)
    except cv2.error:
        return np.eye(2, 3, dtype=np.float32)
    if not np.isfinite(warp).all() or abs(np.linalg.det(warp[:, :2]) - 1.0) > 0.5:
        return np.eye(2, 3, dtype=np.float32)
    return warp


def _grid(h: int, w: int) -> tuple[np.ndarray, np.ndarray]:
    ys, xs = np.mgrid[0:h, 0:w].astype(np.float32)
    return (xs - (w - 1) / 2) / w, (ys - (h - 1) / 2) / h


def light_slopes(img_hw: np.ndarray) -> np.ndarray:
    """The left-right and top-bottom slopes of the least-squares plane through a grey image (grey
    levels across the whole width / height)."""
    h, w = img_hw.shape
    gx, gy = _grid(h, w)
    A = np.stack([np.ones(h * w, np.float32), gx.ravel(), gy.ravel()], axis=1)
    coef, *_ = np.linalg.lstsq(A, img_hw.ravel(), rcond=None)
    return coef[1:].astype(np.float32)


def _warp(img: np.ndarray, W: np.ndarray, inverse: bool) -> np.ndarray:
    """(C, H, W) warped by the affine ``W``: ``inverse`` samples ``img(W x)`` (into the template frame),
    otherwise ``img(W⁻¹ x)`` (back into a pose)."""
    import cv2

    c, h, w = img.shape
    flags = cv2.INTER_CUBIC | (cv2.WARP_INVERSE_MAP if inverse else 0)
    if np.allclose(W, np.eye(2, 3), atol=1e-6):
        return img.copy()
    hwc = np.ascontiguousarray(img.transpose(1, 2, 0))
    out = cv2.warpAffine(hwc, W, (w, h), flags=flags, borderMode=cv2.BORDER_REPLICATE)
    return (out[:, :, None] if out.ndim == 2 else out).transpose(2, 0, 1)


def _flow(a: np.ndarray, b: np.ndarray) -> np.ndarray:
    """Dense optical flow (H, W, 2) from grey image ``a`` to ``b``: ``a(x) ≈ b(x + F(x))`` (DIS, OpenCV)."""
    import cv2

    dis = cv2.DISOpticalFlow_create(cv2.DISOPTICAL_FLOW_PRESET_MEDIUM)
    to8 = lambda g: np.clip(np.rint(g * 255), 0, 255).astype(np.uint8)  # noqa: E731
    return dis.calc(to8(a), to8(b), None)


def morph_to_mean_shape(faces: np.ndarray, w: np.ndarray) -> np.ndarray:
    """Each of ``faces`` (k, C, H, W) warped to the weighted mean geometry of all of them: flows from the
    first face to each other one, ``F_j``, their weighted mean ``F̄``, and face j sampled at
    ``y + F_j(y) − F̄(y)`` (a first-order multi-image morph; no landmarks needed)."""
    import cv2

    k, c, h, wd = faces.shape
    grey = [_gray(f) for f in faces]
    flows = [np.zeros((h, wd, 2), np.float32)] + [_flow(grey[0], grey[j]) for j in range(1, k)]
    mean = np.tensordot(w, np.stack(flows), axes=1)
    ys, xs = np.mgrid[0:h, 0:wd].astype(np.float32)
    out = np.empty_like(faces)
    for j in range(k):
        d = flows[j] - mean
        hwc = np.ascontiguousarray(faces[j].transpose(1, 2, 0))
        r = cv2.remap(hwc, xs + d[..., 0], ys + d[..., 1], cv2.INTER_LINEAR, borderMode=cv2.BORDER_REFLECT)
        out[j] = (r[:, :, None] if r.ndim == 2 else r).transpose(2, 0, 1)
    return out


def _laplacian_energy(img: np.ndarray) -> float:
    import cv2

    return float(cv2.Laplacian(_gray(img), cv2.CV_32F, ksize=1).var())


@register_method("proxy-morph")
class ProxyMorph(DeidMethod):
    """Real faces of k random proxy identities with the image's label, aligned, mixed, in the image's pose and light."""

    needs_identity = True  # the nuisance is aligned per identity
    needs_utility = True  # proxies share the image's label
    set_level = True  # identities the training set lacks are aligned on the batch's own moments
    holds_training_images = True  # the proxy bank is the training images: the model is private
    test_params = {"k": 2, "max_weight": 0.9, "draw_seed": 0}
    k_within = "train label"  # the proxies are training identities with the image's label
    guarantee = ("each output mixes real faces of k distinct proxy identities that share the image's label, drawn "
                 "independently of the input's identity; the input image itself is never a proxy")
    param_docs = {"align": "the image's pose and light taken relative to its own identity's mean",
                  "nuisance": "the output takes the image's pose and lighting slopes",
                  "detail": "restore the fine detail that mixing and resampling remove",
                  "morph": "warp the proxies onto each other before mixing",
                  "pick": "similar: proxies that look alike (fewer ghosts); random: any of the label's images"}

    def __init__(self, k: AnonymityK = 3, alpha: PositiveFloat = 2.0,
                 max_weight: Annotated[float, Field(gt=0.0, le=1.0)] = 0.5,
                 align: bool = True, nuisance: bool = True, detail: bool = True, morph: bool = True,
                 pick: Literal["similar", "random"] = "similar", avoid_copies: bool = True,
                 random_state: Seed = 0, draw_seed: Seed | None = None) -> None:
        self.k = k
        self.alpha = alpha
        self.max_weight = max_weight
        self.align = align
        self.nuisance = nuisance
        self.detail = detail
        self.morph = morph
        self.pick = pick
        self.avoid_copies = avoid_copies
        self.random_state = random_state
        self.draw_seed = draw_seed

    def _validate(self) -> None:
        if self.max_weight * self.k <= 1.0:
            raise ConfigError(f"proxy-morph: max_weight = {self.max_weight} cannot be met by {self.k} weights summing "
                              f"to 1; raise it above 1/k = {1 / self.k:.3g} or raise k")

    # -- fit ----------------------------------------------------------------------------------------
    def _nuisance_of(self, X: np.ndarray, ident: np.ndarray) -> tuple[np.ndarray, np.ndarray, np.ndarray]:
        """Per image: its warp (N, 2, 3) against its identity's mean face (the training split's, else the
        batch's own), its lighting slopes less its identity's mean slopes (N, 2), and its face in that
        frame with those slopes removed (N, C, H, W)."""
        n, c, h, w = X.shape
        gx, gy = _grid(h, w)
        templates = {str(k): v for k, v in zip(self.id_names_, self.id_templates_)} if hasattr(self, "id_templates_") else {}
        slope_means = {str(k): v for k, v in zip(self.id_names_, self.id_slopes_)} if hasattr(self, "id_slopes_") else {}
        grey = np.stack([_gray(x) for x in X])
        slopes_raw = np.zeros((n, 2), np.float32)
        warps = np.tile(np.eye(2, 3, dtype=np.float32), (n, 1, 1))
        slopes = np.zeros((n, 2), np.float32)
        canon = np.empty_like(X)
        for i_d in sorted(set(ident)):
            rows = np.flatnonzero(ident == i_d)
            template = templates.get(i_d)
            if template is None:
                template = grey[rows].mean(0)
            for i in rows:
                if self.align and (i_d in templates or len(rows) > 1):  # a lone unknown image is its own template
                    warps[i] = register_to(template, X[i])
                if self.nuisance:  # the plane through what differs from the identity's mean face: light, not the face
                    posed = _warp(grey[i][None], warps[i], inverse=True)[0]
                    slopes_raw[i] = light_slopes(posed - template)
            mean_s = slope_means.get(i_d)
            if mean_s is None:
                mean_s = slopes_raw[rows].mean(0)
            for i in rows:
                slopes[i] = slopes_raw[i] - mean_s
                flat = X[i] - (slopes[i][0] * gx + slopes[i][1] * gy)[None]
                canon[i] = _warp(flat, warps[i], inverse=True)
        return warps, slopes, canon

    def _fit(self, X, identity, utility):
        self._validate()
        if utility is None:
            raise MethodError("proxy-morph needs the utility labels to fit (proxies share the image's label)")
        ident, util = np.asarray(identity).astype(str), np.asarray(utility).astype(str)
        per_label = {u: len(set(ident[util == u])) for u in sorted(set(util))}
        short = {u: n for u, n in per_label.items() if n < self.k}
        if short:
            raise ConfigError(f"proxy-morph: k = {self.k} but the training split has fewer identities with label(s) "
                              f"{short}; lower k to {min(per_label.values())}")
        ids = sorted(set(ident))
        grey = np.stack([_gray(x) for x in X])
        self.id_names_ = np.array(ids)
        self.id_templates_ = np.stack([grey[ident == i].mean(0) for i in ids]).astype(np.float32)
        warps, slopes, canon = self._nuisance_of(X, ident)  # slopes already less each identity's mean
        # each slope is measured against its identity's mean face, so their mean per identity is 0 up to resampling
        self.id_slopes_ = np.zeros((len(ids), 2), np.float32)
        self.bank_ = np.clip(np.rint(X * 255), 0, 255).astype(np.uint8)  # as taken: each warped once, at transform
        self.bank_warp_ = warps.astype(np.float32)
        self.bank_slopes_ = slopes.astype(np.float32)
        self.bank_energy_ = np.array([_laplacian_energy(x) for x in X], np.float32)
        self.bank_thumb_ = _thumbs(canon)  # for picking look-alike proxies, in their identity's mean-face frame
        self.bank_identity_ = ident
        self.bank_label_ = util
        self.bank_hash_ = np.array([_digest(x) for x in X])
        nuisance = np.concatenate([warps.reshape(len(X), 6), slopes], axis=1)
        self.id_nuisance_ = np.stack([nuisance[ident == i].mean(0) for i in ids]).astype(np.float32)
        self.id_nuisance_std_ = np.stack([nuisance[ident == i].std(0) for i in ids]).astype(np.float32)
        self.set_nuisance_ = nuisance.mean(0).astype(np.float32)
        # the spread every identity's nuisance gets: the mean of the identities' own spreads
        self.set_nuisance_std_ = self.id_nuisance_std_.mean(0).astype(np.float32)

    # -- transform ----------------------------------------------------------------------------------
    def _aligned_nuisance(self, nuis: np.ndarray, ident: np.ndarray) -> np.ndarray:
        """Each identity's nuisance moved to the set's mean and spread, dimension by dimension (proxy-mix's
        code alignment): what is typical of a person — a head held low, a wider range of poses — is gone;
        the image's place within its own identity's range is kept."""
        known = {str(n): (m, sd) for n, m, sd in zip(self.id_names_, self.id_nuisance_, self.id_nuisance_std_)}
        out = np.empty_like(nuis)
        floor = 1e-6
        for i in sorted(set(ident)):
            rows = ident == i
            mean, sd = known.get(i, (None, None))
            if mean is None:
                mean, sd = nuis[rows].mean(0), nuis[rows].std(0) if rows.sum() > 1 else self.set_nuisance_std_
            scale = np.where(sd > floor, self.set_nuisance_std_ / np.maximum(sd, floor), 1.0)
            out[rows] = (nuis[rows] - mean) * scale + self.set_nuisance_
        return out

    def _proxies(self, label: str, own_hash: str, rng: np.random.Generator) -> tuple[list[int], np.ndarray]:
        """Bank rows of k distinct identities with ``label`` (never the input image) and their weights."""
        cand = np.flatnonzero((self.bank_label_ == label) & (self.bank_hash_ != own_hash))
        ids = np.unique(self.bank_identity_[cand])
        if len(ids) < self.k:
            raise MethodError(f"proxy-morph: label {label!r} has {len(ids)} proxy identities, k = {self.k}")
        chosen = rng.choice(ids, size=self.k, replace=False)
        rows = []
        first = None
        for j, p in enumerate(chosen):
            mine = cand[self.bank_identity_[cand] == p]
            if j == 0 or self.pick == "random":
                r = int(rng.choice(mine))
                first = r if j == 0 else first
            else:
                d = ((self.bank_thumb_[mine] - self.bank_thumb_[first]) ** 2).sum(1)
                r = int(mine[np.argmin(d)])
            rows.append(r)
        while True:  # Dirichlet restricted to the cap, by rejection: the draw reads no input
            w = rng.dirichlet(np.full(self.k, float(self.alpha)))
            if w.max() <= self.max_weight:
                return rows, w.astype(np.float32)

    def _mix(self, rows: list[int], w: np.ndarray, pose: np.ndarray) -> np.ndarray:
        """The proxies, each warped once from its own pose into ``pose`` (its warp to its identity's mean
        face, then ``pose``'s inverse) with its own lighting slopes removed, mixed by ``w``."""
        import cv2

        _, c, h, wd = self.bank_.shape
        gx, gy = _grid(h, wd)
        inv_pose = np.linalg.inv(np.vstack([pose, [0, 0, 1]]))
        faces = np.empty((len(rows), c, h, wd), np.float32)
        for j, r in enumerate(rows):
            s = self.bank_slopes_[r]
            flat = self.bank_[r].astype(np.float32) / 255.0 - (s[0] * gx + s[1] * gy)[None]
            M = (np.vstack([self.bank_warp_[r], [0, 0, 1]]) @ inv_pose)[:2].astype(np.float32)
            faces[j] = _warp(flat, M, inverse=True)
        if self.morph:
            faces = morph_to_mean_shape(faces, w)
        mix = np.tensordot(w, faces, axes=1)
        if not self.detail:
            return mix
        target = float(np.dot(w, self.bank_energy_[rows]))  # the proxies as taken, before any resampling
        have = _laplacian_energy(mix)
        if have <= 1e-12 or target <= have:
            return mix
        gain = min(_MAX_GAIN, float(np.sqrt(target / have)))
        low = np.stack([cv2.GaussianBlur(ch, (0, 0), 1.0) for ch in mix])
        return low + gain * (mix - low)

    def _transform(self, X, identity, utility):
        if utility is None:
            raise MethodError("proxy-morph needs the utility labels to transform (proxies share the image's label)")
        ident, util = np.asarray(identity).astype(str), np.asarray(utility).astype(str)
        warps, slopes, _ = self._nuisance_of(X, ident)
        nuis = self._aligned_nuisance(np.concatenate([warps.reshape(len(X), 6), slopes], axis=1), ident)
        rng = draw_stream(self.draw_seed, X)
        n, c, h, w = X.shape
        gx, gy = _grid(h, w)
        out = np.empty_like(X)
        self.redrawn = 0
        if self.avoid_copies:
            from deid.release_policy import perceptual_hash
        for i in range(n):
            W = nuis[i, :6].reshape(2, 3) if self.align else np.eye(2, 3, dtype=np.float32)
            s = nuis[i, 6:]
            for _ in range(100):  # each redraw is a fresh, independent draw: the loop ends
                rows, wts = self._proxies(util[i], _digest(X[i]), rng)
                face = np.clip(self._mix(rows, wts, W) + (s[0] * gx + s[1] * gy)[None], 0.0, 1.0)
                out[i] = np.rint(face * 255) / 255  # the grey levels it is written with: what the policy checks
                # an output the release policy would call a copy of its input (same perceptual hash) is drawn again
                if not self.avoid_copies or not np.array_equal(perceptual_hash(X[i]), perceptual_hash(out[i])):
                    break
                self.redrawn += 1
        return np.clip(out, 0.0, 1.0)


def _thumbs(X: np.ndarray, side: int = 16) -> np.ndarray:
    """(N, side²·C) float32 thumbnails, each standardised (matching reads shape, not brightness)."""
    import cv2

    out = []
    for img in X:
        t = cv2.resize(np.ascontiguousarray(img.transpose(1, 2, 0)), (side, side), interpolation=cv2.INTER_AREA)
        t = np.asarray(t, np.float32).ravel()
        out.append((t - t.mean()) / (t.std() + 1e-6))
    return np.stack(out).astype(np.float32)


def _digest(img: np.ndarray) -> str:
    import hashlib

    return hashlib.blake2b(np.clip(np.rint(np.asarray(img) * 255), 0, 255).astype(np.uint8).tobytes(),
                           digest_size=12).hexdigest()
