"""The served model: the SavedModel's embedding signature plus the face preprocessing it was trained with.

model.json's `preprocessing` rebuilds the exact preprocessor used for training, so serving
feeds the network the same aligned uint8 crops. Used by the predictor and the gallery builder.
"""

from __future__ import annotations

import hashlib
import io
from dataclasses import dataclass
from pathlib import Path

import numpy as np
from PIL import Image

from facesim.faces.detect import Face
from facesim.faces.preprocess import FacePreprocessor, PreprocessConfig
from facesim.storage.model_card import ModelCard, load_model_card

SIGNATURE = "serving_default"
THUMBNAIL_SIZE = 128
# A thumbnail shows the face box grown by this fraction on each side (hair, chin).
THUMBNAIL_MARGIN = 0.25


class ModelError(ValueError):
    """The model directory is missing or not a facesim model artifact."""


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
    for name in ("variables/variables.index", "saved_model.pb", "model.json"):
        path = directory / name
        if path.is_file():
            digest.update(path.read_bytes())
    return digest.hexdigest()[:16]


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
    """Batched calls of the SavedModel's serving signature: uint8 crops (N, S, S, 3) -> (N, D) unit vectors."""

    def __init__(self, info: ModelInfo, threads: int | None = None):
        """`threads`: TensorFlow intra-op threads (None: TensorFlow's default, all cores)."""
        import tensorflow as tf  # imported here: the CLI's --help must not pay for TensorFlow

        if threads:
            try:
                tf.config.threading.set_intra_op_parallelism_threads(threads)
            except RuntimeError:  # TensorFlow already ran in this process: its setting stays
                pass
        self._tf = tf
        self.info = info
        loaded = tf.saved_model.load(str(info.directory))
        if SIGNATURE not in loaded.signatures:
            raise ModelError(f"{info.directory} has no {SIGNATURE!r} signature; re-export the model")
        self._loaded = loaded  # keeps the variables alive
        self._signature = loaded.signatures[SIGNATURE]
        self._output = next(iter(self._signature.structured_outputs))

    def embed(self, crops: np.ndarray) -> np.ndarray:
        if len(crops) == 0:
            return np.zeros((0, self.info.embedding_dim), dtype=np.float32)
        images = self._tf.constant(np.ascontiguousarray(crops, dtype=np.uint8))
        return self._signature(images=images)[self._output].numpy().astype(np.float32)


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
