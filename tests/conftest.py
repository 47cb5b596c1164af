"""Fixtures shared by every component's tests: where the shared data lives.

Component-specific fixtures live in each test folder's own conftest.py; fixtures that several
components need (a tiny trained model, a gallery, a live predictor) live here.
"""

from __future__ import annotations

import os
from pathlib import Path

import pytest

REPO_ROOT = Path(__file__).resolve().parents[1]
SHARED = Path(os.environ.get("FACESIM_SHARED", REPO_ROOT.parent / "shared")).resolve()


def _require(path: Path) -> Path:
    if not path.exists():
        pytest.fail(f"shared data missing: {path} (CI and the README expect ../shared beside the repo)")
    return path


@pytest.fixture(scope="session")
def shared_dir() -> Path:
    return _require(SHARED)


@pytest.fixture(scope="session")
def lfw_dir(shared_dir: Path) -> Path:
    return _require(shared_dir / "data" / "lfw")


@pytest.fixture(scope="session")
def detection_dir(shared_dir: Path) -> Path:
    return _require(shared_dir / "data" / "detection")


@pytest.fixture(scope="session")
def yunet_path(shared_dir: Path) -> Path:
    return _require(shared_dir / "models" / "face_detection_yunet_2026may.onnx")


@pytest.fixture(scope="session")
def crds_dir(shared_dir: Path) -> Path:
    return _require(shared_dir / "crds")
