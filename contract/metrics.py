"""Face-verification metrics, each defined once (NumPy only): the squared L2 distance of unit vectors, the
same-person rule, the distances of every pair of a set of embeddings, the threshold at a false-accept rate,
and what is measured at a threshold (accept rates, accuracy, the ROC curve).

Training and `facesim evaluate` (training.verification), the gallery's calibration and search, the
predictor and `facesim bench accuracy` all use these; tests/contract/test_metrics.py checks each against a
slow obvious reference, and tests/test_one_definition.py that no other module defines its own.
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import Any, TypeAlias

import numpy as np

Distance: TypeAlias = Any  # float, or a numpy array of them
Decision: TypeAlias = Any  # bool, or a numpy array of them

# Pairs whose differences are held in memory at once by `pair_distances` (128-d float64: 64 MB).
PAIR_CHUNK = 1 << 16


def squared_l2(first: np.ndarray, second: np.ndarray) -> np.ndarray | float:
    """Squared Euclidean distance along the last axis, in float64 (rows of two (N, D) arrays, or two vectors)."""
    difference = np.asarray(first, dtype=np.float64) - np.asarray(second, dtype=np.float64)
    return np.sum(difference**2, axis=-1)


def squared_l2_of_similarity(similarity: float) -> float:
    """The squared L2 distance of two unit vectors from their inner product: |a - b|^2 = 2 - 2 a.b, never
    below 0 (float rounding can push a.b of a vector with itself past 1)."""
    return max(0.0, 2.0 - 2.0 * float(similarity))


def same_person(distance: Distance, threshold: Distance) -> Decision:
    """The one decision rule: a squared-L2 distance at or under the threshold is the same person.
    Evaluation calibrates with it and serving decides with it; numpy arrays work elementwise."""
    return distance <= threshold


def pair_distances(
    identities: Any, vectors: np.ndarray, max_impostor_pairs: int | None = None, seed: int = 0
) -> tuple[np.ndarray, np.ndarray]:
    """(genuine, impostor) squared distances of every pair of distinct rows: genuine when both rows have the
    same identity. With `max_impostor_pairs`, more impostor pairs than that are a random sample (seeded,
    without replacement); genuine pairs are never sampled."""
    labels = np.unique(np.asarray(identities), return_inverse=True)[1].ravel()
    first, second = np.triu_indices(len(labels), k=1)
    same = labels[first] == labels[second]
    impostor_first, impostor_second = first[~same], second[~same]
    if max_impostor_pairs is not None and len(impostor_first) > max_impostor_pairs:
        chosen = np.random.default_rng(seed).choice(len(impostor_first), max_impostor_pairs, replace=False)
        impostor_first, impostor_second = impostor_first[chosen], impostor_second[chosen]
    genuine = _row_pair_distances(vectors, first[same], second[same])
    return genuine, _row_pair_distances(vectors, impostor_first, impostor_second)


def _row_pair_distances(vectors: np.ndarray, first: np.ndarray, second: np.ndarray) -> np.ndarray:
    parts = [
        squared_l2(vectors[first[start : start + PAIR_CHUNK]], vectors[second[start : start + PAIR_CHUNK]])
        for start in range(0, len(first), PAIR_CHUNK)
    ]
    return np.concatenate(parts) if parts else np.zeros(0, np.float64)


def accept_rate(distances: np.ndarray, threshold: float) -> float:
    """The share of these pairs judged the same person (TAR of genuine pairs, FAR of impostor pairs);
    nan when there are no pairs or no threshold."""
    if len(distances) == 0 or np.isnan(threshold):
        return float("nan")
    return float(np.mean(same_person(distances, threshold)))


def threshold_at_far(
    impostor: np.ndarray, target_far: float, genuine: np.ndarray | None = None, *, midway: bool = False
) -> float:
    """The largest threshold that accepts at most `target_far` of the impostor distances (nan: none).

    It sits in the gap under `limit`, the closest impostor distance that would be one false accept too
    many (ties with it stay out). `midway=False` (evaluation): the largest float under `limit`.
    `midway=True` (a gallery's calibration): halfway between `limit` and the largest distance, impostor or
    `genuine`, under it (0 when none): the same pairs accepted, with room for float32 rounding when serving.
    """
    impostor = np.asarray(impostor, dtype=np.float64)
    if len(impostor) == 0:
        return float("nan")
    allowed = int(np.floor(target_far * len(impostor)))  # false accepts within the target
    if allowed >= len(impostor):
        return float(np.max(impostor))
    limit = np.partition(impostor, allowed)[allowed]
    if not midway:
        return float(np.nextafter(limit, -np.inf))
    others = np.asarray(genuine if genuine is not None else [], dtype=np.float64)
    below = np.concatenate([impostor[impostor < limit], others[others < limit], [0.0]]).max()
    return float((below + limit) / 2)


def accuracy(distances: np.ndarray, same: np.ndarray, threshold: float) -> float:
    """The share of pairs the rule decides right at `threshold`."""
    return float(np.mean(same_person(distances, threshold) == np.asarray(same, dtype=bool)))


def best_threshold(distances: np.ndarray, same: np.ndarray) -> float:
    """The threshold with the best accuracy: the midpoint between two neighbouring distances (the first
    such, from below, on ties)."""
    candidates = np.unique(distances)
    if len(candidates) == 0:
        raise ValueError("no pairs to calibrate a threshold on")
    midpoints = np.concatenate(
        [[candidates[0] - 1e-6], (candidates[1:] + candidates[:-1]) / 2, [candidates[-1] + 1e-6]]
    )
    correct = same_person(distances[None, :], midpoints[:, None]) == np.asarray(same, dtype=bool)[None, :]
    return float(midpoints[int(np.argmax(correct.mean(axis=1)))])


@dataclass(frozen=True)
class Roc:
    false_accept: np.ndarray  # FAR (false positive rate) per threshold, increasing
    true_accept: np.ndarray  # TAR (true positive rate) per threshold
    thresholds: np.ndarray


def roc_curve(distances: np.ndarray, same: np.ndarray) -> Roc:
    """Accept at d <= t for every distinct t (plus "accept nothing")."""
    same = np.asarray(same, dtype=bool)
    thresholds = np.concatenate([[-np.inf], np.unique(distances)])
    accepted = same_person(distances[None, :], thresholds[:, None])
    positives, negatives = max(same.sum(), 1), max((~same).sum(), 1)
    true_accept = (accepted & same).sum(axis=1) / positives
    false_accept = (accepted & ~same).sum(axis=1) / negatives
    return Roc(false_accept, true_accept, thresholds)


def roc_auc(roc: Roc) -> float:
    return float(np.trapezoid(roc.true_accept, roc.false_accept))


def tar_at_zero_false_accepts(roc: Roc) -> float:
    """TAR at the strictest threshold: the largest that accepts no negative pair."""
    return float(roc.true_accept[roc.false_accept == 0].max())  # "accept nothing" is always there
