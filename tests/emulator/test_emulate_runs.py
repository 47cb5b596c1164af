"""`facesim emulate` on `facesim manifests` output: real pods (namespaces, volumes, TF_CONFIG) on a
sliver of LFW with a tiny smoke model (1 epoch, 2 steps). These are what failed on the crop-cache
defect: worker 1 of the TFJob found an empty cache in its own HOME and restarted to backoffLimit."""

from __future__ import annotations

import base64
import json
import os
import shutil
import signal
import subprocess
import sys
import time
import urllib.request
from pathlib import Path

import pytest

from tests.helpers.emulate import emulate_command
from tests.helpers.lfw_sliver import make_lfw_sliver

pytestmark = pytest.mark.slow
SMOKE = ("--", "--architecture", "tiny", "--max-identities", "20", "--val-pairs", "40", "--test-pairs", "40")
CLAIMS = ("facesim-data", "facesim-runs", "facesim-models")


def _manifests(out: Path, *options: str) -> Path:
    command = [
        sys.executable,
        "-m",
        "facesim",
        "manifests",
        "--out",
        str(out),
        "--image-registry",
        "registry.test",
        "--image-tag",
        "smoke",
        "--epochs",
        "1",
        "--steps-per-epoch",
        "2",
        *options,
        *SMOKE,
    ]
    subprocess.run(command, check=True, capture_output=True, timeout=120)
    return out


def _volumes(root: Path, lfw_dir: Path) -> Path:
    for claim in CLAIMS:
        (root / claim).mkdir(parents=True)
    make_lfw_sliver(lfw_dir, root / "facesim-data" / "lfw")  # links to the shared images: visible in pods
    return root


def _env(yunet_path: Path) -> dict[str, str]:
    # The trainer and predictor images bake YuNet in; here the emulator copies these weights into each pod.
    return {**os.environ, "FACESIM_YUNET_MODEL": str(yunet_path), "TF_CPP_MIN_LOG_LEVEL": "2"}


def _emulate(
    files: list[Path], volumes: Path, logs: Path, env: dict[str, str], timeout: int
) -> subprocess.CompletedProcess:
    command = emulate_command(files, volumes, logs, timeout)
    return subprocess.run(command, capture_output=True, text=True, timeout=timeout + 60, env=env)


def _progress(stderr: str) -> str:
    return "\n".join(line for line in stderr.splitlines() if not line.startswith("["))


def test_two_worker_tfjob_trains_with_crops_shared_on_the_data_volume(
    tmp_path: Path, lfw_dir: Path, yunet_path: Path
) -> None:
    manifests = _manifests(tmp_path / "m", "--workers", "2")
    volumes = _volumes(tmp_path / "v", lfw_dir)
    result = _emulate([manifests / "tfjob.yaml"], volumes, tmp_path / "logs", _env(yunet_path), timeout=420)
    progress = _progress(result.stderr)
    assert result.returncode == 0, f"{progress}\n{result.stderr[-4000:]}"
    assert "facesim-train-worker-0 (127.0.0.2), facesim-train-worker-1 (127.0.0.3)" in progress
    assert "TFJob facesim/facesim-train Succeeded" in progress
    assert "restarting" not in progress  # worker 1 read worker 0's crops the first time
    card = json.loads((volumes / "facesim-models" / "facenet" / "1" / "model.json").read_text())
    assert card["embedding_dim"] > 0
    assert (volumes / "facesim-runs" / "facenet" / "1" / "checkpoints").is_dir()
    assert list((volumes / "facesim-data" / "cache").glob("lfw-*/facesim-cache.json"))
    assert not (volumes / "facesim-models" / "facenet" / "1.run").exists()  # checkpoints not beside the model
    worker1 = (tmp_path / "logs" / "facesim-train-worker-1.1.log").read_text()
    assert "no crop" not in worker1


def test_two_trial_experiment_reports_observations_and_the_optimal_trial(
    tmp_path: Path, lfw_dir: Path, yunet_path: Path
) -> None:
    manifests = _manifests(tmp_path / "m", "--trials", "2", "--parallel-trials", "1", "--algorithm", "random")
    volumes = _volumes(tmp_path / "v", lfw_dir)
    result = _emulate([manifests / "experiment.yaml"], volumes, tmp_path / "logs", _env(yunet_path), timeout=420)
    progress = _progress(result.stderr)
    assert result.returncode == 0, f"{progress}\n{result.stderr[-4000:]}"
    finished = [line for line in progress.splitlines() if line.startswith("trial ") and " Succeeded: " in line]
    assert len(finished) == 2, progress
    for line in finished:
        latest = line.split("val_accuracy latest=")[1].split()[0]
        assert 0.0 <= float(latest) <= 1.0
    assert "Experiment facesim/facesim-tune Succeeded (maxTrialCount (2) trials completed): 2 Succeeded" in progress
    best = next(line for line in progress.splitlines() if line.startswith("optimal trial: "))
    assert best.split()[2] in {line.split()[1] for line in finished}
    assert "without an RFC 3339 timestamp" not in progress
    second = finished[1].split()[1]
    second_log = (tmp_path / "logs" / f"{second}-worker-0.1.log").read_text()
    assert "prepared" not in second_log  # the second trial read the first one's crops from the data volume


def _wait_for_url(process: subprocess.Popen, deadline: float) -> str:
    assert process.stdout is not None
    while time.monotonic() < deadline:
        line = process.stdout.readline()
        if line.startswith("http://"):
            return line.strip()
        if not line and process.poll() is not None:
            break
    pytest.fail("the InferenceService never printed its URL")


def test_inference_service_serves_the_model_from_its_storage_uri(
    tmp_path: Path, tiny_model_dir: Path, tiny_gallery_dir: Path, yunet_path: Path, lfw_dir: Path
) -> None:
    manifests = _manifests(tmp_path / "m")
    volumes = tmp_path / "v"
    shutil.copytree(tiny_model_dir, volumes / "facesim-models" / "facenet" / "1")
    shutil.copytree(tiny_gallery_dir, volumes / "facesim-models" / "galleries" / "lfw" / "1")
    # The InferenceService as rendered: one volume per claim.
    command = emulate_command([manifests / "inferenceservice.yaml"], volumes, tmp_path / "logs", timeout=240)
    process = subprocess.Popen(
        command, stdout=subprocess.PIPE, stderr=subprocess.DEVNULL, text=True, env=_env(yunet_path)
    )
    try:
        url = _wait_for_url(process, time.monotonic() + 180)
        image = base64.b64encode((lfw_dir / "lfw-deepfunneled" / "Tony_Blair" / "Tony_Blair_0002.jpg").read_bytes())
        body = json.dumps({"instances": [{"image": {"b64": image.decode()}, "top_k": 2}]}).encode()
        request = urllib.request.Request(f"{url}/v1/models/facenet:predict", body, {"Content-Type": "application/json"})
        with urllib.request.urlopen(request, timeout=60) as response:
            prediction = json.loads(response.read())["predictions"][0]
        assert prediction["faces"] and prediction["faces"][0]["matches"]
        process.send_signal(signal.SIGINT)  # Ctrl-C: the pod is stopped, the command says so
        assert process.wait(timeout=60) == 130
        log = (tmp_path / "logs" / "facesim-predictor-0.1.log").read_text()
        assert '"POST /v1/models/facenet%3Apredict HTTP/1.1" 200' in log  # the pod served the request
        with pytest.raises(OSError):  # and nothing answers at the URL once the command has ended
            urllib.request.urlopen(f"{url}/v2/health/ready", timeout=5)
    finally:
        if process.poll() is None:
            process.kill()
            process.wait()
