"""Fuzzing both inference endpoints: whatever a client sends, the answer is never a 5xx."""

from __future__ import annotations

import base64

import requests
from hypothesis import HealthCheck, assume, example, given, settings
from hypothesis import strategies as st

from tests.helpers.admin import AUTH

V1 = "/v1/models/facenet:predict"
V2 = "/v2/models/facenet/infer"

json_values = st.recursive(
    st.none() | st.booleans() | st.integers() | st.floats(allow_nan=False, allow_infinity=False) | st.text(max_size=20),
    lambda inner: st.lists(inner, max_size=4) | st.dictionaries(st.text(max_size=8), inner, max_size=4),
    max_leaves=12,
)
# Things that look like images to a parser but aren't quite: magic numbers followed by noise.
image_like = st.one_of(
    st.binary(max_size=300),
    st.tuples(
        st.sampled_from([b"\xff\xd8\xff\xe0", b"\x89PNG\r\n\x1a\n", b"GIF89a", b"RIFF\x00\x00\x00\x00WEBP"]),
        st.binary(max_size=300),
    ).map(b"".join),
)
b64_text = st.one_of(image_like.map(lambda data: base64.b64encode(data).decode()), st.text(max_size=40))
top_k = st.one_of(st.integers(-5, 200), json_values)

v1_bodies = st.one_of(
    json_values,
    st.fixed_dictionaries({"instances": st.lists(json_values, max_size=3)}),
    st.fixed_dictionaries(
        {
            "instances": st.lists(
                st.fixed_dictionaries(
                    {"image": st.one_of(st.fixed_dictionaries({"b64": b64_text}), json_values)},
                    optional={
                        "top_k": top_k,
                        "compare": st.fixed_dictionaries({"b64": b64_text}),
                        "return_crops": json_values,
                    },
                ),
                min_size=1,
                max_size=3,
            )
        }
    ),
)
v2_inputs = st.fixed_dictionaries(
    {
        "name": st.sampled_from(["image", "img", ""]),
        "shape": st.one_of(st.lists(st.integers(-2, 4), max_size=3), json_values),
        "datatype": st.sampled_from(["BYTES", "FP32", "INT8", "bogus"]),
        "data": st.one_of(st.lists(b64_text, max_size=3), json_values),
    },
)
v2_bodies = st.one_of(
    json_values,
    st.fixed_dictionaries(
        {"inputs": st.lists(v2_inputs, max_size=2)},
        optional={"parameters": st.dictionaries(st.sampled_from(["top_k", "x"]), top_k, max_size=2), "id": json_values},
    ),
)
FUZZ = settings(max_examples=50, deadline=None, suppress_health_check=[HealthCheck.function_scoped_fixture])


def assert_client_error_or_answer(answer: requests.Response) -> None:
    assert answer.status_code < 500, f"{answer.status_code}: {answer.text[:300]}"
    if answer.status_code >= 400:
        assert answer.json()["error"]


@FUZZ
@given(body=v1_bodies)
def test_v1_never_answers_5xx(predictor_url: str, body: object) -> None:
    assert_client_error_or_answer(requests.post(predictor_url + V1, json=body, timeout=60))


@FUZZ
@given(body=v2_bodies)
def test_v2_never_answers_5xx(predictor_url: str, body: object) -> None:
    assert_client_error_or_answer(requests.post(predictor_url + V2, json=body, timeout=60))


@FUZZ
@given(body=st.binary(max_size=400), content_type=st.sampled_from(["application/json", "text/plain", "image/jpeg"]))
def test_raw_bodies_never_answer_5xx(predictor_url: str, body: bytes, content_type: str) -> None:
    for path in (V1, V2):
        answer = requests.post(predictor_url + path, data=body, headers={"content-type": content_type}, timeout=60)
        assert_client_error_or_answer(answer)


@FUZZ
@given(
    body=st.binary(max_size=300),
    header=st.one_of(st.integers(-5, 400).map(str), st.from_regex(r"[!-~]{1,5}", fullmatch=True)),
)
def test_binary_extension_bodies_never_answer_5xx(predictor_url: str, body: bytes, header: str) -> None:
    headers = {"inference-header-content-length": header, "content-type": "application/octet-stream"}
    assert_client_error_or_answer(requests.post(predictor_url + V2, data=body, headers=headers, timeout=60))


def binary_request(element: bytes) -> tuple[bytes, dict[str, str]]:
    """A V2 binary-data-extension body: JSON header, then the BYTES tensor (4-byte length + bytes)."""
    import json
    import struct

    tensor = struct.pack("<I", len(element)) + element
    header = json.dumps(
        {
            "inputs": [
                {"name": "image", "shape": [1], "datatype": "BYTES", "parameters": {"binary_data_size": len(tensor)}}
            ]
        }
    ).encode()
    return header + tensor, {"inference-header-content-length": str(len(header))}


def test_binary_extension_carries_base64_images(predictor_url: str, detection_dir) -> None:
    jpeg = (detection_dir / "face_recognition" / "examples" / "two_people.jpg").read_bytes()
    body, headers = binary_request(base64.b64encode(jpeg))
    answer = requests.post(predictor_url + V2, data=body, headers=headers, timeout=60)
    assert answer.status_code == 200, answer.text[:300]
    outputs = {output["name"]: output for output in answer.json()["outputs"]}
    assert outputs["boxes"]["shape"] == [2, 4]
    # KServe 0.21 decodes binary BYTES as UTF-8 text, so raw JPEG bytes get a 400 that says what to do.
    body, headers = binary_request(jpeg)
    answer = requests.post(predictor_url + V2, data=body, headers=headers, timeout=60)
    assert answer.status_code == 400 and "base64" in answer.json()["error"]


GALLERY = "/v1/models/facenet/gallery"
enrol_bodies = st.one_of(
    json_values,
    st.fixed_dictionaries(
        {
            "identity": st.one_of(st.text(max_size=140), json_values),
            "images": st.one_of(st.lists(st.fixed_dictionaries({"b64": b64_text}), max_size=2), json_values),
        }
    ),
)


@FUZZ
@given(body=enrol_bodies, name=st.text(max_size=140))
# Bodies the fuzzer seldom draws (50 examples are mostly lists and objects): a bare scalar, and
# containers that hold "identity" without being an object.
@example(body=5, name="0")
@example(body=True, name="")
@example(body=["identity"], name="identity")
@example(body="identity", name="\x00")
@example(body={"identity": "x", "images": {"b64": ""}}, name=" ")
def test_gallery_endpoints_never_answer_5xx(predictor_url: str, body: object, name: str) -> None:
    """With the admin token, so that every fuzzed body and name gets past the 401 to the parser."""
    listed = requests.get(predictor_url + GALLERY, timeout=60).json()["identities"]
    assume(name not in {entry["identity"] for entry in listed})  # other tests need the gallery's people
    enrolled = requests.post(predictor_url + GALLERY, json=body, headers=AUTH, timeout=60)
    assert_client_error_or_answer(enrolled)
    assert enrolled.status_code != 401, enrolled.text[:300]
    removed = requests.delete(predictor_url + GALLERY, params={"identity": name}, headers=AUTH, timeout=60)
    assert_client_error_or_answer(removed)
    assert removed.status_code != 401, removed.text[:300]
    assert_client_error_or_answer(
        requests.get(predictor_url + GALLERY + "/thumbnail", params={"identity": name}, timeout=60)
    )


def test_server_is_ready_after_fuzzing(predictor_url: str) -> None:
    assert requests.get(predictor_url + "/v2/health/ready", timeout=10).status_code == 200
