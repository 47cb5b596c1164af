"""The pieces every cluster resource shares.

- Access: the namespace (labelled for Katib's metrics collector) and the pipeline's RBAC
  (TFJobs, Experiments, InferenceServices, pod logs, and what KFP's own step pods need, in its
  namespace, nothing more).
- What every workload shares: the images (one registry and tag), the non-root security context,
  resource requests, the Istio opt-out of job pods, the owner of what a pipeline step creates.
Storage (the NFS StorageClass, the PVCs and their mounts) is `facesim.cluster.volumes`; talking to a
cluster (API clients, errors, SIGTERM while following a job) is `facesim.cluster.client`.

Builders return `kubernetes.client` model objects; `to_manifest` turns any SDK object
(Kubernetes, Training Operator, Katib, KServe) into the plain dict that YAML and the API take.
"""

from __future__ import annotations

import argparse
import hashlib
import os
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

from kubernetes import client as k8s

from facesim.contract.auth import ADMIN_TOKEN_ENV
from facesim.contract.version import __version__

NON_ROOT_UID = 1000  # the `facesim` user of every image in containers/
KATIB_INJECTION_LABEL = "katib.kubeflow.org/metrics-collector-injection"
APP_LABEL = "app.kubernetes.io/part-of"
# Job pods (TFJob workers, Katib trials) in a Kubeflow profile namespace would get an Istio sidecar
# that never exits, so the pod, the TFJob and the trial would never complete.
NO_ISTIO_SIDECAR = {"sidecar.istio.io/inject": "false"}
# The downward-API variables every pipeline step gets (pipeline/definition.py): the step's pod owns
# the TFJob or Experiment it creates, so they go when the run's pods go.
OWNER_POD_ENV = {"FACESIM_POD_NAME": "metadata.name", "FACESIM_POD_UID": "metadata.uid"}
IMAGE_REGISTRY_ENV = "FACESIM_IMAGE_REGISTRY"
IMAGE_TAG_ENV = "FACESIM_IMAGE_TAG"
DEFAULT_IMAGE_REGISTRY = "ghcr.io/facesim"


# Names that other names are made from: the Training Operator names each replica's pod and Service
# `<job>-worker-<index>`, and Katib names each trial (and so its TFJob) `<experiment>-<8 characters>`.
# A Service name is a DNS label: at most 63 characters.
DNS_LABEL_MAX = 63
TFJOB_REPLICA_SUFFIX = len("-worker-999")
KATIB_TRIAL_SUFFIX = len("-") + 8
TFJOB_NAME_MAX = DNS_LABEL_MAX - TFJOB_REPLICA_SUFFIX
EXPERIMENT_NAME_MAX = DNS_LABEL_MAX - KATIB_TRIAL_SUFFIX - TFJOB_REPLICA_SUFFIX


def bounded_name(name: str, limit: int) -> str:
    """`name` when it has at most `limit` characters, else its head and 8 hex digits of its hash:
    deterministic (a step run twice names the same job) and distinct for names sharing a head."""
    if len(name) <= limit:
        return name
    digest = hashlib.sha256(name.encode()).hexdigest()[:8]
    return f"{name[: limit - len(digest) - 1].rstrip('-')}-{digest}"


NAMESPACE_ENV = "FACESIM_NAMESPACE"
POD_NAMESPACE_FILE = Path("/var/run/secrets/kubernetes.io/serviceaccount/namespace")


def default_namespace() -> str:
    """$FACESIM_NAMESPACE, else the namespace of the pod we run in (a pipeline step creates its
    TFJobs, Experiments and InferenceServices beside itself, where its PVCs and RBAC are), else facesim."""
    return os.environ.get(NAMESPACE_ENV) or pod_namespace() or "facesim"


def pod_namespace() -> str | None:
    """The namespace of the pod we run in, if we run in one."""
    return POD_NAMESPACE_FILE.read_text().strip() if POD_NAMESPACE_FILE.is_file() else None


@dataclass(frozen=True)
class Images:
    """The one image setting: the registry the four facesim images were pushed to, and their tag.

    Defaults: $FACESIM_IMAGE_REGISTRY and $FACESIM_IMAGE_TAG (a compiled pipeline gives them to every
    step, so the launchers inside the steps use the pipeline's own registry and tag), else
    ghcr.io/facesim and the package version.
    """

    registry: str = field(default_factory=lambda: os.environ.get(IMAGE_REGISTRY_ENV) or DEFAULT_IMAGE_REGISTRY)
    tag: str = field(default_factory=lambda: os.environ.get(IMAGE_TAG_ENV) or __version__)

    def __post_init__(self) -> None:
        if not self.registry.strip("/ ") or not self.tag.strip():
            raise ValueError("--image-registry and --image-tag must not be empty")

    def image(self, component: str) -> str:
        """Image of one component built from containers/<component>.Dockerfile."""
        return f"{self.registry.rstrip('/')}/facesim-{component}:{self.tag}"

    def env(self) -> dict[str, str]:
        """The variables that make `Images()` this setting in another process (a pipeline step)."""
        return {IMAGE_REGISTRY_ENV: self.registry, IMAGE_TAG_ENV: self.tag}


def add_image_arguments(parser: argparse.ArgumentParser) -> None:
    """--image-registry and --image-tag, the same in every command that makes cluster resources."""
    defaults = Images()
    registry_help = f"registry the facesim images were pushed to (default: ${IMAGE_REGISTRY_ENV}, else %(default)s)"
    parser.add_argument("--image-registry", default=defaults.registry, help=registry_help)
    tag_help = f"tag of the four facesim-* images (default: ${IMAGE_TAG_ENV}, else %(default)s)"
    parser.add_argument("--image-tag", default=defaults.tag, help=tag_help)


def images_from_args(args: argparse.Namespace) -> Images:
    """The Images of a command line with `add_image_arguments` (ValueError when one is empty)."""
    return Images(args.image_registry, args.image_tag)


@dataclass
class ClusterConfig:
    """Where facesim lives on a cluster: namespace, images, the pipeline's service account."""

    namespace: str = field(default_factory=default_namespace)
    images: Images = field(default_factory=Images)
    service_account: str = "facesim-pipeline"

    def image(self, component: str) -> str:
        return self.images.image(component)


@dataclass
class Resources:
    """CPU/memory requests and limits of one container (Kubernetes quantities)."""

    cpu: str = "1"
    memory: str = "2Gi"
    cpu_limit: str = "2"
    memory_limit: str = "4Gi"

    def cpu_limit_cores(self) -> float:
        """The CPU limit in cores ("500m" is 0.5)."""
        text = self.cpu_limit
        return float(text[:-1]) / 1000 if text.endswith("m") else float(text)

    def requirements(self) -> k8s.V1ResourceRequirements:
        return k8s.V1ResourceRequirements(
            requests={"cpu": self.cpu, "memory": self.memory},
            limits={"cpu": self.cpu_limit, "memory": self.memory_limit},
        )


def predictor_service_url(isvc_name: str, namespace: str) -> str:
    """In-cluster address of an InferenceService's predictor (KServe's `<name>-predictor` Service, port 80)."""
    return f"http://{isvc_name}-predictor.{namespace}.svc.cluster.local"


def container_security_context(uid: int = NON_ROOT_UID) -> k8s.V1SecurityContext:
    """Non-root, no privilege escalation, no capabilities (the `restricted` Pod Security level)."""
    return k8s.V1SecurityContext(
        run_as_non_root=True,
        run_as_user=uid,
        run_as_group=uid,
        allow_privilege_escalation=False,
        capabilities=k8s.V1Capabilities(drop=["ALL"]),
        seccomp_profile=k8s.V1SeccompProfile(type="RuntimeDefault"),
    )


ADMIN_TOKEN_SECRET = "facesim-admin-token"  # key `token`: what gallery writes must present


def admin_token_env() -> k8s.V1EnvVar:
    """$FACESIM_ADMIN_TOKEN for the predictor and the UI, from the admin-token Secret (while it is
    missing or empty, the predictor refuses gallery writes)."""
    selector = k8s.V1SecretKeySelector(name=ADMIN_TOKEN_SECRET, key="token", optional=True)
    return k8s.V1EnvVar(name=ADMIN_TOKEN_ENV, value_from=k8s.V1EnvVarSource(secret_key_ref=selector))


def admin_token_secret(cluster: ClusterConfig) -> k8s.V1Secret:
    """A placeholder with an empty token: set a real one before applying, e.g. `kubectl create secret
    generic facesim-admin-token --from-literal=token=$(openssl rand -hex 32)`."""
    return k8s.V1Secret(
        api_version="v1",
        kind="Secret",
        metadata=k8s.V1ObjectMeta(name=ADMIN_TOKEN_SECRET, namespace=cluster.namespace, labels={APP_LABEL: "facesim"}),
        type="Opaque",
        string_data={"token": ""},
    )


def pod_security_context() -> k8s.V1PodSecurityContext:
    """fsGroup: files the pods write on the shared volumes stay group-writable for the others.
    OnRootMismatch: the kubelet changes ownership only when the volume's root is not already the
    group's, instead of walking every file of the NFS volume at each pod start."""
    return k8s.V1PodSecurityContext(
        run_as_non_root=True,
        run_as_user=NON_ROOT_UID,
        fs_group=NON_ROOT_UID,
        fs_group_change_policy="OnRootMismatch",
        seccomp_profile=k8s.V1SeccompProfile(type="RuntimeDefault"),
    )


def owner_references(namespace: str) -> list[k8s.V1OwnerReference] | None:
    """The pipeline step's pod (OWNER_POD_ENV) as owner of a resource it creates in `namespace`:
    Kubernetes deletes the TFJob or Experiment when the run's pods are deleted. None outside a step,
    or when the resource goes to another namespace (an owner must share it)."""
    name, uid = (os.environ.get(variable) for variable in OWNER_POD_ENV)
    if not (name and uid) or pod_namespace() != namespace:
        return None
    return [k8s.V1OwnerReference(api_version="v1", kind="Pod", name=name, uid=uid)]


def namespace(cluster: ClusterConfig) -> k8s.V1Namespace:
    """The namespace, labelled so Katib injects its StdOut metrics collector (docs/protocol.md)."""
    return k8s.V1Namespace(
        api_version="v1",
        kind="Namespace",
        metadata=k8s.V1ObjectMeta(
            name=cluster.namespace, labels={APP_LABEL: "facesim", KATIB_INJECTION_LABEL: "enabled"}
        ),
    )


@dataclass(frozen=True)
class Rule:
    """One RBAC rule; `names` limits it to those objects."""

    group: str
    resources: tuple[str, ...]
    verbs: tuple[str, ...]
    names: tuple[str, ...] = ()


KFP_LAUNCHER_CONFIGMAP = "kfp-launcher"  # KFP's per-namespace launcher settings (pipeline root)
KFP_ARTIFACT_SECRET = "mlpipeline-minio-artifact"  # KFP's artifact store credentials (MinIO / SeaweedFS)
# What the pipeline's service account may do in its namespace, and nothing more. Pipeline runs use
# it instead of KFP's pipeline-runner (`facesim pipeline submit --service-account`), so it also
# carries what KFP and Argo need in every step pod, as pipeline-runner's Role grants them.
PIPELINE_RULES: tuple[Rule, ...] = (
    Rule("kubeflow.org", ("tfjobs", "experiments"), ("create", "get", "list", "watch", "delete")),
    Rule("kubeflow.org", ("trials",), ("get", "list", "watch")),
    Rule("serving.kserve.io", ("inferenceservices",), ("create", "get", "list", "watch", "update", "patch", "delete")),
    Rule("", ("pods",), ("get", "list", "watch")),
    Rule("", ("pods/log",), ("get",)),
    # Argo's executor (3.4+) reports each step's outputs as a WorkflowTaskResult.
    Rule("argoproj.io", ("workflowtaskresults",), ("create", "patch")),
    # KFP's driver and launcher read the pipeline root and the artifact store's credentials.
    Rule("", ("configmaps",), ("get",), (KFP_LAUNCHER_CONFIGMAP,)),
    Rule("", ("secrets",), ("get",), (KFP_ARTIFACT_SECRET,)),
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
                k8s.V1PolicyRule(
                    api_groups=[rule.group],
                    resources=list(rule.resources),
                    verbs=list(rule.verbs),
                    resource_names=list(rule.names) or None,
                )
                for rule in PIPELINE_RULES
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
