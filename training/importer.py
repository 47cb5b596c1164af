"""`facesim model import faceapi-resnet`: dlib's pretrained face ResNet as an ordinary model artifact.
`facesim model export-onnx DIR`: model.onnx for an artifact exported before ONNX serving.
`facesim model quantize DIR --out INT8_DIR --data LFW`: an int8 copy, kept only when it decides as DIR does
(training.quantize).

The network is rebuilt in Keras (`faceapi_resnet`), loaded with the checksummed face-api weights
(training.pretrained) and exported like a trained model: SavedModel + model.json, with crops aligned
to dlib's chip template from YuNet's points. With --data, the threshold is calibrated on LFW
pairs fold 9 and the fold-10 figures are recorded (the evaluation protocol, docs/protocol.md);
without it, the threshold measured that way here is used and model.json says so.
"""

from __future__ import annotations

import argparse
import os
import sys
from dataclasses import dataclass
from pathlib import Path
from typing import Any

from facesim.faces.detect import add_yunet_argument
from facesim.faces.preprocess import PreprocessConfig

os.environ.setdefault("TF_CPP_MIN_LOG_LEVEL", "2")

SOURCES = ("faceapi-resnet",)
# Fold-9 threshold of the flip-averaged import (`facesim model import ... --data LFW`, docs/results.md),
# used when no --data is given to calibrate on.
DEFAULT_THRESHOLD = 0.1789


@dataclass
class ImportRequest:
    out: Path
    weights: str | None = None
    data: Path | None = None
    cache_dir: str | None = None
    yunet_path: str | None = None
    detector: str = "auto"
    prepare_workers: int = 2
    flip_average: bool = True
    offline: bool = False  # never fetch the weights from npm


def import_faceapi(request: ImportRequest) -> Path:
    from facesim.storage.cache import resolve_config
    from facesim.storage.model_artifact import ModelCard, portable_preprocessing, save_model_card
    from facesim.training.card_writer import code_version
    from facesim.training.config import PRETRAINED_INIT
    from facesim.training.export import export_model
    from facesim.training.model import with_flip_average
    from facesim.training.pretrained import (
        FACEAPI_IMAGE_SIZE,
        FILE_SHA256,
        PROVENANCE,
        TEMPLATE,
        assign_weights,
        build_pretrained_network,
        load_weights,
        locate_weights,
    )

    if request.out.exists() and (not request.out.is_dir() or any(request.out.iterdir())):
        raise ValueError(f"--out {request.out} exists and is not an empty directory: choose a new --out")
    folder = locate_weights(request.weights, allow_npm=not request.offline)
    model = build_pretrained_network()
    assign_weights(model, load_weights(folder))
    serving = with_flip_average(model) if request.flip_average else model
    wanted = PreprocessConfig(
        image_size=FACEAPI_IMAGE_SIZE,
        detector=request.detector,
        yunet_path=request.yunet_path,
        fallback="center",
        subject="central",
        template=TEMPLATE,
    )
    training: dict[str, Any] = {
        "init": {"from": PRETRAINED_INIT, **PROVENANCE, "weights": str(folder), "sha256": dict(FILE_SHA256)}
    }
    if request.data:
        threshold, metrics, preprocessing = calibrate_on_lfw(serving, wanted, request)
        training.update(data=str(request.data), protocol="LFW View 2: threshold on pairs.txt fold 9, test fold 10")
    else:
        threshold, metrics, preprocessing = DEFAULT_THRESHOLD, {}, resolve_config(wanted)[1]
        training["threshold_source"] = "default: the fold-9 threshold measured on LFW (docs/results.md)"
    onnx = export_model(serving, request.out, FACEAPI_IMAGE_SIZE)
    card = ModelCard(
        image_size=FACEAPI_IMAGE_SIZE,
        embedding_dim=int(model.output_shape[-1]),
        margin=0.0,  # not trained by facesim: no triplet margin
        threshold=float(threshold),
        architecture="faceapi_resnet",
        preprocessing=portable_preprocessing(preprocessing),
        training=training,
        metrics=metrics,
        code_version=code_version(),
        extra={"flip_average": request.flip_average, "onnx": onnx},
    )
    save_model_card(request.out, card)
    print(f"model imported to {request.out}", flush=True)
    return request.out


def calibrate_on_lfw(serving, wanted: PreprocessConfig, request: ImportRequest) -> tuple[float, dict, dict]:
    """Threshold at the best fold-9 accuracy, fold-10 figures at it, the ROC picture; prints metric lines."""
    from facesim.storage.lfw import LfwLayout, protocol_split
    from facesim.training.data import CropReader, crop_source, pair_set
    from facesim.training.loop import print_metric
    from facesim.training.plots import plot_roc
    from facesim.training.worker import evaluate_pairs

    assert request.data is not None  # called only with --data
    layout = LfwLayout.find(request.data)
    split = protocol_split(layout)
    names = sorted({name for p in split.val_pairs + split.test_pairs for name in (p.name1, p.name2)})
    cache_dir, preprocessing = crop_source(layout, wanted, request.cache_dir, names, request.prepare_workers)
    crops = CropReader(cache_dir, wanted.image_size)
    validation = evaluate_pairs(serving, pair_set(crops, split.val_pairs))
    test = evaluate_pairs(serving, pair_set(crops, split.test_pairs), calibration=validation)
    metrics = {
        **validation.metrics("val"),
        **{k: v for k, v in test.metrics("test").items() if not k.startswith("test_threshold")},
    }
    for name, value in metrics.items():
        print_metric(name, value)
    request.out.mkdir(parents=True, exist_ok=True)
    plot_roc({"validation (fold 9)": validation.pairs.roc, "test (fold 10)": test.pairs.roc}, request.out / "roc.png")
    return validation.threshold, {k: float(v) for k, v in metrics.items()}, preprocessing


def export_onnx_beside(model_dir: Path) -> dict:
    """Write model.onnx into an existing artifact from its SavedModel and record it in model.json."""
    from facesim.storage.model_artifact import QUANTIZATION, load_model_card, save_model_card

    card = load_model_card(model_dir)  # first: refuses a directory that is no artifact
    if QUANTIZATION in card.extra:
        raise ValueError(
            f"{model_dir} is an int8 model: its model.onnx is not the SavedModel's network; export its float source"
        )
    if not (model_dir / "saved_model.pb").is_file():
        raise FileNotFoundError(f"{model_dir} holds no SavedModel (saved_model.pb): pass a model directory")
    from facesim.training.export import export_onnx_of_saved_model  # TensorFlow: only once the checks pass

    card.extra["onnx"] = export_onnx_of_saved_model(model_dir)
    save_model_card(model_dir, card)
    print(f"{model_dir}/model.onnx written (sha256 {card.extra['onnx']['sha256'][:16]}...)", flush=True)
    return card.extra["onnx"]


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(
        prog="facesim model",
        description="Model artifacts from outside facesim. `facesim model import faceapi-resnet --out DIR` "
        "builds dlib's pretrained face ResNet (as ported by face-api) as a facesim model.",
    )
    commands = parser.add_subparsers(dest="command", required=True, metavar="COMMAND")
    command = commands.add_parser(
        "import",
        help="import pretrained weights as a model artifact",
        description="Build the network, load the checksummed weights, export SavedModel + model.json. "
        "Weights: --weights, $FACESIM_FACEAPI_WEIGHTS, the cache under $FACESIM_HOME, or `npm pack`.",
    )
    add = command.add_argument
    add("source", choices=SOURCES, help="which pretrained model")
    add("--out", required=True, type=Path, help="model directory to write")
    add("--weights", help="folder with face_recognition_model-weights_manifest.json and face_recognition_model.bin")
    add("--data", type=Path, help="LFW root: calibrate the threshold on fold 9, record fold-10 metrics")
    add("--cache-dir", help="face-crop cache (default: $FACESIM_CACHE/<preprocessing key>)")
    add_yunet_argument(command)
    add("--detector", default="auto", help="face detector for the crops: auto, yunet, haar (default: %(default)s)")
    add("--prepare-workers", type=int, default=2, help="processes preparing crops (default: %(default)s)")
    add(
        "--flip-average",
        action=argparse.BooleanOptionalAction,
        default=True,
        help="embed each crop and its mirror image and average (default: on)",
    )
    add("--offline", action="store_true", help="never fetch the weights with npm")
    export = commands.add_parser(
        "export-onnx",
        help="write model.onnx beside an older artifact's SavedModel",
        description="Convert the artifact's SavedModel to model.onnx (what `facesim serve --runtime onnx` loads) "
        "and record its sha256 and opset in model.json. The model's fingerprint, and so its galleries, stay valid.",
    )
    export.add_argument("model_dir", type=Path, metavar="DIR", help="model directory (saved_model.pb + model.json)")
    add_quantize_command(commands)
    args = vars(parser.parse_args(argv))
    command = args.pop("command")
    from facesim.training.pretrained import WeightsError
    from facesim.training.quantize import QuantizationRefused

    try:
        if command == "export-onnx":
            export_onnx_beside(args["model_dir"])
        elif command == "quantize":
            quantize(args)
        else:
            args.pop("source")
            import_faceapi(ImportRequest(**args))
    except (WeightsError, FileNotFoundError, ValueError) as error:
        print(f"facesim model {command}: {error}", file=sys.stderr)
        return 2
    except QuantizationRefused as error:
        print(f"facesim model {command}: {error}", file=sys.stderr)
        return 1
    return 0


def add_quantize_command(commands: argparse._SubParsersAction) -> None:
    from facesim.training.quantize import AccuracyRule, QuantizeRequest

    rule, defaults = AccuracyRule(), QuantizeRequest  # the dataclass's defaults, shown by --help
    command = commands.add_parser(
        "quantize",
        help="write an int8 copy for ONNX Runtime, if it decides as the float model does",
        description="ONNX Runtime static quantisation (int8 weights per channel, uint8 activations, the first "
        "convolution in float) calibrated on LFW training identities; both models are then scored on LFW "
        "folds 9-10 and INT8_DIR is written only if fold-10 accuracy stays within --max-lost-pairs and the TAR "
        "at FAR 1e-3 over every pair of fold-10 images within --max-tar-drop. Exit 1 when the rule breaks.",
    )
    add = command.add_argument
    add("model_dir", type=Path, metavar="DIR", help="the float model (model.onnx + model.json)")
    add("--out", required=True, type=Path, help="the int8 model directory to write (new or empty)")
    add("--data", required=True, type=Path, help="LFW root: calibration crops and the fold-9/10 check")
    add(
        "--calibration-images",
        type=int,
        default=defaults.calibration_images,
        help="crops to calibrate on (default: %(default)s)",
    )
    add("--seed", type=int, default=defaults.seed, help="which training identities calibrate (default: %(default)s)")
    add(
        "--max-lost-pairs",
        type=int,
        default=rule.max_lost_pairs,
        help="fold-10 pairs int8 may lose (default: %(default)s)",
    )
    add(
        "--max-tar-drop",
        type=float,
        default=rule.max_tar_drop,
        help="TAR at FAR 1e-3 it may lose, as a fraction (default: %(default)s)",
    )
    add("--cache-dir", help="face-crop cache (default: $FACESIM_CACHE/<preprocessing key>)")
    add_yunet_argument(command)
    add(
        "--prepare-workers",
        type=int,
        default=defaults.prepare_workers,
        help="processes preparing crops (default: %(default)s)",
    )


def quantize(args: dict[str, Any]) -> Path:
    from facesim.training.quantize import AccuracyRule, QuantizeRequest, quantize_model

    if args["calibration_images"] < 1:
        raise ValueError("--calibration-images must be at least 1")
    if args["max_lost_pairs"] < 0 or not 0 <= args["max_tar_drop"] <= 1:
        raise ValueError(
            "--max-lost-pairs must be >= 0 and --max-tar-drop within 0..1 (a fraction: 0.003 = 0.3 points)"
        )
    rule = AccuracyRule(args.pop("max_lost_pairs"), args.pop("max_tar_drop"))
    return quantize_model(QuantizeRequest(**args, rule=rule))


if __name__ == "__main__":
    sys.exit(main())
