"""facesim's dlib-chip alignment (faces/align.py, what serving feeds the pretrained network) against
dlib's own `get_face_chip(size=150, padding=0.25)` on real LFW photos.

Each photo is aligned twice: by facesim (YuNet's five points fitted to DLIB_TEMPLATE_150) and by
dlib (its HOG detector, its 5-point shape predictor, its chip). The five template points of
facesim's chip are carried back into the photo and on into dlib's chip; where they land there,
minus where they are in facesim's chip, is the offset. Measured here over 23 photos: each point's
mean offset at most 2.3 px, each photo's mean offset 4.9 px (median). Bounds: 3.5 px and 7 px. A
template moved by 5 px gives a 7.6 px mean offset, by 10 px 10-11 px; one eye moved by 10 px, 5.7.
And each template point on its own: YuNet's points carried into dlib's chip, averaged over the
photos, lie within 2.8 px of it (the template is their median over 1,543 LFW photos); bound 4.5 px.
"""

from __future__ import annotations

import warnings
from dataclasses import dataclass
from pathlib import Path

import cv2
import numpy as np
import pytest

from facesim.faces.align import similarity_transform, template
from facesim.faces.detect import YuNetDetector
from facesim.faces.image import read_image
from facesim.faces.preprocess import central_face

CHIP, PADDING = 150, 0.25
MAX_MEAN_OFFSET_PX = 3.5  # each template point's offset, averaged over the photos (systematic error)
MAX_MEDIAN_PHOTO_OFFSET_PX = 7.0  # each photo's offset averaged over the points, median over photos
MAX_TEMPLATE_POINT_ERROR_PX = 4.5  # each template point against YuNet's points in dlib's chip, averaged
PHOTOS = 24  # the first image of every 250th person in LFW (sorted by name)


@pytest.fixture(scope="module")
def dlib_chipper():
    """dlib's face detector and 5-point shape predictor (from face_recognition_models)."""
    import dlib

    with warnings.catch_warnings():  # face_recognition_models imports pkg_resources, which warns
        warnings.simplefilter("ignore", UserWarning)
        import face_recognition_models

    predictor = dlib.shape_predictor(face_recognition_models.pose_predictor_five_point_model_location())
    return dlib, dlib.get_frontal_face_detector(), predictor


def dlib_chip_to_image(dlib, rgb: np.ndarray, shape) -> np.ndarray:
    """dlib's 2 x 3 chip-to-image affine, read off the chip of a coordinate image (R = x, G = y;
    LFW photos are 250 px, so both fit a byte) by least squares over the chip's interior."""
    height, width = rgb.shape[:2]
    assert max(height, width) <= 256
    ys, xs = np.mgrid[0:height, 0:width]
    coordinates = np.dstack([xs, ys, np.zeros_like(xs)]).astype(np.uint8)
    chip = dlib.get_face_chip(coordinates, shape, size=CHIP, padding=PADDING).astype(np.float64)
    rows, cols = np.mgrid[0:CHIP, 0:CHIP]
    x, y = chip[..., 0], chip[..., 1]
    inside = (x > 0) & (x < width - 1) & (y > 0) & (y < height - 1)  # not clamped at the photo's edge
    design = np.column_stack([cols[inside], rows[inside], np.ones(inside.sum())])
    solution, *_ = np.linalg.lstsq(design, chip[inside][:, :2], rcond=None)
    return solution.T


@dataclass(frozen=True)
class ChipComparison:
    template_offsets: np.ndarray  # (5, 2): facesim's template points carried into dlib's chip, minus the points
    yunet_points: np.ndarray  # (5, 2): YuNet's five points in dlib's chip


def compare_chips(rgb: np.ndarray, yunet: YuNetDetector, dlib_chipper) -> ChipComparison | None:
    dlib, detector, predictor = dlib_chipper
    boxes = detector(rgb, 1)
    faces = yunet.detect(rgb)
    if not boxes or not faces:
        return None
    height, width = rgb.shape[:2]
    box = min(boxes, key=lambda b: abs(b.center().x - width / 2) + abs(b.center().y - height / 2))
    to_dlib_chip = cv2.invertAffineTransform(dlib_chip_to_image(dlib, rgb, predictor(rgb, box)))
    landmarks = central_face(faces, rgb.shape).landmarks.astype(np.float64)
    to_photo = cv2.invertAffineTransform(similarity_transform(landmarks, CHIP, "dlib-chip-5pt"))
    points = template(CHIP, "dlib-chip-5pt").astype(np.float64)
    in_photo = np.hstack([points, np.ones((5, 1))]) @ to_photo.T
    return ChipComparison(
        np.hstack([in_photo, np.ones((5, 1))]) @ to_dlib_chip.T - points,
        np.hstack([landmarks, np.ones((5, 1))]) @ to_dlib_chip.T,
    )


def test_facesim_chips_land_where_dlib_puts_them(lfw_dir: Path, yunet: YuNetDetector, dlib_chipper) -> None:
    people = sorted((lfw_dir / "lfw-deepfunneled").iterdir())[::250][:PHOTOS]
    compared = [compare_chips(read_image(sorted(person.iterdir())[0]), yunet, dlib_chipper) for person in people]
    compared = [c for c in compared if c is not None]
    assert len(compared) >= PHOTOS - 3, "both detectors find the face in (nearly) every LFW photo"
    offsets = np.array([c.template_offsets for c in compared])
    mean_offset = np.linalg.norm(offsets.mean(axis=0), axis=1)
    assert mean_offset.max() <= MAX_MEAN_OFFSET_PX, mean_offset
    photo_offset = np.linalg.norm(offsets, axis=2).mean(axis=1)
    assert np.median(photo_offset) <= MAX_MEDIAN_PHOTO_OFFSET_PX, photo_offset
    # The template is where YuNet's points fall in dlib's chip: each of its points on its own.
    template_error = np.linalg.norm(
        np.mean([c.yunet_points for c in compared], axis=0) - template(CHIP, "dlib-chip-5pt"), axis=1
    )
    assert template_error.max() <= MAX_TEMPLATE_POINT_ERROR_PX, template_error
