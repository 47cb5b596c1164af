"""The faceapi-resnet weights: loader (dequantisation, order, checksums), routes, and the forward pass
against dlib's own descriptors (data/dlib_chips: computed once with dlib, which tests do not need)."""

from __future__ import annotations

import json
import os
import shutil
import subprocess
import sys
from pathlib import Path

import numpy as np
import pytest

from facesim.faces.image import read_image
from facesim.training.pretrained import (
    BINARY,
    MANIFEST,
    WEIGHTS_ENV,
    Tensor,
    WeightsError,
    decode,
    load_weights,
    locate_weights,
    sha256_file,
)

DLIB_CHIPS = Path(__file__).parent / "data" / "dlib_chips"


@pytest.fixture(scope="session")
def weights_dir(shared_dir: Path) -> Path:
    return shared_dir / "models" / "faceapi-resnet"


def test_decode_dequantises_in_manifest_order() -> None:
    tensors = [Tensor("a", (2, 2), scale=0.5, minimum=-1.0), Tensor("b", (2,), scale=None), Tensor("c", (1,), 2.0, 3.0)]
    data = bytes([0, 1, 2, 255]) + np.array([1.5, -2.25], "<f4").tobytes() + bytes([10])
    values = decode(tensors, data)
    assert list(values) == ["a", "b", "c"]
    np.testing.assert_allclose(values["a"], [[-1.0, -0.5], [0.0, 126.5]])
    np.testing.assert_allclose(values["b"], [1.5, -2.25])
    np.testing.assert_allclose(values["c"], [23.0])
    with pytest.raises(WeightsError, match="holds 12 bytes but the manifest describes 13"):
        decode(tensors, data[:-1])


def test_real_weights_load_every_tensor(weights_dir: Path) -> None:
    values = load_weights(weights_dir)
    assert len(values) == 117
    assert values["conv32_down/conv/filters"].shape == (7, 7, 3, 32)
    assert values["fc"].shape == (256, 128)
    manifest = json.loads((weights_dir / MANIFEST).read_text())[0]["weights"]
    first = manifest[0]["quantization"]
    raw = np.frombuffer((weights_dir / BINARY).read_bytes(), np.uint8, 7 * 7 * 3 * 32)
    np.testing.assert_allclose(
        values["conv32_down/conv/filters"].ravel(), raw * first["scale"] + first["min"], atol=1e-7
    )


def test_checksum_mismatch_is_a_clear_error(weights_dir: Path, tmp_path: Path) -> None:
    shutil.copy(weights_dir / MANIFEST, tmp_path / MANIFEST)
    data = bytearray((weights_dir / BINARY).read_bytes())
    data[1000] ^= 0xFF
    (tmp_path / BINARY).write_bytes(bytes(data))
    with pytest.raises(WeightsError, match=r"face_recognition_model\.bin has sha256 .* expected b413e4"):
        load_weights(tmp_path)


def test_routes_explicit_env_cache_and_none(weights_dir: Path, tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setenv("FACESIM_HOME", str(tmp_path / "home"))
    monkeypatch.delenv(WEIGHTS_ENV, raising=False)
    assert locate_weights(weights_dir) == weights_dir
    with pytest.raises(WeightsError, match="no faceapi-resnet weights found: give --weights DIR"):
        locate_weights(None, allow_npm=False)
    monkeypatch.setenv(WEIGHTS_ENV, str(tmp_path / "nowhere"))
    with pytest.raises(WeightsError, match=r"nowhere/face_recognition_model-weights_manifest\.json does not exist"):
        locate_weights(None, allow_npm=False)
    monkeypatch.setenv(WEIGHTS_ENV, str(weights_dir))
    assert locate_weights(None, allow_npm=False) == weights_dir
    monkeypatch.delenv(WEIGHTS_ENV)
    cache = tmp_path / "home" / "models" / "faceapi-resnet"
    shutil.copytree(weights_dir, cache)
    assert locate_weights(None, allow_npm=False) == cache
    assert sha256_file(cache / BINARY) == sha256_file(weights_dir / BINARY)


def dlib_chips(reference: list[dict], lfw_dir: Path) -> np.ndarray:
    """dlib's 150 px chips of the reference LFW images, rebuilt with dlib's own chip-to-image transform
    (stored beside the descriptors), so no face crop is kept in the repository."""
    import cv2

    chips = []
    for item in reference:
        rgb = read_image(lfw_dir / "lfw-deepfunneled" / item["lfw_image"])
        to_image = np.asarray(item["chip_to_image"], dtype=np.float64)
        chips.append(cv2.warpAffine(rgb, to_image, (150, 150), flags=cv2.INTER_LINEAR | cv2.WARP_INVERSE_MAP))
    return np.stack(chips)


def test_forward_pass_matches_dlib_descriptors(weights_dir: Path, lfw_dir: Path) -> None:
    import keras

    from facesim.training.pretrained import assign_weights, build_pretrained_network

    model = build_pretrained_network()
    assign_weights(model, load_weights(weights_dir))
    raw = keras.Model(model.input, model.get_layer("fc").output)  # dlib's unnormalised descriptor
    reference = json.loads((DLIB_CHIPS / "dlib_descriptors.json").read_text())["chips"]
    chips = dlib_chips(reference, lfw_dir).astype(np.float32)
    ours = raw.predict(chips, verbose=0)
    dlib = np.array([item["descriptor"] for item in reference])
    cosine = np.sum(ours * dlib, axis=1) / np.linalg.norm(ours, axis=1) / np.linalg.norm(dlib, axis=1)
    assert cosine.min() >= 0.9995, cosine  # the rebuilt network: 0.99954-0.99965; a preprocessing slip falls below
    normalised = model.predict(chips, verbose=0)
    np.testing.assert_allclose(np.linalg.norm(normalised, axis=1), 1.0, atol=1e-5)
    # Different people stay apart, as in dlib (its "same" is Euclidean < 0.6 on raw descriptors).
    assert np.linalg.norm(ours[0] - ours[1]) > 0.6


def _facesim(*args: str, env: dict[str, str]) -> subprocess.CompletedProcess:
    return subprocess.run(
        [sys.executable, "-m", "facesim", *args], capture_output=True, text=True, env=env, timeout=600, check=False
    )


def _import(out: Path, weights_dir: Path, *options: str, env: dict[str, str]) -> subprocess.CompletedProcess:
    """`facesim model import faceapi-resnet --out OUT --weights WEIGHTS_DIR OPTIONS...`"""
    return _facesim(
        "model", "import", "faceapi-resnet", "--out", str(out), "--weights", str(weights_dir), *options, env=env
    )


@pytest.mark.integration  # `facesim model import` in a subprocess that loads TensorFlow
def test_import_without_weights_is_a_one_line_error(tmp_path: Path) -> None:
    env = {**os.environ, "FACESIM_HOME": str(tmp_path / "home"), "TF_CPP_MIN_LOG_LEVEL": "3"}
    env.pop(WEIGHTS_ENV, None)
    result = _facesim("model", "import", "faceapi-resnet", "--out", str(tmp_path / "m"), "--offline", env=env)
    assert result.returncode == 2
    lines = result.stderr.strip().splitlines()
    assert len(lines) == 1, result.stderr
    assert lines[0].startswith("facesim model import: no faceapi-resnet weights found: give --weights DIR")
    assert "npm pack @vladmandic/face-api@1.7.15" in lines[0]
    assert not (tmp_path / "m").exists()


def test_import_refuses_an_out_that_holds_something_and_data_that_is_not_lfw(weights_dir: Path, tmp_path: Path) -> None:
    env = {**os.environ, "FACESIM_HOME": str(tmp_path / "home"), "TF_CPP_MIN_LOG_LEVEL": "3"}
    (tmp_path / "a-file").write_text("keep me")
    (tmp_path / "a-model").mkdir()
    (tmp_path / "a-model" / "model.json").write_text("{}")
    for out in (tmp_path / "a-file", tmp_path / "a-model"):
        result = _import(out, weights_dir, env=env)
        assert result.returncode == 2
        assert result.stderr.strip() == f"facesim model import: --out {out} exists and is not an empty directory: " + (
            "choose a new --out"
        )
    assert (tmp_path / "a-file").read_text() == "keep me" and (tmp_path / "a-model" / "model.json").read_text() == "{}"
    out = tmp_path / "m"
    result = _import(out, weights_dir, "--data", str(tmp_path), env=env)
    assert result.returncode == 2 and len(result.stderr.strip().splitlines()) == 1, result.stderr
    assert f"{tmp_path} has no pairs.txt" in result.stderr and not out.exists()


@pytest.fixture(scope="module")
def imported_model(weights_dir: Path, yunet_path: Path, tmp_path_factory: pytest.TempPathFactory) -> Path:
    """`facesim model import faceapi-resnet` without --data (the default threshold): the served network."""
    work = tmp_path_factory.mktemp("import")
    env = {**os.environ, "FACESIM_HOME": str(work / "home"), "TF_CPP_MIN_LOG_LEVEL": "3"}
    result = _import(work / "m", weights_dir, "--yunet-path", str(yunet_path), env=env)
    assert result.returncode == 0, result.stderr
    return work / "m"


def test_import_writes_a_model_artifact(imported_model: Path, lfw_dir: Path) -> None:
    from facesim.storage.model_artifact import Embedder, read_model_info

    out = imported_model
    card = json.loads((out / "model.json").read_text())
    assert (card["architecture"], card["image_size"], card["embedding_dim"]) == ("faceapi_resnet", 150, 128)
    assert card["preprocessing"]["template"] == "dlib-chip-5pt" and card["flip_average"] is True
    assert card["training"]["init"]["sha256"][BINARY].startswith("b413e4")
    reference = json.loads((DLIB_CHIPS / "dlib_descriptors.json").read_text())["chips"]
    chips = dlib_chips(reference, lfw_dir)
    embeddings = Embedder(read_model_info(out)).embed(chips)
    np.testing.assert_allclose(np.linalg.norm(embeddings, axis=1), 1.0, atol=1e-5)
    distances = ((embeddings[:, None] - embeddings[None]) ** 2).sum(-1)
    assert distances[~np.eye(len(chips), dtype=bool)].min() > card["threshold"]  # four different people


def test_onnx_runtime_embeds_lfw_faces_as_tensorflow_does(
    imported_model: Path, yunet_path: Path, lfw_dir: Path
) -> None:
    """The served network under ONNX Runtime and under TensorFlow: per-face cosine >= 0.9999 on 200 LFW crops."""
    from facesim.storage.model_artifact import Embedder, preprocessor_for, read_model_info

    info = read_model_info(imported_model)
    assert info.card.extra["onnx"]["opset"] >= 13
    preprocessor = preprocessor_for(info, str(yunet_path))
    photos = sorted((lfw_dir / "lfw-deepfunneled").glob("*/*_0001.jpg"))[::20][:200]
    crops = np.stack([preprocessor.subject_face(read_image(path)).crop for path in photos])
    assert len(crops) == 200
    onnx = Embedder(info, runtime="onnx").embed(crops)
    tensorflow = Embedder(info, runtime="tensorflow").embed(crops)
    cosine = np.sum(onnx * tensorflow, axis=1) / np.linalg.norm(onnx, axis=1) / np.linalg.norm(tensorflow, axis=1)
    assert cosine.min() >= 0.9999, f"lowest cosine {cosine.min():.6f}"
