"""face_recognition, the library facesim is measured against, imported without changing facesim.

Importing it turns PIL's `ImageFile.LOAD_TRUNCATED_IMAGES` on for the whole process. facesim refuses
truncated images (faces/image.py), and the in-process benchmarks run facesim's decoding in the same
process, so the flag is put back as it was."""

from __future__ import annotations

from types import ModuleType


def import_face_recognition() -> ModuleType:
    """The `face_recognition` module; raises ImportError (or SystemExit, when its models are missing)."""
    from PIL import ImageFile

    truncated_before = ImageFile.LOAD_TRUNCATED_IMAGES
    try:
        import face_recognition
    finally:
        ImageFile.LOAD_TRUNCATED_IMAGES = truncated_before
    return face_recognition
