"""Decode untrusted image bytes into (H, W, 3) uint8 RGB arrays.

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


class ImageError(ValueError):
    """The bytes are not a usable image; the message says why, in words fit for a user."""


@dataclass(frozen=True)
class ImageLimits:
    max_bytes: int = MAX_IMAGE_BYTES
    max_pixels: int = 40_000_000


def decode_image(data: bytes, limits: ImageLimits = ImageLimits()) -> np.ndarray:
    """Decode JPEG/PNG/... bytes to RGB uint8, applying EXIF orientation."""
    if not data:
        raise ImageError("the image is empty (0 bytes)")
    if len(data) > limits.max_bytes:
        raise ImageError(f"the image is too large: {len(data):,} bytes (limit {limits.max_bytes:,})")
    image = _open_checked(data, limits)
    try:
        image.load()
        image = ImageOps.exif_transpose(image)
    except (OSError, SyntaxError, ValueError) as error:
        raise ImageError(f"the image is corrupt or truncated: {error}") from None
    return _to_rgb(image)


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
    """Parse only the header and refuse images with too many pixels."""
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
