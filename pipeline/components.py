"""The pipeline's kfp components: thin wrappers over pipeline/steps.py.

Each runs in the project's image (the kfp SDK and facesim installed, so no packages are installed
at run time) and calls one step function; kfp serialises only these bodies into the pipeline IR.
"""

from typing import NamedTuple

from kfp import dsl

from facesim.cluster.resources import ClusterConfig

# Image with the `pipeline` extra (facesim + kfp + the cluster SDKs); see docs/cluster.md.
PIPELINE_IMAGE = ClusterConfig().image("pipeline")

component = dsl.component(base_image=PIPELINE_IMAGE, install_kfp_package=False)


@component
def prepare_data(
    data: str, backend: str, work_root: str, run_name: str, architecture: str, image_size: int, init: str
) -> str:
    """Aligned face crops of the dataset (`facesim data prepare`)."""
    from facesim.pipeline import steps

    options = steps.TrainingOptions(architecture=architecture, image_size=image_size, init=init)
    return steps.prepare_data(data, backend, work_root, run_name, options)


@component
def tune_hyperparameters(
    crops: str,
    backend: str,
    work_root: str,
    run_name: str,
    trials: int,
    algorithm: str,
    workers: int,
    epochs: int,
    steps_per_epoch: int,
    architecture: str,
    image_size: int,
    max_identities: int,
    val_pairs: int,
    init: str,
    tuning_metrics: dsl.Output[dsl.Metrics],
) -> NamedTuple("HyperparameterChoice", margin=float, embedding_dim=int, learning_rate=float):  # noqa: F821
    """Search margin, embedding size and learning rate: local optuna trials or a Katib Experiment."""
    from facesim.pipeline import steps

    request = steps.TuningRequest(trials, algorithm, workers, epochs, steps_per_epoch)
    options = steps.TrainingOptions(architecture, image_size, max_identities, val_pairs, init)
    best, metrics = steps.tune(crops, backend, work_root, run_name, request, options)
    for name, value in metrics.items():
        tuning_metrics.log_metric(name, value)
    return (best.margin, best.embedding_dim, best.learning_rate)


@component
def given_hyperparameters(margin: float, embedding_dim: int, learning_rate: float) -> NamedTuple(
    "HyperparameterChoice", margin=float, embedding_dim=int, learning_rate=float
):  # noqa: F821
    """The pipeline's own hyper-parameters, when tuning is off."""
    return (margin, embedding_dim, learning_rate)


@component
def train_model(
    crops: str,
    backend: str,
    work_root: str,
    run_name: str,
    workers: int,
    epochs: int,
    steps_per_epoch: int,
    margin: float,
    embedding_dim: int,
    learning_rate: float,
    architecture: str,
    image_size: int,
    max_identities: int,
    val_pairs: int,
    init: str,
    training_metrics: dsl.Output[dsl.Metrics],
) -> str:
    """Train with N workers (local processes or a TFJob) and export the model artifact."""
    from facesim.pipeline import steps

    hyper = steps.Hyperparameters(margin, embedding_dim, learning_rate)
    options = steps.TrainingOptions(architecture, image_size, max_identities, val_pairs, init)
    model_dir, metrics = steps.train(
        crops, backend, work_root, run_name, workers, epochs, steps_per_epoch, hyper, options
    )
    for name, value in metrics.items():
        training_metrics.log_metric(name, value)
    return model_dir


@component
def evaluate_model(model_dir: str, crops: str, test_metrics: dsl.Output[dsl.Metrics]) -> float:
    """Test figures on LFW pairs fold 10; returns the test accuracy."""
    from facesim.pipeline import steps

    metrics = steps.evaluate(model_dir, crops)
    for name, value in metrics.items():
        test_metrics.log_metric(name, value)
    return metrics.get("accuracy", float("nan"))


@component
def build_gallery(
    model_dir: str, data: str, backend: str, work_root: str, run_name: str, identities: int, images_per_identity: int
) -> str:
    """Embed identity folders into a gallery artifact (`facesim gallery build`)."""
    from facesim.pipeline import steps

    return steps.build_gallery(model_dir, data, backend, work_root, run_name, identities, images_per_identity)


@component
def deploy_predictor(model_dir: str, gallery_dir: str, backend: str, service_name: str) -> str:
    """Serve the model and gallery: registered locally, or an InferenceService on the cluster."""
    from facesim.pipeline import steps

    return steps.deploy(model_dir, gallery_dir, backend, service_name)
