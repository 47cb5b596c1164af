"""The pod model both emulator runtimes share (env as the kubelet resolves it, securityContext,
limits, one volume per claim) and the podman command a pod becomes. No container runs here."""

from __future__ import annotations

import base64
import json
from pathlib import Path

import pytest

from facesim.emulator.podman import PodmanRuntime
from facesim.emulator.pods import (
    Cluster,
    EmulationError,
    EnvSources,
    Limits,
    Mount,
    PodFields,
    PodSpec,
    Security,
    container_env,
    container_limits,
    memory_bytes,
    pod_security,
)
from facesim.emulator.serving import with_storage_volume
from facesim.emulator.template import pod_spec_of

SECRET = {
    "kind": "Secret",
    "metadata": {"name": "admin", "namespace": "ns"},
    "data": {"token": base64.b64encode(b"s3cret").decode()},
    "stringData": {"extra": "plain"},
}
CONFIG_MAP = {"kind": "ConfigMap", "metadata": {"name": "settings", "namespace": "ns"}, "data": {"level": "debug"}}
POD = PodFields("facesim-ui-0", "ns", "10.89.0.7", {"app": "ui"}, {"note": "n"}, "facesim")


def test_env_reads_secrets_config_maps_and_the_pods_fields() -> None:
    container = {
        "envFrom": [{"configMapRef": {"name": "settings"}, "prefix": "CM_"}],
        "env": [
            {"name": "TOKEN", "valueFrom": {"secretKeyRef": {"name": "admin", "key": "token"}}},
            {"name": "EXTRA", "valueFrom": {"secretKeyRef": {"name": "admin", "key": "extra"}}},
            {"name": "LEVEL", "valueFrom": {"configMapKeyRef": {"name": "settings", "key": "level"}}},
            {"name": "POD", "valueFrom": {"fieldRef": {"fieldPath": "metadata.name"}}},
            {"name": "NS", "valueFrom": {"fieldRef": {"fieldPath": "metadata.namespace"}}},
            {"name": "IP", "valueFrom": {"fieldRef": {"fieldPath": "status.podIP"}}},
            {"name": "APP", "valueFrom": {"fieldRef": {"fieldPath": "metadata.labels['app']"}}},
            {"name": "SA", "valueFrom": {"fieldRef": {"fieldPath": "spec.serviceAccountName"}}},
        ],
    }
    env = container_env(container, EnvSources.from_resources([SECRET, CONFIG_MAP]), POD)
    assert env == {
        "CM_level": "debug",
        "TOKEN": "s3cret",
        "EXTRA": "plain",
        "LEVEL": "debug",
        "POD": "facesim-ui-0",
        "NS": "ns",
        "IP": "10.89.0.7",
        "APP": "ui",
        "SA": "facesim",
    }


def test_a_missing_secret_or_key_stops_the_pod_unless_optional() -> None:
    sources = EnvSources.from_resources([SECRET])
    missing_secret = {"env": [{"name": "T", "valueFrom": {"secretKeyRef": {"name": "other", "key": "token"}}}]}
    with pytest.raises(EmulationError, match='CreateContainerConfigError: secret "other" not found'):
        container_env(missing_secret, sources, POD)
    missing_key = {"env": [{"name": "T", "valueFrom": {"secretKeyRef": {"name": "admin", "key": "nope"}}}]}
    with pytest.raises(EmulationError, match="couldn't find key nope in Secret ns/admin"):
        container_env(missing_key, sources, POD)
    missing_key["env"][0]["valueFrom"]["secretKeyRef"]["optional"] = True
    assert container_env(missing_key, sources, POD) == {}
    other_namespace = PodFields("p", "elsewhere")
    token = {"env": [{"name": "T", "valueFrom": {"secretKeyRef": {"name": "admin", "key": "token"}}}]}
    with pytest.raises(EmulationError, match="not found"):  # a Secret is read in the pod's own namespace
        container_env(token, sources, other_namespace)


def test_quantities_security_context_and_limits() -> None:
    assert memory_bytes("4Gi") == 4 * 2**30
    assert memory_bytes("512M") == 512 * 10**6
    assert memory_bytes("1e3") == 1000
    pod = {"securityContext": {"runAsUser": 1000, "fsGroup": 2000, "supplementalGroups": [3000]}}
    container = {
        "securityContext": {"runAsUser": 1001, "runAsGroup": 1002, "allowPrivilegeEscalation": False},
        "resources": {"limits": {"cpu": "500m", "memory": "256Mi"}},
    }
    assert pod_security(pod, container) == Security(1001, 1002, 2000, (3000,), True, False)
    assert pod_security(pod, {}) == Security(1000, None, 2000, (3000,), False, False)
    assert container_limits(container) == Limits(256 * 2**20, 0.5)


def _cluster(tmp_path: Path) -> Cluster:
    return Cluster(tmp_path, None, tmp_path, lambda line: None)  # type: ignore[arg-type] (no pods run)


def test_two_volumes_on_one_claim_are_refused_with_the_kubelets_message(tmp_path: Path) -> None:
    (tmp_path / "facesim-models").mkdir()
    pod = {
        "volumes": [
            {"name": "model", "persistentVolumeClaim": {"claimName": "facesim-models"}},
            {"name": "gallery", "persistentVolumeClaim": {"claimName": "facesim-models"}},
        ],
        "containers": [{"name": "c", "image": "i"}],
    }
    with pytest.raises(EmulationError, match=r"unmounted volumes=\[gallery model\].*kubernetes#99453"):
        pod_spec_of(_cluster(tmp_path), "p", "ns", pod, pod["containers"][0], "10.0.0.2")
    pod["volumes"].pop()  # one volume, two subPath mounts: fine
    container = {
        "name": "c",
        "image": "i",
        "volumeMounts": [
            {"name": "model", "mountPath": "/mnt/models", "subPath": "facenet/1", "readOnly": True},
            {"name": "model", "mountPath": "/mnt/gallery", "subPath": "galleries/lfw/1"},
        ],
    }
    spec = pod_spec_of(_cluster(tmp_path), "p", "ns", pod, container, "10.0.0.2")
    assert [(Path(m.source).relative_to(tmp_path).as_posix(), m.target, m.read_only) for m in spec.mounts] == [
        ("facesim-models/facenet/1", "/mnt/models", True),
        ("facesim-models/galleries/lfw/1", "/mnt/gallery", False),
    ]


def test_kserve_adds_its_storage_volume_beside_the_predictors_own(tmp_path: Path) -> None:
    """KServe de-duplicates by name only: STORAGE_URI on the claim of the predictor's own volume is two volumes."""
    (tmp_path / "facesim-models" / "facenet" / "1").mkdir(parents=True)
    predictor = {"volumes": [{"name": "gallery", "persistentVolumeClaim": {"claimName": "facesim-models"}}]}
    container = {
        "name": "kserve-container",
        "env": [{"name": "STORAGE_URI", "value": "pvc://facesim-models/facenet/1"}],
    }
    pod, container = with_storage_volume(predictor, container, _cluster(tmp_path))
    assert [v["name"] for v in pod["volumes"]] == ["gallery", "kserve-pvc-source"]
    assert container["volumeMounts"][-1]["mountPath"] == "/mnt/models"
    with pytest.raises(EmulationError, match="kserve-pvc-source"):
        pod_spec_of(_cluster(tmp_path), "p", "ns", pod, container, "10.0.0.2")
    named = {"volumes": [{"name": "kserve-pvc-source", "persistentVolumeClaim": {"claimName": "facesim-models"}}]}
    pod, _ = with_storage_volume(named, container, _cluster(tmp_path))
    assert [v["name"] for v in pod["volumes"]] == ["kserve-pvc-source"]


def test_a_pod_becomes_a_podman_run_with_its_user_limits_env_names_and_volumes() -> None:
    runtime = PodmanRuntime.__new__(PodmanRuntime)  # no network made: only the command is built
    runtime.network = "facesim-abc123"
    spec = PodSpec(
        name="job-worker-0",
        command=["python", "-m", "facesim.training"],
        args=["--epochs", "1"],
        env={"TF_CONFIG": '{"a": 1}'},
        mounts=[Mount("/v/facesim-models", "/mnt/models"), Mount("tmpfs", "/scratch"), Mount("/v/d", "/d", True)],
        hosts={"job-worker-1.ns.svc": "10.89.0.3"},
        address="10.89.0.2",
        image="ghcr.io/facesim/facesim-trainer:0.1.0",
        security=Security(1000, 1000, 1000, (), True, True),
        limits=Limits(512 * 2**20, 64.0),
    )
    command = runtime.run_command("facesim-abc123-job-worker-0", spec)
    joined = " ".join(command)
    assert "--user 1000:1000 --group-add 1000" in joined
    assert "--security-opt no-new-privileges --cap-drop all" in joined
    assert f"--memory {512 * 2**20} --memory-swap {512 * 2**20}" in joined
    cpus = float(command[command.index("--cpus") + 1])
    assert 0 < cpus < 64  # capped at this machine's cores
    assert "--add-host job-worker-1.ns.svc:10.89.0.3" in joined
    assert "--network facesim-abc123 --ip 10.89.0.2" in joined
    assert '--env TF_CONFIG={"a": 1}' in joined
    assert "--volume /v/facesim-models:/mnt/models:rw" in joined and "--volume /v/d:/d:ro" in joined
    assert "--tmpfs /scratch:rw,mode=0777" in joined
    entrypoint = command.index("--entrypoint")
    assert json.loads(command[entrypoint + 1]) == ["python", "-m", "facesim.training"]
    assert command[-3:] == ["ghcr.io/facesim/facesim-trainer:0.1.0", "--epochs", "1"]  # args after the image: its CMD
