"""`facesim evaluate`: re-score an exported model on LFW pairs, with the preprocessing of its model.json."""

from __future__ import annotations

from dataclasses import dataclass, replace
from pathlib import Path

from facesim.faces.preprocess import PreprocessConfig
from facesim.storage.lfw import LfwLayout, read_pairs
from facesim.storage.model_card import load_model_card
from facesim.training.data import CropReader, crop_source, limit_pairs, pair_set
from facesim.training.export import EmbeddingModel
from facesim.training.loop import print_metric
from facesim.training.verification import Verification, squared_distances, verify


@dataclass
class EvaluateRequest:
    model: Path
    data: Path
    pairs: Path | None = None  # None: the data root's pairs.txt
    fold: int | None = None  # 1-based; None: every fold
    limit_pairs: int | None = None
    cache_dir: str | None = None
    yunet_path: str | None = None
    prepare_workers: int = 2


def evaluate_model(request: EvaluateRequest) -> Verification:
    card = load_model_card(request.model)
    if request.pairs is None:
        request = replace(request, pairs=LfwLayout.find(request.data).protocol_file("pairs.txt"))
    if not request.pairs.is_file():
        raise FileNotFoundError(f"{request.pairs} does not exist: give a pairs file such as LFW's pairs.txt")
    folds = read_pairs(request.pairs)
    if request.fold is not None and not 1 <= request.fold <= len(folds):
        raise ValueError(f"--fold {request.fold} is out of range: {request.pairs} has folds 1..{len(folds)}")
    pairs = folds[request.fold - 1] if request.fold else [pair for fold in folds for pair in fold]
    pairs = limit_pairs(pairs, request.limit_pairs)

    preprocessing = PreprocessConfig.from_dict({**card.preprocessing, "image_size": card.image_size})
    if request.yunet_path:
        preprocessing = replace(preprocessing, detector="yunet", yunet_path=request.yunet_path)
    elif preprocessing.yunet_path and not Path(preprocessing.yunet_path).is_file():
        preprocessing = replace(preprocessing, yunet_path=None)  # trained elsewhere: find the weights here
    identities = sorted({name for pair in pairs for name in (pair.name1, pair.name2)})
    cache_dir, _ = crop_source(
        LfwLayout.find(request.data), preprocessing, request.cache_dir, identities, request.prepare_workers
    )
    scored = pair_set(CropReader(cache_dir, card.image_size), pairs)
    model = EmbeddingModel(request.model)
    if model.image_size != card.image_size:
        raise ValueError(
            f"{request.model}: the SavedModel takes {model.image_size} px but model.json says {card.image_size}"
        )
    embeddings = model.embed(scored.images)
    distances = squared_distances(embeddings[scored.first], embeddings[scored.second])
    result = verify(distances, scored.same, threshold=card.threshold)
    best = verify(distances, scored.same)
    for name, value in {
        "pairs": len(pairs),
        "accuracy": result.accuracy,
        "auc": result.auc,
        "tar_at_far_1e-3": result.tar_at_far,
        "threshold": result.threshold,
        "best_threshold": best.threshold,
        "best_accuracy": best.accuracy,
    }.items():
        print_metric(name, value)
    return result
