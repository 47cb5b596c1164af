"""Triplet loss with online mining on squared L2 distances (FaceNet, Schroff et al. 2015).

- `semi_hard_triplet_loss`: every anchor-positive pair of the batch; its negative is the hardest
  one still farther than the positive (d_ap < d_an, so semi-hard when d_an < d_ap + margin).
  When every negative is closer than the positive, the farthest negative is used: hardest
  negatives early on collapse the model (FaceNet §3.2).
- `batch_hard_triplet_loss` (Hermans et al. 2017): per anchor, the farthest positive and the
  closest negative.
Both average relu(d_ap - d_an + margin) over the triplets they form. tests/training holds the
slow NumPy references they are checked against.
- `distillation_loss`: each embedding's squared distance to a frozen teacher's embedding of the
  same image, so fine-tuning moves the pretrained geometry only where the triplets ask it to.
"""

from __future__ import annotations

from collections.abc import Callable

import tensorflow as tf

TripletLoss = Callable[[tf.Tensor, tf.Tensor, float], tf.Tensor]


def pairwise_squared_distances(embeddings: tf.Tensor) -> tf.Tensor:
    squared_norms = tf.reduce_sum(tf.square(embeddings), axis=1)
    dot = tf.matmul(embeddings, embeddings, transpose_b=True)
    distances = squared_norms[:, None] - 2.0 * dot + squared_norms[None, :]
    # Rounding can make d(i, i) or near-duplicates slightly negative.
    distances = tf.maximum(distances, 0.0)
    return distances * (1.0 - tf.eye(tf.shape(embeddings)[0], dtype=distances.dtype))


def _masks(labels: tf.Tensor) -> tuple[tf.Tensor, tf.Tensor]:
    """(positive, negative) boolean [B, B] masks; positives exclude the anchor itself."""
    labels = tf.reshape(labels, [-1])
    same = tf.equal(labels[:, None], labels[None, :])
    not_self = tf.logical_not(tf.eye(tf.shape(labels)[0], dtype=tf.bool))
    return tf.logical_and(same, not_self), tf.logical_not(same)


def _masked_mean(values: tf.Tensor, mask: tf.Tensor) -> tf.Tensor:
    mask = tf.cast(mask, values.dtype)
    return tf.math.divide_no_nan(tf.reduce_sum(values * mask), tf.reduce_sum(mask))


def semi_hard_triplet_loss(labels: tf.Tensor, embeddings: tf.Tensor, margin: float) -> tf.Tensor:
    distances = pairwise_squared_distances(embeddings)
    positive, negative = _masks(labels)
    d_ap = distances[:, :, None]  # [anchor, positive, 1]
    d_an = distances[:, None, :]  # [anchor, 1, negative]
    is_negative = negative[:, None, :]
    farther = tf.logical_and(is_negative, d_an > d_ap)
    big = tf.reduce_max(distances) + 1.0
    # Closest negative farther than the positive (semi-hard, or easy when beyond the margin) ...
    closest_farther = tf.reduce_min(tf.where(farther, d_an, big), axis=2)
    # ... else the farthest negative (all negatives are harder than the positive).
    farthest = tf.reduce_max(tf.where(is_negative, d_an, -1.0), axis=2)
    has_farther = tf.reduce_any(farther, axis=2)
    chosen = tf.where(has_farther, closest_farther, farthest)
    losses = tf.nn.relu(distances - chosen + margin)
    has_negative = tf.reduce_any(negative, axis=1, keepdims=True)
    return _masked_mean(losses, tf.logical_and(positive, has_negative))


def batch_hard_triplet_loss(labels: tf.Tensor, embeddings: tf.Tensor, margin: float) -> tf.Tensor:
    distances = pairwise_squared_distances(embeddings)
    positive, negative = _masks(labels)
    hardest_positive = tf.reduce_max(tf.where(positive, distances, 0.0), axis=1)
    big = tf.reduce_max(distances) + 1.0
    hardest_negative = tf.reduce_min(tf.where(negative, distances, big), axis=1)
    losses = tf.nn.relu(hardest_positive - hardest_negative + margin)
    valid = tf.logical_and(tf.reduce_any(positive, axis=1), tf.reduce_any(negative, axis=1))
    return _masked_mean(losses, valid)


def distillation_loss(student: tf.Tensor, teacher: tf.Tensor, global_batch: int) -> tf.Tensor:
    """Sum over this replica's images of |student - teacher|^2, over the global batch size: the
    replicas' SUM all-reduce of its gradients gives the gradient of the global-batch mean."""
    squared = tf.reduce_sum(tf.square(student - tf.stop_gradient(teacher)), axis=1)
    return tf.reduce_sum(squared) / float(global_batch)


MINING_LOSSES: dict[str, TripletLoss] = {
    "semi_hard": semi_hard_triplet_loss,
    "batch_hard": batch_hard_triplet_loss,
}
