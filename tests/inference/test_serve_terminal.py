"""What the servers show and where they listen by default: 127.0.0.1, announced, one line per request."""

from __future__ import annotations

import subprocess
import sys
import time
from pathlib import Path

import requests

from facesim.inference.local_server import free_port, start_predictor


def _listening(port: int) -> list[str]:
    """The local addresses `ss -ltn` shows listening on `port`."""
    table = subprocess.run(["ss", "-ltnH"], capture_output=True, text=True, check=True, timeout=30).stdout
    return [row.split()[3] for row in table.splitlines() if row.split()[3].endswith(f":{port}")]


def _wait_for_line(log: Path, needle: str, timeout_s: float = 60.0) -> None:
    deadline = time.monotonic() + timeout_s
    while needle not in log.read_text(errors="replace"):
        assert time.monotonic() < deadline, f"no {needle!r} in {log}:\n{log.read_text()[-2000:]}"
        time.sleep(0.3)


def test_both_servers_bind_loopback_by_default_and_log_one_line_per_request(
    tiny_model_dir: Path, tiny_gallery_dir: Path, yunet_path: Path, tmp_path: Path
) -> None:
    env = {"FACESIM_HOME": str(tmp_path / "home"), "FACESIM_YUNET_MODEL": str(yunet_path)}
    log = tmp_path / "predictor.log"
    predictor = start_predictor(tiny_model_dir, tiny_gallery_dir, env=env, log_path=log)
    ui_port = free_port()
    ui_log = tmp_path / "ui.log"
    with open(ui_log, "wb") as out:
        ui = subprocess.Popen(
            [sys.executable, "-m", "facesim", "ui", "--predictor", predictor.url, "--port", str(ui_port)],
            stdout=out,
            stderr=subprocess.STDOUT,
        )
    try:
        predictor_port = int(predictor.url.rsplit(":", 1)[1])
        assert _listening(predictor_port) == [f"127.0.0.1:{predictor_port}"]
        _wait_for_line(ui_log, "facesim ui:")
        deadline = time.monotonic() + 30
        while not _listening(ui_port) and time.monotonic() < deadline:
            time.sleep(0.3)
        assert _listening(ui_port) == [f"127.0.0.1:{ui_port}"]
        assert f"http://127.0.0.1:{ui_port}/" in ui_log.read_text()

        for _ in range(5):
            assert requests.get(f"{predictor.url}/v1/models/facenet/gallery", timeout=10).ok
            assert requests.get(f"{predictor.url}/v1/models/facenet", timeout=10).ok  # a probe: no line
        time.sleep(1)  # let the access lines reach the log
        shown = log.read_text(errors="replace")
        assert f"facenet on http://127.0.0.1:{predictor_port}" in shown
        assert shown.count('"GET /v1/models/facenet/gallery HTTP') == 5  # one access line each
        assert '"GET /v1/models/facenet HTTP' not in shown
        assert "kserve.trace" not in shown and "Deprecat" not in shown
    finally:
        ui.terminate()
        ui.wait(timeout=30)
        predictor.stop()
