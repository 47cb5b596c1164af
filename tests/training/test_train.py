"""End to end through `facesim train` / `facesim evaluate` on a sliver of LFW (tiny net, 32-64 px)."""

from __future__ import annotations

import json
import os
import re
import subprocess
import sys
import threading
from pathlib import Path

import numpy as np
import pytest

from facesim.contract.metrics_lines import parse_metrics
from tests.helpers.crash import kill_9, pause_env, wait_for_pause


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
        "--yunet",
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
    # Worker output is prefixed by worker (worker 1 prints nothing in a run that goes well).
    assert "launched worker 1" in result.stdout
    assert re.search(r"^\[worker 0\] \S+Z val_accuracy=", result.stdout, re.M)  # a timestamped metric line
    metrics = parse_metrics(result.stdout.splitlines())
    names = [name for name, _ in metrics]
    assert names.count("val_accuracy") == 2 and "val_auc" in names and names.count("val_tar_at_far_1e-3") == 2
    assert {"loss", "test_accuracy", "test_auc", "test_tar_at_far_1e-3", "test_impostor_pairs"} <= set(names)

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

    evaluate = [
        sys.executable,
        "-m",
        "facesim",
        "evaluate",
        "--model",
        str(model_dir),
        "--data",
        str(lfw_dir),  # no --pairs: the LFW root's pairs.txt
        "--fold",
        "10",
        "--limit-pairs",
        "16",
        "--cache-dir",
        str(tmp_path / "crops"),
        "--yunet",  # the model names its detector by sha256, not by the training machine's path
        str(yunet_path),
    ]
    scored = _run(evaluate, tmp_path)
    assert scored.returncode == 0, scored.stderr[-3000:]
    scores, trained = dict(parse_metrics(scored.stdout.splitlines())), dict(metrics)
    assert scores["pairs"] == 16 and 0.0 <= scores["accuracy"] <= 1.0 and scores["calibration_fold"] == 9
    # Same model, pairs (LFW's pairs.txt by default), crops and thresholds as the run's own test figures:
    # the pair threshold from model.json, the FAR thresholds from fold 9's (validation) images.
    assert scores["accuracy"] == pytest.approx(trained["test_accuracy"], abs=1e-6)
    assert scores["impostor_pairs"] == trained["test_impostor_pairs"] > 16  # every pair of the images
    for name in ("tar_at_far_1e-3", "tar_at_far_1e-4", "far_achieved_1e-3", "tar_at_zero_false_accepts"):
        assert scores[name] == pytest.approx(trained[f"test_{name}"], abs=1e-6), name

    # The same pairs on ONNX Runtime (model.onnx, what the predictor runs): the same decision for every pair.
    on_onnx = _run([*evaluate, "--runtime", "onnx", "--compare-runtimes"], tmp_path)
    assert on_onnx.returncode == 0, on_onnx.stderr[-3000:]
    onnx_scores = dict(parse_metrics(on_onnx.stdout.splitlines()))
    assert onnx_scores["runtime_decisions_differing"] == 0 and onnx_scores["runtime_max_distance_difference"] < 1e-5
    assert onnx_scores["accuracy"] == scores["accuracy"]


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


def _current_checkpoint(checkpoint_dir: Path) -> str:
    """The checkpoint the index file names (what a restart restores)."""
    return re.search(r'model_checkpoint_path: "(.+?)"', (checkpoint_dir / "checkpoint").read_text())[1]


def _checkpoint_tensors(checkpoint_dir: Path) -> dict[str, np.ndarray]:
    """Every saved tensor of the latest checkpoint: weights, optimizer slots, step counters."""
    import tensorflow as tf

    reader = tf.train.load_checkpoint(str(checkpoint_dir))
    return {name: reader.get_tensor(name) for name in reader.get_variable_to_shape_map()}


@pytest.mark.slow
def test_the_chief_killed_mid_checkpoint_resumes_from_the_last_complete_one_to_the_same_weights(
    lfw_dir, yunet_path, tmp_path
):
    """2 workers, checkpoints every 3 of 12 steps, no augmentation. The chief stops in its 2nd save
    (step 6: files written, the index still naming step 3) and is SIGKILLed there; the rerun resumes
    at step 3 and ends with the very tensors of an uninterrupted run."""
    options = ("--workers", "2", "--epochs", "1", "--steps-per-epoch", "12", "--checkpoint-steps", "3")
    options += ("--no-augment", "--cache-dir", str(tmp_path / "crops"))
    killed, straight, marker = tmp_path / "killed", tmp_path / "straight", tmp_path / "paused"
    command = _train_command(lfw_dir, yunet_path, killed, *options)
    checkpoints = killed / "model.run" / "checkpoints"
    env = {**_env(tmp_path), **pause_env("checkpoint-save", 2, marker)}
    launcher = subprocess.Popen(command, env=env, stdout=subprocess.PIPE, stderr=subprocess.STDOUT, text=True)
    lines: list[str] = []
    drain = threading.Thread(target=lambda: lines.extend(launcher.stdout), daemon=True)  # a full pipe would stall it
    drain.start()
    try:
        paused = wait_for_pause(marker, launcher, timeout_s=240)
        workers = {int(m[1]): int(m[2]) for m in re.finditer(r"launched worker (\d) \(pid (\d+)\)", "".join(lines))}
        assert paused == workers[0], "the chief paused"
        assert (checkpoints / "ckpt-6.index").exists(), "the kill lands after the step-6 files are written"
        assert _current_checkpoint(checkpoints) == "ckpt-3", "and before the index names them"
        kill_9(paused, launcher)
        drain.join(timeout=10)
    finally:
        launcher.kill()
    output = "".join(lines)
    assert launcher.returncode != 0 and "worker 0 exited with code -9" in output, output[-3000:]
    with pytest.raises(ProcessLookupError):
        os.kill(workers[1], 0)  # the launcher stopped the other worker too
    assert not (killed / "model" / "saved_model.pb").exists()

    resumed = _run(command, tmp_path)
    assert resumed.returncode == 0, resumed.stdout[-3000:] + resumed.stderr[-3000:]
    assert "resumed from the checkpoint at step 3 of 12" in resumed.stdout, resumed.stdout[-3000:]
    uninterrupted = _run(_train_command(lfw_dir, yunet_path, straight, *options), tmp_path)
    assert uninterrupted.returncode == 0, uninterrupted.stdout[-3000:] + uninterrupted.stderr[-3000:]
    assert "resumed" not in uninterrupted.stdout
    final, reference = (_checkpoint_tensors(run / "model.run" / "checkpoints") for run in (killed, straight))
    assert final["step/.ATTRIBUTES/VARIABLE_VALUE"] == reference["step/.ATTRIBUTES/VARIABLE_VALUE"] == 12
    assert final.keys() == reference.keys()
    for name in final:
        np.testing.assert_array_equal(final[name], reference[name], err_msg=name)


def test_tiny_model_fixture_is_what_serving_expects(tiny_model_dir):
    from facesim.storage.model_artifact import Embedder, read_model_info

    info = read_model_info(tiny_model_dir)
    card = info.card
    assert card.image_size == 64 and card.embedding_dim == 64 and card.threshold > 0
    assert card.preprocessing["detector_used"] == "yunet"
    assert "yunet_path" not in card.preprocessing and len(card.preprocessing["detector_sha256"]) == 64
    for runtime in ("tensorflow", "onnx"):
        embeddings = Embedder(info, runtime=runtime).embed(np.full((3, 64, 64, 3), 128, np.uint8), batch_size=2)
        assert embeddings.shape == (3, 64)
        np.testing.assert_allclose(np.linalg.norm(embeddings, axis=1), 1.0, atol=1e-5)
