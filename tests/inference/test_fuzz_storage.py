"""Fuzzing that reaches storage: real face photos enrolled under hostile names, V1/V2 requests with
hostile strings around a real photo, JSON nested 500-5,000 levels deep, and chunked bodies above the
size limit. Whatever arrives, the answer is a 4xx or a 2xx, never a 5xx, and oversized bodies get a 413."""

from __future__ import annotations

import base64
import json
import unicodedata
from collections.abc import Iterable
from pathlib import Path

import pytest
import requests
from hypothesis import HealthCheck, assume, given, settings
from hypothesis import strategies as st

from tests.helpers.admin import AUTH
from tests.helpers.http_probe import post_chunked

V1 = "/v1/models/facenet:predict"
V2 = "/v2/models/facenet/infer"
GALLERY = "/v1/models/facenet/gallery"
READY = "/v2/health/ready"
JSON_AUTH = {**AUTH, "Content-Type": "application/json"}
DEFAULT_MAX_REQUEST_BYTES = 64 * 1024 * 1024  # `facesim serve --max-request-bytes` default
# Small real photos with one face each: every fuzzed enrolment passes decoding and detection.
PHOTOS = ("obama_small.jpg", "obama-240p.jpg")
REJECTED_CATEGORIES = {"Cc", "Cf", "Cs", "Zl", "Zp"}  # control, format, lone surrogate, line/paragraph separators

# Any code point, lone surrogates included (codec=None), plus names known to be hostile.
hostile_names = st.one_of(
    st.text(st.characters(codec=None), max_size=140),
    st.sampled_from(
        [
            "\ud800",
            "\udc00x",
            "Ada\u200d",
            "A\u0301da",
            "\u202eevil",
            "a" * 129,
            "   ",
            "",
            "x\x00y",
            "line\u2028break",
            "Robert'); DROP TABLE identities;--",
            "../../etc/passwd",
            "<script>alert(1)</script>",
            "\U0001f600 emoji",
            "Ω\ufeff",
        ]
    ),
)
# Any text, lone surrogates included, and often one of the strings that broke a server before.
hostile_text = st.one_of(
    st.sampled_from(["\ud800", "\udc00", "x\ud83d", "\u200d", "\x00"]), st.text(st.characters(codec=None), max_size=40)
)
FUZZ = settings(max_examples=40, deadline=None, suppress_health_check=[HealthCheck.function_scoped_fixture])


class Photos(list):
    """The photos as base64 text; a short repr keeps Hypothesis' failure reports readable."""

    def __repr__(self) -> str:
        return f"<{len(self)} base64 photos>"


@pytest.fixture(scope="module")
def photos(detection_dir: Path) -> Photos:
    examples = detection_dir / "face_recognition" / "examples"
    return Photos(base64.b64encode((examples / name).read_bytes()).decode("ascii") for name in PHOTOS)


def expected_name(name: str) -> str | None:
    """The identity rule as the API documents it: NFC, trimmed, 1-128 characters, none of them control,
    format, surrogate or line/paragraph separators. None when the name must be refused."""
    if any(unicodedata.category(ch) in REJECTED_CATEGORIES for ch in name):  # before trimming: "Ada\r" too
        return None
    normalised = unicodedata.normalize("NFC", name).strip()
    if not 0 < len(normalised) <= 128 or any(unicodedata.category(ch) in REJECTED_CATEGORIES for ch in normalised):
        return None
    return normalised


def assert_4xx_with_error(answer: requests.Response | tuple[int, bytes], status: int | None = None) -> None:
    code, body = (answer.status_code, answer.content) if isinstance(answer, requests.Response) else answer
    assert 400 <= code < 500, f"{code}: {body[:300]!r}"
    assert status is None or code == status, f"{code} (wanted {status}): {body[:300]!r}"
    assert json.loads(body)["error"]


def assert_healthy(url: str) -> None:
    assert requests.get(url + READY, timeout=30).status_code == 200


def listed(url: str) -> dict[str, int]:
    answer = requests.get(url + GALLERY, timeout=30)
    assert answer.status_code == 200, answer.text[:300]
    return {entry["identity"]: entry["count"] for entry in answer.json()["identities"]}


@FUZZ
@given(name=hostile_names, photo=st.integers(0, len(PHOTOS) - 1))
def test_enrolment_of_real_photos_under_hostile_names(
    predictor_url: str, photos: Photos, name: str, photo: int
) -> None:
    before = listed(predictor_url)
    expected = expected_name(name)
    assume(expected not in before)  # never touch the shared gallery's own identities
    body = json.dumps({"identity": name, "images": [{"b64": photos[photo]}]})  # lone surrogates as \ud800 escapes
    answer = requests.post(predictor_url + GALLERY, data=body, headers=JSON_AUTH, timeout=60)
    if expected is None:
        assert_4xx_with_error(answer, 400)
        assert listed(predictor_url) == before
        return
    assert answer.status_code == 200, f"{answer.status_code}: {answer.text[:300]}"
    assert answer.json()["identity"] == expected
    assert listed(predictor_url)[expected] == 1  # stored, under its normalised name
    removed = requests.delete(predictor_url + GALLERY, params={"identity": name}, headers=AUTH, timeout=60)
    assert removed.status_code == 200, removed.text[:300]
    assert listed(predictor_url) == before


@FUZZ
@given(text=hostile_text, slot=st.sampled_from(["id", "name", "datatype", "parameter"]))
def test_v2_hostile_strings_around_a_real_photo(predictor_url: str, photos: Photos, text: str, slot: str) -> None:
    item = {"name": "image", "shape": [1], "datatype": "BYTES", "data": [photos[0]]}
    body: dict = {"inputs": [item], "parameters": {"top_k": 1}}
    if slot == "id":
        body["id"] = text
    elif slot == "parameter":
        body["parameters"][text] = text
    else:
        item[slot] = text
    answer = requests.post(
        predictor_url + V2, data=json.dumps(body), headers={"Content-Type": "application/json"}, timeout=60
    )
    assert answer.status_code < 500, f"{answer.status_code}: {answer.text[:300]}"
    if answer.status_code == 200 and slot == "id":
        assert answer.json()["id"] == text
    elif answer.status_code != 200:
        assert_4xx_with_error(answer)


@FUZZ
@given(text=hostile_text)
def test_v1_hostile_strings_around_a_real_photo(predictor_url: str, photos: Photos, text: str) -> None:
    body = {"instances": [{"image": {"b64": photos[0]}, "top_k": 1, text: text}], text: [text]}
    answer = requests.post(
        predictor_url + V1, data=json.dumps(body), headers={"Content-Type": "application/json"}, timeout=60
    )
    assert answer.status_code < 500, f"{answer.status_code}: {answer.text[:300]}"
    if answer.status_code != 200:
        assert_4xx_with_error(answer)


def nested(depth: int, kind: str, leaf: str) -> str:
    opening, closing = ("[", "]") if kind == "list" else ('{"a":', "}")
    return opening * depth + leaf + closing * depth


@settings(max_examples=30, deadline=None, suppress_health_check=[HealthCheck.function_scoped_fixture])
@given(
    depth=st.integers(500, 5000),
    kind=st.sampled_from(["list", "object"]),
    slot=st.sampled_from(
        [
            "v1-body",
            "v1-image",
            "v1-top_k",
            "v2-body",
            "v2-data",
            "v2-id",
            "v2-parameters",
            "enrol-body",
            "enrol-identity",
            "enrol-images",
        ]
    ),
)
def test_deep_json_is_a_400(predictor_url: str, photos: Photos, depth: int, kind: str, slot: str) -> None:
    photo = json.dumps(photos[0])
    deep = nested(depth, kind, photo)
    bodies = {
        "v1-body": (V1, deep),
        "v1-image": (V1, '{"instances": [{"image": %s}]}' % deep),
        "v1-top_k": (V1, '{"instances": [{"image": {"b64": %s}, "top_k": %s}]}' % (photo, deep)),
        "v2-body": (V2, deep),
        "v2-data": (V2, '{"inputs": [{"name": "image", "shape": [1], "datatype": "BYTES", "data": %s}]}' % deep),
        "v2-id": (
            V2,
            '{"id": %s, "inputs": [{"name": "image", "shape": [1], "datatype": "BYTES", "data": [%s]}]}'
            % (deep, photo),
        ),
        "v2-parameters": (
            V2,
            '{"parameters": %s, "inputs": [{"name": "image", "shape": [1], "datatype": "BYTES", "data": [%s]}]}'
            % (deep, photo),
        ),
        "enrol-body": (GALLERY, deep),
        "enrol-identity": (GALLERY, '{"identity": %s, "images": [{"b64": %s}]}' % (deep, photo)),
        "enrol-images": (GALLERY, '{"identity": "deep", "images": %s}' % deep),
    }
    path, body = bodies[slot]
    answer = requests.post(predictor_url + path, data=body.encode(), headers=JSON_AUTH, timeout=60)
    assert_4xx_with_error(answer, 400)
    assert "deep" not in listed(predictor_url)


@settings(max_examples=6, deadline=None, suppress_health_check=[HealthCheck.function_scoped_fixture])
@given(
    path=st.sampled_from([V1, V2, GALLERY]),
    chunk_kib=st.sampled_from([16, 256, 1024]),
    over_kib=st.integers(1, 2048),
    prefix=st.sampled_from([b"", b'{"instances": [{"image": {"b64": "']),
)
def test_chunked_bodies_over_the_limit_get_413(
    predictor_url: str, path: str, chunk_kib: int, over_kib: int, prefix: bytes
) -> None:
    total = DEFAULT_MAX_REQUEST_BYTES + over_kib * 1024
    chunk = b"A" * (chunk_kib * 1024)

    def chunks() -> Iterable[bytes]:
        yield prefix
        sent = len(prefix)
        while sent < total:
            part = chunk[: total - sent]
            sent += len(part)
            yield part

    answer = post_chunked(predictor_url, path, chunks(), JSON_AUTH)
    assert_4xx_with_error(answer, 413)
    assert_healthy(predictor_url)


def test_chunked_body_under_the_limit_is_served(predictor_url: str, photos: Photos) -> None:
    body = json.dumps({"instances": [{"image": {"b64": photos[0]}, "top_k": 1}]}).encode()
    status, answer = post_chunked(
        predictor_url, V1, [body[i : i + 4096] for i in range(0, len(body), 4096)], {"Content-Type": "application/json"}
    )
    assert status == 200, answer[:300]
    assert len(json.loads(answer)["predictions"][0]["faces"]) == 1


def test_server_is_healthy_after_fuzzing(predictor_url: str) -> None:
    assert_healthy(predictor_url)
