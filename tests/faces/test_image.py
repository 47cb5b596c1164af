from __future__ import annotations

import io
import struct
import zlib
from pathlib import Path

import numpy as np
import pytest
from PIL import Image

from facesim.faces.image import ImageError, ImageLimits, decode_image, read_image


def _encode(image: Image.Image, fmt: str = "PNG", **options) -> bytes:
    buffer = io.BytesIO()
    image.save(buffer, fmt, **options)
    return buffer.getvalue()


def _png_chunk(kind: bytes, payload: bytes) -> bytes:
    return struct.pack(">I", len(payload)) + kind + payload + struct.pack(">I", zlib.crc32(kind + payload))


def _png_declaring(width: int, height: int) -> bytes:
    """A tiny PNG whose header claims width x height RGB pixels (one row of data follows)."""
    header = struct.pack(">IIBBBBB", width, height, 8, 2, 0, 0, 0)
    data = zlib.compress(b"\x00" + b"\x00" * (3 * min(width, 64)))
    return b"\x89PNG\r\n\x1a\n" + _png_chunk(b"IHDR", header) + _png_chunk(b"IDAT", data) + _png_chunk(b"IEND", b"")


def _jpeg_declaring(width: int, height: int) -> bytes:
    """A small real JPEG with its SOF0 frame header patched to claim width x height."""
    data = bytearray(_encode(Image.new("RGB", (16, 16), "gray"), "JPEG", quality=90))
    sof = data.index(b"\xff\xc0")
    data[sof + 5 : sof + 9] = struct.pack(">HH", height, width)
    return bytes(data)


def test_rgb_jpeg_decodes_to_uint8_rgb() -> None:
    rgb = decode_image(_encode(Image.new("RGB", (30, 20), (200, 10, 10)), "JPEG", quality=95))
    assert rgb.shape == (20, 30, 3) and rgb.dtype == np.uint8
    assert abs(int(rgb[10, 15, 0]) - 200) < 6 and rgb[10, 15, 1] < 20  # red stays in channel 0 (RGB, not BGR)


@pytest.mark.parametrize(
    "image",
    [
        Image.new("L", (8, 6), 90),
        Image.new("P", (8, 6), 0),
        Image.new("CMYK", (8, 6), (0, 0, 0, 0)),
        Image.new("I;16", (8, 6), 40000),
    ],
    ids=["grayscale", "palette", "cmyk", "16-bit"],
)
def test_other_modes_become_rgb(image: Image.Image) -> None:
    rgb = decode_image(_encode(image, "TIFF" if image.mode == "CMYK" else "PNG"))
    assert rgb.shape == (6, 8, 3) and rgb.dtype == np.uint8
    assert np.all(rgb[..., 0] == rgb[..., 1]) and np.all(rgb[..., 1] == rgb[..., 2])


def test_16_bit_values_are_scaled_not_clipped() -> None:
    ramp = np.linspace(0, 65535, 8 * 6).reshape(6, 8).astype(np.uint16)
    rgb = decode_image(_encode(Image.fromarray(ramp)))
    assert rgb[0, 0, 0] == 0 and rgb[-1, -1, 0] == 255
    assert 100 < rgb[3, 0, 0] < 160  # mid-grey stays mid-grey


def test_float_image_in_unit_range() -> None:
    buffer = io.BytesIO()
    Image.fromarray(np.full((4, 6), 0.5, np.float32), "F").save(buffer, "TIFF")
    assert decode_image(buffer.getvalue())[0, 0].tolist() == [128, 128, 128]


def test_transparent_rgba_composites_on_white() -> None:
    rgba = np.zeros((4, 4, 4), np.uint8)
    rgba[:2, :, :] = (0, 0, 255, 255)  # opaque blue top half, transparent bottom half
    rgb = decode_image(_encode(Image.fromarray(rgba, "RGBA")))
    assert rgb.shape == (4, 4, 3)
    assert rgb[0, 0].tolist() == [0, 0, 255] and rgb[3, 0].tolist() == [255, 255, 255]


def test_32_bit_png_from_face_recognition_tests(detection_dir: Path) -> None:
    rgb = read_image(detection_dir / "face_recognition" / "tests" / "test_images" / "32bit.png")
    assert rgb.ndim == 3 and rgb.shape[2] == 3 and rgb.dtype == np.uint8


def test_exif_orientation_is_applied() -> None:
    pixels = np.zeros((20, 40, 3), np.uint8)
    pixels[:, :20] = (255, 0, 0)  # stored: red on the left
    exif = Image.Exif()
    exif[0x0112] = 6  # "rotate 90 degrees clockwise to display"
    rgb = decode_image(_encode(Image.fromarray(pixels), "JPEG", quality=95, exif=exif))
    assert rgb.shape == (40, 20, 3)  # displayed: portrait, red on top
    assert rgb[5, 10, 0] > 200 and rgb[35, 10, 0] < 50


@pytest.mark.parametrize(
    ("data", "message"),
    [
        (b"", "empty"),
        (b"this is plain text, not a picture", "not an image"),
        (b"\xff\xd8\xff\xe0" + bytes(range(256)) * 4, "not an image|corrupt"),
    ],
    ids=["empty", "text", "garbage-after-jpeg-magic"],
)
def test_non_images_get_clear_errors(data: bytes, message: str) -> None:
    with pytest.raises(ImageError, match=message):
        decode_image(data)


def test_truncated_jpeg_is_reported(examples_dir: Path) -> None:
    data = (examples_dir / "obama-240p.jpg").read_bytes()
    with pytest.raises(ImageError, match="corrupt or truncated"):
        decode_image(data[: len(data) // 2])


def test_corrupt_png_is_reported() -> None:
    data = bytearray(_encode(Image.new("RGB", (64, 64), "white")))
    idat = data.index(b"IDAT")
    data[idat + 6 : idat + 30] = b"\x00" * 24  # break the compressed stream (and its CRC)
    with pytest.raises(ImageError, match="corrupt or truncated"):
        decode_image(bytes(data))


@pytest.mark.parametrize("build", [_png_declaring, _jpeg_declaring], ids=["png", "jpeg"])
@pytest.mark.parametrize("side", [(20_000, 20_000), (8_000, 6_000)], ids=["20k-square", "48-megapixel"])
def test_decompression_bomb_refused_from_header(build, side: tuple[int, int]) -> None:
    bomb = build(*side)
    assert len(bomb) < 2_000  # tiny file, huge claim: refused before any pixel is allocated
    with pytest.raises(ImageError, match="too many"):
        decode_image(bomb)


def test_byte_limit() -> None:
    data = _encode(Image.new("RGB", (64, 64), "white"))
    with pytest.raises(ImageError, match="too large"):
        decode_image(data, ImageLimits(max_bytes=len(data) - 1))


def test_read_image_names_the_file(tmp_path: Path) -> None:
    path = tmp_path / "notes.jpg"
    path.write_text("not a photo")
    with pytest.raises(ImageError, match=r"notes\.jpg"):
        read_image(path)
    with pytest.raises(ImageError, match="cannot read"):
        read_image(tmp_path / "missing.jpg")
