"""Helpers for the UI tests: CSRF tokens from pages, free ports, starting and stopping `facesim ui`."""

from __future__ import annotations

import os
import re
import socket
import subprocess
import sys
import time
from contextlib import ExitStack
from dataclasses import dataclass
from pathlib import Path
from typing import IO

import requests
from flask.testing import FlaskClient

from tests.helpers.admin import TEST_ADMIN_TOKEN

REPO_ROOT = Path(__file__).resolve().parents[2]
ARTIFACTS = REPO_ROOT / "test-artifacts" / "ui"
HOSTILE_NAME = "<script>alert(1)</script>"
_CSRF = re.compile(r'name="csrf_token" value="([^"]+)"')


def free_port() -> int:
    with socket.socket() as probe:
        probe.bind(("127.0.0.1", 0))
        return probe.getsockname()[1]


def csrf_token(client: FlaskClient, path: str = "/", base_url: str = "http://localhost") -> str:
    """The token a browser would find in the page's forms (and the session cookie it goes with)."""
    match = _CSRF.search(client.get(path, base_url=base_url).get_data(as_text=True))
    assert match, f"no CSRF token in the forms of {path}"
    return match.group(1)


def wait_until_up(url: str, process: subprocess.Popen, timeout_s: float = 60.0) -> None:
    deadline = time.monotonic() + timeout_s
    while time.monotonic() < deadline:
        if process.poll() is not None:
            raise RuntimeError(f"{process.args} exited with {process.returncode} before {url} answered")
        try:
            if requests.get(url, timeout=1).ok:
                return
        except requests.RequestException:
            pass
        time.sleep(0.2)
    raise RuntimeError(f"{url} did not answer within {timeout_s:g} s")


def stop(process: subprocess.Popen) -> None:
    process.terminate()
    try:
        process.wait(timeout=10)
    except subprocess.TimeoutExpired:
        process.kill()
        process.wait()


def start_ui(predictor_url: str, *options: str, log: Path | None = None) -> tuple[str, subprocess.Popen]:
    """`facesim ui` as a user runs it (waitress), on a free port; its output goes to `log` if given."""
    port = free_port()
    with open(log or os.devnull, "wb") as output:  # the child keeps its own handle
        process = _spawn_ui(predictor_url, port, options, output)
    url = f"http://127.0.0.1:{port}"
    wait_until_up(f"{url}/healthz", process)
    return url, process


def _spawn_ui(predictor_url: str, port: int, options: tuple[str, ...], output: IO[bytes]) -> subprocess.Popen:
    return subprocess.Popen(
        [
            sys.executable,
            "-m",
            "facesim",
            "ui",
            "--predictor",
            predictor_url,
            "--port",
            str(port),
            *(options or ("--timeout", "10")),
        ],
        stdout=output,
        stderr=subprocess.STDOUT,
        env={**os.environ, "FACESIM_ADMIN_TOKEN": TEST_ADMIN_TOKEN},
    )


@dataclass
class DoomedPredictor:
    """A predictor (with a UI in front) that its test stops halfway."""

    ui_url: str
    predictor: ExitStack  # closing it stops the predictor process

    def stop(self) -> None:
        self.predictor.close()
