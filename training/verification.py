"""LFW-style verification metrics on squared L2 distances (docs/protocol.md).

A pair is called "same person" when its distance is at most the threshold. The threshold is
calibrated (best accuracy) on validation pairs and then applied unchanged to test pairs.
"""

from __future__ import annotations

from dataclasses import dataclass

import numpy as np

from facesim.contract.api import same_person


@dataclass(frozen=True)
class Roc:
    false_accept: np.ndarray  # FAR (false positive rate) per threshold, increasing
    true_accept: np.ndarray  # TAR (true positive rate) per threshold
    thresholds: np.ndarray


@dataclass(frozen=True)
class Verification:
    accuracy: float
    auc: float
    tar_at_far: float  # TAR at FAR <= 1e-3
    threshold: float
    roc: Roc

    def metrics(self, prefix: str) -> dict[str, float]:
        """The metric lines' names and values, e.g. val_accuracy, val_tar_at_far_1e-3."""
        return {
            f"{prefix}_accuracy": self.accuracy,
            f"{prefix}_auc": self.auc,
            f"{prefix}_tar_at_far_1e-3": self.tar_at_far,
            f"{prefix}_threshold": self.threshold,
        }


def squared_distances(first: np.ndarray, second: np.ndarray) -> np.ndarray:
    return np.sum((first.astype(np.float64) - second.astype(np.float64)) ** 2, axis=1)


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


def tar_at_far(roc: Roc, far: float = 1e-3) -> float:
    allowed = roc.false_accept <= far
    return float(roc.true_accept[allowed].max()) if allowed.any() else 0.0


def best_threshold(distances: np.ndarray, same: np.ndarray) -> float:
    """The threshold with the best accuracy: the midpoint between two neighbouring distances."""
    candidates = np.unique(distances)
    if len(candidates) == 0:
        raise ValueError("no pairs to calibrate a threshold on")
    midpoints = np.concatenate(
        [[candidates[0] - 1e-6], (candidates[1:] + candidates[:-1]) / 2, [candidates[-1] + 1e-6]]
    )
    correct = same_person(distances[None, :], midpoints[:, None]) == np.asarray(same, dtype=bool)[None, :]
    return float(midpoints[int(np.argmax(correct.mean(axis=1)))])


def accuracy(distances: np.ndarray, same: np.ndarray, threshold: float) -> float:
    return float(np.mean(same_person(distances, threshold) == np.asarray(same, dtype=bool)))


def verify(distances: np.ndarray, same: np.ndarray, threshold: float | None = None) -> Verification:
    """Metrics at `threshold`, or at the best threshold for these pairs when it is None (calibration)."""
    chosen = best_threshold(distances, same) if threshold is None else threshold
    roc = roc_curve(distances, same)
    return Verification(accuracy(distances, same, chosen), roc_auc(roc), tar_at_far(roc), chosen, roc)
