"""Fixtures for the UI tests: the Flask test client and a live `facesim ui` over a real predictor."""

from __future__ import annotations

from collections.abc import Iterator
from pathlib import Path

import pytest
from flask.testing import FlaskClient
from ui_helpers import ARTIFACTS, start_ui, stop

from ui.app import UiConfig, create_app


@pytest.fixture(scope="session")
def examples_dir(detection_dir: Path) -> Path:
    return detection_dir / "face_recognition" / "examples"


@pytest.fixture(scope="session")
def two_people_jpg(examples_dir: Path) -> Path:
    return examples_dir / "two_people.jpg"


@pytest.fixture()
def ui_client(predictor_url: str) -> FlaskClient:
    app = create_app(UiConfig(predictor_url=predictor_url, timeout_s=10))
    return app.test_client()


@pytest.fixture(scope="session")
def live_ui(predictor_url: str) -> Iterator[str]:
    url, process = start_ui(predictor_url)
    yield url
    stop(process)


@pytest.fixture(scope="session")
def artifacts_dir() -> Path:
    ARTIFACTS.mkdir(parents=True, exist_ok=True)
    return ARTIFACTS
