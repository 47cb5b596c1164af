"""The model artifact (docs/protocol.md), read in one place: a SavedModel at DIR's root, the same network as
`model.onnx` beside it, and model.json (the card); the fingerprint galleries record; and load -> embed under
ONNX Runtime (the default; the predictor image installs no TensorFlow) or TensorFlow. Used by training,
evaluate, the gallery, the predictor and the benchmarks; writing the networks is training.export's.

Signature `serving_default`: `images` uint8 [None, S, S, 3] -> `embeddings` float32 [None, D], unit norm;
pixel normalisation is inside the network, so callers feed raw aligned crops. model.onnx has the same
input and output names. model.json's `preprocessing` rebuilds the exact preprocessor used for training.

A model names its detector by name and sha256 (`detector_used`, `detector_sha256`), never by a path of the
machine that made it: serving finds the YuNet file by `--yunet` or the default lookup (faces.detect) and
checks its sha256. The fingerprint covers the weights and what changes answers (sizes, threshold,
preprocessing semantics), not machine paths; models written before it recorded `yunet_path`, and
galleries built with them the older fingerprint of the whole model.json, which is still accepted.
"""

from __future__ import annotations

import contextlib
import hashlib
import json
import time
from collections.abc import Callable
from dataclasses import asdict, dataclass, field, fields
from pathlib import Path
from typing import Any

import numpy as np

from facesim.faces.detect import find_yunet_weights
from facesim.faces.preprocess import FacePreprocessor, PreprocessConfig

MODEL_CARD = "model.json"
REQUIRED = ("image_size", "embedding_dim", "margin", "threshold")
SIGNATURE = "serving_default"
INPUT, OUTPUT = "images", "embeddings"  # of the signature and of model.onnx
ONNX_FILE = "model.onnx"
RUNTIMES = ("onnx", "tensorflow")
DEFAULT_RUNTIME = "onnx"
# What model.json's `preprocessing` held that names a file of one machine: not written from now on, and
# outside the fingerprint.
MACHINE_FIELDS = ("yunet_path",)
# What the fingerprint covers besides the weights: every field that changes an answer.
ANSWER_FIELDS = ("image_size", "embedding_dim", "threshold", "preprocessing", "flip_average")
SAVED_MODEL_FILES = ("saved_model.pb", "variables", "assets", "fingerprint.pb")  # what TensorFlow writes
WEIGHT_FILES = ("variables/variables.index", "saved_model.pb")  # the index holds a checksum of every tensor
# model.json's record of an int8 artifact (`facesim model quantize`): its model.onnx is int8; its SavedModel
# is the float network it was quantised from, which TensorFlow would answer differently with: not served.
QUANTIZATION = "quantization"
Runner = Callable[[np.ndarray], np.ndarray]


class ModelError(ValueError):
    """The model directory is missing or not a facesim model artifact."""


# --- model.json ---------------------------------------------------------------------------------


def _now() -> str:
    return time.strftime("%Y-%m-%dT%H:%M:%SZ", time.gmtime())


@dataclass
class ModelCard:
    image_size: int
    embedding_dim: int
    margin: float
    threshold: float  # squared L2 distance under which two faces are "same person"
    architecture: str = ""
    preprocessing: dict[str, Any] = field(default_factory=dict)  # portable_preprocessing(describe())
    training: dict[str, Any] = field(default_factory=dict)  # data, protocol, hyper-parameters
    metrics: dict[str, float] = field(default_factory=dict)
    code_version: str = ""
    created: str = field(default_factory=_now)
    extra: dict[str, Any] = field(default_factory=dict)  # keys this version does not know, kept on round trips

    def to_dict(self) -> dict[str, Any]:
        data = asdict(self)
        return {**data.pop("extra"), **data}

    @classmethod
    def from_dict(cls, data: dict[str, Any]) -> ModelCard:
        missing = [key for key in REQUIRED if key not in data]
        if missing:
            raise ValueError(f"model card lacks {', '.join(missing)}: re-export the model with `facesim train`")
        known = {f.name for f in fields(cls)} - {"extra"}
        card = cls(**{key: value for key, value in data.items() if key in known})
        card.extra = {key: value for key, value in data.items() if key not in known}
        return card


def _card_text(data: dict[str, Any]) -> str:
    return json.dumps(data, indent=2, sort_keys=False) + "\n"


def save_model_card(model_dir: str | Path, card: ModelCard) -> Path:
    """Write `model_dir/model.json` atomically; returns its path."""
    path = Path(model_dir) / MODEL_CARD
    path.parent.mkdir(parents=True, exist_ok=True)
    partial = path.with_name(f".{MODEL_CARD}.partial")
    partial.write_text(_card_text(card.to_dict()))
    partial.replace(path)
    return path


def load_model_card(model_dir: str | Path) -> ModelCard:
    path = Path(model_dir) / MODEL_CARD
    if not path.is_file():
        raise FileNotFoundError(
            f"{path} does not exist: {model_dir} is not a model artifact (`facesim train --out DIR`)"
        )
    try:
        data = json.loads(path.read_text())
    except json.JSONDecodeError as error:
        raise ValueError(f"{path} is not valid JSON: {error}") from None
    if not isinstance(data, dict):
        raise ValueError(f"{path} must hold a JSON object")
    return ModelCard.from_dict(data)


def portable_preprocessing(description: dict[str, Any]) -> dict[str, Any]:
    """model.json's `preprocessing` from FacePreprocessor.describe(): the YuNet file by its sha256, not its path."""
    portable = {key: value for key, value in description.items() if key not in MACHINE_FIELDS}
    if description.get("detector_used") == "yunet":
        recorded = str(description.get("yunet_path") or "")  # a crop cache made elsewhere names another machine's
        try:
            weights = find_yunet_weights(recorded if Path(recorded).is_file() else None, allow_download=False)
        except FileNotFoundError:  # $FACESIM_YUNET_MODEL names no file: the sha256 stays unknown
            weights = None
        if weights is not None:
            portable["detector_sha256"] = _sha256(weights.read_bytes())
    return portable


# --- the fingerprint ----------------------------------------------------------------------------


@dataclass(frozen=True)
class ModelInfo:
    directory: Path
    card: ModelCard  # model.json
    version: str  # the fingerprint: weights and what changes answers; galleries record it
    legacy_version: str  # the fingerprint before this one (of the whole model.json): older galleries hold it

    @property
    def fingerprints(self) -> tuple[str, str]:
        """Every fingerprint a gallery built with this model may hold."""
        return (self.version, self.legacy_version)

    def made(self, fingerprint: str | None) -> bool:
        """Whether a gallery (or calibration) recording `fingerprint` was made with this model."""
        return fingerprint in self.fingerprints

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
    return ModelInfo(directory, card, fingerprint(directory, card), legacy_fingerprint(directory))


def fingerprint(directory: Path, card: ModelCard) -> str:
    """The weights plus every answer-changing field of model.json, machine paths left out."""
    data = card.to_dict()
    answers = {key: data[key] for key in ANSWER_FIELDS if key in data}
    answers["preprocessing"] = {k: v for k, v in card.preprocessing.items() if k not in MACHINE_FIELDS}
    if QUANTIZATION in card.extra:  # the int8 weights are model.onnx's, not the SavedModel's
        answers[QUANTIZATION] = card.extra[QUANTIZATION]
        answers["onnx_sha256"] = card.extra.get("onnx", {}).get("sha256")
    return _weights_digest(directory, json.dumps(answers, sort_keys=True).encode())


def legacy_fingerprint(directory: Path) -> str:
    """The fingerprint galleries recorded before: the weights and the whole model.json as written, less its
    `onnx` record (`facesim model export-onnx` adds one to an older artifact)."""
    path = directory / MODEL_CARD
    raw = path.read_bytes() if path.is_file() else b""
    card = json.loads(raw) if raw else None
    if isinstance(card, dict) and "onnx" in card:
        card.pop("onnx")
        raw = _card_text(card).encode()
    return _weights_digest(directory, raw)


def _weights_digest(directory: Path, described: bytes) -> str:
    digest = hashlib.sha256()
    for name in WEIGHT_FILES:
        path = directory / name
        if path.is_file():
            digest.update(path.read_bytes())
    digest.update(described)
    return digest.hexdigest()[:16]


def onnx_record(data: bytes, opset: int | None, converter: str) -> dict[str, Any]:
    """model.json's `onnx` record of the model.onnx holding `data`: what `_onnx_runner` checks it by."""
    return {"file": ONNX_FILE, "sha256": _sha256(data), "opset": opset, "converter": converter}


def _sha256(data: bytes) -> str:
    return hashlib.sha256(data).hexdigest()


# --- load -> embed ------------------------------------------------------------------------------


def preprocess_config(
    card: ModelCard, yunet_path: str | None = None, model: str | Path = "the model"
) -> PreprocessConfig:
    """The training preprocessing from model.json: the detector that actually ran (not "auto"); the YuNet
    file `yunet_path` (--yunet), else an older model's recorded path where it exists, else the default
    lookup; checked against model.json's sha256."""
    description = dict(card.preprocessing)
    if not description:
        raise ModelError(f"{model}/model.json has no `preprocessing`: re-export the model")
    if description.get("detector_used"):
        description["detector"] = description["detector_used"]
    recorded = str(description.get("yunet_path") or "")  # models made before the sha256
    description["yunet_path"] = yunet_path or (recorded if Path(recorded).is_file() else None)
    if description["detector"] == "yunet" and description.get("detector_sha256"):
        description["yunet_path"] = str(
            _checked_yunet(model, description["yunet_path"], description["detector_sha256"])
        )
    config = PreprocessConfig.from_dict(description)
    if config.image_size != card.image_size:
        raise ModelError(f"model.json: preprocessing image_size {config.image_size} != image_size {card.image_size}")
    return config


def preprocessor_for(info: ModelInfo, yunet_path: str | None = None) -> FacePreprocessor:
    """The training preprocessor (preprocess_config)."""
    return FacePreprocessor(preprocess_config(info.card, yunet_path, info.directory))


def _checked_yunet(model: str | Path, yunet_path: str | None, sha256: str) -> Path:
    try:
        weights = find_yunet_weights(yunet_path)
    except FileNotFoundError as error:
        raise ModelError(str(error)) from None
    if weights is None:
        raise ModelError(f"no YuNet weights found for {model}: give --yunet FILE (sha256 {sha256})")
    if _sha256(weights.read_bytes()) != sha256:
        raise ModelError(
            f"{weights} is not the YuNet file {model} was made with (its model.json records sha256 "
            f"{sha256}): give --yunet FILE with that file"
        )
    return weights


def load_runner(directory: Path, card: ModelCard, runtime: str = DEFAULT_RUNTIME, threads: int | None = None) -> Runner:
    """uint8 crops (N, S, S, 3) -> float32 (N, D) unit vectors. `threads`: intra-op threads of the runtime
    (None or 0: the runtime's default, all cores)."""
    if runtime not in RUNTIMES:
        raise ModelError(f"unknown runtime {runtime!r}: choose one of {', '.join(RUNTIMES)}")
    if runtime == "tensorflow" and QUANTIZATION in card.extra:
        raise ModelError(
            f"{directory} is an int8 model for ONNX Runtime (made by `facesim model quantize`; its SavedModel is "
            "the float network it came from, whose answers differ): use --runtime onnx"
        )
    return _onnx_runner(directory, card, threads) if runtime == "onnx" else _tensorflow_runner(directory, threads)


def _onnx_runner(directory: Path, card: ModelCard, threads: int | None) -> Runner:
    import onnxruntime

    record = card.extra.get("onnx")
    path = directory / str((record or {}).get("file", ONNX_FILE))
    if not record or not path.is_file():
        raise ModelError(
            f"{directory} has no model.onnx (exported before ONNX serving): convert it with "
            f"`facesim model export-onnx {directory}`, or serve it with --runtime tensorflow"
        )
    data = path.read_bytes()
    if _sha256(data) != record.get("sha256"):
        raise ModelError(
            f"{path} does not match the sha256 in model.json: it was changed or damaged; "
            f"write it again with `facesim model export-onnx {directory}`"
        )
    options = onnxruntime.SessionOptions()
    options.intra_op_num_threads = threads or 0
    options.inter_op_num_threads = 1  # a chain of convolutions: nothing to run side by side
    # Kept out: the pass that moves an int8 model's QuantizeLinear before the MaxPool after its float first
    # convolution, which then pools uint8 in ONNX Runtime's slow NCHW kernel (1.9 of 10.7 ms, docs/results.md).
    session = onnxruntime.InferenceSession(
        data, options, providers=["CPUExecutionProvider"], disabled_optimizers=["QDQPropagationTransformer"]
    )
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
        return signature(**{INPUT: tf.constant(crops)})[output].numpy().astype(np.float32)

    return run


class Embedder:
    """Batched embeddings: uint8 crops (N, S, S, 3) -> (N, D) unit vectors, by ONNX Runtime (model.onnx,
    the default) or TensorFlow (the SavedModel's signature)."""

    def __init__(self, info: ModelInfo, threads: int | None = None, runtime: str = DEFAULT_RUNTIME):
        """`threads`: intra-op threads of the runtime (None or 0: the runtime's default, all cores)."""
        self.info = info
        self.runtime = runtime
        self._run = load_runner(info.directory, info.card, runtime, threads)

    def embed(self, crops: np.ndarray, batch_size: int | None = None) -> np.ndarray:
        """`batch_size`: at most this many crops per call of the network (None: all at once)."""
        if len(crops) == 0:
            return np.zeros((0, self.info.embedding_dim), dtype=np.float32)
        crops = np.ascontiguousarray(crops, dtype=np.uint8)
        if not batch_size or len(crops) <= batch_size:
            return self._run(crops)
        return np.concatenate([self._run(crops[i : i + batch_size]) for i in range(0, len(crops), batch_size)])
