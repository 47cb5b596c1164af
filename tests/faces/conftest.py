"""Fixtures for the face-preprocessing tests: detectors built once per session."""

from __future__ import annotations

from pathlib import Path

import pytest

from facesim.faces.detect import HaarDetector, YuNetDetector
from facesim.faces.preprocess import FacePreprocessor, PreprocessConfig


@pytest.fixture(scope="session")
def yunet(yunet_path: Path) -> YuNetDetector:
    return YuNetDetector(yunet_path)


@pytest.fixture(scope="session")
def haar() -> HaarDetector:
    return HaarDetector()


@pytest.fixture(scope="session")
def preprocessor(yunet: YuNetDetector) -> FacePreprocessor:
    return FacePreprocessor(PreprocessConfig(detector="yunet"), detector=yunet)


@pytest.fixture(scope="session")
def examples_dir(detection_dir: Path) -> Path:
    return detection_dir / "face_recognition" / "examples"
