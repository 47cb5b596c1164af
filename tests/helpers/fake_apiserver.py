"""A recording HTTP server posing as the Kubernetes API server (docs/protocol.md: SDKs without a cluster).

Tests script answers per (verb, path) and then assert the requests the SDK clients made: paths,
verbs, query strings and JSON bodies. Unscripted requests get the API server's 404 Status.
"""

from __future__ import annotations

import json
import threading
from dataclasses import dataclass, field
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
from pathlib import Path
from typing import Any
from urllib.parse import parse_qs, urlsplit


@dataclass
class RecordedRequest:
    method: str
    path: str
    query: dict[str, list[str]]
    body: Any  # parsed JSON, or None


@dataclass
class Answer:
    status: int
    body: Any  # JSON-able, or str for plain text (pod logs)


def status_body(code: int, reason: str, message: str) -> dict[str, Any]:
    """A Kubernetes `Status` object, as the API server sends with errors."""
    return {
        "kind": "Status",
        "apiVersion": "v1",
        "status": "Failure",
        "message": message,
        "reason": reason,
        "code": code,
    }


@dataclass
class FakeApiServer:
    requests: list[RecordedRequest] = field(default_factory=list)
    _answers: dict[tuple[str, str], list[Answer]] = field(default_factory=dict)
    _lock: threading.Lock = field(default_factory=threading.Lock)

    def answer(self, method: str, path: str, *answers: Answer) -> None:
        """Answers to give, in order, to `method path`; the last one repeats."""
        self._answers[(method, path)] = list(answers)

    def next_answer(self, method: str, path: str) -> Answer:
        with self._lock:
            queue = self._answers.get((method, path))
            if not queue:
                return Answer(404, status_body(404, "NotFound", f"{path} not found"))
            return queue.pop(0) if len(queue) > 1 else queue[0]

    def record(self, request: RecordedRequest) -> None:
        with self._lock:
            self.requests.append(request)

    def calls(self, method: str | None = None, path: str | None = None) -> list[RecordedRequest]:
        return [r for r in self.requests if (method is None or r.method == method) and (path is None or r.path == path)]


def _handler(server_state: FakeApiServer) -> type[BaseHTTPRequestHandler]:
    class Handler(BaseHTTPRequestHandler):
        protocol_version = "HTTP/1.1"

        def _serve(self) -> None:
            url = urlsplit(self.path)
            length = int(self.headers.get("Content-Length") or 0)
            raw = self.rfile.read(length) if length else b""
            body = json.loads(raw) if raw else None
            server_state.record(RecordedRequest(self.command, url.path, parse_qs(url.query), body))
            answer = server_state.next_answer(self.command, url.path)
            is_text = isinstance(answer.body, str)
            payload = answer.body.encode() if is_text else json.dumps(answer.body).encode()
            self.send_response(answer.status)
            self.send_header("Content-Type", "text/plain" if is_text else "application/json")
            self.send_header("Content-Length", str(len(payload)))
            self.end_headers()
            self.wfile.write(payload)

        do_GET = do_POST = do_PUT = do_PATCH = do_DELETE = _serve

        def log_message(self, format: str, *args: Any) -> None:  # keep test output quiet
            pass

    return Handler


class RunningApiServer:
    """The fake API server on a free localhost port, in a daemon thread."""

    def __init__(self) -> None:
        self.state = FakeApiServer()
        self._http = ThreadingHTTPServer(("127.0.0.1", 0), _handler(self.state))
        self._http.daemon_threads = True
        self._thread = threading.Thread(target=self._http.serve_forever, args=(0.05,), daemon=True)

    @property
    def url(self) -> str:
        host, port = self._http.server_address[:2]
        return f"http://{host}:{port}"

    def __enter__(self) -> RunningApiServer:
        self._thread.start()
        return self

    def __exit__(self, *exc: object) -> None:
        self._http.shutdown()
        self._http.server_close()

    def write_kubeconfig(self, path: Path, namespace: str = "facesim") -> Path:
        """A kubeconfig whose only cluster is this server (the SDKs read it like a real one)."""
        config = {
            "apiVersion": "v1",
            "kind": "Config",
            "clusters": [{"name": "fake", "cluster": {"server": self.url}}],
            "users": [{"name": "tester", "user": {"token": "test-token"}}],
            "contexts": [{"name": "fake", "context": {"cluster": "fake", "user": "tester", "namespace": namespace}}],
            "current-context": "fake",
        }
        path.write_text(json.dumps(config))
        return path
