"""The predictor on a cluster: a KServe InferenceService (custom predictor) and `facesim serve --backend cluster`.

The pod mounts each claim once, as one volume: the model read-only at /mnt/models (where KServe
would mount a storageUri) and the gallery read-write at /mnt/gallery (the enrol endpoint writes
it), both subPaths of the models claim by default. It gives KServe no storageUri (no
`STORAGE_URI`): for `pvc://CLAIM/PATH` KServe adds its own volume `kserve-pvc-source` on that claim
(kserve/kserve v0.14.1 pkg/webhook/admission/pod/storage_initializer_injector.go,
`InjectStorageInitializer`: the `pvcSourceVolume` named `PvcSourceMountName`, mounted at
/mnt/models with the path as subPath; v0.20.0 pkg/utils/storage.go `AddModelMount` skips it only
when a volume of that *name* exists), and a pod with two volumes on one claim stays in
ContainerCreating on kubelets before Kubernetes 1.35 (kubernetes/kubernetes#99453, fixed by
#122140).
"""

from __future__ import annotations

import argparse
import sys
from dataclasses import dataclass, field

from kserve import models as kserve_models
from kubernetes import client as k8s

from facesim.cluster.client import ClusterError, api_status, explain_api_error, sdk_client
from facesim.cluster.resources import (
    ClusterConfig,
    Resources,
    add_image_arguments,
    admin_token_env,
    container_security_context,
    images_from_args,
    pod_security_context,
    predictor_service_url,
    to_manifest,
)
from facesim.cluster.targets import DEPLOYMENT_MODES, FORMER_MODE_NAMES, Target, add_target_argument, canonical_mode
from facesim.cluster.targets import target as target_named
from facesim.cluster.volumes import PvcMount, pvc_uri, pvc_volumes
from facesim.contract.api import MODEL_NAME, READY_PATH

ISVC_API_VERSION = "serving.kserve.io/v1beta1"
PREDICTOR_CONTAINER = "kserve-container"  # the name KServe expects for a custom predictor

PREDICTOR_PORT = 8080
KSERVE_MODEL_DIR = "/mnt/models"  # where KServe would mount a storageUri
GALLERY_MOUNT = "/mnt/gallery"
# Knative Serving refuses PVC volumes, writable PVC mounts and a pod securityContext (fsGroup) unless
# these config-features flags are enabled (knative-serving/config-features); see docs/cluster.md.
KNATIVE_FEATURE_FLAGS = (
    "kubernetes.podspec-persistent-volume-claim",
    "kubernetes.podspec-persistent-volume-write",
    "kubernetes.podspec-securitycontext",
)
# The predictor loads the model, the gallery and the detector before it listens: the startup probe
# gives it this long before the liveness probe may restart it.
STARTUP_SECONDS = 300


@dataclass
class InferenceServiceConfig:
    """The `facenet` predictor as an InferenceService."""

    name: str = "facesim"
    model_uri: str = "pvc://facesim-models/facenet/1"
    gallery_uri: str = "pvc://facesim-models/galleries/lfw/1"
    deployment_mode: str = "Standard"  # or Knative (RawDeployment and Serverless: their former names)
    target: Target = field(default_factory=target_named)  # which KServe: the annotation's mode name
    min_replicas: int = 1
    max_replicas: int = 1  # one writer of the gallery
    resources: Resources = field(
        default_factory=lambda: Resources(cpu="1", memory="2Gi", cpu_limit="2", memory_limit="4Gi")
    )
    predictor_args: tuple[str, ...] = ()  # more `python -m facesim.inference` options (e.g. --workers 2)
    cluster: ClusterConfig = field(default_factory=ClusterConfig)

    def __post_init__(self) -> None:
        self.deployment_mode = canonical_mode(self.deployment_mode)
        pvc_uri(self.model_uri)
        pvc_uri(self.gallery_uri)
        if not 0 <= self.min_replicas <= self.max_replicas or self.max_replicas < 1:
            raise ValueError("replicas must satisfy 0 <= min <= max and max >= 1")

    @property
    def namespace(self) -> str:
        return self.cluster.namespace


def _probe(path: str, period: int, failures: int) -> k8s.V1Probe:
    return k8s.V1Probe(
        http_get=k8s.V1HTTPGetAction(path=path, port=PREDICTOR_PORT),
        period_seconds=period,
        timeout_seconds=5,
        failure_threshold=failures,
    )


def model_mount(config: InferenceServiceConfig) -> PvcMount:
    return PvcMount(config.model_uri, KSERVE_MODEL_DIR, read_only=True)


def predictor_container(config: InferenceServiceConfig, volume_mounts: list[k8s.V1VolumeMount]) -> k8s.V1Container:
    args = [
        "--model_name",
        MODEL_NAME,
        "--model_dir",
        KSERVE_MODEL_DIR,
        "--gallery",
        GALLERY_MOUNT,
        "--http_port",
        str(PREDICTOR_PORT),
        "--host",
        "0.0.0.0",  # the pod's every interface: the Service routes to it (the default is 127.0.0.1)
        *config.predictor_args,
    ]
    return k8s.V1Container(
        name=PREDICTOR_CONTAINER,
        image=config.cluster.image("predictor"),
        command=["python", "-m", "facesim.inference"],
        args=args,
        env=[admin_token_env()],
        ports=[k8s.V1ContainerPort(name="http1", container_port=PREDICTOR_PORT, protocol="TCP")],
        startup_probe=_probe("/v2/health/live", period=5, failures=STARTUP_SECONDS // 5),
        readiness_probe=_probe(READY_PATH, period=5, failures=3),
        liveness_probe=_probe("/v2/health/live", period=15, failures=4),
        resources=config.resources.requirements(),
        volume_mounts=volume_mounts,
        security_context=container_security_context(),
    )


def _pod_security_context(deployment_mode: str) -> k8s.V1PodSecurityContext:
    """The shared one; Knative's securityContext flag admits fsGroup but not fsGroupChangePolicy."""
    context = pod_security_context()
    if deployment_mode == "Knative":
        context.fs_group_change_policy = None
    return context


def inference_service(config: InferenceServiceConfig) -> kserve_models.V1beta1InferenceService:
    """The InferenceService resource (serving.kserve.io/v1beta1)."""
    volumes, volume_mounts = pvc_volumes([model_mount(config), PvcMount(config.gallery_uri, GALLERY_MOUNT)])
    return kserve_models.V1beta1InferenceService(
        api_version=ISVC_API_VERSION,
        kind="InferenceService",
        metadata=k8s.V1ObjectMeta(
            name=config.name,
            namespace=config.namespace,
            annotations={"serving.kserve.io/deploymentMode": config.target.deployment_mode(config.deployment_mode)},
            labels={"app.kubernetes.io/part-of": "facesim", "app.kubernetes.io/name": "facesim-predictor"},
        ),
        spec=kserve_models.V1beta1InferenceServiceSpec(
            predictor=kserve_models.V1beta1PredictorSpec(
                min_replicas=config.min_replicas,
                max_replicas=config.max_replicas,
                containers=[predictor_container(config, volume_mounts)],
                volumes=volumes,
                security_context=_pod_security_context(config.deployment_mode),
            )
        ),
    )


@dataclass
class ReadyOptions:
    timeout: int = 600
    poll_interval: float = 10.0


def _kserve_client(kubeconfig: str | None):
    from kserve import KServeClient

    return sdk_client(KServeClient, kubeconfig)


def deploy_inference_service(
    config: InferenceServiceConfig,
    wait: bool = True,
    kubeconfig: str | None = None,
    options: ReadyOptions | None = None,
) -> str:
    """Create the InferenceService, or replace it when it exists; with `wait`, wait until Ready.

    Returns the predictor's in-cluster URL. Raises ClusterError with a message fit for the user.
    """
    options = options or ReadyOptions()
    namespace, name = config.namespace, config.name
    kserve_client = _kserve_client(kubeconfig)
    resource = inference_service(config)
    current = _current(kserve_client, namespace, name)
    verb = "create" if current is None else "update"
    try:
        if current is None:
            kserve_client.create(resource, namespace=namespace)
            generation = None
        else:
            resource.metadata.resource_version = current["metadata"]["resourceVersion"]
            generation = kserve_client.replace(name, resource, namespace=namespace)["metadata"].get("generation")
    except RuntimeError as error:
        if verb == "update" and api_status(error) == 409:
            raise ClusterError(f"InferenceService {namespace}/{name} changed while updating it; run again") from None
        raise explain_api_error(error, verb, "InferenceService", namespace, name) from None
    print(f"InferenceService {namespace}/{name} {verb}d", file=sys.stderr)
    if wait:
        _wait_ready(kserve_client, namespace, name, generation, options)
    return predictor_service_url(name, namespace)


def _current(kserve_client, namespace: str, name: str) -> dict | None:
    try:
        return kserve_client.get(name, namespace=namespace)
    except RuntimeError as error:
        if api_status(error) == 404:
            return None
        raise explain_api_error(error, "get", "InferenceService", namespace, name) from None


def _wait_ready(kserve_client, namespace: str, name: str, generation: int | None, options: ReadyOptions) -> None:
    try:
        kserve_client.wait_isvc_ready(
            name,
            namespace=namespace,
            timeout_seconds=options.timeout,
            polling_interval=options.poll_interval,
            expected_generation=generation,
        )
    except RuntimeError as error:
        if "Timeout" in str(error):
            raise ClusterError(
                f"InferenceService {namespace}/{name} not Ready after {options.timeout} s; "
                f"see `kubectl -n {namespace} describe inferenceservice {name}` and the predictor pod's logs"
            ) from None
        raise explain_api_error(error, "watch", "InferenceService", namespace, name) from None
    print(f"InferenceService {namespace}/{name} is Ready", file=sys.stderr)


# ---- `facesim serve --backend cluster` --------------------------------------------------


def add_cluster_arguments(parser: argparse.ArgumentParser) -> None:
    """The options of `facesim serve --backend cluster` (for a parser that also takes the local ones)."""
    defaults = InferenceServiceConfig()
    add = parser.add_argument
    add("--name", default=defaults.name, help="InferenceService name (default: %(default)s)")
    add("--namespace", default=defaults.cluster.namespace, help="namespace (default: %(default)s)")
    add_image_arguments(parser)
    add(
        "--deployment-mode",
        choices=(*DEPLOYMENT_MODES, *FORMER_MODE_NAMES),
        default=defaults.deployment_mode,
        help="KServe deployment mode, rendered by the name the --target's KServe knows (default: %(default)s; "
        f"Knative needs the feature flags {', '.join(KNATIVE_FEATURE_FLAGS)})",
    )
    add_target_argument(parser)
    add("--kubeconfig", help="kubeconfig file (default: $KUBECONFIG or ~/.kube/config)")
    add("--timeout", type=int, default=ReadyOptions.timeout, help="seconds to wait for Ready (default: %(default)s)")
    add("--no-wait", action="store_true", help="return once the InferenceService is created")
    add("--dry-run", action="store_true", help="print the InferenceService as YAML and change nothing")


def _parser() -> argparse.ArgumentParser:
    parser = argparse.ArgumentParser(
        prog="facesim serve --backend cluster",
        description="Deploy the facenet predictor as a KServe InferenceService (create or update) and wait "
        "until it is Ready. Other options are passed to the predictor container (e.g. --workers 2).",
    )
    defaults = InferenceServiceConfig()
    parser.add_argument("--backend", choices=("cluster",), default="cluster", help=argparse.SUPPRESS)
    parser.add_argument(
        "--model",
        "--model_dir",
        dest="model",
        default=defaults.model_uri,
        help="model artifact as pvc://CLAIM/PATH (default: %(default)s)",
    )
    parser.add_argument(
        "--gallery",
        "--gallery_dir",
        dest="gallery",
        default=defaults.gallery_uri,
        help="gallery as pvc://CLAIM/PATH (default: %(default)s)",
    )
    add_cluster_arguments(parser)
    return parser


FIXED_PREDICTOR_OPTIONS = ("--port", "--http_port", "--model_name")


def main(argv: list[str] | None = None) -> int:
    parser = _parser()
    args, predictor_args = parser.parse_known_args(sys.argv[1:] if argv is None else argv)
    fixed = [a for a in predictor_args if a.split("=")[0] in FIXED_PREDICTOR_OPTIONS]
    if fixed:
        parser.error(f"{', '.join(fixed)}: the InferenceService serves model {MODEL_NAME} on port {PREDICTOR_PORT}")
    try:
        config = InferenceServiceConfig(
            name=args.name,
            model_uri=args.model,
            gallery_uri=args.gallery,
            deployment_mode=args.deployment_mode,
            target=args.target,
            predictor_args=tuple(predictor_args),
            cluster=ClusterConfig(namespace=args.namespace, images=images_from_args(args)),
        )
    except ValueError as error:
        parser.error(str(error))
    if config.deployment_mode == "Knative":
        print(
            f"facesim serve: Knative mode needs these Knative Serving features enabled: "
            f"{', '.join(KNATIVE_FEATURE_FLAGS)} (docs/cluster.md)",
            file=sys.stderr,
        )
    if args.dry_run:
        import yaml

        print(yaml.safe_dump(to_manifest(inference_service(config)), sort_keys=False), end="")
        return 0
    try:
        url = deploy_inference_service(
            config, wait=not args.no_wait, kubeconfig=args.kubeconfig, options=ReadyOptions(timeout=args.timeout)
        )
    except ClusterError as error:
        print(f"facesim serve: {error}", file=sys.stderr)
        return 1
    print(url)
    return 0
