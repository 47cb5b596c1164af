"""Where the pipeline's launching steps run their work: one client API, interchangeable backends.

As kubeflow/sdk's trainer client has `backends/localprocess` and `backends/kubernetes`, a step asks
`backend_for(name)` for a `Backend` and calls `train`, `tune` or `deploy` on it. `LocalProcessBackend`
runs worker processes, optuna trials and the local registry here; `KubernetesBackend` creates the
TFJob, the Katib Experiment and the InferenceService. Both call the functions `facesim train`,
`facesim tune` and `facesim serve` call for `--backend local|cluster`, and a failure is a
StepFailed whose message says what went wrong, never text scraped from a command's output.
"""

from __future__ import annotations

from dataclasses import dataclass
from pathlib import Path
from typing import TYPE_CHECKING, Protocol

if TYPE_CHECKING:
    from facesim.pipeline.settings import TuningSettings
    from facesim.training.config import TrainConfig
    from facesim.tuning.best import BestParameters

BACKENDS = ("local", "cluster")
# What the tuner sets itself on each trial; the rest of the training settings go to every trial.
TUNER_OPTIONS = ("data", "out", "workers", "epochs", "steps_per_epoch")


class StepFailed(RuntimeError):
    """A step failed; the message says which and how."""


@dataclass(frozen=True)
class Deployment:
    """The InferenceService of a cluster deploy (the target comes from $FACESIM_TARGET, set by compile)."""

    service_name: str = "facesim"
    deployment_mode: str = "Standard"


@dataclass(frozen=True)
class Search:
    """One hyper-parameter search: its budget, each trial's length and training options, and where
    best_params.json goes."""

    trial: TrainConfig  # every trial's options; the tuner sets TUNER_OPTIONS itself
    tuning: TuningSettings
    out: Path
    name: str  # the Katib Experiment's name (cluster)

    def trial_args(self) -> tuple[str, ...]:
        return tuple(self.trial.to_args(exclude=TUNER_OPTIONS))


class Backend(Protocol):
    """What a pipeline step launches, wherever it runs."""

    def train(self, config: TrainConfig, job_name: str) -> None:
        """Train and export the model into `config.out`."""
        ...

    def tune(self, search: Search) -> BestParameters:
        """Run the search; the best trial (also written to `search.out`)."""
        ...

    def deploy(self, model_dir: str, model_volume_path: str, gallery_dir: str, where: Deployment) -> str:
        """Make the model and gallery what the predictor serves; says what was deployed."""
        ...


class LocalProcessBackend:
    """Worker processes and optuna trials on this machine; deploy registers in the local registry."""

    def train(self, config: TrainConfig, job_name: str) -> None:
        from facesim.training.api import TrainingFailed, train

        try:
            train(config)
        except (FileNotFoundError, ValueError, TrainingFailed) as error:
            raise StepFailed(f"training: {error}") from error

    def tune(self, search: Search) -> BestParameters:
        from facesim.tuning.local import LocalTuneConfig, TuningFailed, tune_locally

        config = LocalTuneConfig(
            data=search.trial.data,
            out=search.out,
            trials=search.tuning.trials,
            algorithm=search.tuning.tune_algorithm,
            workers=search.trial.workers,
            epochs=search.tuning.tune_epochs,
            steps_per_epoch=search.tuning.tune_steps_per_epoch,
            train_args=list(search.trial_args()),
        )
        try:
            return tune_locally(config).best_parameters()
        except TuningFailed as error:
            raise StepFailed(f"tuning: {error}") from error

    def deploy(self, model_dir: str, model_volume_path: str, gallery_dir: str, where: Deployment) -> str:
        from facesim.storage.paths import register_gallery, register_model

        model_version = register_model(Path(model_dir))
        gallery_version = register_gallery(Path(gallery_dir))
        return f"model {model_version}, gallery {gallery_version}"


class KubernetesBackend:
    """A TFJob, a Katib Experiment of TFJob trials, an InferenceService: in this pod's namespace, from
    the images and for the target the compiled pipeline gives every step ($FACESIM_IMAGE_*, $FACESIM_TARGET)."""

    def train(self, config: TrainConfig, job_name: str) -> None:
        from facesim.cluster.client import ClusterError
        from facesim.training.tfjob import TFJobConfig, submit_tfjob

        try:
            job = TFJobConfig(name=job_name, workers=config.workers, train_args=tuple(config.to_args()))
            submit_tfjob(job, wait=True)
        except (ValueError, ClusterError) as error:
            raise StepFailed(f"training: {error}") from error

    def tune(self, search: Search) -> BestParameters:
        from facesim.cluster.client import ClusterError
        from facesim.cluster.resources import ClusterConfig
        from facesim.cluster.targets import target
        from facesim.training.tfjob import TFJobConfig
        from facesim.tuning.katib import ExperimentConfig, tune_on_cluster

        length = ("--data", search.trial.data, "--steps-per-epoch", str(search.tuning.tune_steps_per_epoch))
        try:
            config = ExperimentConfig(
                name=search.name,
                algorithm=search.tuning.tune_algorithm,
                max_trial_count=search.tuning.trials,
                parallel_trial_count=min(2, search.tuning.trials),
                trial_epochs=search.tuning.tune_epochs,
                train_args=(*length, *search.trial_args()),
                trial_job=TFJobConfig(workers=search.trial.workers, cluster=ClusterConfig()),
                target=target(),
            )
            return tune_on_cluster(config, search.out)
        except (ValueError, ClusterError) as error:
            raise StepFailed(f"tuning: {error}") from error

    def deploy(self, model_dir: str, model_volume_path: str, gallery_dir: str, where: Deployment) -> str:
        from facesim.cluster.client import ClusterError
        from facesim.cluster.inference_service import InferenceServiceConfig, deploy_inference_service
        from facesim.cluster.targets import target

        try:
            config = InferenceServiceConfig(
                name=where.service_name,
                model_uri=volume_uri(model_volume_path),
                gallery_uri=volume_uri(gallery_dir),
                deployment_mode=where.deployment_mode,
                target=target(),
            )
            return deploy_inference_service(config)
        except (ValueError, ClusterError) as error:
            raise StepFailed(f"deploy: {error}") from error


def backend_for(name: str) -> Backend:
    """The backend called `name` (StepFailed names the choices)."""
    if name == "local":
        return LocalProcessBackend()
    if name == "cluster":
        return KubernetesBackend()
    raise StepFailed(f"backend must be one of {', '.join(BACKENDS)}, not {name!r}")


def volume_uri(path: str) -> str:
    """`pvc://CLAIM/SUBPATH` of a path under one of the facesim PVC mounts (what KServe takes)."""
    from facesim.cluster.volumes import StorageConfig

    for claim in StorageConfig().claims:
        mount = Path(claim.mount_path)
        if Path(path).is_relative_to(mount):
            return f"pvc://{claim.name}/{Path(path).relative_to(mount)}"
    raise StepFailed(f"{path} is on no facesim volume ({', '.join(c.mount_path for c in StorageConfig().claims)})")
