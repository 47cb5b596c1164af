"""Uploaded images: checked before they reach the predictor, and drawn with numbered face boxes.

The boxes are drawn server-side with Pillow so that search results work without JavaScript and
without inline styles (which the Content-Security-Policy forbids).
"""

from __future__ import annotations

import base64
import io
import re
from collections.abc import Sequence
from dataclasses import dataclass

from PIL import Image, ImageDraw, ImageFont, ImageOps, UnidentifiedImageError

# What the predictor decodes (docs/protocol.md: base64 JPEG/PNG).
ACCEPTED_FORMATS = {"JPEG", "PNG"}
ACCEPTED_EXTENSIONS = (".jpg", ".jpeg", ".png")
MAX_PIXELS = 40_000_000  # the predictor's own limit (faces.image.ImageLimits)
DISPLAY_SIDE = 960  # longest side of the annotated picture shown in the page
BOX_COLOURS = ("#e4572e", "#17bebb", "#ffc914", "#76b041", "#a259ff", "#2e86de")


class UploadError(ValueError):
    """An upload the UI will not send on; the message is fit for the user."""


@dataclass(frozen=True)
class CheckedImage:
    data: bytes  # the bytes as uploaded (the predictor applies EXIF orientation itself)
    filename: str


def check_upload(data: bytes, filename: str) -> CheckedImage:
    """Reject what the predictor would reject, with a message that says what to do instead."""
    label = filename or "the upload"
    if not data:
        raise UploadError(f"{label} is empty: choose a JPEG or PNG photo.")
    if filename and not filename.lower().endswith(ACCEPTED_EXTENSIONS):
        raise UploadError(f"{label} is not a JPEG or PNG file: only .jpg, .jpeg and .png photos are accepted.")
    try:
        with Image.open(io.BytesIO(data)) as image:
            if image.format not in ACCEPTED_FORMATS:
                raise UploadError(f"{label} is a {image.format} image: only JPEG and PNG photos are accepted.")
            if image.width * image.height > MAX_PIXELS:
                raise UploadError(
                    f"{label} is {image.width} x {image.height} pixels, more than {MAX_PIXELS // 1_000_000} "
                    "million: scale it down and try again."
                )
            image.load()  # decodes fully: catches truncated and corrupt files
    except UploadError:
        raise
    except UnidentifiedImageError:
        raise UploadError(
            f"{label} could not be read as an image: it is not a JPEG or PNG photo, or it is corrupt."
        ) from None
    except (OSError, SyntaxError, ValueError, Image.DecompressionBombError) as error:
        raise UploadError(
            f"{label} could not be read as an image (it may be corrupt or truncated): {_reason(error)}"
        ) from None
    return CheckedImage(data=data, filename=filename)


def _reason(error: Exception) -> str:
    """Pillow's own words, without the object reprs (`<_io.BytesIO object at 0x...>`) some carry."""
    return re.sub(r"\s*<[^<>]* at 0x[0-9a-f]+>", "", str(error)).strip() or type(error).__name__


def annotate_faces(image: CheckedImage, boxes: Sequence[Sequence[float]]) -> str:
    """The photo, scaled for display, with box i labelled i+1; as a `data:image/jpeg` URI."""
    with Image.open(io.BytesIO(image.data)) as opened:
        picture = ImageOps.exif_transpose(opened).convert("RGB")
    scale = min(1.0, DISPLAY_SIDE / max(picture.size))
    if scale < 1.0:
        picture = picture.resize(
            (round(picture.width * scale), round(picture.height * scale)), Image.Resampling.LANCZOS
        )
    draw = ImageDraw.Draw(picture)
    line_width = max(2, round(max(picture.size) / 300))
    font = ImageFont.load_default(size=max(14, round(max(picture.size) / 40)))
    for number, (x, y, w, h) in enumerate(boxes, start=1):
        colour = BOX_COLOURS[(number - 1) % len(BOX_COLOURS)]
        left, top, right, bottom = (x * scale, y * scale, (x + w) * scale, (y + h) * scale)
        draw.rectangle((left, top, right, bottom), outline=colour, width=line_width)
        label = str(number)
        text_box = draw.textbbox((0, 0), label, font=font)
        pad = line_width + 2
        label_w, label_h = text_box[2] + 2 * pad, text_box[3] + 2 * pad
        label_top = top - label_h if top - label_h >= 0 else top
        draw.rectangle((left, label_top, left + label_w, label_top + label_h), fill=colour)
        draw.text((left + pad, label_top + pad), label, fill="black", font=font)
    return data_uri(_jpeg(picture), "image/jpeg")


def _jpeg(picture: Image.Image) -> bytes:
    buffer = io.BytesIO()
    picture.save(buffer, format="JPEG", quality=88)
    return buffer.getvalue()


def data_uri(data: bytes, mime: str) -> str:
    return f"data:{mime};base64,{base64.b64encode(data).decode('ascii')}"
