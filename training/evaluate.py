"""`facesim evaluate`: re-score an exported model on LFW pairs, with the preprocessing of its model.json.

Pair figures (accuracy, AUC, TAR at zero false accepts) at the model's own threshold; TAR at FAR
1e-3 / 1e-4 over every pair of the fold's images, at thresholds set on the calibration fold's
images (fold 9, the protocol's validation fold, unless told otherwise). `--protocol lfw-10fold`: LFW's
standard View 2 figure, each fold scored at the threshold best on the other nine (published figures
such as dlib's 99.38% are this one). `--runtime` picks what runs the network (storage.model_artifact).
"""

from __future__ import annotations

import sys
from dataclasses import dataclass, replace
from pathlib import Path

import numpy as np

from facesim.contract.metrics import same_person
from facesim.storage.lfw import LfwLayout, Pair, read_pairs
from facesim.storage.model_artifact import ModelCard, Runner, load_model_card, load_runner, preprocess_config
from facesim.training.data import CropReader, crop_source, limit_pairs, pair_set
from facesim.training.loop import print_metric
from facesim.training.verification import Scores, ten_fold

VALIDATION_FOLD = 9
PROTOCOLS = ("pairs", "lfw-10fold")
BATCH = 64


@dataclass
class EvaluateRequest:
    model: Path
    data: Path
    pairs: Path | None = None  # default: DATA/pairs.txt
    fold: int | None = None  # 1-based; None: every fold
    calibration_fold: int | None = None  # whose images set the FAR thresholds (default: VALIDATION_FOLD)
    limit_pairs: int | None = None
    cache_dir: str | None = None
    yunet_path: str | None = None
    prepare_workers: int = 2
    runtime: str = "tensorflow"  # or onnx (model.onnx)
    protocol: str = "pairs"  # or lfw-10fold
    compare_runtimes: bool = False  # also score the pairs on the other runtime, decision by decision


def evaluate_model(request: EvaluateRequest) -> Scores | list[float]:
    card = load_model_card(request.model)
    pairs_file = request.pairs or request.data / "pairs.txt"
    if not pairs_file.is_file():
        raise FileNotFoundError(f"{pairs_file} does not exist: give a pairs file such as LFW's pairs.txt (--pairs)")
    folds = read_pairs(pairs_file)
    if request.protocol == "lfw-10fold":
        return ten_fold_accuracies(request, card, folds)
    calibration_fold = request.calibration_fold or VALIDATION_FOLD
    for option, fold in (("--fold", request.fold), ("--calibration-fold", calibration_fold)):
        if fold is not None and not 1 <= fold <= len(folds):
            raise ValueError(f"{option} {fold} is out of range: {pairs_file} has folds 1..{len(folds)}")
    pairs = folds[request.fold - 1] if request.fold else [pair for fold in folds for pair in fold]
    pairs = limit_pairs(pairs, request.limit_pairs)
    calibration = limit_pairs(folds[calibration_fold - 1], request.limit_pairs)
    if request.fold == calibration_fold:
        print(f"note: fold {request.fold} sets its own FAR thresholds (--calibration-fold)", file=sys.stderr)

    embed = _embedder(request, card)  # first: a model the runtime refuses fails before crops are prepared
    crops = _crop_reader(request, card, pairs + calibration)
    scored = pair_set(crops, pairs)
    embeddings = embed(scored.images)
    if request.fold is None:  # every fold's ~7,700 images: 30 M image pairs would not fit in memory
        print("note: TAR at FAR over all image pairs needs --fold", file=sys.stderr)
        result = scored.score(embeddings, card.threshold, image_pairs=False)
    else:
        calibrating = pair_set(crops, calibration)
        calibration_figures = calibrating.score(embed(calibrating.images)).images
        assert calibration_figures is not None  # scored over its image pairs (the default)
        thresholds = calibration_figures.thresholds()
        result = scored.score(embeddings, card.threshold, thresholds)
    best = scored.score(embeddings, image_pairs=False).pairs
    calibrated = {"calibration_fold": calibration_fold} if result.images else {}
    for name, value in {"pairs": len(pairs), **result.metrics(), **calibrated}.items():
        print_metric(name, value)
    print_metric("best_threshold", best.threshold)
    print_metric("best_accuracy", best.accuracy)
    if request.compare_runtimes:
        _compare_runtimes(request, card, scored, embeddings)
    return result


def _compare_runtimes(request: EvaluateRequest, card: ModelCard, scored, embeddings: np.ndarray) -> None:
    """The same pairs through the other runtime: how many same/different decisions change, and by how much
    the distances move (`facesim evaluate --compare-runtimes`)."""
    other = replace(request, runtime="tensorflow" if request.runtime == "onnx" else "onnx")
    theirs = _embedder(other, card)(scored.images)
    ours_d, theirs_d = scored.distances(embeddings), scored.distances(theirs)
    changed = same_person(ours_d, card.threshold) != same_person(theirs_d, card.threshold)
    print_metric("runtime_decisions_differing", int(np.sum(changed)))
    print_metric("runtime_max_distance_difference", float(np.abs(ours_d - theirs_d).max()))


def ten_fold_accuracies(request: EvaluateRequest, card: ModelCard, folds: list[list[Pair]]) -> list[float]:
    """LFW View 2's figure: each fold's accuracy at the threshold with the best accuracy on the other folds."""
    if request.fold is not None or request.limit_pairs:
        raise ValueError("--protocol lfw-10fold scores every pair of every fold: drop --fold and --limit-pairs")
    pairs = [pair for fold in folds for pair in fold]
    fold_of = np.repeat(np.arange(len(folds)), [len(fold) for fold in folds])
    embed = _embedder(request, card)
    scored = pair_set(_crop_reader(request, card, pairs), pairs)
    embeddings = embed(scored.images)
    distances = scored.distances(embeddings)
    accuracies = []
    for k, (fold_accuracy, threshold) in enumerate(ten_fold(distances, scored.same, fold_of)):
        print_metric(f"fold{k + 1}_accuracy", fold_accuracy)
        print_metric(f"fold{k + 1}_threshold", threshold)
        accuracies.append(fold_accuracy)
    print_metric("pairs", len(pairs))
    print_metric("lfw_10fold_accuracy", float(np.mean(accuracies)))
    print_metric("lfw_10fold_std", float(np.std(accuracies)))
    return accuracies


def _embedder(request: EvaluateRequest, card: ModelCard) -> Runner:
    """The model's network on the chosen runtime, fed in batches."""
    run = load_runner(request.model, card, request.runtime)

    def embed(images: np.ndarray) -> np.ndarray:
        parts = [run(images[i : i + BATCH]) for i in range(0, len(images), BATCH)]
        return np.concatenate(parts) if parts else np.zeros((0, card.embedding_dim), np.float32)

    return embed


def _crop_reader(request: EvaluateRequest, card: ModelCard, pairs: list[Pair]) -> CropReader:
    """The crops of every image in `pairs`, prepared with the model's preprocessing if not yet cached."""
    config = preprocess_config(card, request.yunet_path, request.model)
    identities = sorted({name for pair in pairs for name in (pair.name1, pair.name2)})
    layout = LfwLayout.find(request.data)
    cache_dir, _ = crop_source(layout, config, request.cache_dir, identities, request.prepare_workers)
    return CropReader(cache_dir, card.image_size)
