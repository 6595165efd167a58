"""Decode, encode and convert images between files, PNG bytes and float arrays.

Arrays inside the library are ``float32`` in ``[0, 1]`` with shape ``(N, C, H, W)``; single
images on their way in and out of files are ``uint8`` ``(H, W)`` or ``(H, W, C)`` (RGB order).
"""

from __future__ import annotations

import io
import re
import struct
import warnings
from dataclasses import dataclass

import cv2
import numpy as np
import pyarrow as pa

from deid.errors import ImageDecodeError

__all__ = [
    "ImageHeader",
    "ImageRefusedError",
    "read_header",
    "check_header",
    "decode_image",
    "encode_png",
    "decode_png",
    "to_uint8",
    "images_to_array",
    "array_to_pngs",
]

cv2.setNumThreads(1)


class ImageRefusedError(ImageDecodeError):
    """An image that could be decoded but is refused by a rule read from its header.

    ``str(exc)`` is the quarantine reason and starts with the rule: ``too many pixels``,
    ``too small`` or ``multi-page``.
    """


@dataclass(frozen=True)
class ImageHeader:
    """What an image file's header says, read without decoding any pixel."""

    format: str
    width: int
    height: int
    frames: int = 1

    @property
    def pixels(self) -> int:
        return self.width * self.height


_BOMB_SIZE = re.compile(r"\((\d+) pixels\)")


def read_header(data: bytes, *, where: str = "<bytes>", max_pixels: int | None = None) -> ImageHeader:
    """Format, size and page count of image file bytes, from the header only (Pillow's parsers).

    Raises :class:`ImageRefusedError` (``too many pixels``) when Pillow itself refuses the size as
    a decompression bomb (above ``2 * PIL.Image.MAX_IMAGE_PIXELS``), and :class:`ImageDecodeError`
    naming ``where`` when the bytes are empty or no header can be read.
    """
    from PIL import Image, UnidentifiedImageError

    if len(data) == 0:
        raise ImageDecodeError(f"{where}: file is empty (0 bytes)")
    try:
        with warnings.catch_warnings():
            warnings.simplefilter("ignore", Image.DecompressionBombWarning)
            with Image.open(io.BytesIO(data)) as im:
                w, h = im.size
                fmt = im.format or "?"
                frames = int(getattr(im, "n_frames", 1) or 1)
    except Image.DecompressionBombError as exc:
        m = _BOMB_SIZE.search(str(exc))
        n = f"{int(m[1]):,}" if m else "more than Pillow's limit of"
        limit = f" > max_pixels {max_pixels:,}" if max_pixels is not None else ""
        raise ImageRefusedError(f"too many pixels: {where}: {n} pixels{limit}") from None
    except (UnidentifiedImageError, OSError, SyntaxError, ValueError, EOFError, struct.error) as exc:
        raise ImageDecodeError(f"{where}: not a decodable image (unreadable header: {_one_line(exc)})") from None
    return ImageHeader(fmt, int(w), int(h), frames)


def check_header(data: bytes, *, where: str = "<bytes>", max_pixels: int | None = None, min_side: int | None = None,
                 multipage: str = "first") -> ImageHeader:
    """:func:`read_header`, then the size and page rules, before any pixel is decoded.

    ``max_pixels`` refuses ``width * height`` above it (``too many pixels``); ``min_side``
    refuses images whose shorter side is below it (``too small``); ``multipage="quarantine"``
    refuses files with more than one page or frame (``multi-page``), ``"first"`` lets the
    decoder take page 1. Refusals raise :class:`ImageRefusedError`.
    """
    hdr = read_header(data, where=where, max_pixels=max_pixels)
    if max_pixels is not None and hdr.pixels > max_pixels:
        raise ImageRefusedError(
            f"too many pixels: {where}: {hdr.pixels:,} pixels ({hdr.width}×{hdr.height}) > max_pixels {max_pixels:,}"
        )
    if min_side is not None and min(hdr.width, hdr.height) < min_side:
        raise ImageRefusedError(f"too small: {where}: {hdr.width}×{hdr.height}, shorter side below min_side {min_side}")
    if multipage == "quarantine" and hdr.frames > 1:
        raise ImageRefusedError(
            f"multi-page: {where}: {hdr.format} file with {hdr.frames} pages or frames (multipage='first' keeps page 1)"
        )
    return hdr


_ADDRESS = re.compile(r" at 0x[0-9a-fA-F]+>")


def _one_line(exc: BaseException, limit: int = 200) -> str:
    """The exception's message on one line, without object addresses (the same file gives the same reason)."""
    text = _ADDRESS.sub(">", " ".join(str(exc).split()))
    return text if len(text) <= limit else text[: limit - 1] + "…"


def decode_image(data: bytes, *, where: str = "<bytes>") -> np.ndarray:
    """Decode file bytes to ``uint8`` ``(H, W)`` gray or ``(H, W, 3)`` RGB.

    16-bit images are scaled to 8 bits, alpha is composited on white, palette images are
    expanded; of a multi-page file only page 1 is read. Raises :class:`ImageDecodeError` naming
    ``where`` for empty, truncated or non-image bytes and for any error of the decoder. Nothing
    here limits the size: call :func:`check_header` first on untrusted files.
    """
    if len(data) == 0:
        raise ImageDecodeError(f"{where}: file is empty (0 bytes)")
    buf = np.frombuffer(data, dtype=np.uint8)
    try:
        img = cv2.imdecode(buf, cv2.IMREAD_UNCHANGED | cv2.IMREAD_IGNORE_ORIENTATION)
        if img is None:
            # OpenCV's TIFF reader refuses some palette files that Pillow-style readers take; try once more.
            img = cv2.imdecode(buf, cv2.IMREAD_COLOR)
    except cv2.error as exc:  # e.g. a header beyond OpenCV's own pixel limit
        raise ImageDecodeError(f"{where}: the decoder failed: {_one_line(exc)}") from None
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
    return images_to_uint8(images).astype(np.float32) / np.float32(255.0)


def images_to_uint8(images: pa.Array | pa.ChunkedArray | list[bytes]) -> np.ndarray:
    """A column of PNG structs (or a list of PNG bytes) to ``uint8`` ``(N, C, H, W)``."""
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
    return np.ascontiguousarray(x[:, None, :, :] if x.ndim == 3 else x.transpose(0, 3, 1, 2))


def array_to_pngs(x: np.ndarray) -> list[bytes]:
    """``float32`` ``(N, C, H, W)`` in ``[0, 1]`` to a list of PNG bytes."""
    if x.ndim != 4:
        raise ValueError(f"expected (N, C, H, W), got shape {x.shape}")
    u = to_uint8(x)
    if u.shape[1] == 1:
        return [encode_png(im[0]) for im in u]
    return [encode_png(im.transpose(1, 2, 0)) for im in u]
