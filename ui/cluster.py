"""The web front end on a cluster: a Deployment running `python -m facesim.ui` and its Service.

The UI reaches the predictor at the InferenceService's in-cluster address, over HTTP only.
"""

from __future__ import annotations

from dataclasses import dataclass, field

from kubernetes import client as k8s

from facesim.cluster.resources import (
    APP_LABEL,
    ClusterConfig,
    Resources,
    admin_token_env,
    container_security_context,
    pod_security_context,
    predictor_service_url,
)

UI_PORT = 5000
HEALTH_PATH = "/healthz"
# Flask's session/CSRF key, shared by every replica (each would draw its own otherwise).
SECRET_KEY_ENV = "FACESIM_UI_SECRET_KEY"


@dataclass
class UiDeploymentConfig:
    """The UI Deployment and Service."""

    name: str = "facesim-ui"
    replicas: int = 1
    isvc_name: str = "facesim"  # the InferenceService whose predictor the UI calls
    service_type: str = "ClusterIP"  # expose with an Ingress, `kubectl port-forward`, or LoadBalancer
    secret_name: str = "facesim-ui"  # optional Secret with key `secret-key` (needed from 2 replicas)
    resources: Resources = field(
        default_factory=lambda: Resources(cpu="100m", memory="256Mi", cpu_limit="1", memory_limit="512Mi")
    )
    cluster: ClusterConfig = field(default_factory=ClusterConfig)

    def __post_init__(self) -> None:
        if self.replicas < 1:
            raise ValueError("the UI needs at least 1 replica")
        if self.service_type not in ("ClusterIP", "NodePort", "LoadBalancer"):
            raise ValueError("service type must be ClusterIP, NodePort or LoadBalancer")

    @property
    def predictor_url(self) -> str:
        return predictor_service_url(self.isvc_name, self.cluster.namespace)

    @property
    def labels(self) -> dict[str, str]:
        return {"app.kubernetes.io/name": self.name, APP_LABEL: "facesim"}


def _probe(period: int, failures: int) -> k8s.V1Probe:
    return k8s.V1Probe(
        http_get=k8s.V1HTTPGetAction(path=HEALTH_PATH, port="http"),
        initial_delay_seconds=3,
        period_seconds=period,
        timeout_seconds=3,
        failure_threshold=failures,
    )


def ui_container(config: UiDeploymentConfig) -> k8s.V1Container:
    secret_key = k8s.V1EnvVarSource(
        secret_key_ref=k8s.V1SecretKeySelector(name=config.secret_name, key="secret-key", optional=True)
    )
    return k8s.V1Container(
        name="ui",
        image=config.cluster.image("ui"),
        command=[
            "python",
            "-m",
            "facesim.ui",
            "--predictor",
            config.predictor_url,
            "--port",
            str(UI_PORT),
            "--host",
            "0.0.0.0",
        ],
        ports=[k8s.V1ContainerPort(name="http", container_port=UI_PORT, protocol="TCP")],
        env=[k8s.V1EnvVar(name=SECRET_KEY_ENV, value_from=secret_key), admin_token_env()],
        readiness_probe=_probe(period=5, failures=3),
        liveness_probe=_probe(period=15, failures=4),
        resources=config.resources.requirements(),
        security_context=container_security_context(),
    )


def ui_deployment(config: UiDeploymentConfig) -> k8s.V1Deployment:
    return k8s.V1Deployment(
        api_version="apps/v1",
        kind="Deployment",
        metadata=k8s.V1ObjectMeta(name=config.name, namespace=config.cluster.namespace, labels=config.labels),
        spec=k8s.V1DeploymentSpec(
            replicas=config.replicas,
            selector=k8s.V1LabelSelector(match_labels={"app.kubernetes.io/name": config.name}),
            template=k8s.V1PodTemplateSpec(
                metadata=k8s.V1ObjectMeta(labels=config.labels),
                spec=k8s.V1PodSpec(
                    containers=[ui_container(config)],
                    security_context=pod_security_context(),
                    automount_service_account_token=False,  # the UI never calls the Kubernetes API
                ),
            ),
        ),
    )


def ui_service(config: UiDeploymentConfig) -> k8s.V1Service:
    return k8s.V1Service(
        api_version="v1",
        kind="Service",
        metadata=k8s.V1ObjectMeta(name=config.name, namespace=config.cluster.namespace, labels=config.labels),
        spec=k8s.V1ServiceSpec(
            type=config.service_type,
            selector={"app.kubernetes.io/name": config.name},
            ports=[k8s.V1ServicePort(name="http", port=80, target_port="http", protocol="TCP")],
        ),
    )
