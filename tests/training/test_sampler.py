"""P x K batches: structure, singletons only as negatives, reproducibility, worker shares."""

from __future__ import annotations

import numpy as np
import pytest

from facesim.training.sampler import PKSampler


def _labels(counts: list[int]) -> np.ndarray:
    return np.repeat(np.arange(len(counts)), counts).astype(np.int32)


def test_batches_hold_p_identities_of_k_images():
    sampler = PKSampler(_labels([5, 6, 4, 7, 3, 8]), identities_per_batch=4, images_per_identity=3, seed=1)
    for step in range(20):
        batch = sampler.batch(step)
        assert len(batch.indices) == 12
        groups = batch.labels.reshape(4, 3)
        assert (groups == groups[:, :1]).all(), "each group of K rows is one identity"
        assert len(set(groups[:, 0])) == 4, "P distinct identities"
        assert len(set(batch.indices.tolist())) == 12, "no image twice when every identity has K+ images"
        np.testing.assert_array_equal(sampler.labels[batch.indices], batch.labels)


def test_singletons_only_serve_as_negatives():
    counts = [4] * 6 + [1] * 30  # 30 people with one image: 55% of the images
    sampler = PKSampler(_labels(counts), identities_per_batch=6, images_per_identity=2, seed=0)
    singleton_labels = set(range(6, 36))
    seen_singletons = 0
    for step in range(30):
        batch = sampler.batch(step)
        labels, counts_in_batch = np.unique(batch.labels, return_counts=True)
        for label, count in zip(labels, counts_in_batch, strict=True):
            if label in singleton_labels:
                assert count == 1, "a single-image person cannot have a positive"
                seen_singletons += 1
        anchors = [label for label, count in zip(labels, counts_in_batch, strict=True) if count >= 2]
        assert len(anchors) >= 2
    assert seen_singletons > 0, "single-image people are used as negatives"


def test_identities_with_fewer_than_k_images_repeat_images():
    sampler = PKSampler(_labels([2, 2, 2]), identities_per_batch=2, images_per_identity=4, seed=0)
    batch = sampler.batch(0)
    assert len(batch.indices) == 8
    for group in batch.indices.reshape(2, 4):
        assert len(set(group.tolist())) == 2, "both images, then repeats"


def test_a_batch_depends_only_on_seed_and_step():
    labels = _labels([5] * 20)
    first = PKSampler(labels, 4, 2, seed=3)
    again = PKSampler(labels, 4, 2, seed=3)
    other = PKSampler(labels, 4, 2, seed=4)
    np.testing.assert_array_equal(first.batch(7).indices, again.batch(7).indices)
    assert not np.array_equal(first.batch(7).indices, first.batch(8).indices)
    assert not np.array_equal(first.batch(7).indices, other.batch(7).indices)


def test_worker_shares_partition_the_global_batch():
    batch = PKSampler(_labels([5] * 20), 4, 4, seed=0).batch(0)
    shares = [batch.share(worker, 2) for worker in range(2)]
    np.testing.assert_array_equal(np.concatenate([s.indices for s in shares]), batch.indices)
    np.testing.assert_array_equal(np.concatenate([s.labels for s in shares]), batch.labels)


def test_planned_indices_cover_every_batch():
    sampler = PKSampler(_labels([3] * 50), 4, 2, seed=0)
    planned = set(sampler.planned_indices(0, 10).tolist())
    assert all(set(sampler.batch(step).indices.tolist()) <= planned for step in range(10))
    assert len(planned) < 150, "only what the steps read"


def test_too_few_identities_is_a_clear_error():
    with pytest.raises(ValueError, match="at least 2 identities"):
        PKSampler(_labels([5, 1, 1]), 2, 2)
