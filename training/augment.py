"""Training augmentation on float RGB pixels in [0, 255]: flip, crop jitter, colour."""

from __future__ import annotations

import tensorflow as tf


def augment_batch(images: tf.Tensor, seed: tf.Tensor) -> tf.Tensor:
    """images [B, S, S, 3] float32 in [0, 255]; seed: int32 [2] (stateless, so resumes repeat it)."""
    size = tf.shape(images)[1]
    batch = tf.shape(images)[0]
    seeds = tf.random.experimental.stateless_split(seed, 5)
    images = tf.where(
        tf.random.stateless_uniform([batch, 1, 1, 1], seeds[0]) < 0.5, tf.image.flip_left_right(images), images
    )
    # Crop jitter: pad by 1/16 of the side (edge pixels) and cut a random S x S window.
    pad = tf.maximum(size // 16, 1)
    padded = tf.pad(images, [[0, 0], [pad, pad], [pad, pad], [0, 0]], mode="SYMMETRIC")
    offsets = tf.random.stateless_uniform([batch, 2], seeds[1], 0, 2 * pad + 1, dtype=tf.int32)
    images = tf.map_fn(
        lambda item: tf.slice(item[0], [item[1][0], item[1][1], 0], [size, size, 3]),
        (padded, offsets),
        fn_output_signature=tf.float32,
    )
    brightness = tf.random.stateless_uniform([batch, 1, 1, 1], seeds[2], -25.0, 25.0)
    contrast = tf.random.stateless_uniform([batch, 1, 1, 1], seeds[3], 0.8, 1.2)
    saturation = tf.random.stateless_uniform([batch, 1, 1, 1], seeds[4], 0.8, 1.2)
    mean = tf.reduce_mean(images, axis=[1, 2, 3], keepdims=True)
    images = (images - mean) * contrast + mean + brightness
    grey = tf.reduce_mean(images, axis=3, keepdims=True)
    images = (images - grey) * saturation + grey
    return tf.clip_by_value(images, 0.0, 255.0)
