"""No rendered pod carries two volumes on one PVC claim, counting the volume KServe adds.

The kubelet before Kubernetes 1.35 leaves such a pod in ContainerCreating ("unmounted volumes ...
timed out"; kubernetes/kubernetes#99453, fixed by #122140). KServe adds a volume of its own for a
`pvc://` storageUri, so each InferenceService is checked as KServe's pod webhook would leave it.
"""

from __future__ import annotations

import copy
from collections import Counter
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import pytest
import yaml

from facesim.manifests import main as manifests_main
from facesim.pipeline.cli import PACKAGE_YAML

# kserve/kserve v0.14.1 pkg/webhook/admission/pod/storage_initializer_injector.go (and v0.20.0
# pkg/constants/constants.go, pkg/utils/storage.go): the volume KServe adds for `pvc://CLAIM/PATH`.
KSERVE_PVC_VOLUME = "kserve-pvc-source"
KSERVE_MODEL_DIR = "/mnt/models"
PREDICTOR_CONTAINER = "kserve-container"


def storage_uri(predictor: dict[str, Any]) -> str | None:
    """What KServe treats as the storageUri: the predictor's field, or the custom container's STORAGE_URI."""
    if predictor.get("storageUri"):
        return predictor["storageUri"]
    for container in predictor.get("containers") or []:
        for env in container.get("env") or []:
            if container["name"] == PREDICTOR_CONTAINER and env["name"] == "STORAGE_URI":
                return env.get("value")
    return None


def as_kserve_leaves_it(predictor: dict[str, Any], direct_mount: bool) -> dict[str, Any]:
    """The predictor's pod after KServe's `InjectStorageInitializer` for a pvc:// storageUri.

    Direct mount (`enableDirectPvcVolumeMount: true`, the released inferenceservice-config of
    0.13-0.15): nothing when kserve-container already mounts a volume named kserve-pvc-source, else
    that volume on the claim mounted at /mnt/models. Storage-initializer mode (false): the volume is
    appended whatever the pod has, mounted at /mnt/pvc."""
    pod = copy.deepcopy(predictor)
    uri = storage_uri(pod)
    if not uri or not uri.startswith("pvc://"):
        return pod
    claim, _, path = uri.removeprefix("pvc://").partition("/")
    container = next(c for c in pod["containers"] if c["name"] == PREDICTOR_CONTAINER)
    mounts = container.setdefault("volumeMounts", [])
    if direct_mount:
        if any(m["name"] == KSERVE_PVC_VOLUME for m in mounts):
            return pod
        mounts.append({"name": KSERVE_PVC_VOLUME, "mountPath": KSERVE_MODEL_DIR, "subPath": path, "readOnly": True})
    else:
        mounts.append({"name": KSERVE_PVC_VOLUME, "mountPath": "/mnt/pvc", "readOnly": True})
    pod.setdefault("volumes", []).append({"name": KSERVE_PVC_VOLUME, "persistentVolumeClaim": {"claimName": claim}})
    return pod


def pod_specs(document: Any) -> Iterator[dict[str, Any]]:
    """Every pod spec in a resource (anything with containers: TFJob replicas, trial templates,
    Deployments, StatefulSets, an InferenceService's predictor)."""
    if isinstance(document, dict):
        if isinstance(document.get("containers"), list):
            yield document
        for value in document.values():
            yield from pod_specs(value)
    elif isinstance(document, list):
        for item in document:
            yield from pod_specs(item)


def claims_mounted_twice(pod: dict[str, Any]) -> list[str]:
    """Claims that two or more of the pod's volumes name; also a volume name used twice."""
    volumes = pod.get("volumes") or []
    claims = Counter(v["persistentVolumeClaim"]["claimName"] for v in volumes if "persistentVolumeClaim" in v)
    names = Counter(v["name"] for v in volumes)
    return [f"claim {c}" for c, n in claims.items() if n > 1] + [f"volume name {v}" for v, n in names.items() if n > 1]


def _rendered(tmp_path: Path, *options: str) -> list[dict[str, Any]]:
    out = tmp_path / "m"
    assert manifests_main(["--out", str(out), *options]) == 0
    return [doc for file in sorted(out.glob("*.yaml")) for doc in yaml.safe_load_all(file.read_text()) if doc]


@pytest.mark.parametrize("direct_mount", [True, False], ids=["direct-pvc-mount", "storage-initializer"])
@pytest.mark.parametrize(
    "options",
    [(), ("--gallery-backend", "postgresql"), ("--deployment-mode", "Knative"), ("--target", "kubeflow-1.10")],
    ids=["directory", "postgresql", "knative", "kubeflow-1.10"],
)
def test_no_rendered_pod_has_two_volumes_on_one_claim(tmp_path: Path, options: tuple, direct_mount: bool) -> None:
    documents = _rendered(tmp_path, *options)
    checked = 0
    for document in documents:
        for pod in pod_specs(document):
            if document["kind"] == "InferenceService":
                pod = as_kserve_leaves_it(pod, direct_mount)
            assert claims_mounted_twice(pod) == [], f"{document['kind']} {document['metadata'].get('name')}"
            checked += 1
    assert checked >= 4  # TFJob, trial template, InferenceService, UI (and PostgreSQL)


def test_the_check_finds_the_predictor_of_old_with_its_storage_uri(tmp_path: Path) -> None:
    """The shape before issue 20: STORAGE_URI on the models claim beside a `gallery` volume on it."""
    (isvc,) = [d for d in _rendered(tmp_path) if d["kind"] == "InferenceService"]
    predictor = isvc["spec"]["predictor"]
    predictor["containers"][0]["env"].append({"name": "STORAGE_URI", "value": "pvc://facesim-models/facenet/1"})
    predictor["containers"][0]["volumeMounts"] = [{"name": "gallery", "mountPath": "/mnt/gallery"}]
    predictor["volumes"] = [{"name": "gallery", "persistentVolumeClaim": {"claimName": "facesim-models"}}]
    assert claims_mounted_twice(predictor) == []  # as rendered: one volume
    assert claims_mounted_twice(as_kserve_leaves_it(predictor, direct_mount=True)) == ["claim facesim-models"]
    # Naming one's own volume kserve-pvc-source only works with direct mounts: the storage
    # initializer's mode appends a second volume of that name, which the API server refuses.
    predictor["volumes"][0]["name"] = predictor["containers"][0]["volumeMounts"][0]["name"] = KSERVE_PVC_VOLUME
    assert claims_mounted_twice(as_kserve_leaves_it(predictor, direct_mount=True)) == []
    assert claims_mounted_twice(as_kserve_leaves_it(predictor, direct_mount=False)) == [
        "claim facesim-models",
        f"volume name {KSERVE_PVC_VOLUME}",
    ]


def test_every_pipeline_step_mounts_each_claim_once() -> None:
    _, platform_spec = yaml.safe_load_all(PACKAGE_YAML.read_text())
    for name, executor in platform_spec["platforms"]["kubernetes"]["deploymentSpec"]["executors"].items():
        claims = Counter(mount["constant"] for mount in executor["pvcMount"])
        assert set(claims.values()) == {1}, name
