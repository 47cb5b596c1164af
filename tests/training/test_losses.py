"""Each mining loss against its slow NumPy reference, on random batches."""

from __future__ import annotations

import os

os.environ.setdefault("TF_CPP_MIN_LOG_LEVEL", "2")

import numpy as np
import pytest
import tensorflow as tf

from facesim.training.losses import (
    batch_hard_triplet_loss,
    distillation_loss,
    pairwise_squared_distances,
    semi_hard_triplet_loss,
)
from tests.helpers.triplet_reference import batch_hard_reference, semi_hard_reference


def _random_batch(rng: np.random.Generator, identities: int, per_identity: int, dim: int, spread: float):
    """Clustered unit embeddings: spread sets how often negatives are semi-hard or harder."""
    centres = rng.normal(size=(identities, dim))
    labels = np.repeat(np.arange(identities), per_identity)
    points = centres[labels] + spread * rng.normal(size=(len(labels), dim))
    points /= np.linalg.norm(points, axis=1, keepdims=True)
    order = rng.permutation(len(labels))
    return labels[order].astype(np.int32), points[order].astype(np.float32)


CASES = [
    (seed, ids, k, spread)
    for seed, (ids, k, spread) in enumerate(
        [(2, 2, 0.1), (4, 3, 0.5), (5, 4, 1.0), (8, 2, 2.0), (3, 5, 0.8), (6, 3, 0.3)]
    )
]


@pytest.mark.parametrize("margin", [0.2, 0.5, 1.5])
@pytest.mark.parametrize("seed,identities,per_identity,spread", CASES)
def test_semi_hard_matches_reference(seed, identities, per_identity, spread, margin):
    labels, points = _random_batch(np.random.default_rng(seed), identities, per_identity, 16, spread)
    got = float(semi_hard_triplet_loss(tf.constant(labels), tf.constant(points), margin))
    assert got == pytest.approx(semi_hard_reference(labels, points, margin), abs=1e-5)


@pytest.mark.parametrize("margin", [0.2, 0.5, 1.5])
@pytest.mark.parametrize("seed,identities,per_identity,spread", CASES)
def test_batch_hard_matches_reference(seed, identities, per_identity, spread, margin):
    labels, points = _random_batch(np.random.default_rng(seed), identities, per_identity, 16, spread)
    got = float(batch_hard_triplet_loss(tf.constant(labels), tf.constant(points), margin))
    assert got == pytest.approx(batch_hard_reference(labels, points, margin), abs=1e-5)


def test_singletons_serve_only_as_negatives():
    rng = np.random.default_rng(7)
    labels = np.array([0, 0, 1, 2, 3], dtype=np.int32)  # identities 1-3 have one image each
    points = rng.normal(size=(5, 8)).astype(np.float32)
    points /= np.linalg.norm(points, axis=1, keepdims=True)
    points[1] = -points[0]  # the only positive pair is as far apart as can be: the loss is positive
    for loss, reference in (
        (semi_hard_triplet_loss, semi_hard_reference),
        (batch_hard_triplet_loss, batch_hard_reference),
    ):
        got = float(loss(tf.constant(labels), tf.constant(points), 0.3))
        assert got == pytest.approx(reference(labels, points, 0.3), abs=1e-5)
        assert got > 0


def test_separated_clusters_have_zero_loss():
    labels = np.array([0, 0, 1, 1], dtype=np.int32)
    points = np.array([[1, 0], [1, 0], [0, 1], [0, 1]], dtype=np.float32)  # d_an = 2 > 0 + margin
    assert float(semi_hard_triplet_loss(tf.constant(labels), tf.constant(points), 0.5)) == 0.0
    assert float(batch_hard_triplet_loss(tf.constant(labels), tf.constant(points), 0.5)) == 0.0


def test_pairwise_distances_match_direct_computation():
    points = np.random.default_rng(3).normal(size=(6, 5)).astype(np.float32)
    expected = ((points[:, None, :] - points[None, :, :]) ** 2).sum(-1)
    np.testing.assert_allclose(pairwise_squared_distances(tf.constant(points)).numpy(), expected, atol=1e-5)


def test_distillation_is_the_global_batch_mean_of_squared_distances_to_the_teacher():
    rng = np.random.default_rng(3)
    student, teacher = rng.normal(size=(6, 4)).astype(np.float32), rng.normal(size=(6, 4)).astype(np.float32)
    slow = sum(float(np.dot(s - t, s - t)) for s, t in zip(student, teacher, strict=True)) / 12
    assert float(distillation_loss(tf.constant(student), tf.constant(teacher), 12)) == pytest.approx(slow, rel=1e-5)
    assert float(distillation_loss(tf.constant(teacher), tf.constant(teacher), 12)) == 0.0


def test_distillation_moves_only_the_student():
    student, teacher = tf.Variable([[1.0, 0.0]]), tf.Variable([[0.0, 1.0]])
    with tf.GradientTape() as tape:
        loss = distillation_loss(student, teacher, 1)
    to_student, to_teacher = tape.gradient(loss, [student, teacher])
    assert np.allclose(to_student.numpy(), [[2.0, -2.0]]) and to_teacher is None
