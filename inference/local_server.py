"""Run the predictor as a child process and wait until it is ready (benchmarks, tests, scripts)."""

from __future__ import annotations

import os
import socket
import subprocess
import sys
import time
from collections.abc import Iterator
from contextlib import contextmanager
from dataclasses import dataclass
from pathlib import Path

import requests

from facesim.contract.api import READY_PATH


class ServerStartError(RuntimeError):
    pass


def free_port() -> int:
    with socket.socket() as probe:
        probe.bind(("127.0.0.1", 0))
        return probe.getsockname()[1]


@dataclass
class RunningPredictor:
    process: subprocess.Popen
    url: str

    def stop(self) -> None:
        """SIGTERM (KServe shuts down gracefully), SIGKILL after 20 s."""
        self.process.terminate()
        try:
            self.process.wait(timeout=20)
        except subprocess.TimeoutExpired:
            self.process.kill()
            self.process.wait()


def start_predictor(
    model_dir: Path,
    gallery_dir: Path | str,
    extra_args: tuple[str, ...] = (),
    env: dict[str, str] | None = None,
    log_path: Path | None = None,
    ready_timeout_s: float = 180.0,
    container: bool = False,
) -> RunningPredictor:
    """Start `facesim serve` (or, with `container`, the container entrypoint `python -m facesim.inference`)
    on a free port and wait until it is ready; the caller stops it."""
    port = free_port()
    if container:
        command = [
            sys.executable,
            "-m",
            "facesim.inference",
            "--model_dir",
            str(model_dir),
            "--gallery_dir",
            str(gallery_dir),
            "--http_port",
            str(port),
            *extra_args,
        ]
    else:
        command = [
            sys.executable,
            "-m",
            "facesim",
            "serve",
            "--model",
            str(model_dir),
            "--gallery",
            str(gallery_dir),
            "--port",
            str(port),
            *extra_args,
        ]
    with open(log_path, "wb") if log_path else open(os.devnull, "wb") as log:  # the child keeps its own handle
        process = subprocess.Popen(command, stdout=log, stderr=subprocess.STDOUT, env={**os.environ, **(env or {})})
    running = RunningPredictor(process, f"http://127.0.0.1:{port}")
    try:
        _wait_ready(process, running.url, ready_timeout_s, log_path)
    except BaseException:
        running.stop()
        raise
    return running


@contextmanager
def local_predictor(
    model_dir: Path,
    gallery_dir: Path | str,
    extra_args: tuple[str, ...] = (),
    env: dict[str, str] | None = None,
    log_path: Path | None = None,
    ready_timeout_s: float = 180.0,
    container: bool = False,
) -> Iterator[str]:
    """Start the predictor on a free port; yields its base URL; stops it (SIGTERM, then SIGKILL)."""
    running = start_predictor(model_dir, gallery_dir, extra_args, env, log_path, ready_timeout_s, container)
    try:
        yield running.url
    finally:
        running.stop()


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
