"""The served model: the embedding network (model.onnx under ONNX Runtime, or the SavedModel's signature
under TensorFlow) plus the face preprocessing it was trained with.

model.json's `preprocessing` rebuilds the exact preprocessor used for training, so serving
feeds the network the same aligned uint8 crops. Used by the predictor and the gallery builder.
The runtimes themselves: storage.model_runtime.
"""

from __future__ import annotations

import hashlib
import io
import json
from dataclasses import dataclass
from pathlib import Path

import numpy as np
from PIL import Image

from facesim.faces.detect import Face
from facesim.faces.preprocess import FacePreprocessor, PreprocessConfig
from facesim.storage.model_card import ModelCard, load_model_card
from facesim.storage.model_runtime import DEFAULT_RUNTIME, ModelError, load_runner

THUMBNAIL_SIZE = 128
# A thumbnail shows the face box grown by this fraction on each side (hair, chin).
THUMBNAIL_MARGIN = 0.25


@dataclass(frozen=True)
class ModelInfo:
    directory: Path
    card: ModelCard  # model.json
    version: str  # fingerprint of the weights: galleries record it to refuse other models' spaces

    @property
    def image_size(self) -> int:
        return int(self.card.image_size)

    @property
    def embedding_dim(self) -> int:
        return int(self.card.embedding_dim)

    @property
    def threshold(self) -> float:
        return float(self.card.threshold)


def read_model_info(model_dir: Path | str) -> ModelInfo:
    """Read model.json and fingerprint the SavedModel, without loading TensorFlow's graph."""
    directory = Path(model_dir)
    if not (directory / "saved_model.pb").is_file():
        raise ModelError(
            f"{directory} is not a model artifact (no saved_model.pb); train one with `facesim train --out DIR`"
        )
    try:
        card = load_model_card(directory)
    except (FileNotFoundError, ValueError) as error:
        raise ModelError(str(error)) from None
    return ModelInfo(directory=directory, card=card, version=_fingerprint(directory))


def _fingerprint(directory: Path) -> str:
    # variables.index holds a checksum of every weight tensor; model.json the calibration.
    digest = hashlib.sha256()
    for name in ("variables/variables.index", "saved_model.pb"):
        path = directory / name
        if path.is_file():
            digest.update(path.read_bytes())
    digest.update(_card_bytes_without_onnx(directory / "model.json"))
    return digest.hexdigest()[:16]


def _card_bytes_without_onnx(path: Path) -> bytes:
    """model.json as it was before its `onnx` record was added (`facesim model export-onnx` adds one to an
    older artifact): converting a model keeps its fingerprint, and so its galleries."""
    if not path.is_file():
        return b""
    raw = path.read_bytes()
    card = json.loads(raw)
    if not isinstance(card, dict) or "onnx" not in card:
        return raw
    card.pop("onnx")
    return (json.dumps(card, indent=2) + "\n").encode()  # as storage.model_card.save_model_card writes it


def preprocessor_for(info: ModelInfo, yunet_path: str | None = None) -> FacePreprocessor:
    """The training preprocessor; the detector that actually ran in training is required, not "auto"."""
    description = dict(info.card.preprocessing)
    if not description:
        raise ModelError(f"{info.directory}/model.json has no `preprocessing`: re-export the model")
    if description.get("detector_used"):
        description["detector"] = description["detector_used"]
    # The training machine's weights path rarely exists where the model is served.
    if yunet_path or not Path(str(description.get("yunet_path") or "")).is_file():
        description["yunet_path"] = yunet_path
    config = PreprocessConfig.from_dict(description)
    if config.image_size != info.image_size:
        raise ModelError(f"model.json: preprocessing image_size {config.image_size} != image_size {info.image_size}")
    return FacePreprocessor(config)


class Embedder:
    """Batched embeddings: uint8 crops (N, S, S, 3) -> (N, D) unit vectors, by ONNX Runtime (model.onnx,
    the default) or TensorFlow (the SavedModel's signature)."""

    def __init__(self, info: ModelInfo, threads: int | None = None, runtime: str = DEFAULT_RUNTIME):
        """`threads`: intra-op threads of the runtime (None or 0: the runtime's default, all cores)."""
        self.info = info
        self.runtime = runtime
        self._run = load_runner(info.directory, info.card, runtime, threads)

    def embed(self, crops: np.ndarray) -> np.ndarray:
        if len(crops) == 0:
            return np.zeros((0, self.info.embedding_dim), dtype=np.float32)
        return self._run(np.ascontiguousarray(crops, dtype=np.uint8))


def thumbnail_jpeg(rgb: np.ndarray, face: Face, size: int = THUMBNAIL_SIZE) -> bytes:
    """A square JPEG of the face with some context, for galleries and the UI."""
    x, y, w, h = face.box
    side = max(w, h) * (1 + 2 * THUMBNAIL_MARGIN)
    cx, cy = x + w / 2, y + h / 2
    height, width = rgb.shape[:2]
    left, top = int(max(0, cx - side / 2)), int(max(0, cy - side / 2))
    right, bottom = int(min(width, cx + side / 2)), int(min(height, cy + side / 2))
    region = Image.fromarray(rgb[top : max(bottom, top + 1), left : max(right, left + 1)])
    region.thumbnail((size, size))
    buffer = io.BytesIO()
    region.save(buffer, format="JPEG", quality=85)
    return buffer.getvalue()


def png_bytes(rgb: np.ndarray) -> bytes:
    buffer = io.BytesIO()
    Image.fromarray(rgb).save(buffer, format="PNG")
    return buffer.getvalue()
