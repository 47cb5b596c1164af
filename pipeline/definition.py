"""The facesim kfp v2 pipeline: prepare data -> (tune) -> train -> evaluate -> gallery -> deploy.

One definition for both backends: `backend="local"` (kfp.local, `facesim pipeline run`) runs each
step here; `backend="cluster"` (Kubeflow Pipelines, `facesim pipeline submit`) creates the TFJob,
Katib Experiment and InferenceService, with the facesim PVCs mounted in every step's pod.
"""

from kfp import dsl, kubernetes

from facesim.cluster.resources import StorageConfig
from facesim.pipeline import components

PIPELINE_NAME = "facesim"


def _mount_volumes(task: dsl.PipelineTask) -> dsl.PipelineTask:
    """Every PVC at the path every facesim pod uses (ignored by kfp.local)."""
    for claim in StorageConfig().claims:
        kubernetes.mount_pvc(task, pvc_name=claim.name, mount_path=claim.mount_path)
    return task


def _step(task: dsl.PipelineTask, name: str) -> dsl.PipelineTask:
    task.set_display_name(name)
    task.set_caching_options(False)  # steps read and write shared volumes: never skip one
    return _mount_volumes(task)


@dsl.pipeline(name=PIPELINE_NAME, description="FaceNet triplet training, tuning, evaluation, gallery and serving")
def facesim_pipeline(
    data: str = "/mnt/data/lfw",
    backend: str = "cluster",
    work_root: str = "",
    workers: int = 2,
    epochs: int = 4,
    steps_per_epoch: int = 100,
    margin: float = 0.0,
    embedding_dim: int = 128,
    learning_rate: float = 0.0,
    init: str = "faceapi-resnet",
    architecture: str = "mobilefacenet",
    image_size: int = 0,
    max_identities: int = 0,
    val_pairs: int = 0,
    tune: bool = False,
    trials: int = 6,
    tune_algorithm: str = "tpe",
    tune_epochs: int = 2,
    tune_steps_per_epoch: int = 50,
    gallery_identities: int = 200,
    gallery_images_per_identity: int = 3,
    service_name: str = "facesim",  # the InferenceService the UI Deployment calls (ui/cluster.py)
) -> None:
    run_name = dsl.PIPELINE_JOB_NAME_PLACEHOLDER
    prepare = _step(
        components.prepare_data(
            data=data,
            backend=backend,
            work_root=work_root,
            run_name=run_name,
            architecture=architecture,
            image_size=image_size,
            init=init,
        ),
        "prepare data",
    )
    with dsl.If(tune == True, name="tune"):  # noqa: E712 (kfp builds the condition from ==)
        tuned = _step(
            components.tune_hyperparameters(
                crops=prepare.output,
                backend=backend,
                work_root=work_root,
                run_name=run_name,
                trials=trials,
                algorithm=tune_algorithm,
                workers=workers,
                epochs=tune_epochs,
                steps_per_epoch=tune_steps_per_epoch,
                architecture=architecture,
                image_size=image_size,
                max_identities=max_identities,
                val_pairs=val_pairs,
                init=init,
            ),
            "tune (Katib / optuna)",
        )
    with dsl.Else(name="fixed hyper-parameters"):
        given = _step(
            components.given_hyperparameters(
                margin=margin,
                embedding_dim=embedding_dim,
                learning_rate=learning_rate,
            ),
            "given hyper-parameters",
        )
    train = _step(
        components.train_model(
            crops=prepare.output,
            backend=backend,
            work_root=work_root,
            run_name=run_name,
            workers=workers,
            epochs=epochs,
            steps_per_epoch=steps_per_epoch,
            margin=dsl.OneOf(tuned.outputs["margin"], given.outputs["margin"]),
            embedding_dim=dsl.OneOf(tuned.outputs["embedding_dim"], given.outputs["embedding_dim"]),
            learning_rate=dsl.OneOf(tuned.outputs["learning_rate"], given.outputs["learning_rate"]),
            architecture=architecture,
            image_size=image_size,
            max_identities=max_identities,
            val_pairs=val_pairs,
            init=init,
        ),
        "train (TFJob / local workers)",
    )
    model_dir = train.outputs["Output"]
    evaluate = _step(components.evaluate_model(model_dir=model_dir, crops=prepare.output), "evaluate (LFW fold 10)")
    gallery = _step(
        components.build_gallery(
            model_dir=model_dir,
            data=data,
            backend=backend,
            work_root=work_root,
            run_name=run_name,
            identities=gallery_identities,
            images_per_identity=gallery_images_per_identity,
        ),
        "build gallery",
    )
    _step(
        components.deploy_predictor(
            model_dir=model_dir,
            gallery_dir=gallery.output,
            backend=backend,
            service_name=service_name,
        ),
        "deploy (InferenceService / local registry)",
    ).after(evaluate)


PARAMETER_HELP: dict[str, str] = {
    "data": "LFW-layout root (images + people.txt/pairs.txt)",
    "backend": "local (this machine) or cluster (TFJob, Katib, InferenceService)",
    "work_root": "where crops, runs, models and galleries go (local default: $FACESIM_HOME/pipeline)",
    "workers": "training workers (local processes or TFJob replicas)",
    "epochs": "training epochs (local run default: 3 from scratch, 0 from a pretrained start: its weights, calibrated)",
    "steps_per_epoch": "training steps per epoch",
    "margin": "triplet margin (when not tuned; 0: the init's recipe)",
    "embedding_dim": "embedding size (when not tuned)",
    "learning_rate": "learning rate (when not tuned; 0: the init's recipe)",
    "init": "where the weights start: faceapi-resnet (dlib's pretrained network, fine-tuned), scratch, or a "
    "model directory",
    "architecture": "embedding network from scratch: mobilefacenet, inception_resnet_v1, tiny",
    "image_size": "crop size in pixels (0: the architecture's own)",
    "max_identities": "train on at most this many identities (0: all; for quick runs)",
    "val_pairs": "validate on at most this many pairs (0: all of fold 9; for quick runs)",
    "tune": "search margin / embedding size / learning rate before training",
    "trials": "tuning trials",
    "tune_algorithm": "Katib algorithm name (random, grid, tpe, multivariate-tpe, bayesianoptimization)",
    "tune_epochs": "epochs per tuning trial",
    "tune_steps_per_epoch": "steps per epoch of each tuning trial",
    "gallery_identities": "identities embedded into the gallery",
    "gallery_images_per_identity": "images per gallery identity",
    "service_name": "InferenceService name (cluster; the UI Deployment calls `facesim`)",
}
