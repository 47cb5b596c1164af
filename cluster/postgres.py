"""A gallery shared by predictor replicas on a cluster: PostgreSQL (StatefulSet + PVC + Secret) and an
InferenceService that scales out (`facesim manifests --gallery-backend postgresql`).

The directory gallery pins the predictor to one replica (one SQLite writer). Here every replica
reads its DSN from the Secret (`$FACESIM_GALLERY_DSN`, never in the manifest's arguments), keeps its
own FAISS index following the database's committed changes, and saves/loads that index on the
models PVC so a new replica is ready without reading the whole gallery. KServe scales replicas
between min and max (HPA on CPU in Standard mode, concurrency in Knative mode).
"""

from __future__ import annotations

import argparse
import copy
import secrets
from dataclasses import dataclass, field
from typing import Any
from urllib.parse import quote

from kserve import models as kserve_models
from kubernetes import client as k8s

from facesim.cluster.inference_service import InferenceServiceConfig, inference_service, model_mount
from facesim.cluster.resources import ClusterConfig, Resources, container_security_context, to_manifest
from facesim.cluster.volumes import PvcMount, pvc_uri, pvc_volumes
from facesim.contract.api import GALLERY_DSN_ENV

POSTGRES_PORT = 5432
POSTGRES_UID = 999  # the `postgres` user of the Debian-based official image
INDEX_MOUNT = "/mnt/gallery-index"
DSN_KEY, PASSWORD_KEY = "dsn", "password"


@dataclass
class PostgresConfig:
    """The database the replicas share (a single-instance StatefulSet; for failover, run CloudNativePG
    instead and put its DSN into the Secret: docs/cluster.md)."""

    name: str = "facesim-postgres"
    image: str = "docker.io/library/postgres:15-bookworm"
    database: str = "facesim"
    user: str = "facesim"
    password: str = field(default_factory=lambda: secrets.token_urlsafe(24))
    storage_size: str = "10Gi"
    storage_class: str | None = None  # the cluster's default (ReadWriteOnce is enough: one server)
    resources: Resources = field(
        default_factory=lambda: Resources(cpu="500m", memory="1Gi", cpu_limit="2", memory_limit="2Gi")
    )
    cluster: ClusterConfig = field(default_factory=ClusterConfig)

    @property
    def secret_name(self) -> str:
        return f"{self.name}-credentials"

    def dsn(self) -> str:
        host = f"{self.name}.{self.cluster.namespace}.svc.cluster.local"
        return f"postgresql://{self.user}:{quote(self.password, safe='')}@{host}:{POSTGRES_PORT}/{self.database}"


@dataclass
class ScalingConfig:
    min_replicas: int = 2
    max_replicas: int = 4
    cpu_percent: int = 70  # Standard mode (HPA): target average CPU utilisation
    concurrency: int = 4  # Knative mode (KPA): target in-flight requests per replica

    def __post_init__(self) -> None:
        if not 2 <= self.min_replicas <= self.max_replicas:
            raise ValueError("a shared gallery runs at least 2 predictor replicas: need 2 <= min <= max replicas")


def _labels(config: PostgresConfig) -> dict[str, str]:
    return {"app.kubernetes.io/part-of": "facesim", "app.kubernetes.io/name": config.name}


def _metadata(config: PostgresConfig, name: str) -> k8s.V1ObjectMeta:
    return k8s.V1ObjectMeta(name=name, namespace=config.cluster.namespace, labels=_labels(config))


def postgres_secret(config: PostgresConfig) -> k8s.V1Secret:
    """The password (for the server) and the full DSN (for the predictors)."""
    return k8s.V1Secret(
        api_version="v1",
        kind="Secret",
        metadata=_metadata(config, config.secret_name),
        type="Opaque",
        string_data={PASSWORD_KEY: config.password, DSN_KEY: config.dsn()},
    )


def postgres_service(config: PostgresConfig) -> k8s.V1Service:
    """A headless Service: the StatefulSet's stable DNS name."""
    return k8s.V1Service(
        api_version="v1",
        kind="Service",
        metadata=_metadata(config, config.name),
        spec=k8s.V1ServiceSpec(
            cluster_ip="None",
            selector=_labels(config),
            ports=[k8s.V1ServicePort(name="postgres", port=POSTGRES_PORT, target_port=POSTGRES_PORT)],
        ),
    )


def _secret_env(name: str, secret: str, key: str) -> k8s.V1EnvVar:
    return k8s.V1EnvVar(
        name=name, value_from=k8s.V1EnvVarSource(secret_key_ref=k8s.V1SecretKeySelector(name=secret, key=key))
    )


def postgres_statefulset(config: PostgresConfig) -> k8s.V1StatefulSet:
    ready = k8s.V1Probe(
        _exec=k8s.V1ExecAction(command=["pg_isready", "-U", config.user, "-d", config.database, "-h", "127.0.0.1"]),
        period_seconds=5,
        failure_threshold=6,
    )
    container = k8s.V1Container(
        name="postgres",
        image=config.image,
        env=[
            k8s.V1EnvVar(name="POSTGRES_USER", value=config.user),
            k8s.V1EnvVar(name="POSTGRES_DB", value=config.database),
            _secret_env("POSTGRES_PASSWORD", config.secret_name, PASSWORD_KEY),
            k8s.V1EnvVar(name="PGDATA", value="/var/lib/postgresql/data/pgdata"),  # below the volume's root
        ],
        ports=[k8s.V1ContainerPort(name="postgres", container_port=POSTGRES_PORT)],
        readiness_probe=ready,
        liveness_probe=k8s.V1Probe(
            tcp_socket=k8s.V1TCPSocketAction(port=POSTGRES_PORT), initial_delay_seconds=30, period_seconds=15
        ),
        resources=config.resources.requirements(),
        volume_mounts=[
            k8s.V1VolumeMount(name="data", mount_path="/var/lib/postgresql/data"),
            k8s.V1VolumeMount(name="run", mount_path="/var/run/postgresql"),
        ],
        security_context=container_security_context(POSTGRES_UID),
    )
    claim = k8s.V1PersistentVolumeClaim(
        metadata=k8s.V1ObjectMeta(name="data", labels=_labels(config)),
        spec=k8s.V1PersistentVolumeClaimSpec(
            access_modes=["ReadWriteOnce"],
            storage_class_name=config.storage_class,
            resources=k8s.V1VolumeResourceRequirements(requests={"storage": config.storage_size}),
        ),
    )
    pod = k8s.V1PodSpec(
        containers=[container],
        volumes=[k8s.V1Volume(name="run", empty_dir=k8s.V1EmptyDirVolumeSource())],
        security_context=k8s.V1PodSecurityContext(
            run_as_non_root=True, fs_group=POSTGRES_UID, seccomp_profile=k8s.V1SeccompProfile(type="RuntimeDefault")
        ),
    )
    return k8s.V1StatefulSet(
        api_version="apps/v1",
        kind="StatefulSet",
        metadata=_metadata(config, config.name),
        spec=k8s.V1StatefulSetSpec(
            service_name=config.name,
            replicas=1,
            selector=k8s.V1LabelSelector(match_labels=_labels(config)),
            template=k8s.V1PodTemplateSpec(metadata=k8s.V1ObjectMeta(labels=_labels(config)), spec=pod),
            volume_claim_templates=[claim],
        ),
    )


def postgres_resources(config: PostgresConfig) -> list:
    """Secret, headless Service, StatefulSet (with its PVC template), in the order to apply them."""
    return [postgres_secret(config), postgres_service(config), postgres_statefulset(config)]


def shared_gallery_inference_service(
    isvc: InferenceServiceConfig, database: PostgresConfig, scaling: ScalingConfig
) -> kserve_models.V1beta1InferenceService:
    """The InferenceService of `inference_service`, reading the gallery from PostgreSQL and scaling out.

    The gallery PVC mount gives way to `$FACESIM_GALLERY_DSN` from the Secret, and the replicas save
    and load their FAISS index under `gallery-index/<name>` on the models PVC (`--index-dir`): one
    more subPath of the model's volume, not a second volume on its claim."""
    resource = copy.deepcopy(inference_service(isvc))
    predictor = resource.spec.predictor
    container = predictor.containers[0]
    at = container.args.index("--gallery")
    container.args = [*container.args[:at], *container.args[at + 2 :], "--index-dir", INDEX_MOUNT]
    container.env = [*(container.env or []), _secret_env(GALLERY_DSN_ENV, database.secret_name, DSN_KEY)]
    index = PvcMount(f"pvc://{pvc_uri(isvc.model_uri).claim}/gallery-index/{isvc.name}", INDEX_MOUNT)
    predictor.volumes, container.volume_mounts = pvc_volumes([model_mount(isvc), index])
    predictor.min_replicas, predictor.max_replicas = scaling.min_replicas, scaling.max_replicas
    if isvc.deployment_mode == "Knative":
        predictor.scale_metric, predictor.scale_target = "concurrency", scaling.concurrency
    else:
        predictor.scale_metric, predictor.scale_target = "cpu", scaling.cpu_percent
        if isvc.target.kserve_scale_metric_type:  # KServe 0.14's CRD lacks it: a CPU target is utilisation there
            predictor.scale_metric_type = "Utilization"
        resource.metadata.annotations["serving.kserve.io/autoscalerClass"] = "hpa"
    return resource


# --- `facesim manifests --gallery-backend postgresql` -------------------------------------------


def add_manifest_arguments(parser: argparse.ArgumentParser) -> None:
    scaling, database = ScalingConfig(), PostgresConfig.__dataclass_fields__
    parser.add_argument(
        "--gallery-backend",
        choices=("directory", "postgresql"),
        default="directory",
        help="directory: the gallery on the models PVC, one predictor replica; postgresql: a PostgreSQL "
        "StatefulSet shared by autoscaled replicas (gallery-postgres.yaml)",
    )
    parser.add_argument(
        "--predictor-min-replicas",
        type=int,
        default=scaling.min_replicas,
        help="postgresql backend: fewest predictor replicas",
    )
    parser.add_argument(
        "--predictor-max-replicas",
        type=int,
        default=scaling.max_replicas,
        help="postgresql backend: most predictor replicas",
    )
    parser.add_argument(
        "--gallery-db-size",
        default=database["storage_size"].default,
        help="postgresql backend: the database's PVC size",
    )
    parser.add_argument(
        "--gallery-db-password",
        default=None,
        help="postgresql backend: the database password written to the Secret (None: a random one)",
    )


def shared_gallery_manifests(
    args: argparse.Namespace, isvc: InferenceServiceConfig
) -> tuple[dict[str, Any], list[dict[str, Any]]]:
    """(the InferenceService, [Secret, Service, StatefulSet]) as manifests; ValueError for bad options."""
    database = PostgresConfig(storage_size=args.gallery_db_size, cluster=isvc.cluster)
    if args.gallery_db_password is not None:
        if not args.gallery_db_password:
            raise ValueError("--gallery-db-password must not be empty")
        database.password = args.gallery_db_password
    scaling = ScalingConfig(args.predictor_min_replicas, args.predictor_max_replicas)
    service = shared_gallery_inference_service(isvc, database, scaling)
    return to_manifest(service), [to_manifest(resource) for resource in postgres_resources(database)]
