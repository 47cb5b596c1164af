"""`facesim model quantize DIR --out INT8_DIR --data LFW`: an int8 copy of a model for ONNX Runtime, written
only when it decides as the float model does.

ONNX Runtime's static quantisation (QDQ): int8 weights per output channel, uint8 activations per tensor,
calibrated on aligned crops of LFW training identities (people.txt sets 1-8, none of the fold-9/10 people).
Two choices, measured on the faceapi-resnet import (docs/results.md):
- weights keep 7 bits (`reduce_range`): on CPUs without VNNI (AVX2 only, as here) ONNX Runtime multiplies
  uint8 by int8 with VPMADDUBSW, whose 16-bit sums saturate with full 8-bit weights;
- the first convolution stays float: quantised too, the TAR at FAR 1e-3 lost 0.4 points (0.3 allowed).
The rule: fold-10 accuracy within one pair of the float model's and the TAR at FAR 1e-3 over every pair of
fold-10 images within 0.3 points. Otherwise nothing is written and the figures say why.

The result is a model directory like any other, with its own fold-9 threshold and fingerprint (build its
gallery with it): model.json, the int8 model.onnx, and the float SavedModel it was quantised from (the
artifact's contract; `--runtime tensorflow` refuses it, as its answers would differ).
"""

from __future__ import annotations

import random
import shutil
import sys
import tempfile
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import numpy as np

from facesim.storage.lfw import LfwLayout, ProtocolSplit, protocol_split
from facesim.storage.model_artifact import (
    INPUT,
    MODEL_CARD,
    ONNX_FILE,
    QUANTIZATION,
    SAVED_MODEL_FILES,
    ModelCard,
    ModelError,
    fingerprint,
    load_model_card,
    load_runner,
    onnx_record,
    preprocess_config,
    save_model_card,
)
from facesim.training.onnx_graph import broadcast_channel_constants
from facesim.training.verification import ImageKey, ProtocolFigures, pair_keys, protocol_figures


@dataclass(frozen=True)
class AccuracyRule:
    """How close the int8 model must stay to the float one on fold 10."""

    max_lost_pairs: int = 1  # of fold 10's 600 listed pairs
    max_tar_drop: float = 0.003  # TAR at FAR 1e-3 over every pair of fold-10 images (0.3 points)

    def verdict(self, float_figures: ProtocolFigures, int8_figures: ProtocolFigures) -> str | None:
        """None when the int8 figures hold, else what broke the rule."""
        lost = float_figures.correct_test_pairs - int8_figures.correct_test_pairs
        drop = float_figures.tar_at_far_1e3 - int8_figures.tar_at_far_1e3
        broken = []
        if lost > self.max_lost_pairs:
            broken.append(f"fold 10 lost {lost} pairs (at most {self.max_lost_pairs} allowed)")
        if drop > self.max_tar_drop + 1e-12:
            broken.append(f"TAR at FAR 1e-3 fell {100 * drop:.2f} points (at most {100 * self.max_tar_drop:.2f})")
        return "; ".join(broken) or None


@dataclass
class QuantizeRequest:
    model_dir: Path
    out: Path
    data: Path
    calibration_images: int = 300
    seed: int = 0
    rule: AccuracyRule = AccuracyRule()
    cache_dir: str | None = None
    yunet_path: str | None = None
    prepare_workers: int = 2


class QuantizationRefused(RuntimeError):
    """The int8 model broke the accuracy rule: nothing was written."""


def calibration_keys(split: ProtocolSplit, count: int, seed: int) -> list[ImageKey]:
    """The first image of `count` training identities, picked by a seeded shuffle: many people, no
    evaluated one."""
    names = sorted(split.train_identities)
    random.Random(seed).shuffle(names)
    return [(name, 1) for name in names[:count]]


def read_crops(
    layout: LfwLayout, card: ModelCard, request: QuantizeRequest, keys: list[ImageKey], skip_faceless: bool
) -> tuple[list[ImageKey], np.ndarray]:
    """The model's own aligned crops of these images (prepared into the crop cache); an image without a
    face is left out when `skip_faceless` (calibration), else it is an error that names it."""
    from facesim.training.data import CropReader, crop_source

    wanted = preprocess_config(card, request.yunet_path, request.model_dir)
    names = sorted({name for name, _ in keys})
    cache, _ = crop_source(layout, wanted, request.cache_dir, names, request.prepare_workers)
    reader = CropReader(cache, card.image_size)
    found = [key for key in keys if reader.layout.image_path(*key).is_file()] if skip_faceless else keys
    if not found:
        raise ValueError(f"no face crop for any of the {len(keys)} images asked for in {layout.root}")
    return found, np.stack([reader.read(key) for key in found])


def first_conv(model_path: Path) -> str:
    """The name of the convolution nearest the input (ONNX lists nodes in topological order)."""
    import onnx

    for node in onnx.load(str(model_path)).graph.node:
        if node.op_type == "Conv":
            return node.name
    raise ModelError(f"{model_path} has no convolution: nothing to keep in float")


def quantize_onnx(float_model: Path, calibration: np.ndarray, out_path: Path) -> list[str]:
    """Write the int8 model of `float_model` to `out_path`, calibrated on these uint8 crops; returns the
    names of the nodes left in float."""
    from onnxruntime.quantization import (
        CalibrationDataReader,
        CalibrationMethod,
        QuantFormat,
        QuantType,
        quantize_static,
    )
    from onnxruntime.quantization.shape_inference import quant_pre_process

    class Crops(CalibrationDataReader):
        def __init__(self) -> None:
            self._feeds = iter([{INPUT: calibration[i : i + 1]} for i in range(len(calibration))])

        def get_next(self) -> dict[str, np.ndarray] | None:
            return next(self._feeds, None)

    import onnx

    with tempfile.TemporaryDirectory(prefix="facesim-quantize-") as work:
        arranged, prepared = Path(work) / "arranged.onnx", Path(work) / "prepared.onnx"
        graph = onnx.load(str(float_model))
        broadcast_channel_constants(graph)  # a model exported before the arrangement gets it too
        onnx.save(graph, str(arranged))
        # Shapes and folded constants for the quantiser; sympy's symbolic pass is not needed for fixed sizes.
        quant_pre_process(str(arranged), str(prepared), skip_symbolic_shape=True)
        float_nodes = [first_conv(prepared)]  # named as in the graph quantised (the pre-pass may rename)
        quantize_static(
            str(prepared),
            str(out_path),
            Crops(),
            quant_format=QuantFormat.QDQ,
            op_types_to_quantize=["Conv", "MatMul"],
            per_channel=True,
            reduce_range=True,
            activation_type=QuantType.QUInt8,
            weight_type=QuantType.QInt8,
            nodes_to_exclude=float_nodes,
            calibrate_method=CalibrationMethod.MinMax,
        )
    check_float(out_path, float_nodes)
    return float_nodes


def check_float(model_path: Path, names: list[str]) -> None:
    """Refuse an int8 graph where a node meant to stay float gets its weights through DequantizeLinear."""
    import onnx

    graph = onnx.load(str(model_path)).graph
    dequantized = {node.output[0] for node in graph.node if node.op_type == "DequantizeLinear"}
    quantized = [node.name for node in graph.node if node.name in names and node.input[1] in dequantized]
    kept = {node.name for node in graph.node}
    if quantized or not set(names) <= kept:
        raise ModelError(f"the quantiser did not keep {sorted(set(names) - kept) or quantized} in float")


def figures_of(
    model_dir: Path, card: ModelCard, split: ProtocolSplit, keys: list[ImageKey], crops: np.ndarray
) -> ProtocolFigures:
    run = load_runner(model_dir, card, "onnx")
    vectors = np.concatenate([run(crops[i : i + 64]) for i in range(0, len(crops), 64)])
    return protocol_figures(dict(zip(keys, vectors, strict=True)), split.val_pairs, split.test_pairs)


def summary(figures: ProtocolFigures) -> dict[str, float]:
    return {
        "fold10_accuracy": figures.test.accuracy,
        "fold10_correct_pairs": figures.correct_test_pairs,
        "tar_at_far_1e-3_all_pairs": figures.tar_at_far_1e3,
        "threshold": figures.validation.threshold,
    }


def int8_card(
    source: ModelCard, source_fingerprint: str, record: dict[str, Any], figures: ProtocolFigures
) -> ModelCard:
    """The source's card with the int8 network's threshold, figures and provenance."""
    card = ModelCard.from_dict(source.to_dict())
    card.threshold = figures.validation.threshold
    # As `facesim model import` and `facesim train` record them: fold 10 at the thresholds set on fold 9.
    tested = {**figures.test.metrics("test"), **figures.test_images_at_validation.metrics("test")}
    card.metrics = {
        **figures.validation.metrics("val"),
        **figures.validation_images.metrics("val"),
        **{name: value for name, value in tested.items() if not name.startswith("test_threshold")},
    }
    card.extra["onnx"] = record["onnx"]
    card.extra[QUANTIZATION] = {**record["quantization"], "from_fingerprint": source_fingerprint}
    return card


def quantize_model(request: QuantizeRequest) -> Path:
    """Quantise, check against the float model on folds 9-10, and write `request.out` only if the rule holds."""
    import onnxruntime

    if request.out.exists() and (not request.out.is_dir() or any(request.out.iterdir())):
        raise ValueError(f"--out {request.out} exists and is not an empty directory: choose a new --out")
    source = load_model_card(request.model_dir)
    if QUANTIZATION in source.extra:
        raise ValueError(f"{request.model_dir} is already an int8 model: quantise its float source")
    float_model = request.model_dir / str(source.extra.get("onnx", {}).get("file", ONNX_FILE))
    if not float_model.is_file():
        raise FileNotFoundError(
            f"{request.model_dir} has no model.onnx: run `facesim model export-onnx {request.model_dir}`"
        )
    layout = LfwLayout.find(request.data)
    split = protocol_split(layout)
    calibration_found, calibration = read_crops(
        layout, source, request, calibration_keys(split, request.calibration_images, request.seed), True
    )
    evaluated, crops = read_crops(layout, source, request, pair_keys(split.val_pairs + split.test_pairs), False)
    print(f"calibrating on {len(calibration)} crops of LFW training identities", file=sys.stderr, flush=True)
    request.out.parent.mkdir(parents=True, exist_ok=True)
    staging = Path(tempfile.mkdtemp(prefix=f".{request.out.name}.partial-", dir=request.out.parent))
    try:
        float_nodes = quantize_onnx(float_model, calibration, staging / ONNX_FILE)
        data = (staging / ONNX_FILE).read_bytes()
        record = {
            "onnx": onnx_record(
                data, source.extra.get("onnx", {}).get("opset"), f"onnxruntime.quantization {onnxruntime.__version__}"
            ),
            "quantization": {
                "weights": "int8 per output channel, 7-bit range (reduce_range)",
                "activations": "uint8 per tensor",
                "method": "static QDQ, MinMax calibration",
                "float_nodes": float_nodes,
                "calibration": f"{len(calibration_found)} crops: the first image of LFW training identities "
                f"(people.txt sets 1-8), seed {request.seed}",
            },
        }
        save_model_card(staging, ModelCard.from_dict({**source.to_dict(), **record}))  # to load it for the check
        float_figures = figures_of(request.model_dir, source, split, evaluated, crops)
        int8_figures = figures_of(staging, load_model_card(staging), split, evaluated, crops)
        record["quantization"]["check"] = {"float": summary(float_figures), "int8": summary(int8_figures)}
        print(comparison(float_figures, int8_figures), flush=True)
        broken = request.rule.verdict(float_figures, int8_figures)
        if broken:
            raise QuantizationRefused(f"the int8 model does not decide as the float one: {broken}; nothing written")
        save_model_card(staging, int8_card(source, fingerprint(request.model_dir, source), record, int8_figures))
        for name in SAVED_MODEL_FILES:
            copy = shutil.copytree if (request.model_dir / name).is_dir() else shutil.copy2
            if (request.model_dir / name).exists():
                copy(request.model_dir / name, staging / name)
        if request.out.exists():
            request.out.rmdir()  # empty, checked above
        staging.rename(request.out)
    finally:
        if staging.exists():
            shutil.rmtree(staging)
    print(f"int8 model written to {request.out} ({MODEL_CARD}, the int8 {ONNX_FILE}, the float SavedModel)", flush=True)
    return request.out


def comparison(float_figures: ProtocolFigures, int8_figures: ProtocolFigures) -> str:
    rows = [
        "| model | fold-10 accuracy | correct pairs | TAR@FAR=1e-3 (all fold-10 pairs) | threshold (fold 9) |",
        "|---|---|---|---|---|",
    ]
    for name, figures in (("float", float_figures), ("int8", int8_figures)):
        rows.append(
            f"| {name} | {100 * figures.test.accuracy:.2f}% | {figures.correct_test_pairs}/{figures.test_pairs} "
            f"| {100 * figures.tar_at_far_1e3:.2f}% | {figures.validation.threshold:.4f} |"
        )
    return "\n".join(rows)
