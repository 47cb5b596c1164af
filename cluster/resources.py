"""Cluster storage and the pieces every cluster resource shares.

- Storage: a csi-driver-nfs StorageClass (docs/protocol.md: the maintained NFS route) and the
  ReadWriteMany PVCs for data, runs and models, with their mounts.
- Access: the namespace (labelled for Katib's metrics collector) and the pipeline's RBAC
  (TFJobs, Experiments, InferenceServices, pod logs in its namespace, nothing more).
- What every workload shares: images, the non-root security context, resource requests.
- Kubernetes API errors turned into messages that say what to do (`ClusterError`).

Builders return `kubernetes.client` model objects; `to_manifest` turns any SDK object
(Kubernetes, Training Operator, Katib, KServe) into the plain dict that YAML and the API take.
"""

from __future__ import annotations

import json
import os
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

from kubernetes import client as k8s

from facesim.contract.version import __version__
from facesim.storage.uris import StorageUri, parse_uri

# Where the PVCs are mounted in every facesim pod (the predictor's model comes in through KServe's
# storageUri instead, which KServe mounts read-only at /mnt/models).
DATA_MOUNT = "/mnt/data"
RUNS_MOUNT = "/mnt/runs"
MODELS_MOUNT = "/mnt/models"
NON_ROOT_UID = 1000  # the `facesim` user of every image in containers/
KATIB_INJECTION_LABEL = "katib.kubeflow.org/metrics-collector-injection"
APP_LABEL = "app.kubernetes.io/part-of"


NAMESPACE_ENV = "FACESIM_NAMESPACE"
POD_NAMESPACE_FILE = Path("/var/run/secrets/kubernetes.io/serviceaccount/namespace")


def default_namespace() -> str:
    """$FACESIM_NAMESPACE, else the namespace of the pod we run in (a pipeline step creates its
    TFJobs, Experiments and InferenceServices beside itself, where its PVCs and RBAC are), else facesim."""
    if os.environ.get(NAMESPACE_ENV):
        return os.environ[NAMESPACE_ENV]
    if POD_NAMESPACE_FILE.is_file():
        return POD_NAMESPACE_FILE.read_text().strip()
    return "facesim"


@dataclass
class ClusterConfig:
    """Where facesim lives on a cluster: namespace, images, the pipeline's service account."""

    namespace: str = field(default_factory=default_namespace)
    image_registry: str = "ghcr.io/facesim"
    image_tag: str = __version__
    service_account: str = "facesim-pipeline"

    def image(self, component: str) -> str:
        """Image of one component built from containers/<component>.Dockerfile."""
        return f"{self.image_registry.rstrip('/')}/facesim-{component}:{self.image_tag}"


@dataclass
class Resources:
    """CPU/memory requests and limits of one container (Kubernetes quantities)."""

    cpu: str = "1"
    memory: str = "2Gi"
    cpu_limit: str = "2"
    memory_limit: str = "4Gi"

    def requirements(self) -> k8s.V1ResourceRequirements:
        return k8s.V1ResourceRequirements(
            requests={"cpu": self.cpu, "memory": self.memory},
            limits={"cpu": self.cpu_limit, "memory": self.memory_limit},
        )


@dataclass(frozen=True)
class VolumeClaim:
    """One ReadWriteMany PVC and where facesim pods mount it."""

    role: str  # data, runs, models
    name: str
    size: str
    mount_path: str


@dataclass
class StorageConfig:
    """The NFS StorageClass and the three shared PVCs."""

    storage_class: str = "facesim-nfs"
    nfs_server: str = "nfs-server.nfs.svc.cluster.local"
    nfs_share: str = "/exports/facesim"
    mount_options: tuple[str, ...] = ("nfsvers=4.1", "hard")
    claims: tuple[VolumeClaim, ...] = field(
        default_factory=lambda: (
            VolumeClaim("data", "facesim-data", "20Gi", DATA_MOUNT),
            VolumeClaim("runs", "facesim-runs", "20Gi", RUNS_MOUNT),
            VolumeClaim("models", "facesim-models", "5Gi", MODELS_MOUNT),
        )
    )

    def claim(self, role: str) -> VolumeClaim:
        for candidate in self.claims:
            if candidate.role == role:
                return candidate
        raise KeyError(f"no PVC for {role!r}; known: {', '.join(c.role for c in self.claims)}")


def storage_class(config: StorageConfig) -> k8s.V1StorageClass:
    """csi-driver-nfs StorageClass: each PVC becomes a subdirectory of SERVER:SHARE."""
    return k8s.V1StorageClass(
        api_version="storage.k8s.io/v1",
        kind="StorageClass",
        metadata=k8s.V1ObjectMeta(name=config.storage_class, labels={APP_LABEL: "facesim"}),
        provisioner="nfs.csi.k8s.io",
        parameters={"server": config.nfs_server, "share": config.nfs_share},
        reclaim_policy="Retain",  # datasets and trained models outlive a `kubectl delete pvc`
        volume_binding_mode="Immediate",
        allow_volume_expansion=True,
        mount_options=list(config.mount_options),
    )


def persistent_volume_claims(config: StorageConfig, namespace: str) -> list[k8s.V1PersistentVolumeClaim]:
    """The data, runs and models PVCs, ReadWriteMany: every worker, trial and predictor shares them."""
    return [
        k8s.V1PersistentVolumeClaim(
            api_version="v1",
            kind="PersistentVolumeClaim",
            metadata=k8s.V1ObjectMeta(
                name=claim.name, namespace=namespace, labels={APP_LABEL: "facesim", "facesim/volume": claim.role}
            ),
            spec=k8s.V1PersistentVolumeClaimSpec(
                access_modes=["ReadWriteMany"],
                storage_class_name=config.storage_class,
                resources=k8s.V1VolumeResourceRequirements(requests={"storage": claim.size}),
            ),
        )
        for claim in config.claims
    ]


def claim_volumes(config: StorageConfig, roles: tuple[str, ...]) -> list[k8s.V1Volume]:
    return [
        k8s.V1Volume(
            name=config.claim(role).role,
            persistent_volume_claim=k8s.V1PersistentVolumeClaimVolumeSource(claim_name=config.claim(role).name),
        )
        for role in roles
    ]


def claim_mounts(config: StorageConfig, roles: tuple[str, ...]) -> list[k8s.V1VolumeMount]:
    return [k8s.V1VolumeMount(name=role, mount_path=config.claim(role).mount_path) for role in roles]


def pvc_uri(uri: str) -> StorageUri:
    """`uri` parsed by storage.uris, required to be `pvc://CLAIM/PATH` as KServe's storageUri takes it."""
    location = parse_uri(uri)
    if location.scheme != "pvc" or not location.path:
        raise ValueError(f"{uri!r} is not a pvc://CLAIM/PATH URI (e.g. pvc://facesim-models/facenet/1)")
    return location


def predictor_service_url(isvc_name: str, namespace: str) -> str:
    """In-cluster address of an InferenceService's predictor (KServe's `<name>-predictor` Service, port 80)."""
    return f"http://{isvc_name}-predictor.{namespace}.svc.cluster.local"


def container_security_context() -> k8s.V1SecurityContext:
    """Non-root, no privilege escalation, no capabilities (the `restricted` Pod Security level)."""
    return k8s.V1SecurityContext(
        run_as_non_root=True,
        run_as_user=NON_ROOT_UID,
        run_as_group=NON_ROOT_UID,
        allow_privilege_escalation=False,
        capabilities=k8s.V1Capabilities(drop=["ALL"]),
        seccomp_profile=k8s.V1SeccompProfile(type="RuntimeDefault"),
    )


def pod_security_context() -> k8s.V1PodSecurityContext:
    # fsGroup: files the pods write on the shared volumes stay group-writable for the others.
    return k8s.V1PodSecurityContext(
        run_as_non_root=True,
        run_as_user=NON_ROOT_UID,
        fs_group=NON_ROOT_UID,
        seccomp_profile=k8s.V1SeccompProfile(type="RuntimeDefault"),
    )


def namespace(cluster: ClusterConfig) -> k8s.V1Namespace:
    """The namespace, labelled so Katib injects its StdOut metrics collector (docs/protocol.md)."""
    return k8s.V1Namespace(
        api_version="v1",
        kind="Namespace",
        metadata=k8s.V1ObjectMeta(
            name=cluster.namespace, labels={APP_LABEL: "facesim", KATIB_INJECTION_LABEL: "enabled"}
        ),
    )


# What the pipeline's service account may do in its namespace, and nothing more.
PIPELINE_RULES: tuple[tuple[str, tuple[str, ...], tuple[str, ...]], ...] = (
    ("kubeflow.org", ("tfjobs", "experiments"), ("create", "get", "list", "watch", "delete")),
    ("kubeflow.org", ("trials",), ("get", "list", "watch")),
    ("serving.kserve.io", ("inferenceservices",), ("create", "get", "list", "watch", "update", "patch", "delete")),
    ("", ("pods",), ("get", "list", "watch")),
    ("", ("pods/log",), ("get",)),
)


def rbac_resources(cluster: ClusterConfig) -> list[Any]:
    """ServiceAccount, Role and RoleBinding for the pipeline (kfp 2 creates resources through the SDKs)."""
    meta = {"namespace": cluster.namespace, "labels": {APP_LABEL: "facesim"}}
    role_name = f"{cluster.service_account}-role"
    return [
        k8s.V1ServiceAccount(
            api_version="v1", kind="ServiceAccount", metadata=k8s.V1ObjectMeta(name=cluster.service_account, **meta)
        ),
        k8s.V1Role(
            api_version="rbac.authorization.k8s.io/v1",
            kind="Role",
            metadata=k8s.V1ObjectMeta(name=role_name, **meta),
            rules=[
                k8s.V1PolicyRule(api_groups=[group], resources=list(resources), verbs=list(verbs))
                for group, resources, verbs in PIPELINE_RULES
            ],
        ),
        k8s.V1RoleBinding(
            api_version="rbac.authorization.k8s.io/v1",
            kind="RoleBinding",
            metadata=k8s.V1ObjectMeta(name=f"{cluster.service_account}-binding", **meta),
            role_ref=k8s.V1RoleRef(api_group="rbac.authorization.k8s.io", kind="Role", name=role_name),
            subjects=[
                k8s.RbacV1Subject(kind="ServiceAccount", name=cluster.service_account, namespace=cluster.namespace)
            ],
        ),
    ]


def to_manifest(resource: Any) -> dict[str, Any]:
    """Plain dict (camelCase keys, no None fields) of any SDK model object or dict."""
    return k8s.ApiClient().sanitize_for_serialization(resource)


class ClusterError(RuntimeError):
    """A cluster operation failed for a reason the user can act on; the message says what to do."""


def _api_exception(error: BaseException) -> k8s.ApiException | None:
    """The Kubernetes ApiException behind an SDK error (the SDKs wrap it in RuntimeError)."""
    seen: BaseException | None = error
    while seen is not None:
        if isinstance(seen, k8s.ApiException):
            return seen
        seen = seen.__cause__ or seen.__context__
    return None


def _server_message(api_error: k8s.ApiException) -> str:
    try:
        return str(json.loads(api_error.body or "{}").get("message") or api_error.reason)
    except (ValueError, AttributeError):
        return str(api_error.reason)


def explain_api_error(error: BaseException, verb: str, kind: str, namespace: str, name: str) -> ClusterError:
    """A ClusterError saying why `verb kind namespace/name` failed and what to do about it."""
    what = f"cannot {verb} {kind} {namespace}/{name}"
    api_error = _api_exception(error)
    if api_error is None:
        text = str(error)
        if "Max retries exceeded" in text or "Connection refused" in text or "NewConnectionError" in text:
            return ClusterError(f"{what}: the Kubernetes API server is unreachable; check KUBECONFIG / --kubeconfig")
        return ClusterError(f"{what}: {text}")
    detail = _server_message(api_error)
    hints = {
        401: "not authenticated; refresh the credentials in your kubeconfig",
        403: f"forbidden by RBAC ({detail}); apply rbac.yaml from `facesim manifests` "
        f"and run as its service account, or ask an admin for {verb} rights on {kind} in {namespace}",
        404: f"not found ({detail}); is the {kind} API installed (see docs/cluster.md) and the namespace right?",
        409: f"a {kind} named {name} already exists; delete it (kubectl -n {namespace} delete {kind.lower()} {name}) "
        "or choose another name",
        422: f"the cluster rejected the resource as invalid: {detail}",
    }
    return ClusterError(f"{what}: {hints.get(api_error.status, f'HTTP {api_error.status}: {detail}')}")


def api_status(error: BaseException) -> int | None:
    """HTTP status of the Kubernetes API error behind `error`, if there is one."""
    api_error = _api_exception(error)
    return api_error.status if api_error is not None else None
