"""The predictor as users meet it: a real `python -m facesim.inference` process, real photos, the tiny model."""

from __future__ import annotations

import base64
import io
import json
import re
import shutil
import signal
import struct
import subprocess
import sys
import time
import zlib
from concurrent.futures import ThreadPoolExecutor
from pathlib import Path

import numpy as np
import pytest
import requests
from PIL import Image

from facesim.contract.client import PredictorClient
from facesim.gallery.store import DATABASE_NAME, GalleryStore
from facesim.inference.local_server import free_port, local_predictor, start_predictor
from tests.helpers import crash
from tests.helpers.admin import AUTH, TEST_ADMIN_TOKEN

V1 = "/v1/models/facenet:predict"
V2 = "/v2/models/facenet/infer"
GALLERY = "/v1/models/facenet/gallery"


@pytest.fixture(scope="module")
def examples(detection_dir: Path) -> Path:
    return detection_dir / "face_recognition" / "examples"


def b64(data: bytes) -> str:
    return base64.b64encode(data).decode("ascii")


def v1_body(image: bytes, **extra) -> dict:
    return {"instances": [{"image": {"b64": b64(image)}, **extra}]}


def v2_body(*images: bytes, top_k: int = 3) -> dict:
    return {
        "inputs": [{"name": "image", "shape": [len(images)], "datatype": "BYTES", "data": [b64(i) for i in images]}],
        "parameters": {"top_k": top_k},
    }


def png_declaring(width: int, height: int) -> bytes:
    """A tiny PNG whose header claims width x height pixels (a decompression bomb's calling card)."""

    def chunk(kind: bytes, data: bytes) -> bytes:
        return struct.pack(">I", len(data)) + kind + data + struct.pack(">I", zlib.crc32(kind + data))

    header = struct.pack(">IIBBBBB", width, height, 8, 2, 0, 0, 0)
    return (
        b"\x89PNG\r\n\x1a\n"
        + chunk(b"IHDR", header)
        + chunk(b"IDAT", zlib.compress(b"\x00" * 64))
        + chunk(b"IEND", b"")
    )


def test_two_people_v1(predictor_url: str, examples: Path) -> None:
    answer = requests.post(predictor_url + V1, json=v1_body((examples / "two_people.jpg").read_bytes()), timeout=60)
    assert answer.status_code == 200, answer.text
    body = answer.json()
    assert len(body["model_fingerprint"]) >= 8 and body["model_version"] == body["model_fingerprint"]  # (deprecated)
    assert body["gallery_version"] is None and isinstance(body["gallery_edits"], int)
    faces = body["predictions"][0]["faces"]
    assert len(faces) == 2
    for face in faces:
        x, y, w, h = face["box"]
        assert w > 40 and h > 40 and x >= 0 and y >= 0
        assert 0.5 < face["score"] <= 1.0
        assert np.array(face["landmarks"]).shape == (5, 2)
        assert np.linalg.norm(face["embedding"]) == pytest.approx(1.0, abs=1e-3)
        assert 1 <= len(face["matches"]) <= 3
        distances = [m["distance"] for m in face["matches"]]
        assert distances == sorted(distances)
        for match in face["matches"]:
            assert isinstance(match["identity"], str)
            assert match["same"] == (match["distance"] < body["threshold"])
    boxes = sorted(face["box"][0] for face in faces)
    assert boxes[1] - boxes[0] > 100  # two different people side by side, not one face twice


def test_compare_answers_distance_and_same(predictor_url: str, examples: Path, tiny_model_dir: Path) -> None:
    answer = PredictorClient(predictor_url).predict(
        (examples / "obama.jpg").read_bytes(), (examples / "obama2.jpg").read_bytes()
    )
    prediction = answer["predictions"][0]
    assert prediction["distance"] >= 0
    assert prediction["same"] == (prediction["distance"] < answer["threshold"])
    assert len(prediction["compare_face"]["box"]) == 4
    assert answer["threshold"] == json.loads((tiny_model_dir / "model.json").read_text())["threshold"]


def test_return_crops_gives_the_aligned_crops(predictor_url: str, examples: Path, tiny_model_dir: Path) -> None:
    size = json.loads((tiny_model_dir / "model.json").read_text())["image_size"]
    body = v1_body(
        (examples / "obama.jpg").read_bytes(),
        return_crops=True,
        compare={"b64": b64((examples / "biden.jpg").read_bytes())},
    )
    prediction = requests.post(predictor_url + V1, json=body, timeout=60).json()["predictions"][0]
    for face in (prediction["faces"][0], prediction["compare_face"]):
        png = base64.b64decode(face["crop"]["b64"])
        assert png[:8] == b"\x89PNG\r\n\x1a\n"
        assert struct.unpack(">II", png[16:24]) == (size, size)  # IHDR width, height


def compare_distance(url: str, first: Path, second: Path) -> float:
    return PredictorClient(url).predict(first.read_bytes(), second.read_bytes())["predictions"][0]["distance"]


def test_same_person_at_two_resolutions_is_closer_than_another_person(predictor_url: str, examples: Path) -> None:
    same = compare_distance(predictor_url, examples / "obama-240p.jpg", examples / "obama-1080p.jpg")
    other = compare_distance(predictor_url, examples / "obama-240p.jpg", examples / "biden.jpg")
    assert same < other, f"obama 240p-1080p {same:.3f} vs obama-biden {other:.3f}"


def test_v2_open_inference_protocol(predictor_url: str, examples: Path) -> None:
    images = (examples / "two_people.jpg").read_bytes(), (examples / "obama.jpg").read_bytes()
    answer = requests.post(predictor_url + V2, json=v2_body(*images, top_k=2), timeout=60)
    assert answer.status_code == 200, answer.text
    parameters = answer.json()["parameters"]
    assert (
        answer.json()["model_version"] == parameters["model_fingerprint"] == parameters["model_version"]
    )  # (deprecated)
    assert isinstance(parameters["gallery_edits"], int) and "gallery_version" not in parameters  # (unregistered)
    outputs = {output["name"]: output for output in answer.json()["outputs"]}
    assert outputs["boxes"]["shape"] == [3, 4]
    embeddings = np.array(outputs["embeddings"]["data"]).reshape(outputs["embeddings"]["shape"])
    assert embeddings.shape[0] == 3
    np.testing.assert_allclose(np.linalg.norm(embeddings, axis=1), 1.0, atol=1e-3)
    assert sorted(outputs["image_index"]["data"]) == [0, 0, 1]
    assert all(len(json.loads(matches)) == 2 for matches in outputs["matches"]["data"])


def test_no_face_is_an_answer_not_an_error(predictor_url: str) -> None:
    gray = io.BytesIO()
    Image.new("RGB", (200, 200), (128, 128, 128)).save(gray, "PNG")
    answer = requests.post(predictor_url + V1, json=v1_body(gray.getvalue()), timeout=60)
    assert answer.status_code == 200 and answer.json()["predictions"][0]["faces"] == []


def bad_v1_bodies(examples: Path) -> dict[str, tuple[object, str]]:
    jpeg = (examples / "two_people.jpg").read_bytes()
    return {
        "not json": (b"{not json", "not JSON"),
        "no instances": ({}, "instances"),
        "instances not a list": ({"instances": "x"}, "instances"),
        "no image field": ({"instances": [{}]}, "image"),
        "image without b64": ({"instances": [{"image": {}}]}, "b64"),
        "not base64": ({"instances": [{"image": {"b64": "@@not base64@@"}}]}, "base64"),
        "not an image": (v1_body(b"hello, I am text"), "not an image"),
        "corrupt": (v1_body(jpeg[: len(jpeg) // 3]), "corrupt"),
        "too many pixels": (v1_body(png_declaring(50_000, 50_000)), "pixels"),
        "bad top_k": (v1_body(jpeg, top_k="three"), "top_k"),
        "bad compare": ({"instances": [{"image": {"b64": b64(jpeg)}, "compare": {"b64": "%%"}}]}, "compare"),
    }


def bad_v2_bodies(examples: Path) -> dict[str, tuple[object, str]]:
    jpeg = (examples / "two_people.jpg").read_bytes()
    wrong_name = v2_body(jpeg)
    wrong_name["inputs"][0]["name"] = "picture"
    wrong_type = v2_body(jpeg)
    wrong_type["inputs"][0]["datatype"] = "FP32"
    return {
        "no inputs": ({"inputs": []}, "image"),
        "input not named image": (wrong_name, "image"),
        "not BYTES": (wrong_type, "BYTES"),
        "not base64": ({"inputs": [{"name": "image", "shape": [1], "datatype": "BYTES", "data": ["@@"]}]}, "base64"),
        "not an image": (v2_body(b"plain text"), "not an image"),
        "corrupt": (v2_body(jpeg[:5000]), "corrupt"),
        "too many pixels": (v2_body(png_declaring(60_000, 60_000)), "pixels"),
        "bad top_k": (v2_body(jpeg, top_k=-1), "top_k"),
        "missing fields": ({"inputs": [{"name": "image"}]}, ""),
    }


@pytest.mark.parametrize("protocol", ["v1", "v2"])
def test_bad_input_gets_400_with_a_reason_and_the_server_stays_ready(
    protocol: str, predictor_url: str, examples: Path
) -> None:
    cases = bad_v1_bodies(examples) if protocol == "v1" else bad_v2_bodies(examples)
    path = V1 if protocol == "v1" else V2
    for case, (body, reason) in cases.items():
        raw = {"data": body, "headers": {"content-type": "text/plain"}}
        kwargs = raw if isinstance(body, bytes) else {"json": body}
        answer = requests.post(predictor_url + path, timeout=60, **kwargs)
        assert answer.status_code == 400, f"{protocol} {case}: {answer.status_code} {answer.text[:200]}"
        error = answer.json()["error"]
        assert reason.lower() in error.lower(), f"{protocol} {case}: {error}"
    assert requests.get(predictor_url + "/v2/health/ready", timeout=10).status_code == 200
    assert requests.get(predictor_url + "/v1/models/facenet", timeout=10).json()["ready"] is True


def test_enrol_then_search_finds_the_new_identity(predictor_url: str, examples: Path) -> None:
    name = "Lin-Manuel <b>Miranda</b> ../../x"
    photo = (examples / "lin-manuel-miranda.png").read_bytes()
    enrolled = requests.post(
        predictor_url + GALLERY, headers=AUTH, json={"identity": name, "images": [{"b64": b64(photo)}]}, timeout=60
    )
    assert enrolled.status_code == 200, enrolled.text
    assert enrolled.json()["identity"] == name and enrolled.json()["added"] == 1
    assert enrolled.json()["gallery_edits"] == enrolled.json()["edits"] > 0  # (the old name, deprecated)
    try:
        listing = requests.get(predictor_url + GALLERY, timeout=10).json()
        assert {"identity": name, "count": 1} in listing["identities"]
        assert listing["gallery_edits"] == listing["edits"] >= enrolled.json()["gallery_edits"]
        assert listing["gallery_version"] is listing["version"] is None  # a gallery outside the registry
        assert (
            listing["model_fingerprint"]
            == listing["model_version"]
            == PredictorClient(predictor_url).predict(photo)["model_fingerprint"]
        )
        assert listing["index"]["gallery_edits"] == listing["index"]["version"]
        thumbnail = requests.get(predictor_url + GALLERY + "/thumbnail", params={"identity": name}, timeout=10)
        assert thumbnail.headers["content-type"] == "image/jpeg" and thumbnail.content[:2] == b"\xff\xd8"
        top = PredictorClient(predictor_url).predict(photo, top_k=1)["predictions"][0]["faces"][0]["matches"][0]
        assert top["identity"] == name and top["distance"] < 1e-3 and top["same"]
    finally:
        removed = requests.delete(predictor_url + GALLERY, headers=AUTH, params={"identity": name}, timeout=10)
    assert removed.json() == {"identity": name, "removed": 1}
    assert (
        requests.delete(predictor_url + GALLERY, headers=AUTH, params={"identity": name}, timeout=10).status_code == 404
    )


def test_enrolment_refuses_bad_requests(predictor_url: str, examples: Path) -> None:
    photo = b64((examples / "obama.jpg").read_bytes())
    cases = {
        "no identity": {"images": [{"b64": photo}]},
        "control characters": {"identity": "a\x07b", "images": [{"b64": photo}]},
        "no images": {"identity": "x", "images": []},
        "not an image": {"identity": "x", "images": [{"b64": b64(b"text")}]},
    }
    for case, body in cases.items():
        answer = requests.post(predictor_url + GALLERY, headers=AUTH, json=body, timeout=60)
        assert answer.status_code == 400 and answer.json()["error"], case
    assert (
        requests.get(predictor_url + GALLERY + "/thumbnail", params={"identity": "nobody"}, timeout=10).status_code
        == 404
    )


def test_concurrent_enrolments_lose_nothing(predictor_url: str, examples: Path) -> None:
    photo = b64((examples / "obama2.jpg").read_bytes())
    names = [f"concurrent {i}" for i in range(8)]

    def enrol(name: str) -> int:
        return requests.post(
            predictor_url + GALLERY, headers=AUTH, json={"identity": name, "images": [{"b64": photo}]}, timeout=120
        ).status_code

    with ThreadPoolExecutor(len(names)) as pool:
        assert list(pool.map(enrol, names)) == [200] * len(names)
    listed = {item["identity"] for item in requests.get(predictor_url + GALLERY, timeout=10).json()["identities"]}
    assert set(names) <= listed
    for name in names:
        requests.delete(predictor_url + GALLERY, headers=AUTH, params={"identity": name}, timeout=10)


def strings_in(value: object) -> list[str]:
    if isinstance(value, dict):
        return [text for item in value.values() for text in strings_in(item)]
    if isinstance(value, list):
        return [text for item in value for text in strings_in(item)]
    return [value] if isinstance(value, str) else []


def test_model_card_is_served(predictor_url: str, tiny_model_dir: Path) -> None:
    card = requests.get(predictor_url + "/v1/models/facenet/card", timeout=10).json()
    saved = json.loads((tiny_model_dir / "model.json").read_text())
    assert card.keys() == saved.keys() and card["threshold"] == saved["threshold"]
    # Paths of the training data and crop cache: only their last part is public. The detector is named by
    # its sha256, no path.
    assert card["training"]["data"] == Path(saved["training"]["data"]).name == "lfw"
    assert "yunet_path" not in card["preprocessing"]
    assert card["preprocessing"]["detector_sha256"] == saved["preprocessing"]["detector_sha256"]
    assert not [text for text in strings_in(card) if text.startswith(("/", "./", "../", "~"))]
    roc = requests.get(predictor_url + "/v1/models/facenet/card/roc.png", timeout=10)
    assert roc.status_code == (200 if (tiny_model_dir / "roc.png").is_file() else 404)


def grpc_face_count(port: int, image: bytes) -> int:
    """V2 over gRPC (`--enable_grpc true`): BYTES elements may be the raw file."""
    import asyncio

    from kserve import InferenceGRPCClient, InferInput, InferRequest

    async def infer() -> int:
        request = InferRequest(
            model_name="facenet",
            request_id="grpc",
            infer_inputs=[InferInput(name="image", shape=[1], datatype="BYTES", data=[image])],
        )
        response = await InferenceGRPCClient(f"127.0.0.1:{port}").infer(request, timeout=60)
        return next(output.shape[0] for output in response.outputs if output.name == "boxes")

    return asyncio.run(infer())


def test_restart_keeps_enrolments_limits_and_grpc(
    tiny_model_dir: Path, tiny_gallery_dir: Path, yunet_path: Path, examples: Path, tmp_path: Path
) -> None:
    gallery = tmp_path / "gallery"
    shutil.copytree(tiny_gallery_dir, gallery)
    env = {
        "FACESIM_YUNET_MODEL": str(yunet_path),
        "FACESIM_HOME": str(tmp_path / "home"),
        "FACESIM_ADMIN_TOKEN": TEST_ADMIN_TOKEN,
    }
    # --approximate-threshold 1: the tiny gallery is searched through the FAISS index, saved at the
    # first start; the second start loads it (not rebuilt) and catches up on the enrolment made since.
    limits = ("--max-image-bytes", "300000", "--max-request-bytes", "2000000", "--approximate-threshold", "1")
    grpc_port = free_port()
    grpc = ("--enable_grpc", "true", "--grpc_port", str(grpc_port))
    photo = (examples / "alex-lacamoire.png").read_bytes()  # not the photo the gallery holds of him
    with local_predictor(tiny_model_dir, gallery, limits + grpc, env, tmp_path / "first.log") as url:
        assert grpc_face_count(grpc_port, photo) == 1
        index = requests.get(url + GALLERY, timeout=10).json()["index"]
        assert index["kind"] == "ivf" and index["loaded_from"] == "gallery rows"
        enrolled = requests.post(
            url + GALLERY, headers=AUTH, json={"identity": "kept", "images": [{"b64": b64(photo)}]}, timeout=60
        )
        assert enrolled.status_code == 200, enrolled.text
        too_big = requests.post(url + V1, json=v1_body((examples / "obama-1080p.jpg").read_bytes()), timeout=60)
        assert too_big.status_code == 400 and "too large" in too_big.json()["error"]
        huge = requests.post(url + V1, data=b"{" + b" " * 2_500_000 + b"}", timeout=60)
        assert huge.status_code == 413 and "too large" in huge.json()["error"]
    with local_predictor(tiny_model_dir, gallery, limits, env, tmp_path / "second.log") as url:
        listing = requests.get(url + GALLERY, timeout=10).json()
        assert {"identity": "kept", "count": 1} in listing["identities"]
        assert listing["index"]["loaded_from"] == f"saved index v{index['gallery_edits']}"
        # the index follows the edit counter
        assert listing["index"]["gallery_edits"] == listing["gallery_edits"] > index["gallery_edits"]
        top = PredictorClient(url).predict(photo, top_k=1)["predictions"][0]["faces"][0]["matches"][0]
        assert top["identity"] == "kept"


def test_predict_cli_prints_a_table_and_json(predictor_url: str, examples: Path) -> None:
    command = [sys.executable, "-m", "facesim", "predict", str(examples / "two_people.jpg"), "--url", predictor_url]
    table = subprocess.run(
        [*command, "--compare", str(examples / "obama.jpg")], capture_output=True, text=True, timeout=120, check=False
    )
    assert table.returncode == 0, table.stderr
    assert "2 faces" in table.stdout and "distance" in table.stdout
    assert re.search(r"gallery unregistered with \d+ edits", table.stdout)  # a gallery outside the registry
    raw = subprocess.run([*command, "--json"], capture_output=True, text=True, timeout=120, check=False)
    assert len(raw.stdout.strip().splitlines()) == 1  # compact: one line
    assert len(json.loads(raw.stdout)["predictions"][0]["faces"]) == 2
    pretty = subprocess.run([*command, "--json", "--pretty"], capture_output=True, text=True, timeout=120, check=False)
    assert json.loads(pretty.stdout) == json.loads(raw.stdout) and len(pretty.stdout.splitlines()) > 50


def test_predict_cli_explains_an_unreachable_server(examples: Path) -> None:
    result = subprocess.run(
        [sys.executable, "-m", "facesim", "predict", str(examples / "obama.jpg"), "--url", "http://127.0.0.1:9"],
        capture_output=True,
        text=True,
        timeout=60,
        check=False,
    )
    assert result.returncode == 1 and "cannot reach the predictor" in result.stderr and "Traceback" not in result.stderr


def test_two_workers_serve_one_gallery(
    tiny_model_dir: Path, tiny_gallery_dir: Path, yunet_path: Path, examples: Path, tmp_path: Path
) -> None:
    """`--workers 2`: an enrolment answered by one worker process is seen by every later request.
    (`--approximate-threshold 1`: searched through the FAISS IVF index, which the enrolment is added to.)"""
    gallery = tmp_path / "gallery"
    shutil.copytree(tiny_gallery_dir, gallery)
    env = {
        "FACESIM_YUNET_MODEL": str(yunet_path),
        "FACESIM_HOME": str(tmp_path / "home"),
        "FACESIM_ADMIN_TOKEN": TEST_ADMIN_TOKEN,
    }
    photo = (examples / "alex-lacamoire.png").read_bytes()
    options = ("--workers", "2", "--approximate-threshold", "1")
    # The container entrypoint, as the InferenceService runs it (KServe's --workers passes through).
    with local_predictor(tiny_model_dir, gallery, options, env, tmp_path / "workers.log", container=True) as url:
        ready_in_a_row, deadline = 0, time.monotonic() + 180
        while ready_in_a_row < 10 and time.monotonic() < deadline:  # each new connection may hit either worker
            ok = requests.get(url + "/v2/health/ready", timeout=10).status_code == 200  # per worker
            ready_in_a_row = ready_in_a_row + 1 if ok else 0
            time.sleep(0 if ok else 0.5)
        assert ready_in_a_row == 10, "the workers did not all become ready"
        enrolled = requests.post(
            url + GALLERY, headers=AUTH, json={"identity": "seen by all", "images": [{"b64": b64(photo)}]}, timeout=60
        )
        assert enrolled.status_code == 200, enrolled.text
        for _ in range(6):
            top = PredictorClient(url).predict(photo, top_k=1)["predictions"][0]["faces"][0]["matches"][0]
            assert top["identity"] == "seen by all" and top["distance"] < 1e-3


def test_kill_9_mid_enrolment_transaction_loses_nothing_acknowledged(
    tiny_model_dir: Path, tiny_gallery_dir: Path, yunet_path: Path, examples: Path, tmp_path: Path
) -> None:
    """The server stops inside its 4th enrolment's transaction (rows inserted, COMMIT not run) and is
    SIGKILLed there: after a restart the 3 answered enrolments are there once each, the 4th not at all."""
    gallery, marker = tmp_path / "gallery", tmp_path / "paused"
    shutil.copytree(tiny_gallery_dir, gallery)
    before = {name for name, _ in GalleryStore(gallery).identities()}
    env = {
        "FACESIM_YUNET_MODEL": str(yunet_path),
        "FACESIM_HOME": str(tmp_path / "home"),
        "FACESIM_ADMIN_TOKEN": TEST_ADMIN_TOKEN,
    }
    photo = b64((examples / "alex-lacamoire.png").read_bytes())
    paused_env = {**env, **crash.pause_env("gallery-commit", 4, marker)}
    server = start_predictor(tiny_model_dir, gallery, env=paused_env, log_path=tmp_path / "killed.log")

    def enrol(name: str) -> requests.Response:
        return requests.post(
            server.url + GALLERY, headers=AUTH, json={"identity": name, "images": [{"b64": photo}]}, timeout=60
        )

    try:
        acknowledged = [name for name in ("first", "second", "third") if enrol(name).status_code == 200]
        with ThreadPoolExecutor(1) as pool:
            in_flight = pool.submit(enrol, "never answered")
            assert crash.wait_for_pause(marker, server.process) == server.process.pid
            assert crash.write_transaction_open(gallery / DATABASE_NAME), "the kill must land inside a transaction"
            listed = requests.get(server.url + GALLERY, timeout=10).json()["identities"]
            assert "never answered" not in {item["identity"] for item in listed}  # written, not committed
            crash.kill_9(server.process.pid, server.process)
            with pytest.raises(requests.RequestException):
                in_flight.result()
    finally:
        server.stop()
    assert acknowledged == ["first", "second", "third"] and server.process.returncode == -signal.SIGKILL
    assert crash.integrity_check(gallery / DATABASE_NAME) == "ok"
    with local_predictor(tiny_model_dir, gallery, env=env, log_path=tmp_path / "restarted.log") as url:
        listed = {
            item["identity"]: item["count"] for item in requests.get(url + GALLERY, timeout=10).json()["identities"]
        }
    assert {name: listed.pop(name, 0) for name in acknowledged} == {name: 1 for name in acknowledged}
    assert set(listed) == before  # and no trace of the one in flight
    assert crash.orphan_embeddings(gallery / DATABASE_NAME) == 0
