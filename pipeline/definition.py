"""The facesim kfp v2 pipeline: prepare data -> (tune) -> train -> evaluate -> gate -> quantize -> gallery ->
deploy.

One definition for both backends: `backend="local"` (kfp.local, `facesim pipeline run`) runs each
step here; `backend="cluster"` (Kubeflow Pipelines, `facesim pipeline submit`) creates the TFJob,
Katib Experiment and InferenceService, with the facesim PVCs mounted in every step's pod.

`build_pipeline(images, target)` makes the pipeline for one image registry and tag and one target
cluster: the steps run in its pipeline image, and the launchers inside them create TFJobs, trials
and the InferenceService from the same registry and tag, rendered for the same target (the
FACESIM_IMAGE_* and FACESIM_TARGET variables every step gets).
"""

# No `from __future__ import annotations`: kfp reads the pipeline's parameter types at run time.
import math
from types import SimpleNamespace

from kfp import dsl, kubernetes
from kfp.dsl.graph_component import GraphComponent

from facesim.cluster.resources import OWNER_POD_ENV, Images, Resources
from facesim.cluster.targets import TARGET_ENV, Target
from facesim.cluster.volumes import StorageConfig
from facesim.pipeline.components import components
from facesim.pipeline.settings import TrainingSettings, TuningSettings, struct

PIPELINE_NAME = "facesim"
TRAINING, TUNING = TrainingSettings(), TuningSettings()
# Steps that only launch and follow cluster jobs, and steps that run TensorFlow or the detector here.
LAUNCHER = Resources(cpu="250m", memory="512Mi", cpu_limit="1", memory_limit="1Gi")
WORKER = Resources(cpu="1", memory="2Gi", cpu_limit="2", memory_limit="4Gi")


def _step(task: dsl.PipelineTask, name: str, images: Images, target: Target, resources: Resources) -> dsl.PipelineTask:
    task.set_display_name(name)
    task.set_caching_options(False)  # steps read and write shared volumes: never skip one
    task.set_cpu_request(resources.cpu).set_cpu_limit(resources.cpu_limit)
    task.set_memory_request(resources.memory).set_memory_limit(resources.memory_limit)
    # TensorFlow sizes its thread pool from the node's cores, not the pod's CPU limit.
    task.set_env_variable("TF_NUM_INTRAOP_THREADS", str(math.ceil(resources.cpu_limit_cores())))
    for variable, value in images.env().items():
        task.set_env_variable(variable, value)
    task.set_env_variable(TARGET_ENV, target.name)
    for env_name, field_path in OWNER_POD_ENV.items():  # child TFJobs/Experiments are owned by this pod
        kubernetes.use_field_path_as_env(task, env_name=env_name, field_path=field_path)
    for claim in StorageConfig().claims:  # every PVC where every facesim pod has it (ignored by kfp.local)
        kubernetes.mount_pvc(task, pvc_name=claim.name, mount_path=claim.mount_path)
    return task


def build_pipeline(images: Images, target: Target) -> GraphComponent:
    """The pipeline whose steps run in `images.image("pipeline")` and render for `target`."""
    steps = components(images.image("pipeline"))

    @dsl.pipeline(name=PIPELINE_NAME, description="FaceNet triplet training, tuning, evaluation, gallery and serving")
    def facesim_pipeline(
        data: str = "/mnt/data/lfw",
        backend: str = "cluster",
        work_root: str = "",
        architecture: str = TRAINING.architecture,
        image_size: int = TRAINING.image_size,
        max_identities: int = TRAINING.max_identities,
        val_pairs: int = TRAINING.val_pairs,
        workers: int = TRAINING.workers,
        epochs: int = TRAINING.epochs,
        steps_per_epoch: int = TRAINING.steps_per_epoch,
        init: str = TRAINING.init,
        margin: float = 0.0,
        embedding_dim: int = 128,
        learning_rate: float = 0.0,
        tune: bool = False,
        trials: int = TUNING.trials,
        tune_algorithm: str = TUNING.tune_algorithm,
        tune_epochs: int = TUNING.tune_epochs,
        tune_steps_per_epoch: int = TUNING.tune_steps_per_epoch,
        min_accuracy: float = 0.0,
        int8: bool = True,
        gallery_identities: int = 200,
        gallery_images_per_identity: int = 3,
        service_name: str = "facesim",  # the InferenceService the UI Deployment calls (ui/cluster.py)
        deployment_mode: str = "Standard",
    ) -> None:
        _graph(steps, images, target, dict(locals()))

    return facesim_pipeline


def _graph(steps: SimpleNamespace, images: Images, target: Target, p: dict) -> None:
    """The steps and their order; `p` holds the pipeline's parameters (kfp channels)."""

    def step(task: dsl.PipelineTask, name: str, resources: Resources = LAUNCHER) -> dsl.PipelineTask:
        return _step(task, name, images, target, resources)

    run = {"backend": p["backend"], "work_root": p["work_root"], "run_name": dsl.PIPELINE_JOB_NAME_PLACEHOLDER}
    training = struct(TrainingSettings, p)

    prepare = step(steps.prepare_data(data=p["data"], training=training, **run), "prepare data", WORKER)
    with dsl.If(p["tune"] == True, name="tune"):  # noqa: E712 (kfp builds the condition from ==)
        tuning = struct(TuningSettings, p)
        tuned = step(
            steps.tune_hyperparameters(crops=prepare.output, training=training, tuning=tuning, **run),
            "tune (Katib / optuna)",
        )
    with dsl.Else(name="fixed hyper-parameters"):
        given = step(
            steps.given_hyperparameters(
                margin=p["margin"], embedding_dim=p["embedding_dim"], learning_rate=p["learning_rate"]
            ),
            "given hyper-parameters",
        )
    chosen = {
        name: dsl.OneOf(tuned.outputs[name], given.outputs[name])
        for name in ("margin", "embedding_dim", "learning_rate")
    }
    train = step(
        steps.train_model(crops=prepare.output, training=training, **chosen, **run), "train (TFJob / local workers)"
    )
    model = train.outputs["model"]
    evaluate = step(steps.evaluate_model(model=model, crops=prepare.output), "evaluate (LFW fold 10)", WORKER)
    gate = step(
        steps.accuracy_gate(accuracy=evaluate.outputs["Output"], min_accuracy=p["min_accuracy"]), "accuracy gate"
    )
    quantize = step(
        steps.quantize_model(model=model, crops=prepare.output, int8=p["int8"], **run),
        "quantize (int8 when it holds)",
        WORKER,
    ).after(gate)
    served = quantize.outputs["served_model"]
    gallery = step(
        steps.build_gallery(
            model=served,
            data=p["data"],
            identities=p["gallery_identities"],
            images_per_identity=p["gallery_images_per_identity"],
            **run,
        ),
        "build gallery",
        WORKER,
    )
    deploy = steps.deploy_predictor(
        model=served,
        gallery_dir=gallery.output,
        backend=run["backend"],
        service_name=p["service_name"],
        deployment_mode=p["deployment_mode"],
    )
    step(deploy, "deploy (InferenceService / local registry)").after(gate)


PARAMETER_HELP: dict[str, str] = {
    "data": "LFW-layout root (images + people.txt/pairs.txt)",
    "backend": "local (this machine) or cluster (TFJob, Katib, InferenceService)",
    "work_root": "where crops, runs, models and galleries go (local default: $FACESIM_HOME/pipeline)",
    "workers": "training workers (local processes or TFJob replicas); the batch must divide among them",
    "epochs": "training epochs (local run default: 3 from scratch, 0 from a pretrained start: its weights, calibrated)",
    "steps_per_epoch": "training steps per epoch",
    "init": "where the weights start: faceapi-resnet (dlib's pretrained network, fine-tuned), scratch, or a "
    "model directory",
    "margin": "triplet margin (when not tuned; 0: the init's recipe)",
    "embedding_dim": "embedding size (when not tuned)",
    "learning_rate": "learning rate (when not tuned; 0: the init's recipe)",
    "architecture": "embedding network from scratch: mobilefacenet, inception_resnet_v1, tiny",
    "image_size": "crop size in pixels (0: the architecture's own)",
    "max_identities": "train on at most this many identities (0: all; for quick runs)",
    "val_pairs": "validate on at most this many pairs (0: all of fold 9; for quick runs)",
    "tune": "search margin / embedding size / learning rate before training",
    "trials": "tuning trials",
    "tune_algorithm": "Katib algorithm name (random, grid, tpe, multivariate-tpe, bayesianoptimization)",
    "tune_epochs": "epochs per tuning trial",
    "tune_steps_per_epoch": "steps per epoch of each tuning trial",
    "min_accuracy": "deploy only when the test accuracy (fold 10) reaches this (0: always deploy)",
    "int8": "serve an int8 copy of the model (ONNX Runtime) when fold-10 accuracy stays within one pair and the "
    "TAR at FAR 1e-3 within 0.3 points; else the float model (`facesim model quantize`)",
    "gallery_identities": "people embedded into the gallery: the N with the most images (ties by name)",
    "gallery_images_per_identity": "images per gallery identity",
    "service_name": "InferenceService name (cluster; the UI Deployment calls `facesim`)",
    "deployment_mode": "KServe deployment mode (cluster): Standard or Knative, by the name the compiled target's "
    "KServe knows (kubeflow-1.10: RawDeployment / Serverless)",
}
