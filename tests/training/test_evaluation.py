"""Verification metrics on hand-checkable distances."""

from __future__ import annotations

import numpy as np
import pytest

from facesim.training.verification import best_threshold, roc_auc, roc_curve, tar_at_far, verify


def test_perfectly_separated_pairs():
    distances = np.array([0.1, 0.2, 0.3, 1.0, 1.2, 1.5])
    same = np.array([True, True, True, False, False, False])
    result = verify(distances, same)
    assert result.accuracy == 1.0
    assert result.auc == pytest.approx(1.0)
    assert result.tar_at_far == 1.0
    assert 0.3 < result.threshold < 1.0


def test_threshold_is_applied_unchanged_to_other_pairs():
    distances = np.array([0.1, 0.5, 0.9, 1.3])
    same = np.array([True, True, False, False])
    assert verify(distances, same, threshold=0.2).accuracy == 0.75  # 0.5 is rejected: one mistake
    assert verify(distances, same, threshold=0.2).threshold == 0.2


def test_best_threshold_maximises_accuracy():
    rng = np.random.default_rng(0)
    distances = np.concatenate([rng.normal(0.6, 0.3, 200), rng.normal(1.4, 0.3, 200)])
    same = np.arange(400) < 200
    chosen = best_threshold(distances, same)
    accuracy_at = lambda t: np.mean((distances <= t) == same)  # noqa: E731
    grid = np.linspace(distances.min() - 0.1, distances.max() + 0.1, 2001)
    assert accuracy_at(chosen) >= max(accuracy_at(t) for t in grid) - 1e-12


def test_auc_equals_the_probability_a_positive_is_closer_than_a_negative():
    rng = np.random.default_rng(1)
    distances = np.concatenate([rng.normal(0.8, 0.4, 150), rng.normal(1.2, 0.4, 150)])
    same = np.arange(300) < 150
    positives, negatives = distances[same], distances[~same]
    expected = np.mean(positives[:, None] < negatives[None, :])
    assert roc_auc(roc_curve(distances, same)) == pytest.approx(expected, abs=1e-9)


def test_tar_at_far_counts_positives_closer_than_every_allowed_false_accept():
    # 1000 negatives: FAR 1e-3 allows exactly one false accept.
    negatives = np.linspace(1.0, 2.0, 1000)
    positives = np.array([0.2, 0.5, 0.99, 1.0005, 1.5])
    distances = np.concatenate([positives, negatives])
    same = np.arange(len(distances)) < len(positives)
    roc = roc_curve(distances, same)
    # One negative (1.0) may be accepted: so may every positive below the 2nd negative (1.001): 4 of 5.
    assert tar_at_far(roc, 1e-3) == pytest.approx(4 / 5)
    assert tar_at_far(roc, 0.0) == pytest.approx(3 / 5)
