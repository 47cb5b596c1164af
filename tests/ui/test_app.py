"""The Flask app through its test client, against a live predictor process."""

from __future__ import annotations

import base64
import io
import re
import socket
import struct
import subprocess
import sys
import time
import zlib
from html import unescape as html_unescape
from pathlib import Path

import pytest
import requests
from flask.testing import FlaskClient
from PIL import Image

from facesim.contract.display import display_name
from facesim.ui.app import UiConfig, create_app
from tests.helpers.ui_helpers import HOSTILE_NAME, csrf_token, free_port


def _upload(path: Path) -> tuple[io.BytesIO, str]:
    return io.BytesIO(path.read_bytes()), path.name


def _png_header(width: int, height: int) -> bytes:
    """A PNG that claims a size but holds no pixels (how a decompression bomb starts)."""
    chunks = [b"IHDR" + struct.pack(">IIBBBBB", width, height, 8, 2, 0, 0, 0), b"IDAT"]
    body = b"".join(struct.pack(">I", len(c) - 4) + c + struct.pack(">I", zlib.crc32(c)) for c in chunks)
    return b"\x89PNG\r\n\x1a\n" + body


def _gif() -> bytes:
    buffer = io.BytesIO()
    Image.new("RGB", (32, 32), "red").save(buffer, format="GIF")
    return buffer.getvalue()


def _gallery_names(predictor_url: str) -> list[str]:
    listing = requests.get(f"{predictor_url}/v1/models/facenet/gallery", timeout=10).json()
    return [entry["identity"] for entry in listing["identities"]]


def test_first_page_has_an_upload_form_and_security_headers(ui_client: FlaskClient) -> None:
    page = ui_client.get("/")
    html = page.get_data(as_text=True)
    assert page.status_code == 200
    assert 'enctype="multipart/form-data"' in html and 'type="file"' in html
    assert 'name="csrf_token"' in html
    policy = page.headers["Content-Security-Policy"]
    assert "script-src 'self'" in policy and "unsafe-inline" not in policy
    assert page.headers["X-Content-Type-Options"] == "nosniff"
    assert page.headers["X-Frame-Options"] == "DENY"
    assert "<script>" not in html.replace('<script src="/static/app.js" defer></script>', "")


def test_search_two_people_names_gallery_identities(
    ui_client: FlaskClient, predictor_url: str, two_people_jpg: Path
) -> None:
    token = csrf_token(ui_client)
    page = ui_client.post("/search", data={"csrf_token": token, "image": _upload(two_people_jpg)})
    html = page.get_data(as_text=True)
    assert page.status_code == 200, html
    assert html.count('class="face face-') == 2
    assert 'src="data:image/jpeg;base64,' in html  # the photo with its boxes drawn
    # Each face's match rows name the predictor's own top 3 for that face, in order (the sample
    # buttons name gallery identities too, so the names must be read from the match rows).
    faces = re.findall(r'<li class="face face-\d".*?</li>', html, re.S)
    shown = [[html_unescape(name) for name in re.findall(r'<td class="identity">(.*?)</td>', face)] for face in faces]
    body = {"instances": [{"image": {"b64": base64.b64encode(two_people_jpg.read_bytes()).decode()}, "top_k": 3}]}
    answer = requests.post(f"{predictor_url}/v1/models/facenet:predict", json=body, timeout=60).json()
    expected = [[m["identity"] for m in face["matches"]] for face in answer["predictions"][0]["faces"]]
    assert shown == [[display_name(name) for name in names] for names in expected]
    assert all(len(names) == 3 for names in shown)
    assert {name for names in expected for name in names} <= set(_gallery_names(predictor_url))


def test_search_page_offers_well_known_people_by_name(ui_client: FlaskClient) -> None:
    """The tiny gallery's most photographed people (LFW's Colin_Powell, Tony_Blair, Donald_Rumsfeld)
    come first among the samples, shown by name; the form still sends the stored key."""
    html = ui_client.get("/").get_data(as_text=True)
    samples = re.findall(r'name="sample" value="([^"]+)" class="sample" title="([^"]+)"', html)
    assert samples[:3] == [
        ("Colin_Powell", "Colin Powell"),
        ("Tony_Blair", "Tony Blair"),
        ("Donald_Rumsfeld", "Donald Rumsfeld"),
    ]


@pytest.mark.parametrize(
    ("content", "filename", "expected"),
    [
        (b"\xff\xd8\xff\xe0" + b"\x00" * 64, "corrupt.jpg", "could not be read as an image"),
        (b"just some text", "notes.png", "could not be read as an image"),
        (b"GIF89a", "animation.gif", "only .jpg, .jpeg and .png"),
        (b"", "empty.jpg", "empty.jpg is empty"),
        (_gif(), "renamed.png", "is a GIF image"),
        (_png_header(8_000, 6_000), "huge.png", "8000 x 6000 pixels"),
    ],
    ids=["corrupt", "text", "gif", "empty", "gif-renamed", "huge"],
)
def test_bad_upload_gets_a_friendly_page(ui_client: FlaskClient, content: bytes, filename: str, expected: str) -> None:
    token = csrf_token(ui_client)
    page = ui_client.post("/search", data={"csrf_token": token, "image": (io.BytesIO(content), filename)})
    html = page.get_data(as_text=True)
    assert page.status_code == 400
    assert expected in html and "Traceback" not in html
    assert " at 0x" not in html  # no Python object reprs (`<_io.BytesIO object at 0x...>`)


def test_truncated_jpeg_is_refused(ui_client: FlaskClient, two_people_jpg: Path) -> None:
    token = csrf_token(ui_client)
    half = two_people_jpg.read_bytes()[: two_people_jpg.stat().st_size // 2]
    page = ui_client.post("/search", data={"csrf_token": token, "image": (io.BytesIO(half), "half.jpg")})
    assert page.status_code == 400
    assert "corrupt or truncated" in page.get_data(as_text=True)


def test_form_without_csrf_token_is_refused(ui_client: FlaskClient, two_people_jpg: Path) -> None:
    page = ui_client.post("/search", data={"image": _upload(two_people_jpg)})
    assert page.status_code == 400
    assert "reload the page" in page.get_data(as_text=True)


def test_forms_work_over_https(ui_client: FlaskClient) -> None:
    # Over HTTPS Flask-WTF also wants a same-origin Referer: the Referrer-Policy must let browsers send it.
    assert ui_client.get("/").headers["Referrer-Policy"] in ("same-origin", "strict-origin-when-cross-origin")
    token = csrf_token(ui_client, "/gallery", base_url="https://ui.example")
    form = {"csrf_token": token, "identity": "nobody by this name"}
    answer = ui_client.post(
        "/gallery/remove", base_url="https://ui.example", data=form, headers={"Referer": "https://ui.example/gallery"}
    )
    assert answer.status_code == 404  # past the CSRF check, to the predictor's "unknown identity"
    assert "Could not remove nobody by this name" in answer.get_data(as_text=True)


def test_oversize_upload_gets_a_friendly_413(predictor_url: str, two_people_jpg: Path) -> None:
    client = create_app(UiConfig(predictor_url=predictor_url, max_upload_bytes=100_000)).test_client()
    token = csrf_token(client)
    page = client.post("/search", data={"csrf_token": token, "image": _upload(two_people_jpg)})
    assert page.status_code == 413
    assert "larger than" in page.get_data(as_text=True)


def test_compare_shows_distance_verdict_and_both_crops(ui_client: FlaskClient, examples_dir: Path) -> None:
    token = csrf_token(ui_client, "/compare")
    data = {
        "csrf_token": token,
        "first": _upload(examples_dir / "obama.jpg"),
        "second": _upload(examples_dir / "obama2.jpg"),
    }
    page = ui_client.post("/compare", data=data)
    html = page.get_data(as_text=True)
    assert page.status_code == 200, html
    assert 'id="distance"' in html and 'id="threshold"' in html
    assert html.count('class="verdict verdict-') == 1
    assert html.count('src="data:image/png;base64,') == 2


def test_photo_without_a_face_is_a_normal_answer(ui_client: FlaskClient, examples_dir: Path, tmp_path: Path) -> None:
    blank = tmp_path / "wall.png"
    Image.new("RGB", (320, 240), (200, 190, 170)).save(blank)
    token = csrf_token(ui_client)
    page = ui_client.post("/search", data={"csrf_token": token, "image": _upload(blank)})
    assert page.status_code == 200
    assert 'id="no-face"' in page.get_data(as_text=True)
    data = {"csrf_token": token, "first": _upload(examples_dir / "obama.jpg"), "second": _upload(blank)}
    page = ui_client.post("/compare", data=data)
    html = page.get_data(as_text=True)
    assert page.status_code == 200
    assert "No face found in the second photo (wall.png)" in html and 'id="distance"' not in html


def test_model_page_shows_card_and_roc(ui_client: FlaskClient, predictor_url: str) -> None:
    card = requests.get(f"{predictor_url}/v1/models/facenet/card", timeout=10).json()
    html = ui_client.get("/model").get_data(as_text=True)
    assert f"{card['threshold']:.4f}" in html
    roc = ui_client.get("/model/roc.png")
    assert roc.status_code == 200 and roc.mimetype == "image/png"
    assert Image.open(io.BytesIO(roc.data)).size[0] > 100


def test_thumbnail_of_unknown_or_traversing_name_is_404(ui_client: FlaskClient) -> None:
    assert ui_client.get("/gallery/thumbnail", query_string={"identity": "../../../etc/passwd"}).status_code == 404
    assert ui_client.get("/static/../app.py").status_code == 404


def test_enrol_hostile_name_is_escaped_then_removed(
    writable_client: FlaskClient, writable_predictor: str, examples_dir: Path
) -> None:
    token = csrf_token(writable_client, "/gallery")
    photo = _upload(examples_dir / "lin-manuel-miranda.png")
    data = {"csrf_token": token, "identity": HOSTILE_NAME, "images": [photo]}
    page = writable_client.post("/gallery/enrol", data=data, follow_redirects=True)
    html = page.get_data(as_text=True)
    assert page.status_code == 200, html
    assert HOSTILE_NAME in _gallery_names(writable_predictor)
    assert "&lt;script&gt;alert(1)&lt;/script&gt;" in html
    assert HOSTILE_NAME not in html

    page = writable_client.post(
        "/gallery/remove", data={"csrf_token": token, "identity": HOSTILE_NAME}, follow_redirects=True
    )
    assert page.status_code == 200
    assert HOSTILE_NAME not in _gallery_names(writable_predictor)
    page = writable_client.post("/gallery/remove", data={"csrf_token": token, "identity": HOSTILE_NAME})
    assert page.status_code == 404  # already gone: a message, not an error page


def test_enrol_without_a_face_or_name_is_a_friendly_400(writable_client: FlaskClient, tmp_path: Path) -> None:
    blank = tmp_path / "blank.png"
    Image.new("RGB", (200, 200), "white").save(blank)
    token = csrf_token(writable_client, "/gallery")
    data = {"csrf_token": token, "identity": "Nobody", "images": [_upload(blank)]}
    page = writable_client.post("/gallery/enrol", data=data)
    assert page.status_code == 400
    assert "refused to enrol" in page.get_data(as_text=True)
    for name, message in (("  ", "Give the person a name"), ("Ada\nLovelace", "control characters")):
        data = {"csrf_token": token, "identity": name, "images": [_upload(blank)]}
        page = writable_client.post("/gallery/enrol", data=data)
        assert page.status_code == 400
        assert message in page.get_data(as_text=True)


def test_predictor_down_shows_a_banner_not_a_traceback(two_people_jpg: Path) -> None:
    client = create_app(UiConfig(predictor_url=f"http://127.0.0.1:{free_port()}", timeout_s=2)).test_client()
    page = client.get("/")
    assert page.status_code == 200 and 'id="predictor-down"' in page.get_data(as_text=True)
    token = csrf_token(client)
    page = client.post("/search", data={"csrf_token": token, "image": _upload(two_people_jpg)})
    assert page.status_code == 503
    assert 'id="predictor-down"' in page.get_data(as_text=True)
    for path in ("/gallery", "/model"):
        page = client.get(path)
        assert page.status_code == 503 and "cannot reach the predictor" in page.get_data(as_text=True).lower()


def test_slow_predictor_is_cut_off_by_the_timeout(two_people_jpg: Path) -> None:
    # A socket that accepts connections (the kernel does) but never answers: a hung predictor.
    with socket.socket() as hung:
        hung.bind(("127.0.0.1", 0))
        hung.listen(16)
        hung_url = f"http://127.0.0.1:{hung.getsockname()[1]}"
        client = create_app(UiConfig(predictor_url=hung_url, timeout_s=1)).test_client()
        token = csrf_token(client)
        started = time.monotonic()
        page = client.post("/search", data={"csrf_token": token, "image": _upload(two_people_jpg)})
        elapsed = time.monotonic() - started
    assert page.status_code == 503
    assert "did not answer within 1 s" in page.get_data(as_text=True)
    assert elapsed < 8


def test_search_with_a_gallery_sample(ui_client: FlaskClient) -> None:
    home = ui_client.get("/").get_data(as_text=True)
    samples = re.findall(r'name="sample" value="([^"]+)"', home)
    assert samples, "the search page offers no sample images from the gallery"
    token = csrf_token(ui_client)
    page = ui_client.post("/search", data={"csrf_token": token, "sample": html_unescape(samples[0])})
    html = page.get_data(as_text=True)
    assert page.status_code == 200, html
    assert html.count('class="face face-') >= 1 and 'class="match"' in html


def test_cli_help_and_bad_options() -> None:
    help_run = subprocess.run(
        [sys.executable, "-m", "facesim.ui", "--help"], capture_output=True, text=True, timeout=60
    )
    assert help_run.returncode == 0 and "--predictor" in help_run.stdout and "FACESIM_PREDICTOR_URL" in help_run.stdout
    for bad in (["--predictor", "localhost:8080"], ["--port", "70000"]):
        run = subprocess.run([sys.executable, "-m", "facesim", "ui", *bad], capture_output=True, text=True, timeout=60)
        assert run.returncode == 2, run.stderr
        assert "facesim ui:" in run.stderr and "Traceback" not in run.stderr
    with socket.socket() as taken:
        taken.bind(("127.0.0.1", 0))
        taken.listen()
        port = str(taken.getsockname()[1])
        command = [sys.executable, "-m", "facesim", "ui", "--port", port, "--predictor", "http://127.0.0.1:9"]
        run = subprocess.run(command, capture_output=True, text=True, timeout=60)
    assert run.returncode == 1 and "choose another --port" in run.stderr and "Traceback" not in run.stderr


def test_ui_never_imports_tensorflow() -> None:
    forbidden = "{'tensorflow', 'faces', 'training', 'inference'}"
    probe = f"import sys, ui.app, ui.cli; print(sorted(m for m in sys.modules if m.split('.')[0] in {forbidden}))"
    run = subprocess.run([sys.executable, "-c", probe], capture_output=True, text=True, timeout=60)
    assert run.returncode == 0, run.stderr
    assert run.stdout.strip() == "[]"
