"""`facesim pipeline run` end to end on a sliver of LFW, then `facesim serve` serves its model."""

from __future__ import annotations

import base64
import json
import os
import subprocess
import sys
import time
from collections.abc import Iterator
from contextlib import contextmanager
from pathlib import Path

import pytest
import requests

from facesim.gallery.store import GalleryStore
from facesim.inference.local_server import free_port
from facesim.storage.model_artifact import QUANTIZATION, read_model_info


def _facesim(args: list[str], env: dict[str, str], timeout: float) -> subprocess.CompletedProcess[str]:
    return subprocess.run(
        [sys.executable, "-m", "facesim", *args],
        env={**os.environ, **env},
        capture_output=True,
        text=True,
        timeout=timeout,
    )


@contextmanager
def _served(env: dict[str, str], log: Path) -> Iterator[str]:
    """`facesim serve` with no --model/--gallery: it must find what the pipeline registered."""
    port = free_port()
    with open(log, "wb") as out:
        server = subprocess.Popen(
            [sys.executable, "-m", "facesim", "serve", "--port", str(port)],
            env={**os.environ, **env},
            stdout=out,
            stderr=subprocess.STDOUT,
        )
    url = f"http://127.0.0.1:{port}"
    try:
        deadline = time.monotonic() + 120
        while True:
            assert server.poll() is None, f"facesim serve exited: {log.read_text()[-2000:]}"
            try:
                if requests.get(f"{url}/v2/health/ready", timeout=2).ok:
                    break
            except requests.ConnectionError:
                pass
            assert time.monotonic() < deadline, "facesim serve was not ready within 120 s"
            time.sleep(0.5)
        yield url
    finally:
        server.terminate()
        server.wait(timeout=30)


@pytest.mark.slow
def test_local_run_with_tuning_ends_with_a_model_the_predictor_serves(
    lfw_sliver: Path, yunet_path: Path, tmp_path: Path
) -> None:
    env = {"FACESIM_HOME": str(tmp_path / "home"), "FACESIM_YUNET_MODEL": str(yunet_path), "TF_CPP_MIN_LOG_LEVEL": "2"}
    arguments = [
        "pipeline",
        "run",
        "--data",
        str(lfw_sliver),
        "--init",
        "scratch",
        "--architecture",
        "tiny",
        "--workers",
        "1",
        "--epochs",
        "1",
        "--steps-per-epoch",
        "2",
        "--tune",
        "--trials",
        "2",
        "--tune-epochs",
        "1",
        "--tune-steps-per-epoch",
        "1",
        "--gallery-identities",
        "4",
        "--gallery-images-per-identity",
        "2",
    ]
    run = _facesim(arguments, env, timeout=480)
    assert run.returncode == 0, run.stdout[-3000:] + run.stderr[-3000:]
    # One progress line per step, and the full output kept in the log.
    for step in (
        "prepare-data",
        "tune-hyperparameters",
        "train-model",
        "evaluate-model",
        "quantize-model",
        "build-gallery",
        "deploy-predictor",
    ):
        assert f"{step}: success" in run.stdout
    # 4 identities x 2 images: 4 genuine pairs, too few for a gallery threshold of its own.
    assert "the gallery keeps the model's threshold: too few pairs to calibrate at FAR 0.001" in run.stdout
    log = Path(run.stdout.split("full output in ")[1].split()[0])
    assert "val_accuracy=" in log.read_text()
    # The run's summary, and a rerun with the same data and settings that reuses what it registered.
    summary = json.loads((tmp_path / "home" / "pipeline" / "last-run.json").read_text())
    assert summary["model"]["version"] == "v1" and summary["gallery"]["version"] == "v1"
    assert summary["steps"][0]["name"] == "prepare-data"
    assert 0.0 <= summary["metrics"]["evaluate-model"]["accuracy"] <= 1.0
    # The tiny model's int8 copy may or may not hold the rule on 6 pairs: whichever, the run says which
    # precision it serves, registers that model and builds the gallery with it.
    precision = summary["precision"]
    assert precision in ("int8", "float")
    assert "test accuracy" in run.stdout and f"model v1 ({precision}), gallery v1" in run.stdout
    assert ("serving the int8 model" if precision == "int8" else "serving the float model: ") in run.stdout
    rerun = _facesim([*arguments, "--reuse"], env, timeout=120)
    assert rerun.returncode == 0 and "nothing to run: model v1 and gallery v1, registered by" in rerun.stdout, (
        rerun.stdout + rerun.stderr
    )
    assert "prepare-data" not in rerun.stdout

    home = tmp_path / "home"
    tuning = json.loads(next((home / "pipeline" / "runs").glob("*/tuning/best_params.json")).read_text())
    registered = home / "registry" / "models" / "facenet" / "v1"
    card = json.loads((registered / "model.json").read_text())
    assert (QUANTIZATION in card) == (precision == "int8")
    gallery = GalleryStore(home / "registry" / "galleries" / "default" / "v1")
    assert gallery.info.model_version == read_model_info(registered).version
    assert card["margin"] == pytest.approx(tuning["parameters"]["margin"])  # trained with the tuned values
    assert card["embedding_dim"] == int(tuning["parameters"]["embedding_size"])
    assert (home / "registry" / "galleries" / "default" / "v1").is_dir()

    gallery_person = sorted((lfw_sliver / "lfw-deepfunneled").iterdir())[0]
    photo = sorted(gallery_person.iterdir())[0].read_bytes()
    with _served(env, tmp_path / "serve.log") as url:
        served_card = requests.get(f"{url}/v1/models/facenet/card", timeout=10).json()
        answer = requests.post(
            f"{url}/v1/models/facenet:predict",
            timeout=60,
            json={"instances": [{"image": {"b64": base64.b64encode(photo).decode()}, "top_k": 3}]},
        )
    assert served_card["embedding_dim"] == card["embedding_dim"] and served_card["margin"] == card["margin"]
    assert answer.status_code == 200, answer.text
    faces = answer.json()["predictions"][0]["faces"]
    assert len(faces) == 1
    assert len(faces[0]["embedding"]) == card["embedding_dim"]
    assert 1 <= len(faces[0]["matches"]) <= 3
