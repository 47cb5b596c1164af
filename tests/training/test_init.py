"""`facesim train --init`: two workers starting from dlib's pretrained weights or from an exported model,
resumed after a kill, exported with the init recorded."""

from __future__ import annotations

import json
import re
import subprocess
from pathlib import Path

import numpy as np
import pytest

from tests.helpers.kill_worker import kill_worker_after_checkpoint
from tests.training.test_pretrained import DLIB_CHIPS, dlib_chips
from tests.training.test_train import _env, _run, _train_command


def _embed(model_dir: Path, crops: np.ndarray) -> np.ndarray:
    from facesim.storage.model_artifact import Embedder, read_model_info

    return Embedder(read_model_info(model_dir), runtime="tensorflow").embed(crops, batch_size=64)


def _dlib_chips(lfw_dir: Path) -> np.ndarray:
    """Four different people, as dlib's own 150 px chips."""
    reference = json.loads((DLIB_CHIPS / "dlib_descriptors.json").read_text())["chips"]
    return dlib_chips(reference, lfw_dir)


@pytest.mark.slow
def test_pretrained_init_two_workers_resumes_after_a_kill_and_exports(lfw_dir, yunet_path, shared_dir, tmp_path):
    weights = shared_dir / "models" / "faceapi-resnet"
    steps = 30
    command = _train_command(
        lfw_dir,
        yunet_path,
        tmp_path,
        "--init",
        "faceapi-resnet",
        "--init-weights",
        str(weights),
        "--workers",
        "2",
        "--epochs",
        "1",
        "--steps-per-epoch",
        str(steps),
        "--checkpoint-steps",
        "2",
        "--freeze-stages",
        "3",
    )
    # _train_command asks for the tiny test network: --init faceapi-resnet replaces it (and its size).
    command = [arg for arg in command if arg not in ("--architecture", "tiny", "--image-size", "32")]
    command[command.index("--embedding-dim") : command.index("--embedding-dim") + 2] = []
    checkpoint_index = tmp_path / "model.run" / "checkpoints" / "checkpoint"
    killed = kill_worker_after_checkpoint(command, _env(tmp_path), checkpoint_index, timeout_s=400)
    assert killed.returncode != 0 and "worker 1 exited with code -9" in killed.output, killed.output[-3000:]
    assert not (tmp_path / "model" / "saved_model.pb").exists()

    result = _run(command, tmp_path, timeout=900)
    assert result.returncode == 0, result.stdout[-3000:] + result.stderr[-3000:]
    resumed = re.search(r"resumed from the checkpoint at step (\d+) of (\d+)", result.stdout)
    assert resumed and 0 < int(resumed[1]) < steps, result.stdout[-3000:]
    card = json.loads((tmp_path / "model" / "model.json").read_text())
    assert card["training"]["init"]["from"] == "faceapi-resnet" and card["training"]["workers"] == 2
    assert card["training"]["params"]["freeze_stages"] == 3 and card["margin"] == 0.1
    assert card["training"]["params"]["distill_weight"] == 4.0  # the recipe's pull to the pretrained geometry
    assert (card["architecture"], card["image_size"], card["embedding_dim"]) == ("faceapi_resnet", 150, 128)
    assert card["preprocessing"]["template"] == "dlib-chip-5pt" and card["flip_average"] is True

    # A few small fine-tuning steps keep dlib's embedding: four different people stay far apart.
    embeddings = _embed(tmp_path / "model", _dlib_chips(lfw_dir))
    distances = ((embeddings[:, None] - embeddings[None]) ** 2).sum(-1)
    assert distances[~np.eye(len(embeddings), dtype=bool)].min() > 0.3


@pytest.mark.slow
def test_init_from_a_model_dir_starts_from_its_weights(lfw_dir, yunet_path, tiny_model_dir, tmp_path):
    command = _train_command(
        lfw_dir,
        yunet_path,
        tmp_path,
        "--init",
        str(tiny_model_dir),
        "--workers",
        "2",
        "--epochs",
        "1",
        "--steps-per-epoch",
        "2",
        "--learning-rate",
        "1e-12",
        "--no-augment",
    )
    result = _run(command, tmp_path)
    assert result.returncode == 0, result.stdout[-3000:] + result.stderr[-3000:]
    card = json.loads((tmp_path / "model" / "model.json").read_text())
    source = json.loads((tiny_model_dir / "model.json").read_text())
    # The source's network, size and embedding size win over the command's --image-size 32 / --embedding-dim 16.
    assert (card["architecture"], card["image_size"], card["embedding_dim"]) == ("tiny", 64, 64)
    assert card["training"]["init"]["from"] == str(tiny_model_dir.resolve())
    assert card["preprocessing"]["template"] == source["preprocessing"]["template"]
    # At a rate of 1e-12 the learned weights stay the source's (batch norm's moving statistics still
    # follow the two training batches, so embeddings themselves may move a little).
    import tensorflow as tf

    ours, theirs = (tf.saved_model.load(str(d)).trainable_variables for d in (tmp_path / "model", tiny_model_dir))
    assert [v.shape for v in ours] == [v.shape for v in theirs] and len(ours) > 4
    for mine, source in zip(ours, theirs, strict=True):
        np.testing.assert_allclose(mine.numpy(), source.numpy(), atol=1e-6)


def test_init_that_is_not_a_model_is_refused(lfw_dir, yunet_path, tmp_path):
    command = _train_command(lfw_dir, yunet_path, tmp_path, "--init", str(tmp_path / "nowhere"))
    result = subprocess.run(command, capture_output=True, text=True, timeout=120, check=False)
    assert result.returncode == 2
    assert "nowhere/model.json does not exist" in result.stderr
