"""An ASGI guard in front of every predictor route: bounded headers and bodies, valid JSON.

KServe reads whole bodies into memory and only looks at Content-Length when a client sends one,
so the guard reads the body itself, counting while it streams (chunked bodies too): past the
limit it answers 413 without reading further. A JSON body is checked once with orjson, which
refuses lone surrogates (they cannot be written back out, to SQLite or to a response) and
nesting deeper than 1,024 levels, so no handler ever meets either.
"""

from __future__ import annotations

import json
from collections.abc import Awaitable, Callable, MutableMapping
from dataclasses import dataclass
from typing import Any

import orjson

Scope = MutableMapping[str, Any]
Message = MutableMapping[str, Any]
Receive = Callable[[], Awaitable[Message]]
Send = Callable[[Message], Awaitable[None]]
ASGIApp = Callable[[Scope, Receive, Send], Awaitable[None]]

BINARY_V2_HEADER = b"inference-header-content-length"


@dataclass(frozen=True)
class GuardLimits:
    max_body_bytes: int
    max_header_bytes: int = 16 * 1024  # one header line, name and value


class RequestGuard:
    def __init__(self, app: ASGIApp, limits: GuardLimits) -> None:
        self.app = app
        self.limits = limits

    async def __call__(self, scope: Scope, receive: Receive, send: Send) -> None:
        if scope["type"] != "http":
            await self.app(scope, receive, send)
            return
        problem = self._header_problem(scope["headers"])
        if problem is not None:
            await _answer(send, *problem)
            return
        body = await self._read_body(receive)
        if body is None:
            limit = self.limits.max_body_bytes
            await _answer(send, 413, f"the request body is too large (limit {limit:,} bytes)")
            return
        problem = _json_problem(scope["headers"], body)
        if problem is not None:
            await _answer(send, 400, problem)
            return
        await self.app(scope, _replay(body, receive), send)

    def _header_problem(self, headers: list[tuple[bytes, bytes]]) -> tuple[int, str] | None:
        for name, value in headers:
            if len(name) + len(value) > self.limits.max_header_bytes:
                return 431, f"a request header is too large (limit {self.limits.max_header_bytes:,} bytes per header)"
            if name == b"content-length" and value.isdigit() and int(value) > self.limits.max_body_bytes:
                return 413, (
                    f"the request body is too large: {int(value):,} bytes (limit {self.limits.max_body_bytes:,})"
                )
        return None

    async def _read_body(self, receive: Receive) -> bytes | None:
        """The whole body, or None as soon as it passes the limit."""
        chunks: list[bytes] = []
        size = 0
        while True:
            message = await receive()
            if message["type"] != "http.request":  # the client went away
                break
            chunk = message.get("body", b"")
            size += len(chunk)
            if size > self.limits.max_body_bytes:
                return None
            chunks.append(chunk)
            if not message.get("more_body", False):
                break
        return b"".join(chunks)


def _json_problem(headers: list[tuple[bytes, bytes]], body: bytes) -> str | None:
    header = dict(headers)
    content_type = header.get(b"content-type", b"").split(b";")[0].strip().lower()
    if not body or BINARY_V2_HEADER in header or not content_type.endswith(b"json"):
        return None
    try:
        orjson.loads(body)
    except orjson.JSONDecodeError as error:
        return f"the body is not valid JSON ({error.msg}): lone surrogates and nesting deeper than 1,024 levels are refused"
    return None


def _replay(body: bytes, receive: Receive) -> Receive:
    sent = False

    async def replay() -> Message:
        nonlocal sent
        if sent:
            return await receive()  # http.disconnect, when the client goes away
        sent = True
        return {"type": "http.request", "body": body, "more_body": False}

    return replay


async def _answer(send: Send, status: int, message: str) -> None:
    body = json.dumps({"error": message}).encode()
    headers = [
        (b"content-type", b"application/json"),
        (b"content-length", str(len(body)).encode()),
        (b"connection", b"close"),
    ]
    await send({"type": "http.response.start", "status": status, "headers": headers})
    await send({"type": "http.response.body", "body": body})
