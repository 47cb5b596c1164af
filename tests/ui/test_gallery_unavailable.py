"""A predictor whose gallery database is down (503 + Retry-After), seen by facesim's own clients:
the contract client retries writes with one Idempotency-Key and then says "the gallery is
unavailable, retry later"; the UI says so too, not "bad request" and not "the predictor is down"."""

from __future__ import annotations

import json
import threading
from collections.abc import Iterator
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
from typing import ClassVar

import pytest

from facesim.contract.api import GALLERY_UNAVAILABLE, IDEMPOTENCY_HEADER
from facesim.contract.client import PredictorClient, PredictorError, WriteRetries
from facesim.ui.app import UiConfig, create_app

UNAVAILABLE_BEFORE_SUCCESS = 2


class GalleryDown(BaseHTTPRequestHandler):
    """Ready, but every gallery call is a 503 (an enrolment succeeds on its third attempt)."""

    keys: ClassVar[list[str]] = []  # every request's Idempotency-Key, across the handler's instances

    def log_message(self, *_: object) -> None:
        pass

    def _answer(self, status: int, body: dict) -> None:
        data = json.dumps(body).encode()
        self.send_response(status)
        self.send_header("Content-Type", "application/json")
        self.send_header("Content-Length", str(len(data)))
        if status == 503:
            self.send_header("Retry-After", "0")
        self.end_headers()
        self.wfile.write(data)

    def do_GET(self) -> None:
        if self.path.startswith("/v2/health/ready"):
            self._answer(200, {"ready": True})
        else:
            self._answer(503, {"error": GALLERY_UNAVAILABLE})

    def do_POST(self) -> None:
        self.rfile.read(int(self.headers["Content-Length"]))
        self.keys.append(self.headers[IDEMPOTENCY_HEADER])
        if len(self.keys) <= UNAVAILABLE_BEFORE_SUCCESS:
            self._answer(503, {"error": GALLERY_UNAVAILABLE})
        else:
            self._answer(200, {"identity": "Ada", "added": 1, "count": 1, "edits": 1})

    def do_DELETE(self) -> None:
        self.keys.append(self.headers[IDEMPOTENCY_HEADER])
        self._answer(503, {"error": GALLERY_UNAVAILABLE})


@pytest.fixture
def gallery_down() -> Iterator[str]:
    GalleryDown.keys = []
    server = ThreadingHTTPServer(("127.0.0.1", 0), GalleryDown)
    threading.Thread(target=server.serve_forever, daemon=True).start()
    yield f"http://127.0.0.1:{server.server_port}"
    server.shutdown()
    server.server_close()


def test_the_client_retries_writes_with_one_key_then_says_unavailable(gallery_down: str) -> None:
    client = PredictorClient(gallery_down, admin_token="token", retries=WriteRetries(attempts=4, first_wait_s=0.01))
    assert client.enrol("Ada", [b"jpeg"])["count"] == 1
    assert len(GalleryDown.keys) == 3 and len(set(GalleryDown.keys)) == 1  # one enrolment, one key
    GalleryDown.keys.clear()
    with pytest.raises(PredictorError) as error:
        client.remove("Ada")
    assert str(error.value) == GALLERY_UNAVAILABLE and error.value.unavailable and not error.value.rejected
    assert len(GalleryDown.keys) == 4 and len(set(GalleryDown.keys)) == 1
    with pytest.raises(PredictorError, match=GALLERY_UNAVAILABLE):
        client.gallery()


def test_the_ui_says_the_gallery_is_unavailable(gallery_down: str) -> None:
    page = create_app(UiConfig(predictor_url=gallery_down, timeout_s=5)).test_client().get("/gallery")
    text = page.get_data(as_text=True)
    assert page.status_code == 503 and "The gallery is unavailable, retry later." in text
    assert 'id="predictor-down"' not in text  # predictions still work: the predictor is not down
