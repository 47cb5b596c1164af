"""One worker of a mining probe (run by test_distributed.py with TF_CONFIG): embeds its own
share of a batch under MultiWorkerMirroredStrategy, computes the global-batch triplet losses the
training step uses (both miners) and the all-reduced gradient of the semi-hard one, and saves
them with its share to OUT/worker-<index>.npz."""

from __future__ import annotations

import sys
from pathlib import Path

import numpy as np

SHARE_LABELS = {0: [0, 0, 1, 1, 2], 1: [0, 0, 3, 3, 4]}  # identity 0 has images on both workers
IMAGE_SIZE, EMBEDDING_DIM = 32, 8


def share_images(index: int) -> np.ndarray:
    return np.random.default_rng(index).uniform(0, 255, (5, IMAGE_SIZE, IMAGE_SIZE, 3)).astype(np.float32)


def main(out: Path) -> None:
    from facesim.training.distributed import configure_threads, make_strategy, replica_device, worker_info

    configure_threads(1)
    strategy = make_strategy()  # first, before other TensorFlow work: it reads TF_CONFIG
    import tensorflow as tf

    from facesim.training.loop import global_triplet_loss
    from facesim.training.losses import MINING_LOSSES
    from facesim.training.model import build_embedding_model

    info = worker_info()
    with strategy.scope():
        model = build_embedding_model("tiny", IMAGE_SIZE, EMBEDDING_DIM, seed=0)
    images = tf.constant(share_images(info.index))
    labels = tf.constant(SHARE_LABELS[info.index], tf.int32)

    def replica_fn(images, labels):
        with tf.GradientTape() as tape:
            embeddings = model(images, training=False)
            losses = {name: global_triplet_loss(embeddings, labels, loss, 0.2) for name, loss in MINING_LOSSES.items()}
        gradients = tape.gradient(losses["semi_hard"], model.trainable_variables)
        context = tf.distribute.get_replica_context()
        with tf.device(replica_device(context)):
            summed = context.all_reduce(tf.distribute.ReduceOp.SUM, gradients)  # what the optimizer applies
        return embeddings, losses, summed

    embeddings, losses, summed = tf.function(lambda x, y: strategy.run(replica_fn, args=(x, y)))(images, labels)
    np.savez(
        out / f"worker-{info.index}.npz",
        embeddings=embeddings.numpy(),
        labels=labels.numpy(),
        **{f"loss_{name}": value.numpy() for name, value in losses.items()},
        **{f"gradient_{i}": g.numpy() for i, g in enumerate(summed)},
    )


if __name__ == "__main__":
    main(Path(sys.argv[1]))
