"""A local HTTP server posing as the Kubeflow Pipelines API: it records each request and answers
with the smallest bodies the kfp client accepts."""

from __future__ import annotations

import json
import threading
from collections.abc import Iterator
from contextlib import contextmanager
from dataclasses import dataclass
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
from urllib.parse import urlsplit


@dataclass(frozen=True)
class Recorded:
    method: str
    path: str
    query: str
    headers: dict[str, str]  # names in lower case
    body: bytes

    def json(self) -> dict:
        return json.loads(self.body)


_ANSWERS: dict[tuple[str, str], dict] = {
    ("GET", "/apis/v2beta1/healthz"): {"multi_user": False},
    ("GET", "/apis/v2beta1/experiments"): {"experiments": [], "total_size": 0},
    ("POST", "/apis/v2beta1/experiments"): {"experiment_id": "exp-1", "display_name": "facesim"},
    ("POST", "/apis/v2beta1/runs"): {"run_id": "run-42", "display_name": "facesim run", "state": "PENDING"},
    ("POST", "/apis/v2beta1/pipelines/upload"): {"pipeline_id": "pipe-7", "display_name": "facesim"},
}


class _Handler(BaseHTTPRequestHandler):
    requests: list[Recorded]
    refusals: dict[tuple[str, str], tuple[int, dict]]  # (method, path) -> (status, body)

    def _answer(self) -> None:
        length = int(self.headers.get("Content-Length") or 0)
        body = self.rfile.read(length) if length else b""
        url = urlsplit(self.path)
        headers = {name.lower(): value for name, value in self.headers.items()}
        self.requests.append(Recorded(self.command, url.path, url.query, headers, body))
        status, answer = self.refusals.get((self.command, url.path), (200, _ANSWERS.get((self.command, url.path))))
        if answer is None:
            status, answer = 404, {"error": "not found", "code": 5}
        payload = json.dumps(answer).encode()
        self.send_response(status)
        self.send_header("Content-Type", "application/json")
        self.send_header("Content-Length", str(len(payload)))
        self.end_headers()
        self.wfile.write(payload)

    do_GET = do_POST = do_DELETE = _answer

    def log_message(self, format: str, *args: object) -> None:  # keep test output clean
        pass


@contextmanager
def recording_server(
    refusals: dict[tuple[str, str], tuple[int, dict]] | None = None,
) -> Iterator[tuple[str, list[Recorded]]]:
    """Yield (base URL, the list every request is appended to); `refusals` answers chosen
    requests with an error status instead."""
    requests: list[Recorded] = []
    handler = type("Handler", (_Handler,), {"requests": requests, "refusals": refusals or {}})
    server = ThreadingHTTPServer(("127.0.0.1", 0), handler)
    thread = threading.Thread(target=server.serve_forever, daemon=True)
    thread.start()
    try:
        yield f"http://127.0.0.1:{server.server_address[1]}", requests
    finally:
        server.shutdown()
        server.server_close()
