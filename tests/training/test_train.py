"""End to end through `facesim train` / `facesim evaluate` on a sliver of LFW (tiny net, 32-64 px)."""

from __future__ import annotations

import json
import os
import re
import subprocess
import sys
from pathlib import Path

import numpy as np
import pytest

from facesim.contract.metrics_lines import parse_metrics
from tests.helpers.kill_worker import kill_worker_after_checkpoint


def _train_command(lfw_dir: Path, yunet_path: Path, work: Path, *options: str) -> list[str]:
    return [
        sys.executable,
        "-m",
        "facesim",
        "train",
        "--data",
        str(lfw_dir),
        "--out",
        str(work / "model"),
        "--cache-dir",
        str(work / "crops"),
        "--yunet-path",
        str(yunet_path),
        "--architecture",
        "tiny",
        "--image-size",
        "32",
        "--embedding-dim",
        "16",
        "--max-identities",
        "8",
        "--identities-per-batch",
        "4",
        "--images-per-identity",
        "2",
        "--val-pairs",
        "16",
        "--test-pairs",
        "16",
        "--map-identities",
        "3",
        *options,
    ]


def _env(work: Path) -> dict[str, str]:
    return {**os.environ, "TF_CPP_MIN_LOG_LEVEL": "2", "FACESIM_HOME": str(work / "home")}


def _run(command: list[str], work: Path, timeout: int = 240) -> subprocess.CompletedProcess:
    return subprocess.run(command, env=_env(work), capture_output=True, text=True, timeout=timeout)


@pytest.mark.slow
def test_two_worker_run_exports_a_model_that_evaluate_scores(lfw_dir, yunet_path, tmp_path):
    result = _run(
        _train_command(lfw_dir, yunet_path, tmp_path, "--workers", "2", "--epochs", "2", "--steps-per-epoch", "2"),
        tmp_path,
    )
    assert result.returncode == 0, result.stdout[-3000:] + result.stderr[-3000:]
    assert "[worker 1]" in result.stdout, "worker output is prefixed by worker"
    metrics = parse_metrics(result.stdout.splitlines())
    names = [name for name, _ in metrics]
    assert names.count("val_accuracy") == 2 and "val_auc" in names and "val_tar_at_far_1e-3" in names
    assert {"loss", "test_accuracy", "test_auc", "test_tar_at_far_1e-3"} <= set(names)

    model_dir = tmp_path / "model"
    card = json.loads((model_dir / "model.json").read_text())
    assert (card["image_size"], card["embedding_dim"], card["margin"]) == (32, 16, 0.2)
    assert card["threshold"] == pytest.approx(dict(metrics)["val_threshold"], rel=1e-5)
    assert card["preprocessing"]["detector_used"] == "yunet" and card["training"]["workers"] == 2
    assert (model_dir / "roc.png").stat().st_size > 1000 and (model_dir / "embedding_map.png").stat().st_size > 1000
    assert list((tmp_path / "model.run" / "logs" / "train").glob("events.out.tfevents.*")), "TensorBoard logs"

    import tensorflow as tf

    serve = tf.saved_model.load(str(model_dir)).signatures["serving_default"]
    pixels = np.random.default_rng(0).integers(0, 256, (3, 32, 32, 3), dtype=np.uint8)
    embeddings = serve(images=tf.constant(pixels))["embeddings"].numpy()
    assert embeddings.shape == (3, 16)
    np.testing.assert_allclose(np.linalg.norm(embeddings, axis=1), 1.0, atol=1e-5)

    scored = _run(
        [
            sys.executable,
            "-m",
            "facesim",
            "evaluate",
            "--model",
            str(model_dir),
            "--data",
            str(lfw_dir),
            "--pairs",
            str(lfw_dir / "pairs.txt"),
            "--fold",
            "10",
            "--limit-pairs",
            "16",
            "--cache-dir",
            str(tmp_path / "crops"),
        ],
        tmp_path,
    )
    assert scored.returncode == 0, scored.stderr[-3000:]
    scores = dict(parse_metrics(scored.stdout.splitlines()))
    assert scores["pairs"] == 16 and 0.0 <= scores["accuracy"] <= 1.0
    # Same model, pairs, crops and threshold as the run's own test figure.
    assert scores["accuracy"] == pytest.approx(dict(metrics)["test_accuracy"], abs=1e-6)


@pytest.mark.slow
def test_overfitting_a_handful_of_identities_drives_the_loss_down(lfw_dir, yunet_path, tmp_path):
    command = _train_command(
        lfw_dir,
        yunet_path,
        tmp_path,
        "--workers",
        "1",
        "--epochs",
        "3",
        "--steps-per-epoch",
        "15",
        "--max-identities",
        "4",
        "--no-augment",
        "--learning-rate",
        "0.01",
        "--mining",
        "batch_hard",
    )
    result = _run(command, tmp_path)
    assert result.returncode == 0, result.stdout[-3000:] + result.stderr[-3000:]
    losses = [value for name, value in parse_metrics(result.stdout.splitlines()) if name == "loss"]
    assert len(losses) == 3
    assert losses[-1] < 0.5 * losses[0], losses


@pytest.mark.slow
def test_a_killed_worker_stops_the_run_and_a_restart_resumes_from_the_checkpoint(lfw_dir, yunet_path, tmp_path):
    total_steps = 300
    command = _train_command(
        lfw_dir,
        yunet_path,
        tmp_path,
        "--workers",
        "2",
        "--epochs",
        "1",
        "--steps-per-epoch",
        str(total_steps),
        "--checkpoint-steps",
        "5",
    )
    checkpoint_index = tmp_path / "model.run" / "checkpoints" / "checkpoint"
    killed = kill_worker_after_checkpoint(command, _env(tmp_path), checkpoint_index)
    output, pids = killed.output, killed.pids
    assert killed.returncode != 0, "a dead worker fails the run"
    assert "worker 1 exited with code -9" in output, output[-3000:]
    with pytest.raises(ProcessLookupError):
        os.kill(pids[0], 0)  # the launcher stopped the surviving worker too
    killed_at = int(re.search(r"ckpt-(\d+)", checkpoint_index.read_text())[1])
    assert 0 < killed_at < total_steps, "killed mid-run"
    assert not (tmp_path / "model" / "saved_model.pb").exists()

    result = _run(command, tmp_path)
    assert result.returncode == 0, result.stdout[-3000:] + result.stderr[-3000:]
    resumed = re.search(r"resumed from the checkpoint at step (\d+) of (\d+)", result.stdout)
    assert resumed, result.stdout[-3000:]
    assert killed_at <= int(resumed[1]) < total_steps
    assert f"ckpt-{total_steps}" in checkpoint_index.read_text()
    assert (tmp_path / "model" / "saved_model.pb").exists()


def test_tiny_model_fixture_is_what_serving_expects(tiny_model_dir):
    from facesim.storage.model_card import load_model_card
    from facesim.training.export import EmbeddingModel

    card = load_model_card(tiny_model_dir)
    assert card.image_size == 64 and card.embedding_dim == 64 and card.threshold > 0
    assert card.preprocessing["detector_used"] == "yunet"
    model = EmbeddingModel(tiny_model_dir)
    embeddings = model.embed(np.full((2, 64, 64, 3), 128, np.uint8))
    assert model.image_size == 64 and embeddings.shape == (2, 64)
    np.testing.assert_allclose(np.linalg.norm(embeddings, axis=1), 1.0, atol=1e-5)
