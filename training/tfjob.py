"""The TFJob: building it (Training Operator v1 models) and running it through `TrainingClient`.

Worker replicas only: with no Chief, worker 0 is the chief (it exports the model; docs/protocol.md).
The Training Operator injects TF_CONFIG only into the container named `tensorflow` and only
when there is more than one replica, so the container name is fixed. TensorFlow sizes its thread
pool from the node's cores, so each worker gets its container's CPU limit as
TF_NUM_INTRAOP_THREADS.
"""

from __future__ import annotations

import sys
from collections.abc import Sequence
from dataclasses import dataclass, field
from pathlib import PurePosixPath

from kubeflow.training import models as tf_models
from kubernetes import client as k8s

from facesim.cluster.client import ClusterError, explain_api_error, sdk_client, sigterm_as_interrupt
from facesim.cluster.resources import (
    NO_ISTIO_SIDECAR,
    TFJOB_NAME_MAX,
    ClusterConfig,
    Resources,
    container_security_context,
    owner_references,
    pod_security_context,
)
from facesim.cluster.volumes import StorageConfig, claim_mounts, claim_volumes
from facesim.storage.cache import CACHE_ROOT_ENV

TFJOB_API_VERSION = "kubeflow.org/v1"
TFJOB_CONTAINER = "tensorflow"  # the only container the operator gives TF_CONFIG to
TFJOB_PORT = 2222
TRAINING_ENTRYPOINT = ("python", "-m", "facesim.training")
DEFAULT_DATA = "/mnt/data/lfw"  # an LFW-layout root on the data PVC
DEFAULT_MODEL_DIR = "/mnt/models/facenet/1"  # on the models PVC: pvc://facesim-models/facenet/1
DEFAULT_TRAIN_ARGS = ("--data", DEFAULT_DATA, "--out", DEFAULT_MODEL_DIR, "--epochs", "20", "--steps-per-epoch", "200")


@dataclass
class TFJobConfig:
    """One distributed training run on the cluster."""

    name: str = "facesim-train"
    workers: int = 2
    # Arguments of `python -m facesim.training` (what TrainConfig.to_args() gives; see training/config.py).
    train_args: tuple[str, ...] = DEFAULT_TRAIN_ARGS
    resources: Resources = field(
        default_factory=lambda: Resources(cpu="2", memory="4Gi", cpu_limit="4", memory_limit="8Gi")
    )
    backoff_limit: int = 3  # pod restarts before the job is Failed
    clean_pod_policy: str = "Running"  # delete still-running pods when the job ends; keep finished ones' logs
    ttl_seconds_after_finished: int | None = 7 * 24 * 3600
    cluster: ClusterConfig = field(default_factory=ClusterConfig)
    storage: StorageConfig = field(default_factory=StorageConfig)

    def __post_init__(self) -> None:
        if self.workers < 1:
            raise ValueError("a TFJob needs at least 1 worker")
        if len(self.name) > TFJOB_NAME_MAX:
            raise ValueError(
                f"TFJob name {self.name!r} is longer than {TFJOB_NAME_MAX} characters: its worker Services "
                f"(<name>-worker-<i>) would exceed Kubernetes' 63"
            )
        if self.clean_pod_policy not in ("None", "Running", "All"):
            raise ValueError("clean_pod_policy must be None, Running or All")


def cluster_run_dir(out: str, storage: StorageConfig) -> str:
    """Checkpoints and logs of a run exporting to `out`: on the runs volume, at the path `out` has on
    the models volume (the default OUT.run would put them beside the model)."""
    models, runs = storage.claim("models").mount_path, storage.claim("runs").mount_path
    relative = PurePosixPath(out).relative_to(models) if PurePosixPath(out).is_relative_to(models) else None
    return f"{runs}/{relative}" if relative is not None else f"{out}.run"


def training_container(config: TFJobConfig, train_args: Sequence[str]) -> k8s.V1Container:
    """The `tensorflow` container running one worker of `python -m facesim.training`."""
    return k8s.V1Container(
        name=TFJOB_CONTAINER,
        image=config.cluster.image("trainer"),
        command=[*TRAINING_ENTRYPOINT, *train_args],
        ports=[k8s.V1ContainerPort(name="tfjob-port", container_port=TFJOB_PORT)],
        env=[
            k8s.V1EnvVar(name="PYTHONUNBUFFERED", value="1"),  # metrics lines reach Katib as printed
            # Crop caches on the data volume: worker 0 prepares, the other workers and later runs read.
            k8s.V1EnvVar(name=CACHE_ROOT_ENV, value=f"{config.storage.claim('data').mount_path}/cache"),
            k8s.V1EnvVar(name="TF_NUM_INTRAOP_THREADS", value_from=_cpu_limit_cores()),
        ],
        resources=config.resources.requirements(),
        volume_mounts=claim_mounts(config.storage, ("data", "runs", "models")),
        security_context=container_security_context(),
    )


def _cpu_limit_cores() -> k8s.V1EnvVarSource:
    """The container's CPU limit in whole cores (the downward API rounds up)."""
    limit = k8s.V1ResourceFieldSelector(container_name=TFJOB_CONTAINER, resource="limits.cpu", divisor="1")
    return k8s.V1EnvVarSource(resource_field_ref=limit)


def tfjob(config: TFJobConfig, train_args: Sequence[str] | None = None) -> tf_models.KubeflowOrgV1TFJob:
    """The TFJob resource; `train_args` overrides config.train_args (Katib's templated arguments)."""
    pod_spec = k8s.V1PodSpec(
        containers=[training_container(config, config.train_args if train_args is None else train_args)],
        volumes=claim_volumes(config.storage, ("data", "runs", "models")),
        security_context=pod_security_context(),
    )
    worker = tf_models.KubeflowOrgV1ReplicaSpec(
        replicas=config.workers,
        restart_policy="OnFailure",
        template=k8s.V1PodTemplateSpec(
            metadata=k8s.V1ObjectMeta(
                labels={"app.kubernetes.io/name": "facesim-trainer"}, annotations=NO_ISTIO_SIDECAR
            ),
            spec=pod_spec,
        ),
    )
    return tf_models.KubeflowOrgV1TFJob(
        api_version=TFJOB_API_VERSION,
        kind="TFJob",
        metadata=k8s.V1ObjectMeta(
            name=config.name,
            namespace=config.cluster.namespace,
            owner_references=owner_references(config.cluster.namespace),
        ),
        spec=tf_models.KubeflowOrgV1TFJobSpec(
            tf_replica_specs={"Worker": worker},
            run_policy=tf_models.KubeflowOrgV1RunPolicy(
                backoff_limit=config.backoff_limit,
                clean_pod_policy=config.clean_pod_policy,
                ttl_seconds_after_finished=config.ttl_seconds_after_finished,
            ),
        ),
    )


@dataclass
class WaitOptions:
    """How long and how often to poll a job (seconds)."""

    timeout: int = 24 * 3600
    poll_interval: float = 15.0
    follow_logs: bool = True


def _training_client(namespace: str, kubeconfig: str | None):
    from kubeflow.training import TrainingClient

    return sdk_client(TrainingClient, kubeconfig, namespace=namespace, job_kind="TFJob")


def submit_tfjob(
    config: TFJobConfig, wait: bool = True, kubeconfig: str | None = None, options: WaitOptions | None = None
) -> str:
    """Create the TFJob and return its name; with `wait`, stream worker 0's logs until it succeeds.

    Raises ClusterError (message fit for the user) when the job cannot be created, fails or times
    out. Ctrl-C or SIGTERM while waiting deletes the job, then re-raises KeyboardInterrupt.
    """
    options = options or WaitOptions()
    namespace, name = config.cluster.namespace, config.name
    training = _training_client(namespace, kubeconfig)
    try:
        training.create_job(job=tfjob(config), namespace=namespace)
    except RuntimeError as error:
        raise explain_api_error(error, "create", "TFJob", namespace, name) from None
    print(f"TFJob {namespace}/{name} created ({config.workers} workers)", file=sys.stderr)
    if not wait:
        return name
    try:
        with sigterm_as_interrupt():
            _follow(training, namespace, name, options)
    except KeyboardInterrupt:
        print(f"cancelled: deleting TFJob {namespace}/{name}", file=sys.stderr)
        training.delete_job(name, namespace=namespace)
        raise
    return name


def _follow(training, namespace: str, name: str, options: WaitOptions) -> None:
    try:
        if options.follow_logs:
            job = training.wait_for_job_conditions(
                name,
                namespace=namespace,
                expected_conditions={"Running", "Succeeded", "Failed"},
                wait_timeout=options.timeout,
                polling_interval=options.poll_interval,
            )
            if training.is_job_running(job=job):
                # Worker 0 carries the `job-role: master` label when the job has no Chief.
                training.get_job_logs(name, namespace=namespace, is_master=True, follow=True)
        training.wait_for_job_conditions(
            name, namespace=namespace, wait_timeout=options.timeout, polling_interval=options.poll_interval
        )
    except TimeoutError as error:
        raise ClusterError(f"TFJob {namespace}/{name} did not finish within {options.timeout} s") from error
    except RuntimeError as error:
        if "is Failed" in str(error):
            raise ClusterError(
                f"TFJob {namespace}/{name} failed; see `kubectl -n {namespace} logs {name}-worker-0`"
            ) from None
        raise explain_api_error(error, "follow", "TFJob", namespace, name) from None
    print(f"TFJob {namespace}/{name} succeeded", file=sys.stderr)
