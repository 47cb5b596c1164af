"""Verification metrics on hand-checkable distances."""

from __future__ import annotations

import numpy as np
import pytest

from facesim.training.verification import (
    FAR_TARGETS,
    best_threshold,
    far_threshold,
    image_pair_figures,
    roc_auc,
    roc_curve,
    ten_fold,
    verify,
)


def test_perfectly_separated_pairs():
    distances = np.array([0.1, 0.2, 0.3, 1.0, 1.2, 1.5])
    same = np.array([True, True, True, False, False, False])
    result = verify(distances, same)
    assert result.accuracy == 1.0
    assert result.auc == pytest.approx(1.0)
    assert result.tar_at_zero_false_accepts == 1.0 and result.negative_pairs == 3
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


def test_tar_at_zero_false_accepts_counts_positives_closer_than_the_closest_negative():
    distances = np.array([0.2, 0.5, 0.99, 1.0005, 1.5, *np.linspace(1.0, 2.0, 300)])
    same = np.arange(len(distances)) < 5
    result = verify(distances, same)
    assert result.tar_at_zero_false_accepts == pytest.approx(3 / 5) and result.negative_pairs == 300


ROUNDING = 1e-12


def _brute_force_pairs(embeddings: np.ndarray, people: list[str]) -> tuple[list[float], list[float]]:
    genuine, impostor = [], []
    for i in range(len(people)):
        for j in range(i + 1, len(people)):
            distance = float(np.sum((embeddings[i].astype(np.float64) - embeddings[j]) ** 2))
            (genuine if people[i] == people[j] else impostor).append(distance)
    return genuine, impostor


def test_image_pair_figures_count_every_pair_of_images():
    rng = np.random.default_rng(2)
    people = [f"p{i}" for i in rng.integers(0, 30, 120)]
    centres = {name: rng.normal(size=8) for name in sorted(set(people))}  # sorted: string hashes vary per run
    embeddings = np.array([centres[name] + 0.6 * rng.normal(size=8) for name in people], np.float32)
    embeddings /= np.linalg.norm(embeddings, axis=1, keepdims=True)
    genuine, impostor = _brute_force_pairs(embeddings, people)
    figures = image_pair_figures(embeddings, np.array(people))
    assert (figures.genuine_pairs, figures.impostor_pairs) == (len(genuine), len(impostor))
    assert figures.impostor_pairs > 5000  # 120 images: 7,140 pairs, most of them of different people
    for name, far in FAR_TARGETS.items():
        point = figures.points[name]
        # The reference sums its squares in another order than the Gram matrix: allow that rounding.
        accepted = sum(d <= point.threshold - ROUNDING for d in impostor)
        allowed = int(far * len(impostor))
        next_closest = sorted(impostor)[accepted]  # accepting it too would break the rate
        assert accepted <= allowed < sum(d <= next_closest for d in impostor)
        assert point.far == pytest.approx(accepted / len(impostor))
        assert point.tar == pytest.approx(np.mean([d <= point.threshold for d in genuine]))


def test_far_threshold_is_the_largest_that_keeps_false_accepts_within_the_rate():
    impostor = np.linspace(1.0, 2.0, 2001)  # 2,001 pairs: FAR 1e-3 allows 2 false accepts
    threshold = far_threshold(impostor, 1e-3)
    assert impostor[1] <= threshold < impostor[2]
    assert far_threshold(impostor, 1e-4) < impostor[0]  # none allowed


def test_images_of_one_person_have_no_far_figures():
    figures = image_pair_figures(np.eye(3), np.array(["ann"] * 3))
    assert (figures.genuine_pairs, figures.impostor_pairs) == (3, 0)
    assert all(np.isnan(point.tar) and np.isnan(point.threshold) for point in figures.points.values())


def test_thresholds_from_one_set_of_images_apply_unchanged_to_another():
    rng = np.random.default_rng(3)
    people = np.array([f"p{i}" for i in rng.integers(0, 20, 80)])
    validation = rng.normal(size=(80, 8))
    test = rng.normal(size=(80, 8))
    calibrated = image_pair_figures(validation, people)
    applied = image_pair_figures(test, people, calibrated.thresholds())
    assert applied.thresholds() == calibrated.thresholds()
    genuine, impostor = _brute_force_pairs(test, list(people))
    threshold = calibrated.thresholds()["1e-3"]
    assert applied.points["1e-3"].far == pytest.approx(np.mean(np.array(impostor) <= threshold))
    assert applied.points["1e-3"].tar == pytest.approx(np.mean(np.array(genuine) <= threshold))


def test_best_threshold_at_the_edges_accepts_nothing_or_everything_by_a_hair():
    distances = np.array([0.3, 0.5, 0.9])
    nothing = best_threshold(distances, np.array([False, False, False]))
    assert 0.3 - 1e-5 < nothing < 0.3  # every pair different: accept none, just below the closest
    everything = best_threshold(distances, np.array([True, True, True]))
    assert 0.9 <= everything < 0.9 + 1e-5
    assert best_threshold(np.full(4, 0.4), np.array([True] * 4)) >= 0.4  # one distinct distance
    with pytest.raises(ValueError, match="no pairs to calibrate a threshold on"):
        best_threshold(np.array([]), np.array([], dtype=bool))


def test_far_threshold_of_a_rate_of_one_accepts_every_impostor():
    impostor = np.array([0.7, 0.2, 1.3])
    assert far_threshold(impostor, 1.0) == 1.3
    assert np.isnan(far_threshold(np.array([]), 0.1))


def test_ten_fold_scores_each_fold_at_the_threshold_best_on_the_other_nine():
    rng = np.random.default_rng(7)
    same = rng.random(200) < 0.5
    distances = np.where(same, rng.normal(0.8, 0.3, 200), rng.normal(1.6, 0.3, 200))
    fold_of = np.repeat(np.arange(10), 20)
    results = ten_fold(distances, same, fold_of)
    assert len(results) == 10
    for fold, (accuracy, threshold) in enumerate(results):
        rest, held = fold_of != fold, fold_of == fold
        # Slow and obvious: every candidate threshold on the other nine folds, the first best one.
        candidates = np.sort(distances[rest])
        correct = [np.mean((distances[rest] <= t) == same[rest]) for t in candidates]
        best = candidates[int(np.argmax(correct))]
        assert np.mean((distances[rest] <= threshold) == same[rest]) == max(correct)
        assert accuracy == np.mean((distances[held] <= threshold) == same[held])
        assert abs(threshold - best) < 0.2  # the midpoint beside the best candidate
    assert 0.85 < np.mean([a for a, _ in results]) < 1.0  # the folds differ: not one threshold's accuracy
