"""A FERG-like dataset drawn with OpenCV: stylized cartoon characters × 7 expressions.

FERG-DB (Aneja et al., 2016) cannot be downloaded here, so the demo and the tests use this
generator. It writes the FERG-DB tree ``FERG_DB_256/<character>/<character>_<expression>/
<character>_<expression>_<n>.png`` so the FERG loader reads it as it reads the real set.

Identity lives in face shape, skin and hair tone, eye and nose geometry and accessories;
expression in brows, eyes and mouth; nuisance in pose, scale, rotation, lighting and noise.
Binned nuisance factors (:data:`NUISANCE_BINS`) are recorded per image in the tree's optional
``attributes.csv``, which the FERG loader reads into ``attributes``: labels no method is given,
for auditing how much unrelated information an output keeps.
``entanglement`` makes each character express an emotion its own way (0: all characters share
one expression geometry; 1: strong per-character styles), the property that makes FERG hard.
``colour`` draws colour faces, as FERG's are (each character its own skin, hair, eye and
background colours); the default draws grayscale, and a grayscale tree is the same with or
without the flag's existence.
"""

from __future__ import annotations

import hashlib
import json
import os
from concurrent.futures import ProcessPoolExecutor
from dataclasses import dataclass
from multiprocessing import get_context
from pathlib import Path
from typing import Any

import cv2
import numpy as np
from pydantic import BaseModel, ConfigDict, Field

from data_contracts.atomic import atomic_file
from deid.datasets.ferg import ATTRIBUTES_FILE, FERG_CHARACTERS, FERG_EXPRESSIONS, write_ferg_attributes
from deid.splits import NEAR_DUPLICATE_BITS, image_hash64

__all__ = ["SyntheticFergConfig", "generate_ferg_like", "render_face", "character_traits", "character_palette",
           "NUISANCE_BINS"]

# Nuisance attributes recorded for every image: name → (the draw it bins, thresholds). The
# thresholds cut each uniform draw into equal thirds, so the three bins are balanced in expectation.
NUISANCE_BINS: dict[str, tuple[str, tuple[float, float]]] = {
    "pose_bin": ("angle", (-8 / 3, 8 / 3)),  # in-plane head rotation of ±8°: one way, upright, the other
    "light_bin": ("light_x", (-6.0, 6.0)),  # side light: brighter on the left, even, brighter on the right
    "scale_bin": ("scale", (0.96, 1.02)),  # face size: small, medium, large
}

# Expression geometry: brow_raise, brow_tilt (inner end up > 0), eye_open, mouth_curve
# (smile > 0), mouth_open, mouth_width, asymmetry.
_EXPRESSION_PARAMS = {
    "neutral": (0.0, 0.0, 1.0, 0.0, 0.0, 1.0, 0.0),
    "joy": (0.15, 0.0, 0.65, 1.0, 0.35, 1.25, 0.0),
    "sadness": (0.05, 0.9, 0.75, -0.9, 0.0, 0.85, 0.0),
    "anger": (-0.7, -1.0, 0.55, -0.25, 0.0, 0.8, 0.0),
    "fear": (0.8, 0.9, 1.45, -0.35, 0.5, 1.1, 0.0),
    "surprise": (1.0, 0.0, 1.55, 0.0, 1.0, 0.65, 0.0),
    "disgust": (-0.3, -0.35, 0.7, -0.45, 0.15, 0.9, 1.0),
}
_PARAM_SCALE = np.array([0.35, 0.35, 0.25, 0.35, 0.25, 0.15, 0.4], dtype=np.float64)


class SyntheticFergConfig(BaseModel):
    """Settings of the generator, a run config's ``dataset.synthetic``: how much data to draw and how.
    Defaults give 6 × 7 × 24 = 1,008 images in a few seconds. Fields are given by name, or the first
    ones by position (``SyntheticFergConfig(6, 24, size=64)``)."""

    model_config = ConfigDict(extra="forbid", frozen=True)

    n_characters: int = Field(6, ge=2, le=64)
    images_per_cell: int = Field(24, ge=2)
    size: int = Field(256, ge=32)
    entanglement: float = Field(0.5, ge=0.0, le=1.0)
    noise: float = Field(4.0, ge=0.0)
    seed: int = 0
    colour: bool = False  # RGB faces, as FERG's are (keep them with preprocess.grayscale: false); grayscale otherwise

    def __init__(self, *args: Any, **data: Any) -> None:
        """The fields by name, the first ``len(args)`` of them (in declaration order) by position."""
        if len(args) > len(type(self).model_fields):
            raise TypeError(f"SyntheticFergConfig takes at most {len(type(self).model_fields)} positional arguments")
        super().__init__(**dict(zip(type(self).model_fields, args)), **data)


def character_names(n: int) -> list[str]:
    """The first six are FERG's characters; more get synthetic names."""
    names = list(FERG_CHARACTERS[:n])
    names += [f"char{i:02d}" for i in range(len(names), n)]
    return names


def _rng(*keys: object) -> np.random.Generator:
    digest = hashlib.sha256(json.dumps(keys, default=str).encode()).digest()
    return np.random.default_rng(int.from_bytes(digest[:8], "little"))


def character_traits(index: int, n: int, seed: int, entanglement: float) -> dict:
    """The fixed look of character ``index`` of ``n`` and its per-expression style offsets."""
    r = _rng("character", seed, index)
    # Spread skin tones over the gray range so identity survives grayscale, then jitter.
    skin = 95 + 130 * ((index * 0.61803398875) % 1.0) + r.uniform(-6, 6)
    traits = {
        "skin": float(skin),
        "hair": float(r.uniform(10, 230) if abs(skin - 120) > 60 else r.choice([20, 235])),
        "hair_style": int(index % 4 if index < 4 else r.integers(0, 4)),
        "face_w": float(r.uniform(74, 96)),
        "face_h": float(r.uniform(92, 114)),
        "eye_dx": float(r.uniform(26, 40)),
        "eye_size": float(r.uniform(9, 15)),
        "iris": float(r.uniform(0, 90)),
        "nose_len": float(r.uniform(8, 24)),
        "nose_style": int(r.integers(0, 3)),
        "ear": float(r.uniform(0, 1)),
        "accessory": int(index % 5 if index < 5 else r.integers(0, 5)),
        "brow_w": float(r.uniform(4, 9)),
        "background": float(r.uniform(200, 250)),
    }
    style = {}
    for expr in FERG_EXPRESSIONS:
        off = _rng("style", seed, index, expr).normal(0.0, 1.0, size=7) * _PARAM_SCALE * 2.0
        style[expr] = (entanglement * off).tolist()
    traits["style"] = style
    return traits


def _bezier(p0, p1, p2, n: int = 24) -> np.ndarray:
    t = np.linspace(0.0, 1.0, n)[:, None]
    pts = (1 - t) ** 2 * np.asarray(p0) + 2 * (1 - t) * t * np.asarray(p1) + t**2 * np.asarray(p2)
    return pts


def _pl(img, pts, color, thick):
    cv2.polylines(img, [np.round(pts * 16).astype(np.int32)], False, color, thick, cv2.LINE_AA, shift=4)


@dataclass(frozen=True)
class _Draws:
    """One image's random numbers except pixel noise, in the order they are drawn."""

    background: float  # background grey offset
    intensity: float  # how strongly the expression shows
    jitter: np.ndarray  # (7,) expression-geometry jitter
    angle: float  # in-plane head rotation, degrees
    scale: float
    tx: float  # shift in pixels of the 256-pixel canvas
    ty: float
    light_x: float  # left-to-right lighting gradient (grey levels at the right edge)
    light_y: float  # top-to-bottom lighting gradient
    light_level: float  # overall brightness offset


def _draw(r: np.random.Generator) -> _Draws:
    background = r.uniform(-8, 8)
    intensity = r.uniform(0.7, 1.0)
    jitter = r.normal(0, 0.04, size=7)
    angle = r.uniform(-8, 8)
    scale = r.uniform(0.9, 1.08)
    tx, ty = r.uniform(-10, 10, size=2)
    light_x = r.uniform(-18, 18)
    light_y = r.uniform(-12, 12)
    light_level = r.uniform(-10, 10)
    return _Draws(background, intensity, jitter, angle, scale, float(tx), float(ty), light_x, light_y, light_level)


def render_face(traits: dict, expression: str, r: np.random.Generator, size: int = 256,
                noise: float = 4.0, palette: dict | None = None) -> np.ndarray:
    """Draw one uint8 cartoon face: ``(size, size)`` grayscale, or ``(size, size, 3)`` RGB with a
    ``palette`` (:func:`character_palette`)."""
    return _render(traits, expression, r, size, noise, palette)[0]


def character_palette(index: int, seed: int) -> dict[str, tuple[float, float, float]]:
    """Character ``index``'s colours (RGB): skin, hair, iris and background, from their own draws
    (the grayscale picture's random numbers are untouched)."""
    r = _rng("colour", seed, index)
    skins = [(255, 224, 196), (241, 194, 150), (224, 172, 105), (198, 134, 66), (141, 85, 36), (255, 205, 148),
             (120, 200, 120), (150, 180, 255)]  # cartoon skins include the odd green or blue one
    hairs = [(40, 30, 20), (110, 60, 20), (230, 200, 110), (200, 60, 30), (60, 60, 200), (220, 220, 220),
             (160, 40, 160), (20, 20, 20)]
    jitter = lambda c: tuple(float(np.clip(v + r.uniform(-12, 12), 0, 255)) for v in c)  # noqa: E731
    return {"skin": jitter(skins[(index + int(r.integers(0, 3))) % len(skins)]),
            "hair": jitter(hairs[(index * 3 + int(r.integers(0, 2))) % len(hairs)]),
            "iris": jitter([(60, 110, 200), (70, 140, 60), (100, 60, 30), (30, 30, 30)][int(r.integers(0, 4))]),
            "background": tuple(float(v) for v in r.uniform(170, 250, size=3))}


def _colourise(canvas: np.ndarray, traits: dict, palette: dict, background: float) -> np.ndarray:
    """The grayscale drawing as RGB: each grey level the drawing uses for a part gets the part's
    colour, and levels in between (anti-aliased edges, shading) are interpolated."""
    anchors = {0.0: (0.0, 0.0, 0.0), 255.0: (255.0, 255.0, 255.0), 250.0: (250.0, 250.0, 250.0),
               float(int(np.clip(background, 0, 255))): palette["background"], float(int(traits["skin"])): palette["skin"],
               float(int(traits["hair"])): palette["hair"], float(int(traits["iris"])): palette["iris"]}
    levels = np.array(sorted(anchors))
    lut = np.stack([np.interp(np.arange(256), levels, [anchors[k][c] for k in levels]) for c in range(3)], axis=1)
    return lut[canvas].astype(np.float32)


def _render(traits: dict, expression: str, r: np.random.Generator, size: int, noise: float,
            palette: dict | None = None) -> tuple[np.ndarray, _Draws]:
    """One image and its draws: the face drawn upright on a 256-pixel canvas, then its nuisance."""
    d = _draw(r)
    canvas = _draw_face(traits, expression, d)
    return _nuisance(canvas, traits, d, r, size, noise, palette), d


def _expression(traits: dict, expression: str, d: _Draws) -> tuple[float, ...]:
    """The seven expression-geometry parameters of one image (:data:`_EXPRESSION_PARAMS`' order): the
    character's style of ``expression`` shown at the drawn intensity, jittered, kept drawable."""
    base = np.array(_EXPRESSION_PARAMS["neutral"])
    target = np.array(_EXPRESSION_PARAMS[expression]) + np.array(traits["style"][expression])
    if expression == "neutral":
        target = base + np.array(traits["style"]["neutral"]) * 0.5
    p = base + d.intensity * (target - base) + d.jitter
    brow_raise, brow_tilt, eye_open, curve, mopen, mwidth, asym = p
    return brow_raise, brow_tilt, max(eye_open, 0.25), curve, max(mopen, 0.0), max(mwidth, 0.5), asym


def _draw_face(traits: dict, expression: str, d: _Draws) -> np.ndarray:
    """The character's face with its expression on the 256-pixel grey canvas, before any nuisance."""
    S = 256
    img = np.full((S, S), traits["background"] + d.background, dtype=np.float32)
    canvas = np.zeros((S, S), dtype=np.uint8)
    canvas[:] = np.clip(img, 0, 255).astype(np.uint8)
    brow_raise, brow_tilt, eye_open, curve, mopen, mwidth, asym = _expression(traits, expression, d)
    cx, cy = S / 2, S / 2 + 8
    dark = 25 if int(traits["skin"]) > 90 else 235
    _draw_head(canvas, traits, cx, cy, dark)
    _draw_eyes(canvas, traits, cx, cy - 12, dark, brow_raise, brow_tilt, eye_open, asym)
    _draw_nose(canvas, traits, cx, cy, dark, asym)
    _draw_mouth(canvas, traits, cx, cy, dark, curve, mopen, mwidth, asym)
    _draw_accessory(canvas, traits, cx, cy, cy - 12, dark)
    return canvas


def _draw_head(canvas: np.ndarray, traits: dict, cx: float, cy: float, dark: int) -> None:
    """Hair behind the face, the ears, the outlined face and the hair on top of it."""
    skin, hair = int(traits["skin"]), int(traits["hair"])
    fw, fh = traits["face_w"], traits["face_h"]
    hs = traits["hair_style"]
    if hs == 1:
        cv2.ellipse(canvas, (int(cx), int(cy - 5)), (int(fw + 16), int(fh + 10)), 0, 0, 360, hair, -1, cv2.LINE_AA)
    elif hs == 3:
        cv2.ellipse(canvas, (int(cx), int(cy + 20)), (int(fw + 12), int(fh + 5)), 0, 180, 360, hair, -1, cv2.LINE_AA)
        cv2.rectangle(canvas, (int(cx - fw - 12), int(cy + 20)), (int(cx + fw + 12), int(cy + fh * 0.9)), hair, -1)
    if traits["ear"] > 0.4:
        er = int(10 + 10 * traits["ear"])
        for sx in (-1, 1):
            cv2.ellipse(canvas, (int(cx + sx * fw), int(cy)), (er, int(er * 1.5)), 0, 0, 360, skin, -1, cv2.LINE_AA)
    cv2.ellipse(canvas, (int(cx), int(cy)), (int(fw), int(fh)), 0, 0, 360, skin, -1, cv2.LINE_AA)
    cv2.ellipse(canvas, (int(cx), int(cy)), (int(fw), int(fh)), 0, 0, 360, dark, 2, cv2.LINE_AA)
    if hs in (0, 1, 3):
        cv2.ellipse(canvas, (int(cx), int(cy - fh * 0.55)), (int(fw * 0.95), int(fh * 0.5)), 0, 180, 360, hair, -1, cv2.LINE_AA)
    elif hs == 2:
        for k in range(-3, 4):
            cv2.circle(canvas, (int(cx + k * fw * 0.28), int(cy - fh * 0.88)), int(fw * 0.22), hair, -1, cv2.LINE_AA)


def _draw_eyes(canvas: np.ndarray, traits: dict, cx: float, ey: float, dark: int, brow_raise: float,
               brow_tilt: float, eye_open: float, asym: float) -> None:
    """Both eyes (white, outline, iris) opened as the expression says, and the brows above them."""
    skin, hair = int(traits["skin"]), int(traits["hair"])
    es = traits["eye_size"]
    for sx in (-1, 1):
        ex = cx + sx * traits["eye_dx"]
        a = 1.0 + (asym * 0.35 * sx)
        h = max(2.0, es * eye_open * a)
        cv2.ellipse(canvas, (int(ex), int(ey)), (int(es * 1.3), int(h)), 0, 0, 360, 250, -1, cv2.LINE_AA)
        cv2.ellipse(canvas, (int(ex), int(ey)), (int(es * 1.3), int(h)), 0, 0, 360, dark, 2, cv2.LINE_AA)
        ir = int(min(es * 0.75, h))
        if ir > 1:
            cv2.circle(canvas, (int(ex), int(ey)), ir, int(traits["iris"]), -1, cv2.LINE_AA)
        # Brows: inner end at x nearer the centre.
        by = ey - es * 1.2 - 14 - brow_raise * 12 - asym * 6 * sx
        inner = np.array([cx + sx * (traits["eye_dx"] - 16), by - brow_tilt * 9])
        outer = np.array([cx + sx * (traits["eye_dx"] + 18), by + brow_tilt * 5])
        mid = (inner + outer) / 2 + np.array([0, -4 - brow_raise * 3])
        _pl(canvas, _bezier(inner, mid, outer), hair if abs(hair - skin) > 50 else dark, int(traits["brow_w"]))


def _draw_nose(canvas: np.ndarray, traits: dict, cx: float, cy: float, dark: int, asym: float) -> None:
    """The character's nose, and the wrinkles above it of a strongly asymmetric expression (disgust)."""
    nl = traits["nose_len"]
    if traits["nose_style"] == 0:
        _pl(canvas, np.array([[cx, cy + 2], [cx - 6, cy + 2 + nl], [cx + 4, cy + 4 + nl]]), dark, 3)
    elif traits["nose_style"] == 1:
        cv2.circle(canvas, (int(cx), int(cy + nl)), int(5 + nl / 5), max(int(traits["skin"]) - 35, 0), -1, cv2.LINE_AA)
    else:
        cv2.ellipse(canvas, (int(cx), int(cy + nl)), (10, 6), 0, 0, 180, dark, 3, cv2.LINE_AA)
    if asym > 0.5:
        for sx in (-1, 1):
            _pl(canvas, np.array([[cx + sx * 6, cy - 4], [cx + sx * 12, cy + 4]]), dark, 2)


def _draw_mouth(canvas: np.ndarray, traits: dict, cx: float, cy: float, dark: int, curve: float, mopen: float,
                mwidth: float, asym: float) -> None:
    """The mouth: a curved line, or an open dark mouth between two curves, tilted by the asymmetry."""
    my = cy + 48 + traits["nose_len"] * 0.3
    mw = 26 * mwidth
    tilt = asym * 7
    left, right = np.array([cx - mw, my + tilt]), np.array([cx + mw, my - tilt])
    ctrl = np.array([cx, my + curve * 22])
    if mopen > 0.12:
        upper = _bezier(left, ctrl - np.array([0, mopen * 10]), right)
        lower = _bezier(right, ctrl + np.array([0, mopen * 26]), left)
        poly = np.concatenate([upper, lower])
        cv2.fillPoly(canvas, [np.round(poly * 16).astype(np.int32)], 40, cv2.LINE_AA, shift=4)
        _pl(canvas, np.concatenate([poly, poly[:1]]), dark, 3)
    else:
        _pl(canvas, _bezier(left, ctrl, right), dark, 5)


def _draw_accessory(canvas: np.ndarray, traits: dict, cx: float, cy: float, ey: float, dark: int) -> None:
    """The character's accessory, if any: glasses, a hat, earrings or freckles."""
    skin, es = int(traits["skin"]), traits["eye_size"]
    fw, fh = traits["face_w"], traits["face_h"]
    acc = traits["accessory"]
    if acc == 1:  # glasses
        for sx in (-1, 1):
            cv2.circle(canvas, (int(cx + sx * traits["eye_dx"]), int(ey)), int(es * 1.8), dark, 3, cv2.LINE_AA)
        _pl(canvas, np.array([[cx - traits["eye_dx"] + es * 1.8, ey], [cx + traits["eye_dx"] - es * 1.8, ey]]), dark, 3)
    elif acc == 2:  # hat
        top = int(cy - fh - 4)
        cv2.rectangle(canvas, (int(cx - fw * 0.7), top - 40), (int(cx + fw * 0.7), top + 12), dark, -1)
        cv2.rectangle(canvas, (int(cx - fw * 1.1), top + 6), (int(cx + fw * 1.1), top + 18), dark, -1)
    elif acc == 3:  # earrings
        for sx in (-1, 1):
            cv2.circle(canvas, (int(cx + sx * fw), int(cy + 28)), 8, 245 if skin < 150 else 30, -1, cv2.LINE_AA)
    elif acc == 4:  # freckles / beauty marks
        for k in range(5):
            cv2.circle(canvas, (int(cx - 40 + k * 20), int(cy + 20 + (k % 2) * 6)), 3, max(skin - 60, 0), -1, cv2.LINE_AA)


def _nuisance(canvas: np.ndarray, traits: dict, d: _Draws, r: np.random.Generator, size: int, noise: float,
              palette: dict | None) -> np.ndarray:
    """The drawn face posed (shift, rotation, scale), coloured with a ``palette``, lit, made noisy (the
    image's last random numbers) and resized to ``size``: the uint8 image."""
    S = canvas.shape[0]
    m = cv2.getRotationMatrix2D((S / 2, S / 2), d.angle, d.scale)
    m[:, 2] += (d.tx, d.ty)
    canvas = cv2.warpAffine(canvas, m, (S, S), flags=cv2.INTER_NEAREST if palette else cv2.INTER_LINEAR,
                            borderMode=cv2.BORDER_REPLICATE)
    gx = np.linspace(-1, 1, S, dtype=np.float32)[None, :]
    gy = np.linspace(-1, 1, S, dtype=np.float32)[:, None]
    light = d.light_x * gx + d.light_y * gy + d.light_level
    if palette is not None:  # colour the parts, then the same pose, light and noise on every channel
        rgb = _colourise(canvas, traits, palette, traits["background"] + d.background)
        out = cv2.GaussianBlur(rgb, (3, 3), 0) + light[:, :, None]
        out = out + r.normal(0.0, noise, size=out.shape[:2]).astype(np.float32)[:, :, None]
    else:
        out = canvas.astype(np.float32) + light + r.normal(0.0, noise, size=canvas.shape).astype(np.float32)
    out = np.clip(np.rint(out), 0, 255).astype(np.uint8)
    if size != S:
        out = cv2.resize(out, (size, size), interpolation=cv2.INTER_AREA)
    return out


def _bins(d: _Draws) -> dict[str, float]:
    return {k: float(np.searchsorted(th, getattr(d, draw), side="right")) for k, (draw, th) in NUISANCE_BINS.items()}


#: two images of one character whose perceptual hashes differ in at most this many bits at the drawn size
#: are redrawn: the ingest's split-leak check (``deid.splits.NEAR_DUPLICATE_BITS``, on the resized image)
#: would take them for frames of one recording; two bits more absorb most of what resizing changes
DISTINCT_BITS = NEAR_DUPLICATE_BITS + 2
#: ... and the sizes the set is commonly ingested at, where one bit more than the check's suffices
#: (a pair 2 bits apart at 50 px can be 6 apart at 256 px)
DISTINCT_AT = (32, 40, 48, 50, 64, 96, 128)
#: redraws of one image at most; past that the most distinct attempt is kept (a very large cell of one
#: character cannot have every pair of its images that far apart in a 63-bit hash)
MAX_REDRAWS = 40


def _hashes(img: np.ndarray) -> tuple[int, ...]:
    return (image_hash64(img), *(image_hash64(cv2.resize(img, (s, s), interpolation=cv2.INTER_AREA))
                                 for s in DISTINCT_AT if s < img.shape[0]))


def _gap(h: tuple[int, ...], seen: list[tuple[int, ...]]) -> int:
    """How far ``h`` is from the closest of ``seen``, in bits over each size's own limit (> 0: distinct)."""
    limits = (DISTINCT_BITS, *([NEAR_DUPLICATE_BITS + 1] * (len(h) - 1)))
    return min((min(bin(a ^ b).count("1") - lim for a, b, lim in zip(h, o, limits)) for o in seen), default=64)


def _distinct_render(traits: dict, expression: str, keys: tuple, cfg: SyntheticFergConfig, palette,
                     seen: list[tuple[int, ...]]) -> tuple[np.ndarray, _Draws, tuple[int, ...]]:
    """Draw one image whose hashes are further than their limits from every hash in ``seen``; the
    redraw's random numbers are keyed by the attempt, so a rerun draws the same image."""
    best = None
    for attempt in range(MAX_REDRAWS):
        r = _rng(*keys, *((attempt,) if attempt else ()))
        img, draws = _render(traits, expression, r, cfg.size, cfg.noise, palette)
        h = _hashes(img)
        gap = _gap(h, seen)
        if gap > 0:
            return img, draws, h
        if best is None or gap > best[3]:
            best = (img, draws, h, gap)
    return best[:3]


def _draw_character(args: tuple) -> tuple[int, dict[str, dict[str, float]]]:
    """Draw one character's folders (every expression); returns the image count and each image's
    nuisance bins. Every image is drawn (the next one's redraws depend on it); only missing files are
    written, and with ``render`` false none (the bins of a tree drawn before they were recorded)."""
    root, cfg_dict, index, name, render = args
    cfg = SyntheticFergConfig(**cfg_dict)
    traits = character_traits(index, cfg.n_characters, cfg.seed, cfg.entanglement)
    palette = character_palette(index, cfg.seed) if cfg.colour else None
    bins: dict[str, dict[str, float]] = {}
    seen: list[tuple[int, ...]] = []
    for expression in FERG_EXPRESSIONS:
        d = Path(root) / name / f"{name}_{expression}"
        if render:
            d.mkdir(parents=True, exist_ok=True)
        for n in range(1, cfg.images_per_cell + 1):
            path = d / f"{name}_{expression}_{n}.png"
            img, draws, h = _distinct_render(traits, expression, ("image", cfg.seed, index, expression, n), cfg,
                                             palette, seen)
            seen.append(h)
            if render and not path.exists():
                ok, buf = cv2.imencode(".png", img if img.ndim == 2 else cv2.cvtColor(img, cv2.COLOR_RGB2BGR))
                with atomic_file(path, cache=True) as tmp:
                    tmp.write_bytes(buf.tobytes())
            bins[f"{name}/{d.name}/{path.name}"] = _bins(draws)
    return cfg.images_per_cell * len(FERG_EXPRESSIONS), bins


def generate_ferg_like(out_dir: str | Path, cfg: SyntheticFergConfig = SyntheticFergConfig(),
                       *, workers: int | None = None, progress: bool = False) -> Path:
    """Write the FERG-layout tree ``<out_dir>/FERG_DB_256`` and return its path.

    Idempotent: a tree already generated with the same config is kept as it is (a marker file
    records the config); images missing from a partial run are drawn, existing ones kept. Each
    image's nuisance bins (:data:`NUISANCE_BINS`) go to ``attributes.csv`` at the root; a tree
    made before that file existed gets it on the next call, its images untouched.
    """
    root = Path(out_dir) / "FERG_DB_256"
    marker = root / ".deid-synthetic.json"
    settings = cfg.model_dump()
    if not cfg.colour:  # trees drawn before the flag existed keep their marker
        del settings["colour"]
    want = json.dumps(settings, sort_keys=True)
    complete = marker.exists() and marker.read_text() == want
    if complete and (root / ATTRIBUTES_FILE).exists():
        return root
    if marker.exists() and not complete:
        raise FileExistsError(
            f"{root} was generated with another config ({marker.read_text()}); remove it or choose another directory"
        )
    names = character_names(cfg.n_characters)
    jobs = [(str(root), cfg.model_dump(), i, name, not complete) for i, name in enumerate(names)]
    workers = 1 if complete else workers or min(len(jobs), os.cpu_count() or 1)
    bar = _progress(total=len(jobs) * len(FERG_EXPRESSIONS) * cfg.images_per_cell, desc="generate FERG-like", enabled=progress and not complete)
    bins: dict[str, dict[str, float]] = {}
    if workers <= 1:
        for n, b in map(_draw_character, jobs):
            bins.update(b)
            bar.update(n)
    else:
        with ProcessPoolExecutor(workers, mp_context=get_context("spawn")) as pool:
            for n, b in pool.map(_draw_character, jobs):
                bins.update(b)
                bar.update(n)
    bar.close()
    root.mkdir(parents=True, exist_ok=True)
    write_ferg_attributes(root / ATTRIBUTES_FILE, bins)
    marker.write_text(want)
    return root


def _progress(total: int, desc: str, enabled: bool):
    from tqdm.auto import tqdm

    return tqdm(total=total, desc=desc, unit="img", disable=not enabled)
