"""Real-photo helpers for the loader tests: crops of scikit-image's astronaut photo saved as JPEG."""

from __future__ import annotations

from pathlib import Path

import cv2
import numpy as np

__all__ = ["face_crop", "write_jpeg", "noise_jpeg"]


def face_crop(astronaut: np.ndarray, k: int, size: tuple[int, int] = (250, 250)) -> np.ndarray:
    """A distinct photo of the astronaut's face: crop shifted by ``k``, brightness varied, some mirrored."""
    w, h = size
    cx, cy = 220 + (k % 5) * 4 - 8, 121 + (k % 3) * 4 - 4
    left = int(np.clip(cx - w // 2, 0, 512 - w))
    top = int(np.clip(cy - h // 2, 0, 512 - h))
    img = astronaut[top : top + h, left : left + w].astype(np.float32) * (0.85 + 0.03 * (k % 6))
    img = np.clip(img, 0, 255).astype(np.uint8)
    return np.ascontiguousarray(img[:, ::-1]) if k % 2 else img


def write_jpeg(path: Path, rgb: np.ndarray, quality: int = 92) -> Path:
    path.parent.mkdir(parents=True, exist_ok=True)
    bgr = cv2.cvtColor(rgb, cv2.COLOR_RGB2BGR) if rgb.ndim == 3 else rgb
    ok, buf = cv2.imencode(".jpg", bgr, [cv2.IMWRITE_JPEG_QUALITY, quality])
    assert ok
    path.write_bytes(buf.tobytes())
    return path


def noise_jpeg(path: Path, seed: int, size: tuple[int, int] = (250, 250)) -> Path:
    rng = np.random.default_rng(seed)
    img = cv2.GaussianBlur(rng.integers(0, 256, (size[1], size[0], 3), dtype=np.uint8), (0, 0), 3)
    return write_jpeg(path, img)
