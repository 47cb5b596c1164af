"""Writing the model artifact's networks (storage.model_artifact reads them): the SavedModel at DIR's root,
with the signature `SIGNATURE`, and the same network as `model.onnx` beside it (converted by tf2onnx, with
the same input and output names)."""

from __future__ import annotations

import shutil
import tempfile
from collections.abc import Callable
from pathlib import Path

import keras
import numpy as np
import tensorflow as tf

from facesim.storage.model_artifact import INPUT, ONNX_FILE, OUTPUT, SAVED_MODEL_FILES, SIGNATURE, onnx_record
from facesim.training.onnx_graph import broadcast_channel_constants

ONNX_OPSET = 17


def export_saved_model(model: keras.Model, out_dir: Path, image_size: int) -> Path:
    """Write the SavedModel into `out_dir` (created; earlier SavedModel files there are replaced)."""
    out_dir.mkdir(parents=True, exist_ok=True)
    archive = keras.export.ExportArchive()
    archive.track(model)
    archive.add_endpoint(
        SIGNATURE,
        lambda images: {OUTPUT: model(tf.cast(images, tf.float32), training=False)},
        input_signature=[tf.TensorSpec([None, image_size, image_size, 3], tf.uint8, name=INPUT)],
    )
    # Written beside, then moved in: a crash never leaves half a SavedModel over a good one.
    with tempfile.TemporaryDirectory(dir=out_dir, prefix=".export-") as staging:
        archive.write_out(staging, verbose=False)
        for name in SAVED_MODEL_FILES:
            target = out_dir / name
            if target.is_dir():
                shutil.rmtree(target)
            elif target.exists():
                target.unlink()
            if (Path(staging) / name).exists():
                shutil.move(str(Path(staging) / name), target)
    return out_dir


def export_onnx(embed: Callable, out_dir: Path, image_size: int) -> dict:
    """Write `out_dir/model.onnx` from `embed` (uint8 `images` -> {"embeddings": ...}, a Keras model's call
    or a SavedModel's signature); returns model.json's `onnx` record (file, sha256, opset, converter)."""
    import tf2onnx

    spec = (tf.TensorSpec([None, image_size, image_size, 3], tf.uint8, name=INPUT),)
    proto, _ = tf2onnx.convert.from_function(tf.function(embed), input_signature=spec, opset=ONNX_OPSET)
    broadcast_channel_constants(proto)
    data = proto.SerializeToString()
    partial = out_dir / f".{ONNX_FILE}.partial"
    partial.write_bytes(data)
    partial.replace(out_dir / ONNX_FILE)
    return onnx_record(data, ONNX_OPSET, f"tf2onnx {tf2onnx.__version__}")


def export_model(model: keras.Model, out_dir: Path, image_size: int) -> dict:
    """SavedModel and model.onnx of one Keras model; returns the `onnx` record for model.json."""
    export_saved_model(model, out_dir, image_size)
    return export_onnx(lambda images: {OUTPUT: model(tf.cast(images, tf.float32), training=False)}, out_dir, image_size)


def export_onnx_of_saved_model(model_dir: Path) -> dict:
    """model.onnx for an artifact exported before ONNX: converted from its SavedModel's signature."""
    loaded = tf.saved_model.load(str(model_dir))  # held until converted: the signature needs its variables
    signature = loaded.signatures[SIGNATURE]
    image_size = int(signature.structured_input_signature[1][INPUT].shape[1])
    output = next(iter(signature.structured_outputs))
    record = export_onnx(lambda images: {OUTPUT: signature(**{INPUT: images})[output]}, model_dir, image_size)
    del loaded
    return record


def embed_with(model: keras.Model, images: np.ndarray, batch_size: int = 64) -> np.ndarray:
    """Embeddings of uint8 crops from the live Keras model (inference mode)."""
    parts = [
        model(tf.constant(images[i : i + batch_size], tf.float32), training=False).numpy()
        for i in range(0, len(images), batch_size)
    ]
    return np.concatenate(parts) if parts else np.zeros((0, model.output_shape[-1]), np.float32)
