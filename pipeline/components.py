"""The pipeline's kfp components: thin wrappers over pipeline/steps.py.

Each runs in the project's pipeline image (the kfp SDK and facesim installed, so no packages are
installed at run time) and calls one step function; kfp serialises only these bodies into the
pipeline IR. The image is chosen when the pipeline is built (`components(image)`), never at import.
The trained model travels between steps as a kfp `Model` artifact; the quantize step's output (int8
or float) is the one the gallery and deploy steps use.
"""

from types import SimpleNamespace
from typing import NamedTuple

from kfp import dsl


def prepare_data(data: str, backend: str, work_root: str, run_name: str, training: dict) -> str:
    """Aligned face crops of the dataset (`facesim data prepare`)."""
    from facesim.pipeline import settings, steps

    layout = steps.RunLayout.for_run(backend, work_root, run_name)
    return steps.prepare_data(data, layout, settings.from_struct(settings.TrainingSettings, training))


def tune_hyperparameters(
    crops: str,
    backend: str,
    work_root: str,
    run_name: str,
    training: dict,
    tuning: dict,
    tuning_metrics: dsl.Output[dsl.Metrics],
) -> NamedTuple("HyperparameterChoice", margin=float, embedding_dim=int, learning_rate=float):
    """Search margin, embedding size and learning rate: local optuna trials or a Katib Experiment."""
    from facesim.pipeline import settings, steps

    layout = steps.RunLayout.for_run(backend, work_root, run_name)
    chosen = settings.from_struct(settings.TrainingSettings, training)
    search = settings.from_struct(settings.TuningSettings, tuning)
    best, metrics = steps.tune(crops, backend, layout, run_name, chosen, search)
    for name, value in metrics.items():
        tuning_metrics.log_metric(name, value)
    return (best.margin, best.embedding_dim, best.learning_rate)


def given_hyperparameters(margin: float, embedding_dim: int, learning_rate: float) -> NamedTuple(
    "HyperparameterChoice", margin=float, embedding_dim=int, learning_rate=float
):
    """The pipeline's own hyper-parameters, when tuning is off."""
    return (margin, embedding_dim, learning_rate)


def train_model(
    crops: str,
    backend: str,
    work_root: str,
    run_name: str,
    training: dict,
    margin: float,
    embedding_dim: int,
    learning_rate: float,
    model: dsl.Output[dsl.Model],
    training_metrics: dsl.Output[dsl.Metrics],
) -> None:
    """Train with N workers (local processes or a TFJob), export the model and publish it as the
    run's Model artifact."""
    from facesim.pipeline import settings, steps

    layout = steps.RunLayout.for_run(backend, work_root, run_name)
    hyper = steps.Hyperparameters(margin, embedding_dim, learning_rate)
    trained = settings.from_struct(settings.TrainingSettings, training)
    model_dir, metrics = steps.train(crops, backend, layout, run_name, trained, hyper)
    model.metadata.update(steps.publish_model(model_dir, model.path))
    for name, value in metrics.items():
        training_metrics.log_metric(name, value)


def evaluate_model(model: dsl.Input[dsl.Model], crops: str, test_metrics: dsl.Output[dsl.Metrics]) -> float:
    """Test figures on LFW pairs fold 10; returns the test accuracy."""
    from facesim.pipeline import steps

    metrics = steps.evaluate(model.path, crops)
    for name, value in metrics.items():
        test_metrics.log_metric(name, value)
    return metrics.get("accuracy", float("nan"))


def accuracy_gate(accuracy: float, min_accuracy: float) -> None:
    """Fail the run before deploy when the test accuracy is below `min_accuracy`."""
    from facesim.pipeline import steps

    steps.check_accuracy(accuracy, min_accuracy)


def quantize_model(
    model: dsl.Input[dsl.Model],
    crops: str,
    int8: bool,
    backend: str,
    work_root: str,
    run_name: str,
    served_model: dsl.Output[dsl.Model],
    quantize_metrics: dsl.Output[dsl.Metrics],
) -> None:
    """The model to serve (`facesim model quantize`): its int8 copy when it decides as the float model
    does on LFW folds 9-10, else the float model (the artifact's metadata says which, and why)."""
    from facesim.pipeline import steps

    layout = steps.RunLayout.for_run(backend, work_root, run_name)
    served = steps.quantize(model.metadata["volume_path"], crops, layout, int8)
    served_model.metadata.update({**steps.publish_model(served.model_dir, served_model.path), **served.metadata()})
    for name, value in served.metrics.items():
        quantize_metrics.log_metric(name, value)


def build_gallery(
    model: dsl.Input[dsl.Model],
    data: str,
    backend: str,
    work_root: str,
    run_name: str,
    identities: int,
    images_per_identity: int,
) -> str:
    """Embed identity folders into a gallery artifact (`facesim gallery build`)."""
    from facesim.pipeline import steps

    layout = steps.RunLayout.for_run(backend, work_root, run_name)
    return steps.build_gallery(model.path, data, layout, identities, images_per_identity)


def deploy_predictor(
    model: dsl.Input[dsl.Model], gallery_dir: str, backend: str, service_name: str, deployment_mode: str
) -> str:
    """Serve the model and gallery: registered locally, or an InferenceService on the cluster."""
    from facesim.pipeline import steps

    where = steps.Deployment(service_name, deployment_mode)
    return steps.deploy(model.path, model.metadata["volume_path"], gallery_dir, backend, where)


STEPS = (
    prepare_data,
    tune_hyperparameters,
    given_hyperparameters,
    train_model,
    evaluate_model,
    accuracy_gate,
    quantize_model,
    build_gallery,
    deploy_predictor,
)


def components(image: str) -> SimpleNamespace:
    """Every step as a kfp component running in `image`, by name (`components(image).train_model`)."""
    return SimpleNamespace(
        **{step.__name__: dsl.component(step, base_image=image, install_kfp_package=False) for step in STEPS}
    )
