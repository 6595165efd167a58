"""Face detection, 5-point landmarks and aligned tight crops with dlib (King, "Dlib-ml", JMLR 2009;
HOG detector after Dalal & Triggs, CVPR 2005; MMOD CNN detector, King, arXiv:1502.00046).

Model files come from the installed ``face-recognition-models`` package, found on disk without
importing it; nothing is downloaded. Detections (every face's box, score and landmarks) are
cached on disk by the image's content hash and the detector settings, so a rerun, or a rerun
at another crop size or face policy, does not detect again.
"""

from __future__ import annotations

import importlib.util
import json
import struct
from dataclasses import dataclass
from pathlib import Path
from typing import TYPE_CHECKING, Literal

import numpy as np
from pydantic import BaseModel, ConfigDict, Field, model_validator

from deid.errors import DeidError

if TYPE_CHECKING:  # pragma: no cover
    from deid.preprocessing import PreprocessConfig

__all__ = [
    "FacePolicy",
    "FaceError",
    "NoFaceError",
    "MultipleFacesError",
    "SmallFaceError",
    "ImageTooSmallError",
    "ModelFilesError",
    "Detection",
    "DetectionCache",
    "model_dir",
    "detect_faces",
    "align_face",
    "exif_orientation",
    "apply_exif_orientation",
    "with_default_cache",
]

_MODEL_FILES = {
    "landmarks5": "shape_predictor_5_face_landmarks.dat",
    "cnn": "mmod_human_face_detector.dat",
}


class FacePolicy(BaseModel):
    """How faces are found in in-the-wild photos and what happens when that goes wrong.

    The defaults follow common practice for LFW-style photos: HOG detector upsampled once (finds
    faces down to ~40 px), the largest face kept when there are several, images with no face or
    a face under ``min_face`` pixels quarantined. Detection is staged: a first pass at
    ``upsample_first`` (0: ~4× cheaper than 1), and only an image where it finds no face is tried
    again at each next upsample up to ``upsample``, the most the detector ever tries.
    """

    model_config = ConfigDict(extra="forbid", frozen=True)

    detector: Literal["hog", "cnn"] = "hog"
    upsample: int = Field(1, ge=0, le=3, description="most times the image is upsampled before detection")
    upsample_first: int | None = Field(
        0, ge=0, le=3,
        description="upsample of the first pass; an image where it finds no face is retried at each next upsample "
                    "up to `upsample`; None: one pass at `upsample`",
    )
    threshold: float = Field(0.0, description="HOG: adjust_threshold; CNN: minimum confidence")
    min_face: int = Field(40, ge=1, description="smallest accepted face (shorter box side, input pixels)")
    padding: float = Field(0.25, ge=0.0, le=2.0, description="margin around the landmarks in the crop (dlib)")
    on_no_face: Literal["quarantine", "keep_image"] = "quarantine"
    on_multiple: Literal["largest", "quarantine"] = "largest"
    on_small: Literal["quarantine", "keep"] = "quarantine"
    skip_detection: bool = Field(False, description="inputs are aligned crops already: take a centred square")
    aligned_crop: float = Field(0.8, gt=0.0, le=1.0, description="side of that square / the shorter image side")
    exif: bool = Field(True, description="apply the JPEG EXIF orientation before detection")
    cache_dir: str | None = Field(None, description="detection cache; None: next to the ingest output")

    @model_validator(mode="after")
    def _first_pass_within_upsample(self) -> "FacePolicy":
        if self.upsample_first is not None and self.upsample_first > self.upsample:
            raise ValueError(f"upsample_first ({self.upsample_first}) is above upsample ({self.upsample}), the most "
                             "the detector tries: lower upsample_first, or raise upsample")
        return self

    def upsamples(self) -> tuple[int, ...]:
        """The upsample of each detection pass, in order; a pass runs only when the ones before found no face."""
        first = self.upsample if self.upsample_first is None else self.upsample_first
        return tuple(range(first, self.upsample + 1))

    def detector_key(self, upsample: int | None = None) -> str:
        """What a cached detection pass at ``upsample`` (default: ``self.upsample``) depends on, besides the
        image bytes. Each pass is cached on its own, so a staged policy and a single pass share entries."""
        u = self.upsample if upsample is None else upsample
        return f"{self.detector}-u{u}-t{self.threshold:g}-x{int(self.exif)}-lm5"


class FaceError(DeidError, ValueError):
    """A photo does not yield exactly one usable face under the configured policy."""


class NoFaceError(FaceError):
    """The detector found no face."""


class MultipleFacesError(FaceError):
    """Several faces and the policy says quarantine."""


class SmallFaceError(FaceError):
    """The face is smaller than ``min_face``."""


class ImageTooSmallError(FaceError):
    """The whole image is smaller than the smallest accepted face."""


class ModelFilesError(DeidError, FileNotFoundError):
    """dlib's model files are not installed."""


@dataclass(frozen=True)
class Detection:
    """One face: box ``(left, top, right, bottom)`` in input pixels, score, 5 landmarks ``(5, 2)``."""

    box: tuple[int, int, int, int]
    score: float
    landmarks: tuple[tuple[float, float], ...]

    @property
    def side(self) -> int:
        return min(self.box[2] - self.box[0], self.box[3] - self.box[1])

    @property
    def area(self) -> int:
        return (self.box[2] - self.box[0]) * (self.box[3] - self.box[1])


def model_dir() -> Path:
    """The ``models`` folder of ``face-recognition-models``, located without importing the package."""
    spec = importlib.util.find_spec("face_recognition_models")
    if spec is None or not spec.submodule_search_locations:
        raise ModelFilesError("face-recognition-models is not installed; it provides dlib's model files")
    d = Path(list(spec.submodule_search_locations)[0]) / "models"
    for name in _MODEL_FILES.values():
        if not (d / name).is_file():
            raise ModelFilesError(f"dlib model file {d / name} is missing; reinstall face-recognition-models")
    return d


_MODELS: dict[str, object] = {}


def _model(kind: str):
    """Per-process singletons: detectors and the landmark predictor load once per worker."""
    m = _MODELS.get(kind)
    if m is None:
        import dlib

        if kind == "hog":
            m = dlib.get_frontal_face_detector()
        elif kind == "cnn":
            m = dlib.cnn_face_detection_model_v1(str(model_dir() / _MODEL_FILES["cnn"]))
        elif kind == "landmarks5":
            m = dlib.shape_predictor(str(model_dir() / _MODEL_FILES["landmarks5"]))
        else:  # pragma: no cover
            raise KeyError(kind)
        _MODELS[kind] = m
    return m


def detect_faces(img: np.ndarray, policy: FacePolicy = FacePolicy(), *,
                 events: list[str] | None = None) -> list[Detection]:
    """Every face in ``uint8`` ``(H, W)`` or ``(H, W, 3)`` RGB ``img``, best score first, with landmarks.

    The passes of ``policy.upsamples()`` in order, stopping at the first that finds a face: where the
    first pass finds one, the result is exactly that pass's. Appends the path taken to ``events``:
    ``detected_upsample_<u>`` (the first pass sufficed) or ``retried_upsample_<u>`` (the last pass run).
    """
    return _staged_detect(img, policy, None, None, events)


def _detect_pass(img: np.ndarray, policy: FacePolicy, upsample: int) -> list[Detection]:
    """One detector call at ``upsample``, with landmarks."""
    img = np.ascontiguousarray(img)
    if policy.detector == "hog":
        rects, scores, _ = _model("hog").run(img, upsample, policy.threshold)
        found = list(zip(rects, scores))
    else:
        found = [(d.rect, d.confidence) for d in _model("cnn")(img, upsample) if d.confidence >= policy.threshold]
    predictor = _model("landmarks5")
    h, w = img.shape[:2]
    out = []
    for rect, score in found:
        shape = predictor(img, rect)
        pts = tuple((float(shape.part(i).x), float(shape.part(i).y)) for i in range(shape.num_parts))
        box = (max(0, rect.left()), max(0, rect.top()), min(w, rect.right() + 1), min(h, rect.bottom() + 1))
        out.append(Detection(box=box, score=float(score), landmarks=pts))
    return sorted(out, key=lambda d: -d.score)


class DetectionCache:
    """Detections on disk, one small JSON file per (image content hash, detector settings).

    Writes are atomic (temporary file + rename), so worker processes can share a cache.
    """

    def __init__(self, directory: str | Path):
        self.directory = Path(directory)

    def _path(self, sha256: str, key: str) -> Path:
        return self.directory / sha256[:2] / f"{sha256}-{key}.json"

    def get(self, sha256: str, key: str) -> list[Detection] | None:
        p = self._path(sha256, key)
        try:
            raw = json.loads(p.read_text())
        except (OSError, ValueError):
            return None
        return [Detection(tuple(d["box"]), d["score"], tuple(tuple(x) for x in d["landmarks"])) for d in raw["faces"]]

    def put(self, sha256: str, key: str, faces: list[Detection]) -> None:
        from data_contracts.atomic import atomic_file

        with atomic_file(self._path(sha256, key), cache=True) as tmp:
            tmp.write_text(json.dumps({"faces": [{"box": list(d.box), "score": d.score,
                                                   "landmarks": [list(x) for x in d.landmarks]} for d in faces]}))


def exif_orientation(data: bytes) -> int:
    """The EXIF orientation (1–8) of JPEG bytes; 1 when absent or unreadable."""
    if len(data) < 4 or data[:2] != b"\xff\xd8":
        return 1
    i = 2
    while i + 4 <= len(data) and data[i] == 0xFF:
        marker = data[i + 1]
        if marker in (0xD9, 0xDA):  # end of image, start of scan: no EXIF before the pixels
            return 1
        seg_len = struct.unpack(">H", data[i + 2 : i + 4])[0]
        seg = data[i + 4 : i + 2 + seg_len]
        if marker == 0xE1 and seg[:6] == b"Exif\x00\x00":
            tiff = seg[6:]
            if len(tiff) < 8 or tiff[:2] not in (b"II", b"MM"):
                return 1
            e = "<" if tiff[:2] == b"II" else ">"
            ifd = struct.unpack(e + "I", tiff[4:8])[0]
            if ifd + 2 > len(tiff):
                return 1
            n = struct.unpack(e + "H", tiff[ifd : ifd + 2])[0]
            for k in range(n):
                off = ifd + 2 + 12 * k
                if off + 12 > len(tiff):
                    return 1
                tag, typ = struct.unpack(e + "HH", tiff[off : off + 4])
                if tag == 0x0112 and typ == 3:
                    v = struct.unpack(e + "H", tiff[off + 8 : off + 10])[0]
                    return v if 1 <= v <= 8 else 1
            return 1
        i += 2 + seg_len
    return 1


def apply_exif_orientation(img: np.ndarray, data: bytes) -> np.ndarray:
    """Turn a decoded image upright as its JPEG EXIF orientation says (a no-op for other files)."""
    o = exif_orientation(data)
    if o == 1:
        return img
    t = {
        2: lambda a: a[:, ::-1],
        3: lambda a: a[::-1, ::-1],
        4: lambda a: a[::-1, :],
        5: lambda a: np.swapaxes(a, 0, 1),
        6: lambda a: np.rot90(a, k=-1),
        7: lambda a: np.rot90(np.swapaxes(a, 0, 1), 2),
        8: lambda a: np.rot90(a, k=1),
    }[o]
    return np.ascontiguousarray(t(img))


def _staged_detect(img: np.ndarray, policy: FacePolicy, cache: DetectionCache | None, sha: str | None,
                   events: list[str] | None) -> list[Detection]:
    """The policy's passes, each read from ``cache`` when there, stopping at the first with a face.

    One event per image names the path it took: ``detected_upsample_<u>`` when the first pass ran and
    no retry was needed, ``retried_upsample_<u>`` when the passes went on to ``u`` (found or not),
    ``detection_cached`` when every pass needed was in the cache.
    """
    faces: list[Detection] = []
    event = "detection_cached"
    for i, u in enumerate(policy.upsamples()):
        key = policy.detector_key(u)
        hit = cache.get(sha, key) if cache is not None else None
        if hit is None:
            faces = _detect_pass(img, policy, u)
            if cache is not None:
                cache.put(sha, key, faces)
            event = f"{'retried' if i else 'detected'}_upsample_{u}"
        else:
            faces = hit
        if faces:
            break
    if events is not None:
        events.append(event)
    return faces


def _cached_detect(img: np.ndarray, sha: str | None, policy: FacePolicy, events: list[str] | None) -> list[Detection]:
    cache = DetectionCache(policy.cache_dir) if policy.cache_dir and sha else None
    return _staged_detect(img, policy, cache, sha, events)


def _centre_square(img: np.ndarray, fraction: float) -> np.ndarray:
    h, w = img.shape[:2]
    s = max(1, int(round(min(h, w) * fraction)))
    top, left = (h - s) // 2, (w - s) // 2
    return img[top : top + s, left : left + s]


def align_face(img: np.ndarray, *, data_sha256: str | None = None, cfg: "PreprocessConfig",
               where: str = "<image>", events: list[str] | None = None) -> np.ndarray:
    """Detect, align (5-point similarity transform) and tightly crop the face of a photo.

    ``img``: ``uint8`` ``(H, W)`` or ``(H, W, 3)`` RGB, already upright. Returns
    ``uint8`` ``(size, size[, 3])`` with ``size = cfg.size`` and the input's channels (colour
    conversion is left to :func:`deid.preprocessing.preprocess_image`). Raises a
    :class:`FaceError` subclass, naming ``where``, when the policy says quarantine; appends what
    happened (``detected_upsample_0``, ``retried_upsample_1``, ``detection_cached``,
    ``multiple_faces_kept_largest``, ...) to ``events``. The box policy (``on_multiple``, ``min_face``)
    applies to the faces of the pass that found them.
    """
    import dlib

    policy: FacePolicy = cfg.faces
    h, w = img.shape[:2]
    if policy.skip_detection:
        if events is not None:
            events.append("skipped_detection")
        return _centre_square(img, policy.aligned_crop)
    if min(h, w) < policy.min_face:
        raise ImageTooSmallError(f"{where}: image {w}×{h} is too small to hold a face of min_face={policy.min_face} px")
    faces = _cached_detect(img, data_sha256, policy, events)
    if not faces:
        if policy.on_no_face == "keep_image":
            if events is not None:
                events.append("no_face_kept_image")
            return img
        tried = ", then ".join(map(str, policy.upsamples()))
        raise NoFaceError(f"{where}: no face found ({policy.detector} detector, upsample {tried})")
    if len(faces) > 1:
        if policy.on_multiple == "quarantine":
            raise MultipleFacesError(f"{where}: {len(faces)} faces found; the policy quarantines group photos")
        if events is not None:
            events.append("multiple_faces_kept_largest")
    face = max(faces, key=lambda d: (d.area, d.score))
    if face.side < policy.min_face:
        if policy.on_small == "quarantine":
            raise SmallFaceError(f"{where}: face of {face.side} px is below min_face={policy.min_face} px")
        if events is not None:
            events.append("small_face_kept")
    rect = dlib.rectangle(face.box[0], face.box[1], face.box[2] - 1, face.box[3] - 1)
    shape = dlib.full_object_detection(rect, [dlib.point(int(round(x)), int(round(y))) for x, y in face.landmarks])
    chip = dlib.get_face_chip(np.ascontiguousarray(img), shape, size=cfg.size, padding=policy.padding)
    return np.ascontiguousarray(chip)


def with_default_cache(cfg: "PreprocessConfig", out_dir: str | Path) -> "PreprocessConfig":
    """``cfg`` with the detection cache next to ``out_dir`` (``.<name>.faces``) when none is configured.

    The cache lives beside the output, not in it, because the output directory is replaced as a
    whole on every rebuild. Configs without dlib alignment are returned unchanged.
    """
    if cfg.align != "dlib" or cfg.faces.cache_dir is not None or cfg.faces.skip_detection:
        return cfg
    out_dir = Path(out_dir)
    cache = out_dir.parent / f".{out_dir.name}.faces"
    return cfg.model_copy(update={"faces": cfg.faces.model_copy(update={"cache_dir": str(cache)})})
