"""Preprocessing from config: colour conversion, optional face alignment, resize (OpenCV)."""

from __future__ import annotations

from typing import Literal

import cv2
import numpy as np
from pydantic import BaseModel, ConfigDict, Field

from deid.faces import FacePolicy

__all__ = ["PreprocessConfig", "preprocess_image"]


class PreprocessConfig(BaseModel):
    """How every image of a dataset is brought to one shape.

    FERG in the literature: grayscale 50×50. JAFFE, LFW, CelebA: grayscale 64×64.
    ``align`` = ``"dlib"`` detects, aligns and crops faces (in-the-wild photos); ``"none"``
    takes the image as a face crop already. ``max_pixels``, ``min_side`` and ``multipage`` are
    checked from each file's header before it is decoded.
    """

    model_config = ConfigDict(extra="forbid", frozen=True)

    size: int = Field(50, ge=8, le=1024, description="output height and width in pixels")
    grayscale: bool = True
    align: Literal["none", "dlib"] = "none"
    faces: FacePolicy = Field(default_factory=FacePolicy, description="detector and face policy when align='dlib'")
    max_pixels: int = Field(
        40_000_000, ge=1, le=150_000_000,
        description="source images whose header claims more pixels (width × height) are quarantined undecoded; "
                    "at most 150 M, below Pillow's own decompression-bomb limit",
    )
    min_side: int = Field(16, ge=1, description="source images whose shorter side is below this are quarantined")
    max_file_bytes: int = Field(
        64 * 2**20, ge=1024,
        description="source files larger than this (from their size on disk, before any byte is read) are "
                    "quarantined; 64 MiB holds any photo a face set uses",
    )
    multipage: Literal["quarantine", "first"] = Field(
        "quarantine", description="multi-page or animated files: quarantine them, or keep page 1 and count it in "
                                  "the ingest summary's notes",
    )


def preprocess_image(img: np.ndarray, cfg: PreprocessConfig) -> np.ndarray:
    """``uint8`` ``(H, W)`` or ``(H, W, 3)`` RGB to ``uint8`` ``(size, size)`` or ``(size, size, 3)``."""
    if cfg.grayscale and img.ndim == 3:
        img = cv2.cvtColor(img, cv2.COLOR_RGB2GRAY)
    elif not cfg.grayscale and img.ndim == 2:
        img = cv2.cvtColor(img, cv2.COLOR_GRAY2RGB)
    h, w = img.shape[:2]
    if (h, w) != (cfg.size, cfg.size):
        if h != w:  # centre crop to a square before resizing, so faces keep their aspect
            s = min(h, w)
            top, left = (h - s) // 2, (w - s) // 2
            img = img[top : top + s, left : left + s]
        interp = cv2.INTER_AREA if img.shape[0] > cfg.size else cv2.INTER_LINEAR
        img = cv2.resize(img, (cfg.size, cfg.size), interpolation=interp)
    return np.ascontiguousarray(img)
