"""Fixtures for the UI tests: the Flask test client and a live `facesim ui` over a real predictor."""

from __future__ import annotations

import os
import subprocess
import sys
from collections.abc import Iterator
from contextlib import ExitStack
from dataclasses import dataclass
from pathlib import Path

import pytest
from flask.testing import FlaskClient
from playwright.sync_api import Browser, sync_playwright

from facesim.inference.local_server import local_predictor
from facesim.ui.app import UiConfig, create_app
from tests.helpers.admin import TEST_ADMIN_TOKEN, own_predictor
from tests.helpers.ui_helpers import ARTIFACTS, DoomedPredictor, start_ui, stop

CHROMIUM = "/usr/bin/chromium"
# These machines cannot download browser builds, nor reach the network: keep Chromium quiet and local.
CHROMIUM_ARGS = [
    "--headless",
    "--no-sandbox",
    "--disable-gpu",
    "--disable-quic",
    "--no-first-run",
    "--disable-background-networking",
    "--disable-component-update",
    "--disable-sync",
]


@pytest.fixture(scope="session")
def browser() -> Iterator[Browser]:
    if not Path(CHROMIUM).exists():
        pytest.fail(f"{CHROMIUM} is missing: run scripts/install-tools.sh")
    with sync_playwright() as playwright:
        browser = playwright.chromium.launch(executable_path=CHROMIUM, args=CHROMIUM_ARGS)
        yield browser
        browser.close()


@pytest.fixture(scope="session")
def examples_dir(detection_dir: Path) -> Path:
    return detection_dir / "face_recognition" / "examples"


@pytest.fixture(scope="session")
def two_people_jpg(examples_dir: Path) -> Path:
    return examples_dir / "two_people.jpg"


@pytest.fixture()
def ui_client(predictor_url: str) -> FlaskClient:
    app = create_app(UiConfig(predictor_url=predictor_url, timeout_s=10, admin_token=TEST_ADMIN_TOKEN))
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


@pytest.fixture(scope="session")
def writable_predictor(
    tiny_model_dir: Path, tiny_gallery_dir: Path, yunet_path: Path, tmp_path_factory: pytest.TempPathFactory
) -> Iterator[str]:
    with own_predictor(tiny_model_dir, tiny_gallery_dir, yunet_path, tmp_path_factory.mktemp("writable")) as url:
        yield url


@pytest.fixture()
def writable_client(writable_predictor: str) -> FlaskClient:
    return create_app(
        UiConfig(predictor_url=writable_predictor, timeout_s=10, admin_token=TEST_ADMIN_TOKEN)
    ).test_client()


@pytest.fixture(scope="session")
def writable_ui(writable_predictor: str) -> Iterator[str]:
    url, process = start_ui(writable_predictor)
    yield url
    stop(process)


@pytest.fixture()
def doomed_predictor(
    tiny_model_dir: Path, tiny_gallery_dir: Path, yunet_path: Path, tmp_path: Path
) -> Iterator[DoomedPredictor]:
    with ExitStack() as predictor:
        predictor_url = predictor.enter_context(own_predictor(tiny_model_dir, tiny_gallery_dir, yunet_path, tmp_path))
        ui_url, ui_process = start_ui(predictor_url)
        yield DoomedPredictor(ui_url, predictor)
        stop(ui_process)


@dataclass(frozen=True)
class LoggedServers:
    """A predictor and a UI in front of it, each writing its terminal output to a file."""

    ui_url: str
    predictor_url: str
    predictor_log: Path
    ui_log: Path


@pytest.fixture(scope="module")
def logged_servers(
    tiny_model_dir: Path, tiny_gallery_dir: Path, yunet_path: Path, tmp_path_factory: pytest.TempPathFactory
) -> Iterator[LoggedServers]:
    work = tmp_path_factory.mktemp("logged")
    with own_predictor(tiny_model_dir, tiny_gallery_dir, yunet_path, work) as predictor_url:
        ui_log = work / "ui.log"
        ui_url, ui_process = start_ui(predictor_url, log=ui_log)
        yield LoggedServers(ui_url, predictor_url, work / "predictor.log", ui_log)
        stop(ui_process)


# The README's picture: dlib's pretrained network (imported as the main job imports it) over a few of
# LFW's most photographed people and Joseph Biden, so a search finds the right people.
DEMO_PEOPLE = ("George_W_Bush", "Colin_Powell", "Tony_Blair", "Donald_Rumsfeld", "Gerhard_Schroeder", "Joseph_Biden")


@pytest.fixture(scope="session")
def demo_ui(
    shared_dir: Path, lfw_dir: Path, yunet_path: Path, tmp_path_factory: pytest.TempPathFactory
) -> Iterator[str]:
    """The UI over the pretrained model and a gallery of DEMO_PEOPLE (~40 s to set up)."""
    from facesim.gallery.cli import main as gallery_main

    work = tmp_path_factory.mktemp("demo")
    env = {**os.environ, "TF_CPP_MIN_LOG_LEVEL": "2", "FACESIM_HOME": str(work / "home")}
    weights = shared_dir / "models" / "faceapi-resnet"
    imported = subprocess.run(
        [
            sys.executable,
            "-m",
            "facesim",
            "model",
            "import",
            "faceapi-resnet",
            "--out",
            str(work / "model"),
            "--weights",
            str(weights),
            "--yunet",
            str(yunet_path),
        ],
        env=env,
        capture_output=True,
        text=True,
        timeout=300,
        check=False,
    )
    assert imported.returncode == 0, f"facesim model import failed:\n{imported.stderr[-3000:]}"
    people = [arg for name in DEMO_PEOPLE for arg in ("--identity", name)]
    built = gallery_main(
        [
            "build",
            "--model",
            str(work / "model"),
            "--data",
            str(lfw_dir),
            *people,
            "--max-images-per-identity",
            "3",
            "--out",
            str(work / "gallery"),
            "--yunet",
            str(yunet_path),
        ]
    )
    assert built == 0, "facesim gallery build failed for the demo gallery"
    with local_predictor(work / "model", work / "gallery", env=env, log_path=work / "predictor.log") as predictor_url:
        ui_url, ui_process = start_ui(predictor_url)
        yield ui_url
        stop(ui_process)
