"""Decode, encode and convert images between files, PNG bytes and float arrays.

Arrays inside the library are ``float32`` in ``[0, 1]`` with shape ``(N, C, H, W)``; single
images on their way in and out of files are ``uint8`` ``(H, W)`` or ``(H, W, C)`` (RGB order).
"""

from __future__ import annotations

import cv2
import numpy as np
import pyarrow as pa

from deid.errors import ImageDecodeError

__all__ = [
    "decode_image",
    "encode_png",
    "decode_png",
    "to_uint8",
    "images_to_array",
    "array_to_pngs",
]

cv2.setNumThreads(1)


def decode_image(data: bytes, *, where: str = "<bytes>") -> np.ndarray:
    """Decode file bytes to ``uint8`` ``(H, W)`` gray or ``(H, W, 3)`` RGB.

    16-bit images are scaled to 8 bits, alpha is composited on white, palette images are
    expanded. Raises :class:`ImageDecodeError` naming ``where`` for empty, truncated or
    non-image bytes.
    """
    if len(data) == 0:
        raise ImageDecodeError(f"{where}: file is empty (0 bytes)")
    buf = np.frombuffer(data, dtype=np.uint8)
    img = cv2.imdecode(buf, cv2.IMREAD_UNCHANGED | cv2.IMREAD_IGNORE_ORIENTATION)
    if img is None:
        # OpenCV's TIFF reader refuses some palette files that Pillow-style readers take; try once more.
        img = cv2.imdecode(buf, cv2.IMREAD_COLOR)
    if img is None:
        raise ImageDecodeError(f"{where}: not a decodable image (truncated or unknown format)")
    if img.dtype == np.uint16:
        img = (img.astype(np.float32) / 257.0).round().astype(np.uint8)
    elif img.dtype != np.uint8:
        raise ImageDecodeError(f"{where}: unsupported sample type {img.dtype}")
    if img.ndim == 3 and img.shape[2] == 1:
        img = img[:, :, 0]
    if img.ndim == 3:
        if img.shape[2] == 4:
            alpha = img[:, :, 3:4].astype(np.float32) / 255.0
            rgb = img[:, :, :3].astype(np.float32) * alpha + 255.0 * (1.0 - alpha)
            img = rgb.round().astype(np.uint8)
        elif img.shape[2] != 3:
            raise ImageDecodeError(f"{where}: unsupported channel count {img.shape[2]}")
        img = cv2.cvtColor(img, cv2.COLOR_BGR2RGB)
    if img.size == 0:
        raise ImageDecodeError(f"{where}: image has no pixels")
    return img


def encode_png(img: np.ndarray) -> bytes:
    """``uint8`` ``(H, W)`` or ``(H, W, 3)`` RGB to PNG bytes (deterministic)."""
    if img.dtype != np.uint8:
        raise ValueError(f"encode_png wants uint8, got {img.dtype}")
    if img.ndim == 3:
        img = cv2.cvtColor(img, cv2.COLOR_RGB2BGR)
    ok, buf = cv2.imencode(".png", img, [cv2.IMWRITE_PNG_COMPRESSION, 3])
    if not ok:
        raise ValueError("PNG encoding failed")
    return buf.tobytes()


def decode_png(data: bytes) -> np.ndarray:
    """PNG bytes written by :func:`encode_png` back to ``uint8`` ``(H, W)`` or ``(H, W, 3)``."""
    return decode_image(data, where="<png>")


def to_uint8(x: np.ndarray) -> np.ndarray:
    """``float`` in ``[0, 1]`` to ``uint8`` with rounding and clipping."""
    return np.clip(np.rint(np.asarray(x, dtype=np.float32) * 255.0), 0, 255).astype(np.uint8)


def images_to_array(images: pa.Array | pa.ChunkedArray | list[bytes]) -> np.ndarray:
    """A column of PNG structs (or a list of PNG bytes) to ``float32`` ``(N, C, H, W)`` in ``[0, 1]``."""
    if isinstance(images, (pa.Array, pa.ChunkedArray)):
        if isinstance(images, pa.ChunkedArray):
            images = images.combine_chunks()
        blobs = images.field("bytes").to_pylist() if pa.types.is_struct(images.type) else images.to_pylist()
    else:
        blobs = list(images)
    if not blobs:
        raise ValueError("no images to decode")
    arrs = [decode_png(b) for b in blobs]
    first = arrs[0].shape
    if any(a.shape != first for a in arrs):
        raise ValueError(f"images differ in shape (first {first}); preprocess to one size before stacking")
    x = np.stack(arrs)
    if x.ndim == 3:
        x = x[:, None, :, :]
    else:
        x = x.transpose(0, 3, 1, 2)
    return np.ascontiguousarray(x, dtype=np.float32) / np.float32(255.0)


def array_to_pngs(x: np.ndarray) -> list[bytes]:
    """``float32`` ``(N, C, H, W)`` in ``[0, 1]`` to a list of PNG bytes."""
    if x.ndim != 4:
        raise ValueError(f"expected (N, C, H, W), got shape {x.shape}")
    u = to_uint8(x)
    if u.shape[1] == 1:
        return [encode_png(im[0]) for im in u]
    return [encode_png(im.transpose(1, 2, 0)) for im in u]
