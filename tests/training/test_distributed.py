"""Mining under MultiWorkerMirroredStrategy sees the whole global batch (both workers' samples),
and the gradient the optimizer applies is the gradient of that global-batch loss."""

from __future__ import annotations

import os
import subprocess
import sys
from pathlib import Path

import numpy as np
import pytest

from facesim.training.distributed import WorkerInfo, tf_config_for, worker_dir, worker_info
from facesim.training.launcher import free_ports
from tests.helpers.triplet_reference import batch_hard_reference, semi_hard_reference

PROBE = Path(__file__).parents[1] / "helpers" / "mining_probe.py"
REPO_ROOT = Path(__file__).resolve().parents[2]


@pytest.mark.slow
def test_two_worker_step_mines_over_both_workers_samples(tmp_path):
    ports = free_ports(2)
    processes = []
    for index in range(2):
        env = {
            **os.environ,
            "TF_CONFIG": tf_config_for(ports, index),
            "TF_CPP_MIN_LOG_LEVEL": "2",
            "PYTHONPATH": str(REPO_ROOT),
        }
        processes.append(
            subprocess.Popen(
                [sys.executable, str(PROBE), str(tmp_path)],
                env=env,
                stdout=subprocess.PIPE,
                stderr=subprocess.STDOUT,
                text=True,
            )
        )
    try:
        outputs = [p.communicate(timeout=120)[0] for p in processes]
    finally:
        for p in processes:
            p.kill()
    assert all(p.returncode == 0 for p in processes), "\n".join(o[-2000:] for o in outputs)
    shares = [np.load(tmp_path / f"worker-{index}.npz") for index in range(2)]
    embeddings = np.concatenate([s["embeddings"] for s in shares])
    labels = np.concatenate([s["labels"] for s in shares])

    for mining, reference in (("semi_hard", semi_hard_reference), ("batch_hard", batch_hard_reference)):
        global_loss = reference(labels, embeddings, 0.2)
        for share in shares:
            assert float(share[f"loss_{mining}"]) == pytest.approx(global_loss, abs=1e-5), mining
        local_only = reference(shares[0]["labels"], shares[0]["embeddings"], 0.2)
        assert abs(local_only - global_loss) > 1e-4, f"{mining}: the probe must tell a local loss from the global one"
    _assert_gradient_is_the_one_process_gradient(shares)


def _assert_gradient_is_the_one_process_gradient(shares) -> None:
    """The summed per-worker gradients equal the gradient of the whole batch's loss in one process."""
    import tensorflow as tf

    from facesim.training.losses import semi_hard_triplet_loss
    from facesim.training.model import build_embedding_model
    from tests.helpers.mining_probe import EMBEDDING_DIM, IMAGE_SIZE, SHARE_LABELS, share_images

    model = build_embedding_model("tiny", IMAGE_SIZE, EMBEDDING_DIM, seed=0)
    images = tf.constant(np.concatenate([share_images(index) for index in range(2)]))
    labels = tf.constant(np.concatenate([SHARE_LABELS[index] for index in range(2)]), tf.int32)
    with tf.GradientTape() as tape:
        loss = semi_hard_triplet_loss(labels, model(images, training=False), 0.2)
    expected = tape.gradient(loss, model.trainable_variables)
    assert any(np.abs(g.numpy()).max() > 0 for g in expected)
    for i, gradient in enumerate(expected):
        for share in shares:
            np.testing.assert_allclose(share[f"gradient_{i}"], gradient.numpy(), rtol=1e-3, atol=1e-6)


def test_tf_config_names_the_chief_and_the_others():
    ports = [2222, 2223, 2224]
    chief = worker_info(tf_config_for(ports, 0))
    other = worker_info(tf_config_for(ports, 2))
    assert chief == WorkerInfo("worker", 0, 3) and chief.is_chief
    assert other.workers == 3 and not other.is_chief
    assert worker_info("") == WorkerInfo("worker", 0, 1)
    assert worker_dir(Path("/runs/ckpt"), chief) == Path("/runs/ckpt")
    assert worker_dir(Path("/runs/ckpt"), other) == Path("/runs/ckpt/workers/worker-2")
    with pytest.raises(ValueError, match="TF_CONFIG"):
        worker_info('{"cluster": {}}')
