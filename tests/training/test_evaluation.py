"""The protocol's verification figures (training.verification) on hand-checkable distances; the metrics they
are built from: tests/contract/test_metrics.py."""

from __future__ import annotations

import numpy as np
import pytest

from facesim.training.verification import FAR_TARGETS, image_pair_figures, ten_fold, verify


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
