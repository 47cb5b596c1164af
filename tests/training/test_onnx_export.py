"""model.onnx beside the SavedModel: the same network for every servable architecture, the record in
model.json, and `facesim model export-onnx` for artifacts exported before ONNX."""

from __future__ import annotations

import hashlib
from pathlib import Path

import numpy as np
import pytest

from facesim.storage.model_artifact import ONNX_FILE, ModelCard, save_model_card
from facesim.training.export import ONNX_OPSET, embed_with, export_model, export_saved_model
from facesim.training.model import build_embedding_model, with_flip_average

# Integration: builds each network and converts it to ONNX with tf2onnx (a model per test).
pytestmark = pytest.mark.integration

# (architecture, image size, embedding size, flip-averaged as served): random weights, small batches.
SERVABLE = [
    ("faceapi_resnet", 150, 128, True),
    ("mobilefacenet", 112, 128, False),
    ("inception_resnet_v1", 160, 128, False),
    ("tiny", 64, 32, False),
]


@pytest.mark.parametrize(("architecture", "size", "dim", "flips"), SERVABLE, ids=[a[0] for a in SERVABLE])
def test_onnx_is_the_same_network(architecture: str, size: int, dim: int, flips: bool, tmp_path: Path) -> None:
    import onnxruntime

    model = build_embedding_model(architecture, size, dim, seed=3)
    served = with_flip_average(model) if flips else model
    record = export_model(served, tmp_path, size)
    data = (tmp_path / ONNX_FILE).read_bytes()
    assert record["sha256"] == hashlib.sha256(data).hexdigest() and record["opset"] == ONNX_OPSET
    assert (tmp_path / "saved_model.pb").is_file()
    crops = np.random.default_rng(0).integers(0, 256, (3, size, size, 3), dtype=np.uint8)
    session = onnxruntime.InferenceSession(data, providers=["CPUExecutionProvider"])
    got = session.run(["embeddings"], {"images": crops})[0]
    want = embed_with(served, crops)
    np.testing.assert_allclose(np.linalg.norm(got, axis=1), 1.0, atol=1e-5)  # L2 normalisation included
    assert (got * want).sum(axis=1).min() > 0.99999
    np.testing.assert_allclose(got, want, atol=1e-4)


def test_flip_average_is_the_mean_of_crop_and_mirror() -> None:
    model = build_embedding_model("tiny", 32, 8, seed=1)
    crops = np.random.default_rng(1).integers(0, 256, (3, 32, 32, 3), dtype=np.uint8)
    total = embed_with(model, crops) + embed_with(model, crops[:, :, ::-1].copy())
    want = total / np.linalg.norm(total, axis=1, keepdims=True)
    np.testing.assert_allclose(embed_with(with_flip_average(model), crops), want, atol=1e-6)


def _older_artifact(out: Path) -> Path:
    """A tiny artifact as exported before ONNX: SavedModel + model.json, no model.onnx."""
    export_saved_model(build_embedding_model("tiny", 32, 8, seed=2), out, 32)
    save_model_card(out, ModelCard(image_size=32, embedding_dim=8, margin=0.2, threshold=1.0, architecture="tiny"))
    return out


def test_older_artifact_is_refused_then_converted_keeping_its_fingerprint(
    tmp_path: Path, capsys: pytest.CaptureFixture
) -> None:
    from facesim.storage.model_artifact import Embedder, ModelError, read_model_info
    from facesim.training.importer import main as model_main

    model_dir = _older_artifact(tmp_path / "m")
    before = read_model_info(model_dir)
    with pytest.raises(ModelError) as refused:
        Embedder(before)
    assert str(refused.value) == (
        f"{model_dir} has no model.onnx (exported before ONNX serving): convert it with "
        f"`facesim model export-onnx {model_dir}`, or serve it with --runtime tensorflow"
    )
    assert model_main(["export-onnx", str(model_dir)]) == 0
    after = read_model_info(model_dir)
    assert after.fingerprints == before.fingerprints  # galleries built with the model stay valid
    assert after.card.extra["onnx"]["sha256"] == hashlib.sha256((model_dir / ONNX_FILE).read_bytes()).hexdigest()
    crops = np.random.default_rng(2).integers(0, 256, (4, 32, 32, 3), dtype=np.uint8)
    onnx, tensorflow = Embedder(after, 1, "onnx").embed(crops), Embedder(after, 1, "tensorflow").embed(crops)
    assert (onnx * tensorflow).sum(axis=1).min() > 0.99999

    (model_dir / ONNX_FILE).write_bytes((model_dir / ONNX_FILE).read_bytes()[:-10])
    with pytest.raises(ModelError, match=r"does not match the sha256 in model\.json"):
        Embedder(after)
    assert model_main(["export-onnx", str(tmp_path / "nothing")]) == 2
    assert capsys.readouterr().err.startswith("facesim model export-onnx: ")


def test_flop_count_of_the_onnx_graph_matches_a_count_by_hand(tmp_path: Path) -> None:
    from facesim.benchmarks.serve_inprocess import onnx_flops

    export_model(build_embedding_model("tiny", 32, 8), tmp_path, 32)
    # tiny: three 3x3 stride-2 convolutions (3->16, 16->32, 32->64 channels; 16, 8, 4 px out), dense 64->8.
    multiply_adds = 16 * 16 * 16 * 9 * 3 + 8 * 8 * 32 * 9 * 16 + 4 * 4 * 64 * 9 * 32 + 64 * 8
    assert onnx_flops(tmp_path / ONNX_FILE) == 2 * multiply_adds
    assert onnx_flops(tmp_path / ONNX_FILE, batch=3) == 3 * 2 * multiply_adds
