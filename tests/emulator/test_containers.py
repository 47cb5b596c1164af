"""The cluster path in real containers: `facesim emulate --runtime podman` runs rendered pods as
containers of the images `facesim images build` makes (scripts/test.sh builds the base image and
the images first; the build here is then all cached layers). Tiny runs: a 2-step TFJob, one
1-replica Katib trial, a predictor on a tiny model, the UI. Needs root, podman and the images."""

from __future__ import annotations

import asyncio
import base64
import json
import os
import shutil
import signal
import subprocess
import sys
import threading
import time
import urllib.request
from pathlib import Path

import pytest
import yaml

from facesim.cluster.resources import Images
from tests.helpers.lfw_sliver import make_lfw_sliver

pytestmark = [pytest.mark.container, pytest.mark.slow]
CLAIMS = ("facesim-data", "facesim-runs", "facesim-models")
SMOKE = ("--", "--architecture", "tiny", "--max-identities", "20", "--val-pairs", "40", "--test-pairs", "40")
POD_UID = 1000  # the images' user, runAsUser of every rendered pod


def _facesim(*args: str, env: dict[str, str] | None = None, timeout: float = 900) -> subprocess.CompletedProcess:
    command = [sys.executable, "-m", "facesim", *args]
    return subprocess.run(command, capture_output=True, text=True, timeout=timeout, env=env)


@pytest.fixture(scope="module")
def images(yunet_path: Path) -> Images:
    """The trainer, predictor and ui images (cached layers when scripts/test.sh built them first)."""
    result = _facesim(
        "images", "build", "trainer", "predictor", "ui", env={**os.environ, "FACESIM_YUNET_MODEL": str(yunet_path)}
    )
    assert result.returncode == 0, result.stderr[-3000:]
    for name in ("trainer", "predictor", "ui"):
        assert f"facesim-{name}:" in result.stdout and "size=" in result.stdout
    return Images()


def _manifests(out: Path, *options: str) -> Path:
    result = _facesim("manifests", "--out", str(out), "--epochs", "1", "--steps-per-epoch", "2", *options, *SMOKE)
    assert result.returncode == 0, result.stderr
    return out


def _volumes(root: Path, lfw_dir: Path, scratch: Path) -> Path:
    """PVC folders owned by the pods' uid, as an NFS export squashing to 1000; the LFW sliver copied
    in (a container sees no host path a link could point to)."""
    for claim in CLAIMS:
        (root / claim).mkdir(parents=True)
    shutil.copytree(make_lfw_sliver(lfw_dir, scratch / "links"), root / "facesim-data" / "lfw")
    _own(root)
    return root


def _own(root: Path) -> None:
    for path in [root, *root.rglob("*")]:
        os.chown(path, POD_UID, POD_UID)


def _emulate(*files: Path, volumes: Path, logs: Path, timeout: int = 600) -> subprocess.CompletedProcess:
    options = ["--volumes", str(volumes), "--runtime", "podman", "--timeout", str(timeout), "--logs", str(logs)]
    return _facesim("emulate", *map(str, files), *options, timeout=timeout + 120)


def _podman_names(prefix: str) -> list[str]:
    listed = subprocess.run(["podman", "ps", "-a", "--format", "{{.Names}}"], capture_output=True, text=True)
    return [name for name in listed.stdout.split() if name.startswith(prefix)]


def test_two_worker_tfjob_runs_in_trainer_containers_and_writes_the_model_as_uid_1000(
    tmp_path: Path, images: Images, lfw_dir: Path
) -> None:
    manifests = _manifests(tmp_path / "m", "--workers", "2")
    volumes = _volumes(tmp_path / "v", lfw_dir, tmp_path)
    result = _emulate(manifests / "tfjob.yaml", volumes=volumes, logs=tmp_path / "logs")
    assert result.returncode == 0, result.stderr[-4000:]
    assert "runtime: podman" in result.stderr
    for worker in ("facesim-train-worker-0", "facesim-train-worker-1"):
        line = next(line for line in result.stderr.splitlines() if line.startswith(f"pod {worker}: container "))
        assert line.endswith(f"of image {images.image('trainer')} (podman)"), line
    assert "TFJob facesim/facesim-train Succeeded" in result.stderr
    card = volumes / "facesim-models" / "facenet" / "1" / "model.json"
    assert card.stat().st_uid == POD_UID and json.loads(card.read_text())["embedding_dim"] > 0


def _probe_job(volumes: Path, command: str, memory: str = "256Mi") -> Path:
    """A 1-pod TFJob on the trainer image: a writable emptyDir, a root-owned PVC, env from a Secret,
    a ConfigMap and the pod's own fields."""
    container = {
        "name": "tensorflow",
        "image": Images().image("trainer"),
        "command": ["sh", "-c", command],
        "env": [
            {"name": "TOKEN", "valueFrom": {"secretKeyRef": {"name": "probe-secret", "key": "token"}}},
            {"name": "LEVEL", "valueFrom": {"configMapKeyRef": {"name": "probe-settings", "key": "level"}}},
            {"name": "POD", "valueFrom": {"fieldRef": {"fieldPath": "metadata.name"}}},
        ],
        "resources": {"limits": {"cpu": "500m", "memory": memory}},
        "securityContext": {"runAsUser": POD_UID, "runAsGroup": POD_UID, "allowPrivilegeEscalation": False},
        "volumeMounts": [
            {"name": "scratch", "mountPath": "/mnt/scratch"},
            {"name": "locked", "mountPath": "/mnt/locked"},
        ],
    }
    pod = {
        "securityContext": {"fsGroup": 2000},
        "containers": [container],
        "volumes": [
            {"name": "scratch", "emptyDir": {}},
            {"name": "locked", "persistentVolumeClaim": {"claimName": "locked"}},
        ],
    }
    job = {
        "apiVersion": "kubeflow.org/v1",
        "kind": "TFJob",
        "metadata": {"name": "probe", "namespace": "ns1"},
        "spec": {"tfReplicaSpecs": {"Worker": {"replicas": 1, "restartPolicy": "Never", "template": {"spec": pod}}}},
    }
    secret = {"apiVersion": "v1", "kind": "Secret", "metadata": {"name": "probe-secret", "namespace": "ns1"}}
    secret["data"] = {"token": base64.b64encode(b"from-a-secret").decode()}
    settings = {"apiVersion": "v1", "kind": "ConfigMap", "metadata": {"name": "probe-settings", "namespace": "ns1"}}
    settings["data"] = {"level": "from-a-configmap"}
    (volumes / "locked").mkdir(parents=True, exist_ok=True)  # root's, mode 755: uid 1000 cannot write it
    path = volumes.parent / "probe.yaml"
    path.write_text(yaml.safe_dump_all([job, secret, settings]))
    return path


def test_pods_run_as_their_user_with_env_from_secrets_and_fail_on_a_volume_they_cannot_write(
    tmp_path: Path, images: Images
) -> None:
    volumes = tmp_path / "v"
    command = 'echo "id=$(id -u):$(id -g)"; echo "groups=$(id -G)"; echo "env=$TOKEN $LEVEL $POD"; '
    command += "touch /mnt/scratch/ok; touch /mnt/locked/no"
    result = _emulate(_probe_job(volumes, command), volumes=volumes, logs=tmp_path / "logs", timeout=120)
    assert result.returncode == 1
    said = dict(
        line.removeprefix("[probe-worker-0] ").split("=", 1)
        for line in result.stderr.splitlines()
        if line.startswith("[probe-worker-0] ") and "=" in line
    )
    assert said["id"] == "1000:1000"
    assert "2000" in said["groups"].split()  # fsGroup is a supplementary group
    assert said["env"] == "from-a-secret from-a-configmap probe-worker-0"
    assert "touch: cannot touch '/mnt/locked/no': Permission denied" in result.stderr
    assert "probe-worker-0 failed with exit code 1 (restartPolicy Never)" in result.stderr
    assert not [name for name in _podman_names("facesim-") if name.endswith("-probe-worker-0")]  # removed


def test_a_container_over_its_memory_limit_is_oom_killed(tmp_path: Path, images: Images) -> None:
    volumes = tmp_path / "v"
    command = "python -c 'x = bytearray(400 * 2**20); print(len(x))'"
    result = _emulate(
        _probe_job(volumes, command, memory="128Mi"), volumes=volumes, logs=tmp_path / "logs", timeout=120
    )
    assert result.returncode == 1
    assert "OOMKilled (over its memory limit)" in result.stderr
    assert "pod probe-worker-0 exited with code 137" in result.stderr


def _read_lines(stream, sink: list[str]) -> None:
    for line in stream:
        sink.append(line.rstrip("\n"))


def _ready_url(lines: list[str], title: str, deadline: float) -> str:
    while time.monotonic() < deadline:
        for line in list(lines):
            if line.startswith(f"{title} ready: "):
                return line.split(" ready: ")[1].split()[0]
        time.sleep(0.5)
    pytest.fail(f"{title} never became ready:\n" + "\n".join(lines[-40:]))


async def _v2_infer(url: str, image_b64: str):
    from kserve import InferenceRESTClient, RESTConfig
    from kserve.protocol.infer_type import InferInput, InferRequest

    client = InferenceRESTClient(RESTConfig(protocol="v2", retries=1, timeout=120))
    try:
        request = InferRequest(model_name="facenet", infer_inputs=[InferInput("image", [1], "BYTES", [image_b64])])
        return await client.infer(url, request, model_name="facenet")
    finally:
        await client.close()


def test_inference_service_answers_kserves_v2_client_and_the_ui_reaches_it_by_service_name(
    tmp_path: Path, images: Images, tiny_model_dir: Path, tiny_gallery_dir: Path, lfw_dir: Path
) -> None:
    manifests = _manifests(tmp_path / "m")
    volumes = tmp_path / "v"
    for claim in CLAIMS:
        (volumes / claim).mkdir(parents=True)
    shutil.copytree(tiny_model_dir, volumes / "facesim-models" / "facenet" / "1")
    shutil.copytree(tiny_gallery_dir, volumes / "facesim-models" / "galleries" / "lfw" / "1")
    _own(volumes)
    files = [
        manifests / "inferenceservice.yaml",  # as rendered: one volume per claim
        manifests / "ui.yaml",
        manifests / "secret.yaml",
    ]
    command = [sys.executable, "-m", "facesim", "emulate", *map(str, files), "--volumes", str(volumes)]
    command += ["--runtime", "podman", "--timeout", "400", "--logs", str(tmp_path / "logs")]
    process = subprocess.Popen(command, stdout=subprocess.DEVNULL, stderr=subprocess.PIPE, text=True)
    lines: list[str] = []
    threading.Thread(target=_read_lines, args=(process.stderr, lines), daemon=True).start()
    try:
        deadline = time.monotonic() + 300
        predictor = _ready_url(lines, "InferenceService facesim/facesim", deadline)
        ui = _ready_url(lines, "Deployment facesim/facesim-ui", deadline)
        image = base64.b64encode((lfw_dir / "lfw-deepfunneled" / "Tony_Blair" / "Tony_Blair_0002.jpg").read_bytes())
        response = asyncio.run(_v2_infer(predictor, image.decode()))
        outputs = {output.name: output for output in response.outputs}
        assert outputs["boxes"].shape[0] >= 1 and outputs["embeddings"].shape[1] > 0
        with urllib.request.urlopen(f"{predictor}/v1/models/facenet/gallery", timeout=30) as answer:
            identities = [entry["identity"] for entry in json.loads(answer.read())["identities"]]
        # The UI pod asks the predictor at its in-cluster Service name (port 80 -> the container's 8080).
        with urllib.request.urlopen(f"{ui}/gallery", timeout=60) as answer:
            page = answer.read().decode()
        assert identities and all(identity in page for identity in identities[:3])
        assert any(line.startswith("pod facesim-ui-0: container ") and images.image("ui") in line for line in lines)
        process.send_signal(signal.SIGINT)
        assert process.wait(timeout=90) == 130
    finally:
        if process.poll() is None:
            process.kill()
            process.wait()
    ui_log = (tmp_path / "logs" / "facesim-ui-0.1.log").read_text()
    assert "predictor http://facesim-predictor.facesim.svc.cluster.local" in ui_log


def test_katib_trial_runs_in_a_trainer_container_and_its_metrics_are_collected(
    tmp_path: Path, images: Images, lfw_dir: Path
) -> None:
    manifests = _manifests(tmp_path / "m", "--trials", "1", "--parallel-trials", "1", "--algorithm", "random")
    volumes = _volumes(tmp_path / "v", lfw_dir, tmp_path)
    result = _emulate(manifests / "experiment.yaml", volumes=volumes, logs=tmp_path / "logs")
    assert result.returncode == 0, result.stderr[-4000:]
    containers = [
        line for line in result.stderr.splitlines() if line.startswith("pod facesim-tune-") and ": container " in line
    ]
    assert containers and all(line.endswith(f"of image {images.image('trainer')} (podman)") for line in containers)
    finished = next(line for line in result.stderr.splitlines() if line.startswith("trial ") and " Succeeded: " in line)
    assert 0.0 <= float(finished.split("val_accuracy latest=")[1].split()[0]) <= 1.0
    assert "Experiment facesim/facesim-tune Succeeded" in result.stderr
