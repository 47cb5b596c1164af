"""The model artifact (docs/protocol.md): a SavedModel at DIR's root plus model.json, and loading it back.

Signature `serving_default`: `images` uint8 [None, S, S, 3] -> `embeddings` float32 [None, D],
unit norm; pixel normalisation is inside the network, so callers feed raw aligned crops.
"""

from __future__ import annotations

import shutil
import tempfile
from pathlib import Path

import keras
import numpy as np
import tensorflow as tf

SIGNATURE = "serving_default"


def export_saved_model(model: keras.Model, out_dir: Path, image_size: int) -> Path:
    """Write the SavedModel into `out_dir` (created; earlier SavedModel files there are replaced)."""
    out_dir.mkdir(parents=True, exist_ok=True)
    archive = keras.export.ExportArchive()
    archive.track(model)
    archive.add_endpoint(
        SIGNATURE,
        lambda images: {"embeddings": model(tf.cast(images, tf.float32), training=False)},
        input_signature=[tf.TensorSpec([None, image_size, image_size, 3], tf.uint8, name="images")],
    )
    # Written beside, then moved in: a crash never leaves half a SavedModel over a good one.
    with tempfile.TemporaryDirectory(dir=out_dir, prefix=".export-") as staging:
        archive.write_out(staging, verbose=False)
        for name in ("saved_model.pb", "variables", "assets", "fingerprint.pb"):
            target = out_dir / name
            if target.is_dir():
                shutil.rmtree(target)
            elif target.exists():
                target.unlink()
            if (Path(staging) / name).exists():
                shutil.move(str(Path(staging) / name), target)
    return out_dir


class EmbeddingModel:
    """An exported model's serving signature as a NumPy function, fed in batches."""

    def __init__(self, model_dir: Path):
        if not (model_dir / "saved_model.pb").exists():
            raise FileNotFoundError(f"{model_dir} holds no SavedModel (saved_model.pb): pass a model directory")
        self._signature = tf.saved_model.load(str(model_dir)).signatures[SIGNATURE]
        self.image_size = int(self._signature.structured_input_signature[1]["images"].shape[1])

    def embed(self, images: np.ndarray, batch_size: int = 64) -> np.ndarray:
        parts = [
            self._signature(images=tf.constant(images[i : i + batch_size], tf.uint8))["embeddings"].numpy()
            for i in range(0, len(images), batch_size)
        ]
        return np.concatenate(parts) if parts else np.zeros((0, 0), np.float32)


def embed_with(model: keras.Model, images: np.ndarray, batch_size: int = 64) -> np.ndarray:
    """Embeddings of uint8 crops from the live Keras model (inference mode)."""
    parts = [
        model(tf.constant(images[i : i + batch_size], tf.float32), training=False).numpy()
        for i in range(0, len(images), batch_size)
    ]
    return np.concatenate(parts) if parts else np.zeros((0, model.output_shape[-1]), np.float32)
