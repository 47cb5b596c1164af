"""Requests `requests` can't send: chunked bodies without Content-Length, read even when the server
answers before the body is complete."""

from __future__ import annotations

import http.client
from collections.abc import Iterable
from urllib.parse import urlsplit


def post_chunked(url: str, path: str, chunks: Iterable[bytes], headers: dict[str, str]) -> tuple[int, bytes]:
    """POST with `Transfer-Encoding: chunked` (no Content-Length), as streaming clients do. A server
    may answer before the whole body is sent and close: the answer is read all the same."""
    parts = urlsplit(url)
    connection = http.client.HTTPConnection(parts.hostname, parts.port, timeout=120)
    connection.putrequest("POST", path)
    for key, value in {**headers, "Transfer-Encoding": "chunked"}.items():
        connection.putheader(key, value)
    connection.endheaders()
    try:
        for chunk in filter(None, chunks):  # an empty chunk would end the body
            connection.send(b"%x\r\n%s\r\n" % (len(chunk), chunk))
        connection.send(b"0\r\n\r\n")
    except (BrokenPipeError, ConnectionResetError):
        pass  # the server stopped reading: its answer is waiting
    try:
        response = connection.getresponse()
        return response.status, response.read()
    finally:
        connection.close()
