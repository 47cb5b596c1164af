"""Augmentation: same shape and pixel range, reproducible from its seed, and it changes pictures."""

from __future__ import annotations

import os

os.environ.setdefault("TF_CPP_MIN_LOG_LEVEL", "2")

import numpy as np
import tensorflow as tf

from facesim.training.augment import augment_batch


def test_augmentation_is_seeded_bounded_and_varied():
    images = tf.constant(np.random.default_rng(0).uniform(0, 255, (16, 32, 32, 3)), tf.float32)
    first = augment_batch(images, tf.constant([1, 2])).numpy()
    again = augment_batch(images, tf.constant([1, 2])).numpy()
    other = augment_batch(images, tf.constant([1, 3])).numpy()
    assert first.shape == (16, 32, 32, 3) and first.dtype == np.float32
    assert first.min() >= 0.0 and first.max() <= 255.0
    np.testing.assert_array_equal(first, again)
    assert not np.allclose(first, other)
    assert all(not np.allclose(a, b) for a, b in zip(first, images.numpy(), strict=True))


def test_flip_happens_to_about_half_the_batch():
    # Left-right symmetric content is untouched by flips; an asymmetric ramp shows them.
    ramp = np.tile(np.linspace(0, 255, 64, dtype=np.float32)[None, :, None], (64, 1, 3))
    out = augment_batch(tf.constant(np.stack([ramp] * 64)), tf.constant([5, 6])).numpy()
    rising = [float(np.mean(img[:, 40:, :]) > np.mean(img[:, :24, :])) for img in out]
    assert 0.2 < np.mean(rising) < 0.8
