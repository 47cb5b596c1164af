"""Run `python -m inference` as a child process and wait until it is ready (benchmarks, tests, scripts)."""

from __future__ import annotations

import os
import socket
import subprocess
import sys
import time
from collections.abc import Iterator
from contextlib import contextmanager
from pathlib import Path

import requests

READY_PATH = "/v2/health/ready"


class ServerStartError(RuntimeError):
    pass


def free_port() -> int:
    with socket.socket() as probe:
        probe.bind(("127.0.0.1", 0))
        return probe.getsockname()[1]


@contextmanager
def local_predictor(
    model_dir: Path,
    gallery_dir: Path,
    extra_args: tuple[str, ...] = (),
    env: dict[str, str] | None = None,
    log_path: Path | None = None,
    ready_timeout_s: float = 180.0,
) -> Iterator[str]:
    """Start the predictor on a free port; yields its base URL; stops it (SIGTERM, then SIGKILL)."""
    port = free_port()
    command = [sys.executable, "-m", "inference", "--model_dir", str(model_dir), "--gallery_dir", str(gallery_dir),
               "--http_port", str(port), *extra_args]  # fmt: skip
    log = open(log_path, "wb") if log_path else subprocess.DEVNULL
    process = subprocess.Popen(command, stdout=log, stderr=subprocess.STDOUT, env={**os.environ, **(env or {})})
    url = f"http://127.0.0.1:{port}"
    try:
        _wait_ready(process, url, ready_timeout_s, log_path)
        yield url
    finally:
        process.terminate()
        try:
            process.wait(timeout=20)
        except subprocess.TimeoutExpired:
            process.kill()
            process.wait()
        if log_path:
            log.close()


def _wait_ready(process: subprocess.Popen, url: str, timeout_s: float, log_path: Path | None) -> None:
    deadline = time.monotonic() + timeout_s
    while time.monotonic() < deadline:
        if process.poll() is not None:
            tail = log_path.read_text(errors="replace")[-2000:] if log_path else "(no log kept)"
            raise ServerStartError(f"the predictor exited with code {process.returncode}:\n{tail}")
        try:
            if requests.get(url + READY_PATH, timeout=2).status_code == 200:
                return
        except requests.RequestException:
            pass
        time.sleep(0.3)
    raise ServerStartError(f"the predictor at {url} was not ready after {timeout_s:.0f} s")
