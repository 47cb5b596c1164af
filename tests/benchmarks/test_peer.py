"""Importing face_recognition for a side-by-side benchmark leaves facesim's image decoding as it was."""

from __future__ import annotations

import subprocess
import sys

PROBE = """
import io
from PIL import Image, ImageFile
from facesim.benchmarks.peer import import_face_recognition
from facesim.faces.image import ImageError, decode_image

import_face_recognition()
buffer = io.BytesIO()
Image.new("RGB", (64, 64), "white").save(buffer, format="JPEG")
try:
    decode_image(buffer.getvalue()[:-200])
except ImageError:
    print("refused", ImageFile.LOAD_TRUNCATED_IMAGES)
else:
    print("decoded", ImageFile.LOAD_TRUNCATED_IMAGES)
"""


def test_a_truncated_jpeg_is_still_refused_after_face_recognition_is_imported() -> None:
    # A fresh interpreter: in this one face_recognition may already be imported by another test.
    done = subprocess.run([sys.executable, "-c", PROBE], capture_output=True, text=True, timeout=120, check=True)
    assert done.stdout.split() == ["refused", "False"]


def test_a_plain_import_would_have_changed_it() -> None:
    """The reason for import_face_recognition: the library flips PIL's flag for the whole process."""
    probe = "import face_recognition\nfrom PIL import ImageFile\nprint(ImageFile.LOAD_TRUNCATED_IMAGES)"
    done = subprocess.run([sys.executable, "-c", probe], capture_output=True, text=True, timeout=120, check=True)
    assert done.stdout.strip() == "True"
