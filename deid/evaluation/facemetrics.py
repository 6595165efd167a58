"""Face metrics with dlib (Nousi et al.): faceness, DEID and DIV, plus descriptor features for
linkage with an independent recognizer (dlib's ResNet face descriptor), and faces kept: of the
images in whose original dlib finds a face, the share in whose output it still finds one.

Meaningful on real faces only (the descriptor was trained on photos, not cartoons). Inputs are
aligned face crops, so the descriptor is taken on the whole crop; faceness asks dlib's HOG
detector whether it still finds a face. Descriptors are cached on disk by image content hash:
each image is described once across runs.
"""

from __future__ import annotations

import hashlib
import importlib.util
from functools import lru_cache
from pathlib import Path

import cv2
import numpy as np

from deid.imageio import to_uint8

__all__ = ["model_file", "DescriptorCache", "describe", "faces_found", "faceness", "faces_kept", "deid_rate",
           "diversity", "DLIB_THRESHOLD"]

DLIB_THRESHOLD = 0.6
_SIZE = 150  # dlib's descriptor expects 150 × 150 chips


def model_file(name: str) -> Path:
    """Path of a dlib model file shipped by ``face-recognition-models`` (the package is not imported)."""
    spec = importlib.util.find_spec("face_recognition_models")
    if spec is None or not spec.submodule_search_locations:
        raise FileNotFoundError("the 'face-recognition-models' package is not installed; pip install the project")
    p = Path(list(spec.submodule_search_locations)[0]) / "models" / name
    if not p.exists():
        raise FileNotFoundError(f"dlib model file {p} is missing; reinstall face-recognition-models")
    return p


@lru_cache(maxsize=1)
def _dlib():
    import dlib

    return (dlib.get_frontal_face_detector(),
            dlib.face_recognition_model_v1(str(model_file("dlib_face_recognition_resnet_model_v1.dat"))),
            dlib.shape_predictor(str(model_file("shape_predictor_5_face_landmarks.dat"))),
            dlib)


def _chip(img: np.ndarray) -> np.ndarray:
    """float ``(C, H, W)`` in [0,1] → uint8 RGB ``(150, 150, 3)``."""
    u = to_uint8(img)
    u = np.repeat(u, 3, axis=0) if u.shape[0] == 1 else u
    return np.ascontiguousarray(cv2.resize(u.transpose(1, 2, 0), (_SIZE, _SIZE), interpolation=cv2.INTER_LINEAR))


class DescriptorCache:
    """128-d dlib descriptors on disk, one ``.npy`` per image content hash."""

    def __init__(self, directory: str | Path | None):
        self.directory = Path(directory) if directory else None
        self.hits = 0
        self.misses = 0

    def key(self, img: np.ndarray) -> str:
        return hashlib.sha256(to_uint8(img).tobytes() + str(img.shape).encode()).hexdigest()[:32]

    def get(self, k: str) -> np.ndarray | None:
        if self.directory is None:
            return None
        f = self.directory / k[:2] / f"{k}.npy"
        return np.load(f, allow_pickle=False) if f.exists() else None  # data only: no object arrays

    def put(self, k: str, v: np.ndarray) -> None:
        if self.directory is None:
            return
        from data_contracts.atomic import atomic_file

        with atomic_file(self.directory / k[:2] / f"{k}.npy", cache=True) as tmp, open(tmp, "wb") as f:
            np.save(f, v)


def describe(X: np.ndarray, cache: DescriptorCache | None = None) -> np.ndarray:
    """dlib ResNet descriptors ``(N, 128)`` of ``(N, C, H, W)`` face crops, through ``cache``."""
    det, rec, sp, dlib = _dlib()
    cache = cache or DescriptorCache(None)
    out = np.zeros((len(X), 128), np.float32)
    for i, img in enumerate(X):
        k = cache.key(img)
        v = cache.get(k)
        if v is None:
            cache.misses += 1
            chip = _chip(img)
            faces = det(chip, 0)
            if faces:  # align on 5 landmarks when dlib finds the face; else the crop as it is
                box = max(faces, key=lambda r: r.area())
                chip = dlib.get_face_chip(chip, sp(chip, box), size=_SIZE, padding=0.25)
            v = np.asarray(rec.compute_face_descriptor(chip), dtype=np.float32)
            cache.put(k, v)
        else:
            cache.hits += 1
        out[i] = v
    return out


def faces_found(X: np.ndarray) -> np.ndarray:
    """Per image of ``(N, C, H, W)``, whether dlib's HOG detector finds a face (upsampled once): ``(N,)`` bool.
    The audit detects each image once and reads :func:`faceness` and :func:`faces_kept` from the result."""
    from deid.pixels import chunks

    det = _dlib()[0]
    return np.asarray([len(det(_chip(img), 1)) > 0 for _, c in chunks(X) for img in c], dtype=bool)


def faceness(X: np.ndarray | None = None, *, found: np.ndarray | None = None) -> float:
    """Share of images in which dlib's HOG detector finds a face (upsampled once); ``found``: the
    detections of :func:`faces_found`, when already made."""
    found = faces_found(X) if found is None else np.asarray(found, dtype=bool)
    return float(found.mean()) if len(found) else float("nan")


def faces_kept(original_found: np.ndarray, output_found: np.ndarray) -> dict[str, float]:
    """Of the images in whose original dlib finds a face, the share in whose output it still finds one:
    ``faces_kept`` with its 95 % Wilson interval (``_lo``/``_hi``) over those images (row-aligned
    :func:`faces_found` results). Nothing when dlib finds no face in any original."""
    from deid.evaluation.intervals import wilson

    o, f = np.asarray(original_found, dtype=bool), np.asarray(output_found, dtype=bool)
    if o.shape != f.shape:
        raise ValueError(f"detections of {o.shape} originals and {f.shape} outputs must be row-aligned")
    n = int(o.sum())
    if n == 0:
        return {}
    k = int((o & f).sum())
    lo, hi = wilson(k, n)
    return {"faces_kept": k / n, "faces_kept_lo": lo, "faces_kept_hi": hi}


def deid_rate(orig_desc: np.ndarray, anon_desc: np.ndarray, threshold: float = DLIB_THRESHOLD) -> float:
    """Share of outputs whose descriptor lies farther than ``threshold`` from their original's."""
    return float((np.linalg.norm(orig_desc - anon_desc, axis=1) > threshold).mean())


def diversity(anon_desc: np.ndarray, *, pairs: int = 10_000, seed: int = 0,
              threshold: float = DLIB_THRESHOLD) -> float:
    """Share of random output pairs (distinct rows) that dlib calls different people."""
    n = len(anon_desc)
    if n < 2:
        return float("nan")
    rng = np.random.default_rng(seed)
    a = rng.integers(0, n, pairs)
    b = (a + rng.integers(1, n, pairs)) % n
    return float((np.linalg.norm(anon_desc[a] - anon_desc[b], axis=1) > threshold).mean())
