"""A pod template (the `spec` of a Kubernetes pod, as a TFJob replica, an InferenceService's
predictor or a Deployment carries it) made into the emulator's PodSpec, for either runtime."""

from __future__ import annotations

from typing import Any

from facesim.emulator.pods import (
    Cluster,
    EmulationError,
    PodFields,
    PodSpec,
    container_env,
    container_limits,
    pod_security,
)
from facesim.emulator.volumes import container_mounts

KUBELET_ISSUE = "kubernetes#99453, fixed in Kubernetes 1.35"


def refuse_shared_claims(pod_name: str, volumes: list[dict[str, Any]]) -> None:
    """Two volumes of one pod on one claim: the kubelet before Kubernetes 1.35 never mounts them and
    leaves the pod in ContainerCreating; refused here with the kubelet's message."""
    by_claim: dict[str, list[str]] = {}
    for volume in volumes:
        if claim := (volume.get("persistentVolumeClaim") or {}).get("claimName"):
            by_claim.setdefault(claim, []).append(volume["name"])
    for claim, names in by_claim.items():
        if len(names) > 1:
            all_names = " ".join(sorted(v["name"] for v in volumes))
            raise EmulationError(
                f"pod {pod_name}: volumes {', '.join(names)} are all on claim {claim}. The kubelet leaves such a pod in "
                f'ContainerCreating: "Unable to attach or mount volumes: unmounted volumes=[{" ".join(sorted(names))}], '
                f'unattached volumes=[{all_names}]: timed out waiting for the condition" ({KUBELET_ISSUE}). '
                "Mount the claim once, with one subPath per location."
            )


def single_container(pod_name: str, pod: dict[str, Any]) -> dict[str, Any]:
    containers = pod.get("containers") or []
    if len(containers) != 1:
        raise EmulationError(f"{pod_name}: the emulator runs pods of one container; this one has {len(containers)}")
    return containers[0]


def pod_spec_of(
    cluster: Cluster,
    name: str,
    namespace: str,
    pod: dict[str, Any],
    container: dict[str, Any],
    address: str,
    labels: dict[str, str] | None = None,
    annotations: dict[str, str] | None = None,
) -> PodSpec:
    """The PodSpec of `container` in pod template `pod` (every error before anything starts)."""
    refuse_shared_claims(name, pod.get("volumes") or [])
    labels = dict(labels or {})
    fields = PodFields(
        name, namespace, address, labels, dict(annotations or {}), pod.get("serviceAccountName", "default")
    )
    return PodSpec(
        name=name,
        command=list(container.get("command") or []),
        args=[str(a) for a in container.get("args") or []],
        env=container_env(container, cluster.env_sources, fields),
        mounts=container_mounts(pod, container, cluster.volumes, name),
        hosts=cluster.dns,
        address=address,
        labels=labels,
        image=container.get("image", ""),
        security=pod_security(pod, container),
        limits=container_limits(container),
    )
