"""The UI under the hardening review's probes: odd page numbers, a predictor that never answers,
writes through the server-side token, and the optional login for write pages."""

from __future__ import annotations

import io
import socket
import time
from concurrent.futures import ThreadPoolExecutor
from pathlib import Path

import pytest
import requests
from flask.testing import FlaskClient

from facesim.ui.app import UiConfig, create_app
from tests.helpers.admin import TEST_ADMIN_TOKEN
from tests.helpers.ui_helpers import csrf_token, start_ui, stop


@pytest.mark.parametrize("page", ["²", "٣", "9" * 4301, "-1", "1e9", "", "0x10", "7"])
def test_any_gallery_page_number_is_a_page(ui_client: FlaskClient, page: str) -> None:
    answer = ui_client.get("/gallery", query_string={"page": page})
    assert answer.status_code == 200, answer.get_data(as_text=True)[:300]


def test_a_predictor_that_never_answers_ties_up_nothing(two_people_jpg: Path) -> None:
    """16 page loads against a hung predictor: each ends within the UI's short timeouts (503), and
    /healthz answers meanwhile (it never calls the predictor)."""
    with socket.socket() as hung:  # accepts connections (the kernel does), never answers
        hung.bind(("127.0.0.1", 0))
        hung.listen(64)
        ui_url, process = start_ui(f"http://127.0.0.1:{hung.getsockname()[1]}", "--timeout", "2")
        try:
            with ThreadPoolExecutor(16) as pool:
                started = time.monotonic()
                pages = [pool.submit(requests.get, f"{ui_url}/gallery", timeout=60) for _ in range(16)]
                time.sleep(0.5)
                health = requests.get(f"{ui_url}/healthz", timeout=30)
                health_s = time.monotonic() - started - 0.5
                statuses = [page.result().status_code for page in pages]
                elapsed = time.monotonic() - started
        finally:
            stop(process)
    # Waitress' 8 threads are all waiting on the predictor: /healthz waits for the first to give up
    # (2 s), not for all 16 pages; the margin is for a loaded test machine.
    assert health.status_code == 200 and health_s < 10, f"/healthz took {health_s:.1f} s"
    assert statuses == [503] * 16
    assert elapsed < 20, f"16 pages took {elapsed:.1f} s against a hung predictor"


def _enrol(client: FlaskClient, photo: Path, name: str) -> tuple[int, str]:
    token = csrf_token(client, "/gallery")
    data = {"csrf_token": token, "identity": name, "images": [(io.BytesIO(photo.read_bytes()), photo.name)]}
    page = client.post("/gallery/enrol", data=data, follow_redirects=True)
    return page.status_code, page.get_data(as_text=True)


def test_without_the_admin_token_the_ui_shows_the_predictors_refusal(
    writable_predictor: str, examples_dir: Path
) -> None:
    client = create_app(UiConfig(predictor_url=writable_predictor, timeout_s=10, admin_token=None)).test_client()
    status, html = _enrol(client, examples_dir / "obama_small.jpg", "Tokenless")
    assert status == 400 and "refused to enrol" in html and "token" in html


def test_the_ui_password_guards_enrol_and_remove(writable_predictor: str, examples_dir: Path) -> None:
    config = UiConfig(predictor_url=writable_predictor, timeout_s=10, admin_token=TEST_ADMIN_TOKEN, password="s3cret")
    client = create_app(config).test_client()
    assert 'id="login-hint"' in client.get("/gallery").get_data(as_text=True)
    status, html = _enrol(client, examples_dir / "obama_small.jpg", "Guarded")
    assert status == 401 and 'id="login-form"' in html
    token = csrf_token(client, "/login")
    assert client.post("/login", data={"csrf_token": token, "password": "guess"}).status_code == 401
    assert client.post("/login", data={"csrf_token": token, "password": "s3cret"}).status_code == 303
    status, html = _enrol(client, examples_dir / "obama_small.jpg", "Guarded")
    assert status == 200 and "Enrolled Guarded" in html
    removed = client.post("/gallery/remove", data={"csrf_token": csrf_token(client, "/gallery"), "identity": "Guarded"})
    assert removed.status_code == 303
    names = [
        e["identity"]
        for e in requests.get(f"{writable_predictor}/v1/models/facenet/gallery", timeout=10).json()["identities"]
    ]
    assert "Guarded" not in names
