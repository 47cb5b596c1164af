from __future__ import annotations

from pathlib import Path

import cv2
import numpy as np
import pytest

from facesim.faces.align import align_face, center_crop, template
from facesim.faces.detect import Face
from facesim.faces.image import read_image
from facesim.faces.preprocess import FacePreprocessor, PreprocessConfig


def _agreement(a: np.ndarray, b: np.ndarray) -> float:
    return float(np.corrcoef(a.astype(float).ravel(), b.astype(float).ravel())[0, 1])


@pytest.mark.parametrize("size", [112, 160])
def test_template_landmarks_give_the_identity_warp(size: int) -> None:
    rng = np.random.default_rng(0)
    image = rng.integers(0, 256, (size + 40, size + 30, 3), dtype=np.uint8)
    crop = align_face(image, template(size), size)
    assert crop.shape == (size, size, 3) and crop.dtype == np.uint8
    assert np.array_equal(crop, image[:size, :size])


@pytest.mark.parametrize("size", [112, 160])
def test_aligned_crops_agree_across_resolutions(preprocessor: FacePreprocessor, examples_dir: Path, size: int) -> None:
    config = PreprocessConfig(image_size=size, detector="yunet")
    sized = FacePreprocessor(config, detector=preprocessor.detector)
    crops = [
        sized.subject_face(read_image(examples_dir / f"obama-{r}.jpg")).crop for r in ("240p", "480p", "720p", "1080p")
    ]
    assert all(crop.shape == (size, size, 3) for crop in crops)
    for crop in crops[:-1]:
        assert _agreement(crop, crops[-1]) > 0.85
        assert np.abs(crop.astype(float) - crops[-1]).mean() < 20


def test_alignment_undoes_rotation_and_scale(preprocessor: FacePreprocessor, examples_dir: Path) -> None:
    rgb = read_image(examples_dir / "obama-480p.jpg")
    face = preprocessor.detector.detect(rgb)[0]
    centre = tuple(float(v) for v in face.landmarks[2])
    rotation = cv2.getRotationMatrix2D(centre, 25.0, 0.7)  # rotate the photo 25 degrees and shrink it
    turned = cv2.warpAffine(rgb, rotation, (rgb.shape[1], rgb.shape[0]))
    turned_landmarks = np.hstack([face.landmarks, np.ones((5, 1), np.float32)]) @ rotation.T
    upright = align_face(rgb, face.landmarks, 112)
    straightened = align_face(turned, turned_landmarks, 112)
    assert _agreement(upright, straightened) > 0.95


def test_center_crop_of_lfw_image_matches_alignment(preprocessor: FacePreprocessor, lfw_dir: Path) -> None:
    rgb = read_image(lfw_dir / "lfw-deepfunneled" / "Aaron_Eckhart" / "Aaron_Eckhart_0001.jpg")
    assert _agreement(center_crop(rgb, 112), preprocessor.subject_face(rgb).crop) > 0.8


def test_subject_is_the_largest_face_by_default(preprocessor: FacePreprocessor, detection_dir: Path) -> None:
    rgb = read_image(detection_dir / "deepface" / "couple.jpg")
    faces = preprocessor.all_faces(rgb)
    largest = preprocessor.subject_face(rgb)
    assert len(faces) == 2 and largest.detected
    assert largest.face.box == faces[0].face.box and np.array_equal(largest.crop, faces[0].crop)


def test_central_subject_is_the_labelled_person_not_a_bigger_face_beside_him(
    preprocessor: FacePreprocessor, lfw_dir: Path
) -> None:
    # LFW crops this photo around Kimi Raikkonen; a larger face at the right edge is somebody else's.
    rgb = read_image(lfw_dir / "lfw-deepfunneled" / "Kimi_Raikkonen" / "Kimi_Raikkonen_0001.jpg")
    central = FacePreprocessor(PreprocessConfig(detector="yunet", subject="central"), detector=preprocessor.detector)
    largest, subject = preprocessor.subject_face(rgb).face, central.subject_face(rgb).face
    faces = preprocessor.detector.detect(rgb)
    assert len(faces) >= 2 and largest.box == faces[0].box and subject.box != largest.box

    def offset(face: Face) -> float:
        x, y, w, h = face.box
        return float(np.hypot(x + w / 2 - 125, y + h / 2 - 125))

    assert offset(subject) < 40 < offset(largest)
    assert offset(subject) == min(offset(face) for face in faces)


def test_unknown_subject_is_refused() -> None:
    with pytest.raises(ValueError, match="unknown subject 'middle'"):
        PreprocessConfig(subject="middle")


def test_no_face_gives_none_or_the_centre_fallback(preprocessor: FacePreprocessor) -> None:
    blank = np.full((250, 250, 3), 200, np.uint8)
    assert preprocessor.subject_face(blank) is None and preprocessor.all_faces(blank) == []
    fallback = FacePreprocessor(PreprocessConfig(detector="yunet", fallback="center"), detector=preprocessor.detector)
    centred = fallback.subject_face(blank)
    assert centred is not None and not centred.detected and centred.crop.shape == (112, 112, 3)


def test_describe_round_trips_into_the_same_config(preprocessor: FacePreprocessor, yunet_path: Path) -> None:
    config = PreprocessConfig(image_size=160, detector="yunet", yunet_path=str(yunet_path), fallback="center")
    description = FacePreprocessor(config).describe()
    assert description["detector_used"] == "yunet" and description["image_size"] == 160
    assert PreprocessConfig.from_dict(description) == config


@pytest.mark.parametrize(
    ("options", "message"),
    [
        ({"detector": "dlib"}, "unknown detector"),
        ({"fallback": "random"}, "unknown fallback"),
        ({"image_size": 8}, "out of range"),
    ],
)
def test_bad_config_is_refused(options: dict, message: str) -> None:
    with pytest.raises(ValueError, match=message):
        PreprocessConfig(**options)


def test_templates_scale_with_the_crop_size() -> None:
    from facesim.faces.align import ARCFACE_TEMPLATE_112, DLIB_TEMPLATE_150

    np.testing.assert_allclose(template(224), 2 * ARCFACE_TEMPLATE_112)
    np.testing.assert_allclose(template(75, "dlib-chip-5pt"), DLIB_TEMPLATE_150 / 2)


def test_centre_landmarks_sit_in_the_central_square_of_a_wide_or_tall_image() -> None:
    from facesim.faces.align import LFW_TYPICAL_LANDMARKS, center_landmarks

    np.testing.assert_allclose(center_landmarks((100, 300, 3)), LFW_TYPICAL_LANDMARKS * 100 + [100, 0], rtol=1e-6)
    np.testing.assert_allclose(center_landmarks((300, 100, 3)), LFW_TYPICAL_LANDMARKS * 100 + [0, 100], rtol=1e-6)
