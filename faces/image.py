"""Decode untrusted image bytes into (H, W, 3) uint8 RGB arrays; encode face thumbnails and crops.

Sizes are checked from the header before any pixel is decoded, so a small file that declares a
huge image (a decompression bomb) is refused without allocating it.
"""

from __future__ import annotations

import io
import warnings
from dataclasses import dataclass
from pathlib import Path

import numpy as np
from PIL import Image, ImageOps, UnidentifiedImageError

from facesim.contract.api import MAX_IMAGE_BYTES
from facesim.faces.detect import Face

THUMBNAIL_SIZE = 128
# A thumbnail shows the face box grown by this fraction on each side (hair, chin).
THUMBNAIL_MARGIN = 0.25


class ImageError(ValueError):
    """The bytes are not a usable image; the message says why, in words fit for a user."""


@dataclass(frozen=True)
class ImageLimits:
    max_bytes: int = MAX_IMAGE_BYTES
    max_pixels: int = 40_000_000


def decode_image(data: bytes, limits: ImageLimits = ImageLimits()) -> np.ndarray:
    """Decode JPEG/PNG/... bytes to RGB uint8, applying EXIF orientation."""
    return decode_reduced(data, limits, max_side=None)[0]


def decode_reduced(data: bytes, limits: ImageLimits, max_side: int | None) -> tuple[np.ndarray, float]:
    """Like `decode_image`, but an image whose longer side is over 2 x `max_side` is decoded smaller,
    keeping the longer side at least `max_side`: JPEGs at 1/2, 1/4 or 1/8 scale by libjpeg itself
    (the full image is never in memory), other formats shrunk by an integer factor right after
    decoding. Returns the pixels and the scale back to the original (original px per decoded px)."""
    image = _open_checked(data, limits)
    original_side = max(image.size)
    try:
        if max_side and image.format == "JPEG":
            image.draft(None, (max_side, max_side))
        image.load()
        if max_side:
            image = _reduce(image, max_side)
        ImageOps.exif_transpose(image, in_place=True)  # in place: no copy of an upright image
    except (OSError, SyntaxError, ValueError) as error:
        raise ImageError(f"the image is corrupt or truncated: {error}") from None
    rgb = _to_rgb(image)
    return rgb, original_side / max(rgb.shape[:2])


def declared_pixels(data: bytes, limits: ImageLimits = ImageLimits()) -> int:
    """Width x height from the header alone (the same checks as decoding, no pixel decoded)."""
    width, height = _open_checked(data, limits).size
    return width * height


def _reduce(image: Image.Image, max_side: int) -> Image.Image:
    factor = max(image.size) // max_side
    if factor < 2:
        return image
    try:
        return image.reduce(factor)
    except (ValueError, NotImplementedError):  # a mode Pillow can't reduce (16-bit, ...): keep it whole
        return image


def read_image(path: str | Path, limits: ImageLimits = ImageLimits()) -> np.ndarray:
    """Read and decode an image file; errors name the file."""
    path = Path(path)
    try:
        data = path.read_bytes()
    except OSError as error:
        raise ImageError(f"cannot read {path}: {error.strerror or error}") from None
    try:
        return decode_image(data, limits)
    except ImageError as error:
        raise ImageError(f"{path}: {error}") from None


def _open_checked(data: bytes, limits: ImageLimits) -> Image.Image:
    """Parse only the header and refuse empty or oversized files and images with too many pixels."""
    if not data:
        raise ImageError("the image is empty (0 bytes)")
    if len(data) > limits.max_bytes:
        raise ImageError(f"the image is too large: {len(data):,} bytes (limit {limits.max_bytes:,})")
    try:
        with warnings.catch_warnings():
            # Pillow warns (and raises beyond twice its own limit); our limit is checked below.
            warnings.simplefilter("ignore", Image.DecompressionBombWarning)
            image = Image.open(io.BytesIO(data))
    except Image.DecompressionBombError:
        raise ImageError(f"the image declares too many pixels (limit {limits.max_pixels:,})") from None
    except (UnidentifiedImageError, OSError, SyntaxError, ValueError):
        raise ImageError("the data is not an image in a known format (JPEG, PNG, WebP, BMP, TIFF, ...)") from None
    width, height = image.size
    if width * height > limits.max_pixels:
        raise ImageError(f"the image declares {width} x {height} pixels, too many (limit {limits.max_pixels:,} pixels)")
    if width == 0 or height == 0:
        raise ImageError(f"the image has no pixels ({width} x {height})")
    return image


def _to_rgb(image: Image.Image) -> np.ndarray:
    """Grayscale, palette, RGBA, CMYK and 16-bit/float images become 8-bit RGB."""
    if image.mode in ("I;16", "I;16L", "I;16B", "I;16N", "I", "F"):
        pixels = np.asarray(image, dtype=np.float64)
        gray = np.clip(pixels * (255.0 / _full_scale(image.mode, pixels)), 0, 255).round().astype(np.uint8)
        return np.ascontiguousarray(np.repeat(gray[:, :, None], 3, axis=2))
    if image.mode in ("RGBA", "LA", "PA") or (image.mode == "P" and "transparency" in image.info):
        # Composite on white so transparent backgrounds don't turn black.
        rgba = image.convert("RGBA")
        background = Image.new("RGBA", rgba.size, (255, 255, 255, 255))
        image = Image.alpha_composite(background, rgba)
    return np.ascontiguousarray(np.asarray(image.convert("RGB"), dtype=np.uint8))


def _full_scale(mode: str, pixels: np.ndarray) -> float:
    """The value that means white: 16-bit images 65535, float images in [0, 1] 1.0, else 255."""
    peak = float(pixels.max(initial=0))
    if mode.startswith("I;16") or peak > 255:
        return 65535.0
    if mode == "F" and peak <= 1.0:
        return 1.0
    return 255.0


def thumbnail_jpeg(rgb: np.ndarray, face: Face, size: int = THUMBNAIL_SIZE) -> bytes:
    """A square JPEG of the face with some context, for galleries and the UI."""
    x, y, w, h = face.box
    side = max(w, h) * (1 + 2 * THUMBNAIL_MARGIN)
    cx, cy = x + w / 2, y + h / 2
    height, width = rgb.shape[:2]
    left, top = int(max(0, cx - side / 2)), int(max(0, cy - side / 2))
    right, bottom = int(min(width, cx + side / 2)), int(min(height, cy + side / 2))
    region = Image.fromarray(rgb[top : max(bottom, top + 1), left : max(right, left + 1)])
    region.thumbnail((size, size))
    buffer = io.BytesIO()
    region.save(buffer, format="JPEG", quality=85)
    return buffer.getvalue()


def png_bytes(rgb: np.ndarray) -> bytes:
    buffer = io.BytesIO()
    Image.fromarray(rgb).save(buffer, format="PNG")
    return buffer.getvalue()
