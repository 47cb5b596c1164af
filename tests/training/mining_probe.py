"""One worker of a mining probe (run by test_distributed.py with TF_CONFIG): embeds its own
share of a batch under MultiWorkerMirroredStrategy, computes the global-batch triplet losses the
training step uses (both miners), and saves its share, labels and loss to OUT/worker-<index>.npz."""

from __future__ import annotations

import sys
from pathlib import Path

from training.distributed import configure_threads, make_strategy, worker_info

configure_threads(1)
strategy = make_strategy()

import numpy as np  # noqa: E402
import tensorflow as tf  # noqa: E402

from training.losses import MINING_LOSSES  # noqa: E402
from training.loop import global_triplet_loss  # noqa: E402
from training.model import build_embedding_model  # noqa: E402

SHARE_LABELS = {0: [0, 0, 1, 1, 2], 1: [0, 0, 3, 3, 4]}  # identity 0 has images on both workers


def main(out: Path) -> None:
    info = worker_info()
    with strategy.scope():
        model = build_embedding_model("tiny", 32, 8, seed=0)
    images = tf.constant(np.random.default_rng(info.index).uniform(0, 255, (5, 32, 32, 3)), tf.float32)
    labels = tf.constant(SHARE_LABELS[info.index], tf.int32)

    def replica_fn(images, labels):
        embeddings = model(images, training=False)
        losses = {name: global_triplet_loss(embeddings, labels, loss, 0.2) for name, loss in MINING_LOSSES.items()}
        return embeddings, losses

    embeddings, losses = tf.function(lambda x, y: strategy.run(replica_fn, args=(x, y)))(images, labels)
    np.savez(out / f"worker-{info.index}.npz", embeddings=embeddings.numpy(), labels=labels.numpy(),
             **{f"loss_{name}": value.numpy() for name, value in losses.items()})  # fmt: skip


if __name__ == "__main__":
    main(Path(sys.argv[1]))
