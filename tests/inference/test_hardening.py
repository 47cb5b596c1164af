"""Every probe of the hardening review, as a request: the 4xx it must get, and a healthy server after.

(5xx from input, unbounded bodies and pixels, unauthenticated writes, oversized headers, names with
invisible characters.) The fuzz tests (test_fuzz_storage.py) cover the same classes at random."""

from __future__ import annotations

import base64
import io
import json
import re
from pathlib import Path

import pytest
import requests
from fastapi import FastAPI
from fastapi.testclient import TestClient
from PIL import Image

from facesim.inference.predictor import FaceNetPredictor, ServingConfig
from facesim.inference.routes import install_routes
from tests.helpers.admin import AUTH
from tests.helpers.http_probe import post_chunked

V1 = "/v1/models/facenet:predict"
V2 = "/v2/models/facenet/infer"
GALLERY = "/v1/models/facenet/gallery"
JSON = {"Content-Type": "application/json"}
MIB = 1024 * 1024


def b64(data: bytes) -> str:
    return base64.b64encode(data).decode("ascii")


@pytest.fixture(scope="module")
def photo(detection_dir: Path) -> str:
    return b64((detection_dir / "face_recognition" / "examples" / "obama_small.jpg").read_bytes())


def big_png(side: int) -> bytes:
    """A side x side PNG that compresses to little: cheap to send, costly to decode."""
    buffer = io.BytesIO()
    Image.new("RGB", (side, side), (200, 180, 160)).save(buffer, "PNG")
    return buffer.getvalue()


def probes(photo: str) -> dict[str, tuple[str, str, dict, int, str]]:
    """name -> (method, path, requests options, expected status, words the error must contain)."""
    enrol = json.dumps({"identity": "probe", "images": [{"b64": photo}]})
    v2_image = {"name": "image", "shape": [1], "datatype": "BYTES", "data": [photo]}
    png = b64(big_png(6000))
    return {
        "lone surrogate in an enrol name": (
            "POST",
            GALLERY,
            {"data": enrol.replace('"probe"', '"\\ud800"'), "headers": {**AUTH, **JSON}},
            400,
            "surrogate",
        ),
        "enrol JSON nested 1,000 levels": (
            "POST",
            GALLERY,
            {"data": "[" * 1000 + "]" * 1000, "headers": {**AUTH, **JSON}},
            400,
            "JSON object",
        ),
        "enrol JSON nested 3,000 levels": (
            "POST",
            GALLERY,
            {"data": "[" * 3000 + "]" * 3000, "headers": {**AUTH, **JSON}},
            400,
            "nesting",
        ),
        "enrol images nested 600 levels": (
            "POST",
            GALLERY,
            {"data": '{"identity": "probe", "images": %s}' % ("[" * 600 + "]" * 600), "headers": {**AUTH, **JSON}},
            400,
            "images",
        ),
        "lone surrogate in a V2 request id": (
            "POST",
            V2,
            {"data": json.dumps({"id": "@", "inputs": [v2_image]}).replace('"@"', '"\\udc00"'), "headers": JSON},
            400,
            "surrogate",
        ),
        "V2 data nested 500 levels": (
            "POST",
            V2,
            {
                "data": json.dumps({"inputs": [v2_image]}).replace(
                    f'["{photo}"]', "[" * 500 + f'"{photo}"' + "]" * 500
                ),
                "headers": JSON,
            },
            400,
            "nested",
        ),
        "V2 shape that disagrees with the data": (
            "POST",
            V2,
            {"json": {"inputs": [{**v2_image, "shape": [7, 3]}]}},
            400,
            "shape",
        ),
        "8 instances + 8 compares of a 6000x6000 PNG": (
            "POST",
            V1,
            {"json": {"instances": [{"image": {"b64": png}, "compare": {"b64": png}}] * 8}},
            400,
            "pixels",
        ),
        "enrol without a token": ("POST", GALLERY, {"data": enrol, "headers": JSON}, 401, "token"),
        "enrol with a wrong token": (
            "POST",
            GALLERY,
            {"data": enrol, "headers": {"Authorization": "Bearer guess", **JSON}},
            401,
            "token",
        ),
        "remove without a token": ("DELETE", GALLERY, {"params": {"identity": "Colin_Powell"}}, 401, "token"),
        "text/plain enrol (a cross-site form)": (
            "POST",
            GALLERY,
            {"data": enrol, "headers": {**AUTH, "Content-Type": "text/plain"}},
            415,
            "application/json",
        ),
        "a 1 MB header": ("GET", GALLERY, {"headers": {"X-Padding": "a" * MIB}}, 431, "header"),
        "a name with a zero-width joiner": (
            "POST",
            GALLERY,
            {"data": enrol.replace('"probe"', '"Ada\\u200d"'), "headers": {**AUTH, **JSON}},
            400,
            "format",
        ),
        "a name that is a line break": (
            "DELETE",
            GALLERY,
            {"params": {"identity": "\n"}, "headers": AUTH},
            400,
            "control",
        ),
    }


PROBES = list(probes("x"))


@pytest.mark.parametrize("probe", PROBES)
def test_probe_gets_its_4xx_and_the_server_stays_healthy(predictor_url: str, photo: str, probe: str) -> None:
    method, path, options, status, words = probes(photo)[probe]
    before = requests.get(predictor_url + GALLERY, timeout=30).json()["identities"]
    answer = requests.request(method, predictor_url + path, timeout=120, **options)
    assert answer.status_code == status, f"{answer.status_code}: {answer.text[:300]}"
    assert words.lower() in answer.json()["error"].lower()
    assert requests.get(predictor_url + "/v2/health/ready", timeout=30).status_code == 200
    assert requests.get(predictor_url + GALLERY, timeout=30).json()["identities"] == before  # nothing written


def test_a_150_mib_chunked_body_gets_413_before_it_is_read(predictor_url: str) -> None:
    chunk = b"A" * MIB
    status, body = post_chunked(predictor_url, V1, (chunk for _ in range(150)), JSON)
    assert status == 413 and "too large" in json.loads(body)["error"]
    assert requests.get(predictor_url + "/v2/health/ready", timeout=30).status_code == 200


def test_401_names_the_scheme(predictor_url: str) -> None:
    answer = requests.delete(predictor_url + GALLERY, params={"identity": "x"}, timeout=30)
    assert answer.status_code == 401 and answer.headers["WWW-Authenticate"] == "Bearer"


def test_names_are_stored_nfc(predictor_url: str, photo: str) -> None:
    decomposed, composed = "Zoe\u0308 Probe", "Zoë Probe"
    answer = requests.post(
        predictor_url + GALLERY,
        json={"identity": f"  {decomposed} ", "images": [{"b64": photo}]},
        headers=AUTH,
        timeout=60,
    )
    assert answer.status_code == 200 and answer.json()["identity"] == composed
    try:
        again = requests.post(
            predictor_url + GALLERY, json={"identity": composed, "images": [{"b64": photo}]}, headers=AUTH, timeout=60
        )
        assert again.json()["count"] == 2  # one person, however the name was typed
    finally:
        removed = requests.delete(predictor_url + GALLERY, params={"identity": decomposed}, headers=AUTH, timeout=30)
    assert removed.json() == {"identity": composed, "removed": 2}


def test_ten_bad_requests_log_at_most_ten_lines_and_no_traceback(predictor_url: str, predictor_log: Path) -> None:
    start = predictor_log.stat().st_size
    bad = [("POST", V1, {"json": {"instances": [{"image": {"b64": f"bad{i}"}}]}}) for i in range(7)]
    bad += [
        ("POST", "/v1/models/nobody:predict", {"json": {"instances": []}}),
        ("POST", GALLERY, {"data": "x", "headers": {"Content-Type": "text/plain"}}),
        ("GET", GALLERY, {"headers": {"X-Padding": "a" * MIB}}),
    ]
    for method, path, options in bad:
        assert 400 <= requests.request(method, predictor_url + path, timeout=30, **options).status_code < 500
    requests.get(predictor_url + "/v2/health/ready", timeout=30)  # a marker: its access line comes after theirs
    with predictor_log.open("rb") as log:
        log.seek(start)
        lines = log.read().decode(errors="replace").splitlines()
    assert "Traceback" not in "\n".join(lines)
    # Not counted: KServe's per-request timing lines (`kserve.trace`, a switch of their own) and
    # library deprecation warnings, printed once per process with their source line.
    logged = [
        line
        for line in lines
        if "kserve.trace" not in line
        and "/v2/health/ready" not in line
        and "Warning" not in line
        and not line.startswith("  ")
    ]
    assert len(logged) == 10 and all(re.search(r'HTTP/1\.1" 4\d\d ', line) for line in logged), "\n".join(logged)


def test_a_predictor_without_a_token_refuses_writes_and_says_how_to_set_one(tmp_path: Path) -> None:
    predictor = FaceNetPredictor(ServingConfig(model_dir=tmp_path / "model", gallery_dir=tmp_path / "gallery"))
    predictor.ready = True  # the writes are refused before the gallery is touched
    app = FastAPI()
    install_routes(predictor, app)
    client = TestClient(app)
    for answer in (
        client.post(GALLERY, json={"identity": "x", "images": []}, headers={"Authorization": "Bearer anything"}),
        client.delete(GALLERY, params={"identity": "x"}),
    ):
        assert answer.status_code == 403
        assert "FACESIM_ADMIN_TOKEN" in answer.json()["error"] and "--admin-token-file" in answer.json()["error"]
