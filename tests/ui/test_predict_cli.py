"""The one predictor client (facesim.contract.client) against servers that are not facesim predictors:
whatever they answer, callers get one PredictorError with a one-line message, never a traceback."""

from __future__ import annotations

import json
import subprocess
import sys
import threading
from collections.abc import Iterator
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
from pathlib import Path

import pytest

from facesim.contract.client import PredictorClient, PredictorError, Timeouts, WriteRetries
from facesim.inference.local_server import free_port
from tests.helpers.ui_helpers import wait_until_up

# What a server that is not a facesim predictor (or a broken one) might answer: status, type, body.
ODD_ANSWERS = {
    "html page": (200, "text/html", b"<html><body>Directory listing</body></html>"),
    "empty list": (200, "application/json", b"[]"),
    "wrong types": (200, "application/json", b'{"predictions": [{"faces": "none"}], "threshold": "0.5"}'),
    "missing fields": (200, "application/json", b'{"predictions": [{}]}'),
    "box of three": (
        200,
        "application/json",
        json.dumps(
            {
                "predictions": [{"faces": [{"box": [1, 2, 3], "score": 0.9, "embedding": [], "matches": []}]}],
                "threshold": 1.0,
                "model_version": "x",
                "gallery_version": 1,
            }
        ).encode(),
    ),
    "error page": (502, "text/html", b"<html>Bad Gateway</html>" * 100),
    "multi-line error": (400, "application/json", b'{"error": "line one\\nline two"}'),
}


class CannedHandler(BaseHTTPRequestHandler):
    answer: tuple[int, str, bytes] = (200, "text/plain", b"")

    def _reply(self) -> None:
        status, kind, body = self.answer
        self.send_response(status)
        self.send_header("Content-Type", kind)
        self.send_header("Content-Length", str(len(body)))
        self.end_headers()
        self.wfile.write(body)

    do_GET = do_POST = do_DELETE = _reply

    def log_message(self, *_: object) -> None:
        pass


@pytest.fixture()
def canned() -> Iterator[tuple[str, type[CannedHandler]]]:
    handler = type("Handler", (CannedHandler,), {})
    server = ThreadingHTTPServer(("127.0.0.1", 0), handler)
    threading.Thread(target=server.serve_forever, daemon=True).start()
    yield f"http://127.0.0.1:{server.server_address[1]}", handler
    server.shutdown()
    server.server_close()


@pytest.mark.parametrize("case", list(ODD_ANSWERS))
def test_odd_answers_become_one_line_errors(canned: tuple[str, type[CannedHandler]], case: str) -> None:
    url, handler = canned
    handler.answer = ODD_ANSWERS[case]
    # The enrolment is retried as often as ever (a 502 or an unreadable answer may be a passing outage), without the waits.
    client = PredictorClient(url, Timeouts(connect_s=2, read_s=5), retries=WriteRetries(first_wait_s=0.01))
    for call in (lambda: client.predict(b"jpeg"), client.gallery, lambda: client.enrol("x", [b"jpeg"]), client.roc_png):
        with pytest.raises(PredictorError) as raised:
            call()
        message = str(raised.value)
        assert "\n" not in message and len(message) < 400 and "<html" not in message, message
        assert raised.value.rejected == (ODD_ANSWERS[case][0] == 400)


def test_a_server_that_never_answers_times_out(canned: tuple[str, type[CannedHandler]]) -> None:
    import socket

    with socket.socket() as silent:  # accepts connections (the kernel does), never answers
        silent.bind(("127.0.0.1", 0))
        silent.listen()
        client = PredictorClient(f"http://127.0.0.1:{silent.getsockname()[1]}", Timeouts(connect_s=1, read_s=1))
        with pytest.raises(PredictorError, match="did not answer within 1 s"):
            client.gallery()
        assert client.is_ready() is False


def test_facesim_predict_against_http_server_is_one_line_and_exit_1(detection_dir: Path, tmp_path: Path) -> None:
    port = free_port()
    server = subprocess.Popen(
        [sys.executable, "-m", "http.server", str(port), "--bind", "127.0.0.1"],
        cwd=tmp_path,
        stdout=subprocess.DEVNULL,
        stderr=subprocess.DEVNULL,
    )
    try:
        wait_until_up(f"http://127.0.0.1:{port}/", server)
        photo = detection_dir / "face_recognition" / "examples" / "obama_small.jpg"
        result = subprocess.run(
            [sys.executable, "-m", "facesim", "predict", str(photo), "--url", f"http://127.0.0.1:{port}"],
            capture_output=True,
            text=True,
            timeout=120,
            check=False,
        )
    finally:
        server.terminate()
        server.wait()
    assert result.returncode == 1 and result.stdout == ""
    assert len(result.stderr.strip().splitlines()) == 1, result.stderr
    assert "not a facesim predictor" in result.stderr and "Traceback" not in result.stderr


def test_facesim_predict_prints_the_model_card_as_the_ui_shows_it(capsys: pytest.CaptureFixture) -> None:
    from facesim.ui.predict import main as predict_main
    from tests.helpers.card_predictor import card_predictor

    card = {
        "threshold": 0.1934,
        "metrics": {"val_accuracy": 0.99667, "test_accuracy": 0.99333, "test_impostor_pairs": 307011.0},
        "training": {"params": {"learning_rate": 2e-05}},
    }
    with card_predictor(card, b"\x89PNG") as url:
        assert predict_main(["--model-card", "--url", url]) == 0
        shown = capsys.readouterr().out
        assert predict_main(["--model-card", "--json", "--url", url]) == 0
        assert json.loads(capsys.readouterr().out) == card
    assert "Threshold (squared L2): 0.1934" in shown and "learning_rate: 2e-05" in shown
    rows = [line.split() for line in shown.splitlines() if line.startswith(("accuracy", "impostor_pairs"))]
    assert rows == [["accuracy", "0.9967", "0.9933"], ["impostor_pairs", "—", "307,011"]]
    with pytest.raises(SystemExit):  # neither an image nor --model-card
        predict_main(["--url", url])
