"""A stand-in predictor that answers only what the UI's model page reads (readiness, the card, its
ROC picture, the gallery listing), with a card whose values the test chooses."""

from __future__ import annotations

import json
import threading
from collections.abc import Iterator
from contextlib import contextmanager
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
from typing import Any


@contextmanager
def card_predictor(card: dict[str, Any], roc_png: bytes) -> Iterator[str]:
    """Serve `card` on 127.0.0.1 (a free port) until the block ends; yields the base URL."""
    answers: dict[str, tuple[str, bytes]] = {
        "/v2/health/ready": ("application/json", b'{"ready": true}'),
        "/v1/models/facenet/card": ("application/json", json.dumps(card).encode()),
        "/v1/models/facenet/card/roc.png": ("image/png", roc_png),
        "/v1/models/facenet/gallery": (
            "application/json",
            json.dumps({"version": "v1", "edits": 0, "model_version": "v1", "size": 0, "identities": []}).encode(),
        ),
    }

    class Handler(BaseHTTPRequestHandler):
        def do_GET(self) -> None:
            kind, body = answers.get(self.path.split("?")[0], ("application/json", b'{"error": "not here"}'))
            self.send_response(200 if self.path.split("?")[0] in answers else 404)
            self.send_header("Content-Type", kind)
            self.send_header("Content-Length", str(len(body)))
            self.end_headers()
            self.wfile.write(body)

        def log_message(self, *_: Any) -> None:
            pass

    server = ThreadingHTTPServer(("127.0.0.1", 0), Handler)
    thread = threading.Thread(target=server.serve_forever, daemon=True)
    thread.start()
    try:
        yield f"http://127.0.0.1:{server.server_address[1]}"
    finally:
        server.shutdown()
        server.server_close()
