from __future__ import annotations

from pathlib import Path

import cv2
import numpy as np
import pytest

from facesim.faces import detect
from facesim.faces.detect import HaarDetector, YuNetDetector, make_detector, yunet_cache_path
from facesim.faces.download import sha256_of
from facesim.faces.image import read_image

OBAMA_RESOLUTIONS = ("240p", "480p", "720p", "1080p")


@pytest.mark.parametrize("photo", ["face_recognition/examples/two_people.jpg", "deepface/couple.jpg"])
def test_yunet_finds_exactly_two_faces(yunet: YuNetDetector, detection_dir: Path, photo: str) -> None:
    rgb = read_image(detection_dir / photo)
    faces = yunet.detect(rgb)
    assert len(faces) == 2
    assert faces[0].area >= faces[1].area  # largest first
    for face in faces:
        x, y, w, h = face.box
        assert face.landmarks.shape == (5, 2) and face.score > 0.6
        assert np.all((face.landmarks >= [x, y]) & (face.landmarks <= [x + w, y + h]))
        assert face.landmarks[0, 0] < face.landmarks[1, 0]  # subject's right eye is on the image's left


@pytest.mark.parametrize("resolution", OBAMA_RESOLUTIONS)
def test_one_face_at_every_resolution(yunet: YuNetDetector, examples_dir: Path, resolution: str) -> None:
    rgb = read_image(examples_dir / f"obama-{resolution}.jpg")
    assert len(yunet.detect(rgb)) == 1


def test_landmarks_agree_across_resolutions(yunet: YuNetDetector, examples_dir: Path) -> None:
    relative = []
    for resolution in OBAMA_RESOLUTIONS:
        rgb = read_image(examples_dir / f"obama-{resolution}.jpg")
        relative.append(yunet.detect(rgb)[0].landmarks / rgb.shape[0])
    # Within 1% of the image height: boxes/landmarks from downscaled detection map back correctly.
    assert np.abs(np.array(relative) - relative[-1]).max() < 0.01


def test_large_image_is_detected_on_a_downscaled_copy(yunet: YuNetDetector, examples_dir: Path) -> None:
    rgb = read_image(examples_dir / "two_people.jpg")
    big = cv2.resize(rgb, None, fx=3, fy=3, interpolation=cv2.INTER_CUBIC)  # 3378 x 1983
    small_faces, big_faces = yunet.detect(rgb), yunet.detect(big)
    assert len(big_faces) == 2
    for small, large in zip(small_faces, big_faces, strict=True):
        assert np.abs((large.landmarks + 0.5) / 3 - 0.5 - small.landmarks).max() < 4.0


@pytest.mark.parametrize("kind", ["yunet", "haar"])
@pytest.mark.parametrize("shape", [(480, 640), (1, 1), (5000, 20)], ids=["vga", "one-pixel", "sliver"])
def test_blank_image_has_no_face(yunet: YuNetDetector, haar: HaarDetector, kind: str, shape: tuple[int, int]) -> None:
    detector = yunet if kind == "yunet" else haar
    # Repeated: on thin inputs OpenCV's YuNet returned garbage boxes about one call in four.
    for _ in range(20):
        assert detector.detect(np.full((*shape, 3), 127, np.uint8)) == []


def test_image_smaller_than_yunet_stride_still_finds_its_face(yunet: YuNetDetector, examples_dir: Path) -> None:
    rgb = read_image(examples_dir / "obama-240p.jpg")
    x, y, w, h = (int(v) for v in yunet.detect(rgb)[0].box)
    crop = rgb[max(0, y - h // 4) : y + h + h // 8, max(0, x - w // 8) : x + w + w // 8]
    tiny = cv2.resize(crop, None, fx=40 / crop.shape[0], fy=40 / crop.shape[0], interpolation=cv2.INTER_AREA)
    faces = yunet.detect(tiny)  # about 27 x 40 px: padded before detection
    assert len(faces) == 1
    fx, fy, fw, fh = faces[0].box
    assert 0 <= fx + fw / 2 < tiny.shape[1] and 0 <= fy + fh / 2 < tiny.shape[0] and fh > tiny.shape[0] / 2


def test_haar_finds_both_faces_with_estimated_landmarks(
    haar: HaarDetector, yunet: YuNetDetector, examples_dir: Path
) -> None:
    rgb = read_image(examples_dir / "two_people.jpg")
    haar_faces = sorted(haar.detect(rgb), key=lambda face: face.box[0])
    yunet_faces = sorted(yunet.detect(rgb), key=lambda face: face.box[0])
    assert haar.name == "haar" and len(haar_faces) == 2
    for estimated, found in zip(haar_faces, yunet_faces, strict=True):
        # Estimated landmarks land within a fifth of the face width of YuNet's.
        assert np.abs(estimated.landmarks - found.landmarks).max() < 0.2 * found.box[2]


def test_yunet_on_onnx_runtime_finds_what_opencv_finds(yunet_path: Path, detection_dir: Path, lfw_dir: Path) -> None:
    """The post-processing written for ONNX Runtime against cv2.FaceDetectorYN's own: the same faces,
    boxes and landmarks within a pixel, on every detection photo, 20 LFW photos and the thin/tiny cases."""
    onnx, opencv = (YuNetDetector(yunet_path, backend=backend) for backend in ("onnxruntime", "opencv"))
    photos = [read_image(path) for path in sorted(detection_dir.rglob("*")) if path.suffix in (".jpg", ".jpeg", ".png")]
    photos += [read_image(path) for path in sorted((lfw_dir / "lfw-deepfunneled").glob("A*/*.jpg"))[:20]]
    photos += [cv2.resize(photos[0], (37, 29)), np.full((5000, 20, 3), 127, np.uint8)]
    faces = 0
    for rgb in photos:
        ours, theirs = onnx.detect(rgb), opencv.detect(rgb)
        assert len(ours) == len(theirs)
        for mine, reference in zip(ours, theirs, strict=True):
            assert np.abs(np.subtract(mine.box, reference.box)).max() < 1.0
            assert np.abs(mine.landmarks - reference.landmarks).max() < 1.0
            assert abs(mine.score - reference.score) < 1e-3
        faces += len(ours)
    assert faces > 60  # crowds included (selfie-many-people.jpg), not only single faces


@pytest.fixture
def no_yunet_anywhere(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> Path:
    monkeypatch.setenv("FACESIM_HOME", str(tmp_path / "home"))
    monkeypatch.delenv("FACESIM_YUNET_MODEL", raising=False)
    monkeypatch.setattr(detect, "DEVELOPMENT_MODELS", tmp_path / "no-shared")
    monkeypatch.setenv("FACESIM_YUNET_URL", (tmp_path / "no-mirror" / "yunet.onnx").as_uri())
    return tmp_path


def test_auto_falls_back_to_haar_and_says_so(no_yunet_anywhere: Path, capsys: pytest.CaptureFixture) -> None:
    detector = make_detector("auto")
    assert detector.name == "haar"
    assert "Haar" in capsys.readouterr().err
    with pytest.raises(FileNotFoundError, match="no YuNet weights"):
        make_detector("yunet")


def test_auto_prefers_environment_then_downloads_into_cache(
    no_yunet_anywhere: Path, yunet_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    monkeypatch.setenv("FACESIM_YUNET_MODEL", str(yunet_path))
    assert make_detector("auto").name == "yunet"
    monkeypatch.delenv("FACESIM_YUNET_MODEL")
    monkeypatch.setenv("FACESIM_YUNET_URL", yunet_path.as_uri())
    monkeypatch.setenv("FACESIM_YUNET_SHA256", sha256_of(yunet_path))
    assert make_detector("auto").name == "yunet"
    assert sha256_of(yunet_cache_path()) == sha256_of(yunet_path)


def test_weights_beside_the_repo_come_after_the_environment_and_before_the_cache(
    no_yunet_anywhere: Path, yunet_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    shared = no_yunet_anywhere / "shared-models"
    shared.mkdir()
    (shared / "face_detection_yunet_2023mar.onnx").write_bytes(yunet_path.read_bytes())
    (shared / "face_detection_yunet_2026may.onnx").write_bytes(yunet_path.read_bytes())
    monkeypatch.setattr(detect, "DEVELOPMENT_MODELS", shared)
    assert detect.find_yunet_weights(allow_download=False) == shared / "face_detection_yunet_2026may.onnx"
    monkeypatch.setenv("FACESIM_YUNET_MODEL", str(yunet_path))
    assert detect.find_yunet_weights(allow_download=False) == yunet_path
    assert detect.find_yunet_weights(shared / "face_detection_yunet_2023mar.onnx", allow_download=False).name.endswith(
        "2023mar.onnx"
    )


def test_a_clone_with_shared_beside_it_finds_the_weights_with_no_environment(
    yunet_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    monkeypatch.delenv("FACESIM_YUNET_MODEL", raising=False)
    assert detect.find_yunet_weights(allow_download=False).samefile(yunet_path)


def test_bad_detector_arguments(tmp_path: Path) -> None:
    with pytest.raises(ValueError, match="unknown detector"):
        make_detector("mtcnn")
    with pytest.raises(FileNotFoundError, match="not found"):
        make_detector("yunet", yunet_path=tmp_path / "missing.onnx")
    not_onnx = tmp_path / "fake.onnx"
    not_onnx.write_bytes(b"not a model")
    for backend in ("onnxruntime", "opencv"):
        with pytest.raises(ValueError, match="not a YuNet ONNX model"):
            YuNetDetector(not_onnx, backend=backend)
    with pytest.raises(ValueError, match="unknown YuNet backend"):
        YuNetDetector(not_onnx, backend="tflite")
