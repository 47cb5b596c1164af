"""What runs a model artifact's embedding network: ONNX Runtime on model.onnx (the default; no TensorFlow
needed, the predictor image installs none) or TensorFlow on the SavedModel's signature. Both take uint8
crops (N, S, S, 3) and give float32 (N, D) unit vectors; used by the predictor, the gallery builder
and `facesim evaluate --runtime`."""

from __future__ import annotations

import contextlib
import hashlib
from collections.abc import Callable
from pathlib import Path

import numpy as np

from facesim.storage.model_card import ModelCard

SIGNATURE = "serving_default"
RUNTIMES = ("onnx", "tensorflow")
DEFAULT_RUNTIME = "onnx"
Runner = Callable[[np.ndarray], np.ndarray]


class ModelError(ValueError):
    """The model directory is missing or not a facesim model artifact."""


def load_runner(directory: Path, card: ModelCard, runtime: str = DEFAULT_RUNTIME, threads: int | None = None) -> Runner:
    """`threads`: intra-op threads of the runtime (None or 0: the runtime's default, all cores)."""
    if runtime not in RUNTIMES:
        raise ModelError(f"unknown runtime {runtime!r}: choose one of {', '.join(RUNTIMES)}")
    return _onnx_runner(directory, card, threads) if runtime == "onnx" else _tensorflow_runner(directory, threads)


def _onnx_runner(directory: Path, card: ModelCard, threads: int | None) -> Runner:
    import onnxruntime

    record = card.extra.get("onnx")
    path = directory / str((record or {}).get("file", "model.onnx"))
    if not record or not path.is_file():
        raise ModelError(
            f"{directory} has no model.onnx (exported before ONNX serving): convert it with "
            f"`facesim model export-onnx {directory}`, or serve it with --runtime tensorflow"
        )
    data = path.read_bytes()
    if hashlib.sha256(data).hexdigest() != record.get("sha256"):
        raise ModelError(
            f"{path} does not match the sha256 in model.json: it was changed or damaged; "
            f"write it again with `facesim model export-onnx {directory}`"
        )
    options = onnxruntime.SessionOptions()
    options.intra_op_num_threads = threads or 0
    options.inter_op_num_threads = 1  # a chain of convolutions: nothing to run side by side
    session = onnxruntime.InferenceSession(data, options, providers=["CPUExecutionProvider"])
    input_name, output_name = session.get_inputs()[0].name, session.get_outputs()[0].name
    return lambda crops: session.run([output_name], {input_name: crops})[0].astype(np.float32, copy=False)


def _tensorflow_runner(directory: Path, threads: int | None) -> Runner:
    import tensorflow as tf  # imported here: the CLI's --help and the ONNX runtime must not pay for TensorFlow

    if threads:
        with contextlib.suppress(RuntimeError):  # TensorFlow already ran in this process: its setting stays
            tf.config.threading.set_intra_op_parallelism_threads(threads)
    loaded = tf.saved_model.load(str(directory))
    if SIGNATURE not in loaded.signatures:
        raise ModelError(f"{directory} has no {SIGNATURE!r} signature; re-export the model")
    signature = loaded.signatures[SIGNATURE]
    output = next(iter(signature.structured_outputs))

    def run(crops: np.ndarray) -> np.ndarray:
        _ = loaded  # keeps the variables alive as long as the runner
        return signature(images=tf.constant(crops))[output].numpy().astype(np.float32)

    return run
