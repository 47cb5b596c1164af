"""LFW-style verification figures (docs/protocol.md), built from the metrics of facesim.contract.metrics.

Two kinds of figure:
- On the protocol's listed pairs (`verify`): a pair is "same person" when its distance is at most
  the threshold, calibrated (best accuracy) on validation pairs and applied unchanged to test
  pairs; accuracy and ROC AUC. One LFW fold lists only 300 different-person pairs, so the lowest
  false-accept rate it can show above zero is 1/300: its strictest figure is the TAR at zero false
  accepts, named so with the count of negatives it rests on.
- Over every pair of a fold's images (`image_pair_figures`): ~300,000 different-person pairs per
  LFW fold, enough to resolve TAR at FAR 1e-3 and 1e-4. The thresholds are set on the validation
  fold's images and applied unchanged to the test fold's.
"""

from __future__ import annotations

from collections.abc import Mapping, Sequence
from dataclasses import dataclass

import numpy as np

from facesim.contract.metrics import (
    Roc,
    accept_rate,
    accuracy,
    best_threshold,
    pair_distances,
    roc_auc,
    roc_curve,
    squared_l2,
    tar_at_zero_false_accepts,
    threshold_at_far,
)

# FAR targets of the all-image figures, keyed by their spelling in metric names.
FAR_TARGETS = {"1e-3": 1e-3, "1e-4": 1e-4}
ImageKey = tuple[str, int]  # an LFW image: (identity, number)


@dataclass(frozen=True)
class Verification:
    """Figures on listed pairs."""

    accuracy: float
    auc: float
    tar_at_zero_false_accepts: float  # TAR at the strictest threshold that accepts no negative pair
    negative_pairs: int
    threshold: float
    roc: Roc

    def metrics(self, prefix: str = "") -> dict[str, float]:
        """The metric lines' names and values, e.g. val_accuracy, val_auc (no prefix: accuracy, auc)."""
        values = {
            "accuracy": self.accuracy,
            "auc": self.auc,
            "tar_at_zero_false_accepts": self.tar_at_zero_false_accepts,
            "negative_pairs": self.negative_pairs,
            "threshold": self.threshold,
        }
        return _prefixed(prefix, values)


@dataclass(frozen=True)
class FarPoint:
    threshold: float  # accept at squared distance <= threshold
    tar: float
    far: float  # the false-accept rate these images actually get at the threshold


@dataclass(frozen=True)
class ImagePairFigures:
    """TAR at fixed FARs over every pair of a set of images."""

    genuine_pairs: int
    impostor_pairs: int
    points: dict[str, FarPoint]  # FAR_TARGETS key -> figures

    def metrics(self, prefix: str = "") -> dict[str, float]:
        """e.g. test_impostor_pairs, test_tar_at_far_1e-3, test_far_achieved_1e-3, test_threshold_far_1e-3."""
        values: dict[str, float] = {"impostor_pairs": self.impostor_pairs, "genuine_pairs": self.genuine_pairs}
        for name, point in self.points.items():
            values |= {f"tar_at_far_{name}": point.tar, f"far_achieved_{name}": point.far}
            values[f"threshold_far_{name}"] = point.threshold
        return _prefixed(prefix, values)

    def thresholds(self) -> dict[str, float]:
        return {name: point.threshold for name, point in self.points.items()}


@dataclass(frozen=True)
class Scores:
    """One fold's figures: on its listed pairs, and over every pair of its images."""

    pairs: Verification
    images: ImagePairFigures | None  # None: not computed

    @property
    def threshold(self) -> float:
        """The same-person threshold of the pair figures (what model.json records)."""
        return self.pairs.threshold

    def metrics(self, prefix: str = "") -> dict[str, float]:
        return {**self.pairs.metrics(prefix), **(self.images.metrics(prefix) if self.images else {})}


def _prefixed(prefix: str, values: dict[str, float]) -> dict[str, float]:
    return {f"{prefix}_{name}" if prefix else name: value for name, value in values.items()}


def ten_fold(distances: np.ndarray, same: np.ndarray, fold_of: np.ndarray) -> list[tuple[float, float]]:
    """LFW View 2's standard figure: for each fold, (accuracy, threshold) at the threshold with the best
    accuracy on the other folds' pairs."""
    same = np.asarray(same, dtype=bool)
    results = []
    for fold in np.unique(fold_of):
        held_out = fold_of == fold
        threshold = best_threshold(distances[~held_out], same[~held_out])
        results.append((accuracy(distances[held_out], same[held_out], threshold), threshold))
    return results


def verify(distances: np.ndarray, same: np.ndarray, threshold: float | None = None) -> Verification:
    """Metrics at `threshold`, or at the best threshold for these pairs when it is None (calibration)."""
    same = np.asarray(same, dtype=bool)
    chosen = best_threshold(distances, same) if threshold is None else threshold
    roc = roc_curve(distances, same)
    return Verification(
        accuracy(distances, same, chosen), roc_auc(roc), tar_at_zero_false_accepts(roc), int((~same).sum()), chosen, roc
    )


def image_pair_figures(
    embeddings: np.ndarray, identities: np.ndarray, thresholds: dict[str, float] | None = None
) -> ImagePairFigures:
    """TAR and FAR over every pair of these images at each FAR target's threshold: the given ones
    (from the validation fold), or set on these images when None."""
    genuine, impostor = pair_distances(identities, embeddings)
    if thresholds is None:
        thresholds = {name: threshold_at_far(impostor, far) for name, far in FAR_TARGETS.items()}
    points = {name: FarPoint(t, accept_rate(genuine, t), accept_rate(impostor, t)) for name, t in thresholds.items()}
    return ImagePairFigures(len(genuine), len(impostor), points)


@dataclass(frozen=True)
class ProtocolFigures:
    """A model's figures by the protocol (docs/protocol.md): threshold set on fold 9, applied to fold 10."""

    validation: Verification  # fold 9's listed pairs; its threshold is the model's
    validation_images: ImagePairFigures  # every pair of fold-9 images: where the FAR thresholds are set
    test: Verification  # fold 10's listed pairs at fold 9's threshold
    test_images: ImagePairFigures  # every pair of fold-10 images, at thresholds set on them
    test_images_at_validation: ImagePairFigures  # the same pairs at thresholds set on fold 9's images
    test_pairs: int

    @property
    def correct_test_pairs(self) -> int:
        """Fold 10's listed pairs decided right: accuracy as a count, what "within one pair" compares."""
        return round(self.test.accuracy * self.test_pairs)

    @property
    def tar_at_far_1e3(self) -> float:
        """TAR at FAR 1e-3 over every pair of fold-10 images: the figure that resolves FAR 1e-3."""
        return self.test_images.points["1e-3"].tar


def pair_keys(pairs: Sequence) -> list[ImageKey]:
    """The images of these LFW pairs (storage.lfw.Pair), each once, sorted."""
    return sorted({key for p in pairs for key in ((p.name1, p.n1), (p.name2, p.n2))})


def listed_pair_distances(embeddings: Mapping[ImageKey, np.ndarray], pairs: Sequence) -> tuple[np.ndarray, np.ndarray]:
    """Each listed pair's squared distance, and whether it is one person."""
    first = np.stack([embeddings[(p.name1, p.n1)] for p in pairs])
    second = np.stack([embeddings[(p.name2, p.n2)] for p in pairs])
    return np.asarray(squared_l2(first, second)), np.array([p.same for p in pairs])


def protocol_figures(
    embeddings: Mapping[ImageKey, np.ndarray], validation: Sequence, test: Sequence
) -> ProtocolFigures:
    """`embeddings` of every image of the fold-9 (`validation`) and fold-10 (`test`) pairs."""

    def images(pairs: Sequence) -> tuple[np.ndarray, np.ndarray]:
        keys = pair_keys(pairs)
        return np.stack([embeddings[k] for k in keys]), np.array([k[0] for k in keys])

    fold9 = verify(*listed_pair_distances(embeddings, validation))
    fold9_images = image_pair_figures(*images(validation))
    set_on_fold9 = fold9_images.thresholds()
    return ProtocolFigures(
        fold9,
        fold9_images,
        verify(*listed_pair_distances(embeddings, test), threshold=fold9.threshold),
        image_pair_figures(*images(test)),
        image_pair_figures(*images(test), set_on_fold9),
        len(test),
    )
