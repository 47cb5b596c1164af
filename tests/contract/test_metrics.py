"""facesim.contract.metrics, each piece against a slow obvious reference (loops in Python floats) or a
hand-checkable case."""

from __future__ import annotations

import math

import numpy as np
import pytest

from facesim.contract import metrics
from tests.helpers.metrics_reference import people, reference_pairs


def test_squared_l2_is_the_sum_of_squared_coordinate_differences() -> None:
    rng = np.random.default_rng(0)
    first, second = rng.normal(size=(5, 7)).astype(np.float32), rng.normal(size=(5, 7)).astype(np.float32)
    expected = [
        sum((float(a) - float(b)) ** 2 for a, b in zip(u, v, strict=True)) for u, v in zip(first, second, strict=True)
    ]
    np.testing.assert_allclose(metrics.squared_l2(first, second), expected, rtol=1e-12)
    assert metrics.squared_l2(first, second).dtype == np.float64  # float32 inputs, float64 sums
    assert metrics.squared_l2(first[0], second[0]) == pytest.approx(expected[0], rel=1e-12)  # two vectors


def test_squared_l2_of_unit_vectors_from_their_inner_product() -> None:
    rng = np.random.default_rng(1)
    vectors = rng.normal(size=(2, 16))
    a, b = vectors / np.linalg.norm(vectors, axis=1, keepdims=True)
    assert metrics.squared_l2_of_similarity(float(a @ b)) == pytest.approx(float(metrics.squared_l2(a, b)), abs=1e-12)
    assert metrics.squared_l2_of_similarity(1.0000001) == 0.0  # rounding past 1 is not a negative distance
    assert metrics.squared_l2_of_similarity(-1.0) == 4.0  # opposite unit vectors


def test_same_person_is_at_or_under_the_threshold() -> None:
    assert metrics.same_person(0.5, 0.5) and metrics.same_person(0.4, 0.5) and not metrics.same_person(0.6, 0.5)
    np.testing.assert_array_equal(metrics.same_person(np.array([0.4, 0.5, 0.6]), 0.5), [True, True, False])


def test_accept_rate_and_accuracy_count_the_decisions() -> None:
    distances = np.array([0.1, 0.5, 0.9, 1.3])
    assert metrics.accept_rate(distances, 0.5) == 0.5
    assert math.isnan(metrics.accept_rate(np.array([]), 0.5)) and math.isnan(
        metrics.accept_rate(distances, float("nan"))
    )
    assert metrics.accuracy(distances, np.array([True, True, False, False]), 0.2) == 0.75  # 0.5 rejected: one mistake


def test_pair_distances_are_every_pair_once() -> None:
    identities, vectors = people(np.random.default_rng(0), [3, 1, 4, 2])
    order = np.random.default_rng(1).permutation(len(identities))  # identities need not be grouped
    identities, vectors = [identities[i] for i in order], vectors[order]
    genuine, impostor = metrics.pair_distances(identities, vectors)
    expected_genuine, expected_impostor = reference_pairs(identities, vectors)
    np.testing.assert_allclose(np.sort(genuine), sorted(expected_genuine), rtol=1e-6)
    np.testing.assert_allclose(np.sort(impostor), sorted(expected_impostor), rtol=1e-6)


def test_pair_distances_beyond_one_chunk_are_all_there() -> None:
    rng = np.random.default_rng(5)
    count = math.isqrt(2 * metrics.PAIR_CHUNK) + 3  # just over one chunk of pairs
    identities = [f"p{k}" for k in rng.integers(0, count // 2, count)]
    vectors = rng.normal(size=(count, 3))
    genuine, impostor = metrics.pair_distances(identities, vectors)
    assert len(genuine) + len(impostor) == count * (count - 1) // 2 > metrics.PAIR_CHUNK
    last = metrics.squared_l2(vectors[count - 2], vectors[count - 1])  # the last pair of the upper triangle
    assert last == (genuine[-1] if identities[-1] == identities[-2] else impostor[-1])


def test_impostor_pairs_beyond_the_cap_are_a_seeded_sample() -> None:
    identities, vectors = people(np.random.default_rng(2), [2, 2, 3, 1, 2])
    expected_genuine, expected_impostor = reference_pairs(identities, vectors)
    genuine, impostor = metrics.pair_distances(
        identities, vectors, 30
    )  # of 39: drawn with replacement, some would repeat
    assert len(genuine) == len(expected_genuine) and len(impostor) == 30  # genuine pairs are never sampled
    drawn = [int(np.argmin(np.abs(np.array(expected_impostor) - d))) for d in impostor]
    assert len(set(drawn)) == 30  # without replacement
    np.testing.assert_allclose(impostor, np.array(expected_impostor)[drawn], rtol=1e-6)
    np.testing.assert_array_equal(metrics.pair_distances(identities, vectors, 30)[1], impostor)  # same seed, same pairs
    assert not np.array_equal(metrics.pair_distances(identities, vectors, 30, seed=1)[1], impostor)


def reference_threshold_at_far(impostor: list[float], target_far: float) -> float:
    """Slow: walk the sorted distances up while accepting one more would still keep within the target."""
    allowed = math.floor(target_far * len(impostor))
    ordered = sorted(impostor)
    first_rejected = next(d for d in ordered if sum(x <= d for x in ordered) > allowed)
    return math.nextafter(first_rejected, -math.inf)


@pytest.mark.parametrize("seed", range(4))
@pytest.mark.parametrize("target_far", [0.003, 0.01, 0.1])
def test_threshold_at_far_against_a_slow_reference(seed: int, target_far: float) -> None:
    impostor = np.random.default_rng(seed).uniform(0.5, 2.0, 400)
    if seed % 2:
        impostor = np.round(impostor, 2)  # ties: every copy of the first rejected distance stays out
    expected = reference_threshold_at_far(list(impostor), target_far)
    assert metrics.threshold_at_far(impostor, target_far) == expected
    genuine = np.array([0.1, 0.2, 0.5])
    midway = metrics.threshold_at_far(impostor, target_far, genuine, midway=True)
    first_rejected = math.nextafter(expected, math.inf)
    below = max([d for d in [*impostor, *genuine] if d < first_rejected], default=0.0)
    assert midway == pytest.approx((below + first_rejected) / 2, abs=1e-15)
    assert np.sum(impostor <= midway) == np.sum(impostor <= expected)  # the same pairs accepted


def test_threshold_at_far_is_the_largest_that_keeps_false_accepts_within_the_rate():
    impostor = np.linspace(1.0, 2.0, 2001)  # 2,001 pairs: FAR 1e-3 allows 2 false accepts
    threshold = metrics.threshold_at_far(impostor, 1e-3)
    assert impostor[1] <= threshold < impostor[2]
    assert metrics.threshold_at_far(impostor, 1e-4) < impostor[0]  # none allowed


def test_threshold_at_far_of_a_rate_of_one_accepts_every_impostor():
    impostor = np.array([0.7, 0.2, 1.3])
    assert metrics.threshold_at_far(impostor, 1.0) == 1.3
    assert np.isnan(metrics.threshold_at_far(np.array([]), 0.1))


def test_best_threshold_maximises_accuracy():
    rng = np.random.default_rng(0)
    distances = np.concatenate([rng.normal(0.6, 0.3, 200), rng.normal(1.4, 0.3, 200)])
    same = np.arange(400) < 200
    chosen = metrics.best_threshold(distances, same)
    accuracy_at = lambda t: np.mean((distances <= t) == same)  # noqa: E731
    grid = np.linspace(distances.min() - 0.1, distances.max() + 0.1, 2001)
    assert accuracy_at(chosen) >= max(accuracy_at(t) for t in grid) - 1e-12


def test_best_threshold_at_the_edges_accepts_nothing_or_everything_by_a_hair():
    distances = np.array([0.3, 0.5, 0.9])
    nothing = metrics.best_threshold(distances, np.array([False, False, False]))
    assert 0.3 - 1e-5 < nothing < 0.3  # every pair different: accept none, just below the closest
    everything = metrics.best_threshold(distances, np.array([True, True, True]))
    assert 0.9 <= everything < 0.9 + 1e-5
    assert metrics.best_threshold(np.full(4, 0.4), np.array([True] * 4)) >= 0.4  # one distinct distance
    with pytest.raises(ValueError, match="no pairs to calibrate a threshold on"):
        metrics.best_threshold(np.array([]), np.array([], dtype=bool))


def test_roc_curve_against_counting_at_each_threshold() -> None:
    rng = np.random.default_rng(3)
    distances = np.round(rng.uniform(0, 2, 60), 1)  # ties
    same = rng.random(60) < 0.4
    roc = metrics.roc_curve(distances, same)
    assert roc.thresholds[0] == -np.inf and list(roc.thresholds[1:]) == sorted(set(distances))
    for t, tar, far in zip(roc.thresholds, roc.true_accept, roc.false_accept, strict=True):
        assert tar == sum(d <= t for d, s in zip(distances, same, strict=True) if s) / same.sum()
        assert far == sum(d <= t for d, s in zip(distances, same, strict=True) if not s) / (~same).sum()


def test_auc_equals_the_probability_a_positive_is_closer_than_a_negative():
    rng = np.random.default_rng(1)
    distances = np.concatenate([rng.normal(0.8, 0.4, 150), rng.normal(1.2, 0.4, 150)])
    same = np.arange(300) < 150
    positives, negatives = distances[same], distances[~same]
    expected = np.mean(positives[:, None] < negatives[None, :])
    assert metrics.roc_auc(metrics.roc_curve(distances, same)) == pytest.approx(expected, abs=1e-9)


def test_tar_at_zero_false_accepts_is_the_share_of_positives_under_the_closest_negative() -> None:
    distances = np.array([0.2, 0.5, 0.99, 1.0005, 1.5, 1.0, 1.7])
    same = np.array([True] * 5 + [False] * 2)
    assert metrics.tar_at_zero_false_accepts(metrics.roc_curve(distances, same)) == pytest.approx(3 / 5)
