"""`facesim bench accuracy`: facesim models and face_recognition (dlib) side by side, in one run, on the
same LFW pairs: threshold from fold 9, accuracy / AUC / TAR at FAR 1e-3 on fold 10 (the LFW evaluation
protocol of docs/protocol.md).

Also TAR at FAR 1e-3 over every pair of fold-10 images (genuine: same person; impostor: different),
where a FAR of 1e-3 rests on ~10^5 impostor pairs instead of fold 10's 300, and ms per face
(facesim: the network on aligned crops, batched; face_recognition: landmarks + chip + descriptor,
one face at a time). `--ten-fold` adds LFW's standard View 2 figure over all 6,000 pairs (each fold at
the threshold best on the other nine: the one published figures such as dlib's 99.38% use).
face_recognition is optional: `pip install dlib-bin face_recognition_models
'setuptools<81'` (for `pkg_resources`), then `pip install --no-deps face_recognition`.
"""

from __future__ import annotations

import argparse
import json
import os
import sys
import time
from dataclasses import asdict, dataclass
from pathlib import Path

import numpy as np

from facesim.benchmarks.peer import import_face_recognition
from facesim.faces.detect import add_yunet_argument
from facesim.training.verification import ImageKey, pair_keys

os.environ.setdefault("TF_CPP_MIN_LOG_LEVEL", "2")


@dataclass(frozen=True)
class Score:
    name: str
    accuracy: float  # fold 10 at the fold-9 threshold
    auc: float
    tar_at_far_1e3: float  # fold 10's 300 impostor pairs: TAR at zero false accepts (its smallest FAR)
    tar_at_far_1e3_all_pairs: float  # every pair of fold-10 images, at fold 10's own FAR-1e-3 threshold
    all_pairs: str  # "genuine/impostor" counts behind the column before
    tar_at_far_1e3_fold9_threshold: float  # the same pairs at the threshold set on fold 9's image pairs
    # (what `facesim evaluate` prints as tar_at_far_1e-3)
    threshold: float
    ms_per_face: float
    lfw_10fold_accuracy: float | None = None  # mean over the 10 folds (--ten-fold)
    lfw_10fold_std: float | None = None


def score(name: str, embeddings: dict[ImageKey, np.ndarray], val, test, ms_per_face: float, folds=None) -> Score:
    from facesim.training.verification import listed_pair_distances, protocol_figures, ten_fold

    figures = protocol_figures(embeddings, val, test)
    ten = None
    if folds:
        distances = listed_pair_distances(embeddings, [p for fold in folds for p in fold])
        fold_of = np.repeat(np.arange(len(folds)), [len(fold) for fold in folds])
        ten = [accuracy for accuracy, _ in ten_fold(*distances, fold_of)]
    return Score(
        name,
        figures.test.accuracy,
        figures.test.auc,
        figures.test.tar_at_zero_false_accepts,
        figures.tar_at_far_1e3,
        f"{figures.test_images.genuine_pairs}/{figures.test_images.impostor_pairs}",
        figures.test_images_at_validation.points["1e-3"].tar,
        figures.validation.threshold,
        ms_per_face,
        float(np.mean(ten)) if ten else None,
        float(np.std(ten)) if ten else None,
    )


def facesim_embeddings(model_dir: Path, layout, keys: list[ImageKey], args: argparse.Namespace) -> tuple[dict, float]:
    from facesim.storage.model_artifact import load_model_card, load_runner, preprocess_config
    from facesim.training.data import CropReader, crop_source

    card = load_model_card(model_dir)
    wanted = preprocess_config(card, args.yunet_path, model_dir)
    names = sorted({name for name, _ in keys})
    cache, _ = crop_source(layout, wanted, None, names, args.prepare_workers)
    reader = CropReader(cache, card.image_size)
    crops = np.stack([reader.read(key) for key in keys])
    run = load_runner(model_dir, card, args.runtime)
    run(crops[:8])  # the first call pays the runtime's set-up
    started = time.perf_counter()
    vectors = np.concatenate([run(crops[i : i + 64]) for i in range(0, len(crops), 64)])
    return dict(zip(keys, vectors, strict=True)), 1000 * (time.perf_counter() - started) / len(keys)


def face_recognition_embeddings(layout, keys: list[ImageKey]) -> tuple[dict, float]:
    """dlib's descriptors as face_recognition computes them; LFW images where its HOG detector finds no
    face get a centred box (LFW faces are centred), so every pair is scored."""
    face_recognition = import_face_recognition()

    found, elapsed = {}, 0.0
    for key in keys:
        image = face_recognition.load_image_file(str(layout.image_path(*key)))
        height, width = image.shape[:2]
        boxes = face_recognition.face_locations(image) or [
            (height * 7 // 25, width * 18 // 25, height * 18 // 25, width * 7 // 25)
        ]
        box = min(boxes, key=lambda b: abs((b[0] + b[2]) / 2 - height / 2) + abs((b[1] + b[3]) / 2 - width / 2))
        started = time.perf_counter()
        found[key] = np.asarray(face_recognition.face_encodings(image, [box])[0])
        elapsed += time.perf_counter() - started
    return found, 1000 * elapsed / len(keys)


@dataclass(frozen=True)
class PhotoCheck:
    """Same people close, different people far, on photos outside LFW (identity folders)."""

    name: str
    images: int
    genuine_pairs: int
    impostor_pairs: int
    max_genuine: float  # squared distances of unit embeddings
    min_impostor: float
    accuracy_at_model_threshold: float


def photo_check(name: str, model_dir: Path, photos: Path, yunet_path: str | None) -> PhotoCheck:
    """Every image's subject face through the model's own preprocessing; all pairs scored at the
    threshold in its model.json."""
    from facesim.contract.metrics import accuracy, pair_distances
    from facesim.faces.image import read_image
    from facesim.storage.datasets import IdentityDataset
    from facesim.storage.model_artifact import Embedder, preprocessor_for, read_model_info

    info = read_model_info(model_dir)
    preprocessor = preprocessor_for(info, yunet_path)
    owners, crops = [], []
    for identity, path in IdentityDataset.scan(photos).images():
        face = preprocessor.subject_face(read_image(path))
        if face is not None:
            owners.append(identity)
            crops.append(face.crop)
    genuine, impostor = pair_distances(owners, Embedder(info).embed(np.stack(crops)))
    same = np.concatenate([np.ones(len(genuine), bool), np.zeros(len(impostor), bool)])
    return PhotoCheck(
        name,
        len(crops),
        len(genuine),
        len(impostor),
        float(genuine.max()),
        float(impostor.min()),
        accuracy(np.concatenate([genuine, impostor]), same, info.threshold),
    )


def table(scores: list[Score]) -> str:
    lines = [
        "| model | fold-10 accuracy | AUC | TAR@FAR=1e-3 (fold 10) | TAR@FAR=1e-3 (all fold-10 pairs) "
        "| same, at fold 9's threshold | threshold (fold 9) | ms/face | LFW 10-fold |",
        "|---|---|---|---|---|---|---|---|---|",
    ]
    for s in scores:
        ten = (
            f"{100 * s.lfw_10fold_accuracy:.2f}% ± {100 * s.lfw_10fold_std:.2f}"
            if s.lfw_10fold_accuracy and s.lfw_10fold_std is not None
            else "-"
        )
        lines.append(
            f"| {s.name} | {100 * s.accuracy:.2f}% | {s.auc:.4f} | {100 * s.tar_at_far_1e3:.1f}% | "
            f"{100 * s.tar_at_far_1e3_all_pairs:.1f}% ({s.all_pairs}) | {100 * s.tar_at_far_1e3_fold9_threshold:.1f}% "
            f"| {s.threshold:.4f} | {s.ms_per_face:.1f} | {ten} |"
        )
    return "\n".join(lines)


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(
        prog="facesim bench accuracy",
        description="Score models side by side on LFW pairs (threshold from fold 9, figures on fold 10); "
        "prints a Markdown table and NAME_accuracy= metric lines.",
    )
    parser.add_argument("--data", required=True, type=Path, help="LFW root (pairs.txt, people.txt, images)")
    parser.add_argument("--model", action="append", default=[], metavar="NAME=DIR", help="a facesim model (repeat)")
    parser.add_argument(
        "--face-recognition",
        choices=("auto", "on", "off"),
        default="auto",
        help="also score face_recognition (dlib): auto = when it is installed (default: %(default)s)",
    )
    add_yunet_argument(parser)
    parser.add_argument("--prepare-workers", type=int, default=2, help="processes preparing crops")
    parser.add_argument("--json", type=Path, help="also write the scores as JSON here")
    parser.add_argument(
        "--photos", type=Path, help="also check each model on these identity folders (photos outside LFW)"
    )
    parser.add_argument(
        "--ten-fold",
        action="store_true",
        help="also LFW's 10-fold figure over all 6,000 pairs of pairs.txt (embeds ~7,700 images per model)",
    )
    parser.add_argument("--runtime", choices=("onnx", "tensorflow"), default="onnx", help="what runs facesim's models")
    args = parser.parse_args(argv)
    models = []
    for item in args.model:
        name, sep, path = item.partition("=")
        if not sep or not name or not Path(path).is_dir():
            parser.error(f"--model expects NAME=DIR with an existing model directory, got {item!r}")
        models.append((name, Path(path)))
    use_fr = args.face_recognition == "on" or (args.face_recognition == "auto" and _has_face_recognition())
    if args.face_recognition == "on" and not _has_face_recognition():
        parser.error(
            "face_recognition is not installed: pip install dlib-bin face_recognition_models "
            "'setuptools<81', then pip install --no-deps face_recognition"
        )
    if not models and not use_fr:
        parser.error("nothing to score: give --model NAME=DIR (or install face_recognition)")
    from facesim.storage.lfw import LfwLayout, protocol_split, read_pairs
    from facesim.training.loop import print_metric

    layout = LfwLayout.find(args.data)
    split = protocol_split(layout)
    folds = read_pairs(layout.protocol_file("pairs.txt")) if args.ten_fold else None
    keys = pair_keys(split.val_pairs + split.test_pairs + [p for fold in folds or [] for p in fold])
    scores = []
    for name, model_dir in models:
        embeddings, ms = facesim_embeddings(model_dir, layout, keys, args)
        scores.append(score(name, embeddings, split.val_pairs, split.test_pairs, ms, folds))
    if use_fr:
        embeddings, ms = face_recognition_embeddings(layout, keys)
        scores.append(score("face_recognition", embeddings, split.val_pairs, split.test_pairs, ms, folds))
    for s in scores:
        for field in (
            "accuracy",
            "auc",
            "tar_at_far_1e3",
            "tar_at_far_1e3_all_pairs",
            "tar_at_far_1e3_fold9_threshold",
            "ms_per_face",
            "lfw_10fold_accuracy",
            "lfw_10fold_std",
        ):
            if getattr(s, field) is not None:
                print_metric(f"{s.name}_{field.replace('1e3', '1e-3')}", getattr(s, field))
    print(table(scores))
    checks = (
        [photo_check(name, model_dir, args.photos, args.yunet_path) for name, model_dir in models]
        if args.photos
        else []
    )
    for check in checks:
        print(
            f"{check.name} on {args.photos}: {check.images} faces, {check.genuine_pairs} genuine pairs (max distance "
            f"{check.max_genuine:.3f}), {check.impostor_pairs} impostor pairs (min distance {check.min_impostor:.3f}), "
            f"accuracy {100 * check.accuracy_at_model_threshold:.1f}% at the model's threshold"
        )
    if args.json:
        report = {"lfw": [asdict(s) for s in scores], "photos": [asdict(c) for c in checks]}
        args.json.write_text(json.dumps(report, indent=2) + "\n")
    return 0


def _has_face_recognition() -> bool:
    try:
        import_face_recognition()
    except (ImportError, SystemExit):  # without its models it prints a hint and calls quit()
        return False
    return True


if __name__ == "__main__":
    sys.exit(main())
