"""What each pipeline step does, as plain functions (testable without kfp).

The kfp components (pipeline/components.py) are thin: each imports this module and calls one
function, which calls what the matching `facesim` command calls: the crop cache, evaluation and the
gallery here, and training, tuning and deploy through a backend (pipeline/backends.py: local
processes, or the TFJob, Katib Experiment and InferenceService on the cluster, where the files live
on the PVCs that every facesim pod mounts at the same paths, cluster/volumes.py). Results come
back as values and failures as StepFailed, not as text scraped from a command's output.
"""

from __future__ import annotations

import hashlib
import json
import os
import re
import shutil
from collections.abc import Sequence
from dataclasses import dataclass, field
from pathlib import Path
from typing import TYPE_CHECKING, Any

from facesim.contract.display import format_number
from facesim.contract.metrics_lines import latest_metrics
from facesim.pipeline.backends import Deployment, Search, StepFailed, backend_for
from facesim.pipeline.settings import TrainingSettings, TuningSettings

if TYPE_CHECKING:
    from facesim.training.config import TrainConfig
    from facesim.training.quantize import AccuracyRule

PROGRESS_PREFIX = "facesim-pipeline: "  # `facesim pipeline run` shows these lines on the terminal
# model.json fields recorded on the pipeline's Model artifact (visible in the Kubeflow UI).
MODEL_CARD_METADATA = ("architecture", "image_size", "embedding_dim", "margin", "threshold")


def report(message: str) -> None:
    print(f"{PROGRESS_PREFIX}{message}", flush=True)


def check_backend(backend: str) -> str:
    backend_for(backend)  # StepFailed names the choices
    return backend


@dataclass(frozen=True)
class RunLayout:
    """Where one pipeline run keeps its files. Crops are shared by runs over the same data (the
    cache is idempotent); everything else is per run. On a cluster, checkpoints and tuning trials
    go to the runs volume and only the exported artifacts to the models volume."""

    crops_root: Path
    run_dir: Path
    models_dir: Path

    @classmethod
    def for_run(cls, backend: str, work_root: str, run_name: str) -> RunLayout:
        run_name = run_slug(run_name)  # Kubeflow's run names may hold spaces (the client's default)
        if check_backend(backend) == "cluster":
            from facesim.cluster.volumes import DATA_MOUNT, MODELS_MOUNT, RUNS_MOUNT

            return cls(Path(DATA_MOUNT) / "crops", Path(RUNS_MOUNT) / run_name, Path(MODELS_MOUNT) / run_name)
        root = local_work_root(work_root)
        return cls(root / "crops", root / "runs" / run_name, root / "runs" / run_name)

    @property
    def tuning(self) -> Path:
        return self.run_dir / "tuning"

    @property
    def checkpoints(self) -> Path:
        return self.run_dir / "train"

    @property
    def model(self) -> Path:
        return self.models_dir / "model"

    @property
    def int8_model(self) -> Path:
        return self.models_dir / "model-int8"

    @property
    def gallery(self) -> Path:
        return self.models_dir / "gallery"


def local_work_root(work_root: str) -> Path:
    """Where local runs keep their files: `work_root`, or $FACESIM_HOME/pipeline."""
    if work_root:
        return Path(work_root)
    from facesim.storage.paths import facesim_home

    return facesim_home() / "pipeline"


def facesim_metrics(lines: Sequence[str]) -> dict[str, float]:
    """The latest value of each metric line. facesim's metric names are lower case: this drops the
    upper-case environment hints other libraries print in `NAME=value` form (TF's oneDNN notice),
    which Katib's filter also matches."""
    return {name: value for name, value in latest_metrics(lines).items() if name == name.lower()}


def train_config(data: str, out: str, settings: TrainingSettings, **options: Any) -> TrainConfig:
    """The TrainConfig of a run of `settings` (StepFailed says what TrainConfig refuses)."""
    try:
        return settings.train_config(data, out, **options)
    except (ValueError, FileNotFoundError) as error:  # FileNotFoundError: --init MODEL_DIR has no model.json
        raise StepFailed(f"training settings: {error}") from error


def prepare_data(data: str, layout: RunLayout, settings: TrainingSettings) -> str:
    """Aligned face crops of the dataset (an LFW-layout root; what `facesim data prepare` does);
    returns the crop cache (itself an LFW-layout root with the protocol files)."""
    from facesim.faces.download import DownloadError
    from facesim.faces.image import ImageError
    from facesim.storage.cache import prepare_crops, print_report
    from facesim.training.data import preprocess_config

    source = Path(data)
    if not source.is_dir():
        raise StepFailed(f"data {data}: no such directory (give an LFW-layout root with people.txt and pairs.txt)")
    preprocessing = preprocess_config(train_config(data, "-", settings))  # the crops training will read
    # One cache per dataset and crop size, reused by later runs (prepare skips what is done).
    source_key = hashlib.sha256(str(source.resolve()).encode()).hexdigest()[:8]
    name = f"{source.resolve().name}-{preprocessing.image_size}px-{preprocessing.template}-{source_key}"
    crops = layout.crops_root / name
    try:
        print_report(prepare_crops(source, crops, preprocessing, workers=len(os.sched_getaffinity(0))))
    except (FileNotFoundError, ValueError, ImageError, DownloadError) as error:
        raise StepFailed(f"preparing crops of {data}: {error}") from error
    report(f"face crops ready in {crops}")
    return str(crops)


@dataclass(frozen=True)
class Hyperparameters:
    margin: float  # 0: the --init's recipe (training.config.RECIPES)
    embedding_dim: int
    learning_rate: float  # 0: the --init's recipe


def search(crops: str, layout: RunLayout, run_name: str, settings: TrainingSettings, tuning: TuningSettings) -> Search:
    """The search before training: its budget from `tuning`, each trial's options from `settings`."""
    trial = train_config(crops, str(layout.tuning), settings)
    return Search(trial, tuning, layout.tuning, resource_name(run_name, "tune"))


def tune(
    crops: str, backend: str, layout: RunLayout, run_name: str, settings: TrainingSettings, tuning: TuningSettings
) -> tuple[Hyperparameters, dict[str, float]]:
    """The best hyper-parameters of a search (tuning/space.py): local optuna trials or a Katib
    Experiment; also the best trial's objective."""
    best = backend_for(backend).tune(search(crops, layout, run_name, settings, tuning))
    params = best.parameters
    chosen = Hyperparameters(float(params["margin"]), int(params["embedding_size"]), float(params["learning_rate"]))
    report(
        f"best of {tuning.trials} trials: {best.objective}={best.value:.4f} with margin={chosen.margin:.3g}, "
        f"embedding_dim={chosen.embedding_dim}, learning_rate={chosen.learning_rate:.3g}"
    )
    return chosen, {best.objective: best.value}


def final_config(crops: str, layout: RunLayout, settings: TrainingSettings, hyper: Hyperparameters) -> TrainConfig:
    """The final run: checkpoints on the runs volume, the model on the models volume."""
    return train_config(
        crops,
        str(layout.model),
        settings,
        run_dir=str(layout.checkpoints),
        margin=hyper.margin or None,
        embedding_dim=hyper.embedding_dim,
        learning_rate=hyper.learning_rate or None,
    )


def train(
    crops: str, backend: str, layout: RunLayout, run_name: str, settings: TrainingSettings, hyper: Hyperparameters
) -> tuple[str, dict[str, float]]:
    """Train (local worker processes or a TFJob) and export the model artifact; returns its directory
    and the metrics its model.json records (validation, test, the last loss)."""
    from facesim.storage.model_artifact import load_model_card

    config = final_config(crops, layout, settings, hyper)
    backend_for(backend).train(config, resource_name(run_name, "train"))
    metrics = load_model_card(layout.model).metrics
    report(f"model exported to {layout.model} (val_accuracy={metrics.get('val_accuracy', float('nan')):.4f})")
    return str(layout.model), metrics


def publish_model(model_dir: str, artifact_dir: str) -> dict[str, object]:
    """Copy the exported model into the step's Model artifact (kfp uploads it to the artifact store
    and hands it to later steps); returns the artifact's metadata: where the model also lives on the
    volume (what KServe mounts) and its model card's main fields."""
    shutil.copytree(model_dir, artifact_dir, dirs_exist_ok=True)
    card = json.loads((Path(model_dir) / "model.json").read_text())
    return {"volume_path": model_dir, **{key: card[key] for key in MODEL_CARD_METADATA if key in card}}


def run_slug(run_name: str) -> str:
    """The run's name as lower-case letters, digits and dashes: safe in paths and PVC URIs."""
    return re.sub(r"[^a-z0-9-]+", "-", run_name.lower()).strip("-") or "run"


def resource_name(run_name: str, role: str) -> str:
    """A Kubernetes name (DNS-1123) for this run's TFJob (`train`) or Experiment (`tune`), short enough
    that the names made from it (a worker's Service, a trial's TFJob and its Services) stay within 63
    characters: a long run name is cut and given a hash of the whole."""
    from facesim.cluster.resources import EXPERIMENT_NAME_MAX, TFJOB_NAME_MAX, bounded_name

    limit = {"train": TFJOB_NAME_MAX, "tune": EXPERIMENT_NAME_MAX}[role]
    return f"{bounded_name(run_slug(run_name), limit - len(role) - 1)}-{role}"


def evaluate(model_dir: str, crops: str) -> dict[str, float]:
    """The test figures (docs/protocol.md: pairs.txt fold 10) of an exported model (`facesim evaluate`)."""
    from facesim.storage.model_artifact import ModelError
    from facesim.training.evaluate import EvaluateRequest, evaluate_model
    from facesim.training.verification import Scores

    request = EvaluateRequest(model=Path(model_dir), data=Path(crops), pairs=Path(crops) / "pairs.txt", fold=10)
    try:
        scores = evaluate_model(request)
    except (FileNotFoundError, ValueError, ModelError) as error:
        raise StepFailed(f"evaluating {model_dir}: {error}") from error
    assert isinstance(scores, Scores)  # the pairs protocol (lfw-10fold gives a list of accuracies)
    metrics = scores.metrics()
    report("test figures: " + ", ".join(f"{name}={format_number(value)}" for name, value in metrics.items()))
    return metrics


def check_accuracy(accuracy: float, min_accuracy: float) -> None:
    """The gate before deploy: StepFailed when the test accuracy is below `min_accuracy` (0: no gate)."""
    if not accuracy >= min_accuracy:  # NaN (no accuracy line) fails too
        raise StepFailed(f"test accuracy {accuracy:.4f} is below min_accuracy {min_accuracy:.4f}: not deploying")
    report(f"test accuracy {accuracy:.4f} passes the gate (min_accuracy {min_accuracy:.4f})")


@dataclass(frozen=True)
class Served:
    """The model a run serves: the int8 copy when it decides as the float model does, else the float
    model and why not."""

    model_dir: str  # on the volume (what KServe mounts)
    precision: str  # int8 | float
    int8_refused: str = ""  # why the float model is served
    metrics: dict[str, float] = field(default_factory=dict)  # the int8 check's figures: float_* and int8_*

    def metadata(self) -> dict[str, object]:
        return {"precision": self.precision, **({"int8_refused": self.int8_refused} if self.int8_refused else {})}


def quantize(model_dir: str, data: str, layout: RunLayout, int8: bool, rule: AccuracyRule | None = None) -> Served:
    """The model to serve (`facesim model quantize`): an int8 copy of `model_dir` in the run's layout,
    calibrated and checked on `data` (an LFW-layout root or the run's crop cache), when it holds the
    accuracy rule; else the float model, and why. A model without model.onnx or data without the
    protocol files serve float too: int8 is an optimisation, never a reason to fail the run."""
    from facesim.storage.model_artifact import QUANTIZATION, load_model_card
    from facesim.training.quantize import AccuracyRule, QuantizationRefused, QuantizeRequest, quantize_model

    if not int8:
        return serve_float(model_dir, "int8 is off (the pipeline's int8 parameter)")
    out = layout.int8_model
    for stale in [out, *out.parent.glob(f".{out.name}.partial-*")]:  # a retried or killed step's copies
        shutil.rmtree(stale, ignore_errors=True)
    request = QuantizeRequest(
        Path(model_dir), out, Path(data), rule=rule or AccuracyRule(), prepare_workers=len(os.sched_getaffinity(0))
    )
    try:
        quantize_model(request)
    except QuantizationRefused as reason:
        return serve_float(model_dir, str(reason))
    except Exception as error:  # noqa: BLE001 - int8 is an optimisation: whatever stops it, the float model serves
        return serve_float(model_dir, f"int8 failed ({type(error).__name__}: {error})"[:500])
    check = load_model_card(out).extra[QUANTIZATION]["check"]
    metrics = {f"{model}_{name}": float(value) for model, figures in check.items() for name, value in figures.items()}
    report(
        f"serving the int8 model {out}: fold 10 {metrics['int8_fold10_correct_pairs']:.0f} correct pairs "
        f"(float {metrics['float_fold10_correct_pairs']:.0f}), TAR at FAR 1e-3 "
        f"{100 * metrics['int8_tar_at_far_1e-3_all_pairs']:.2f} % (float "
        f"{100 * metrics['float_tar_at_far_1e-3_all_pairs']:.2f} %)"
    )
    return Served(str(out), "int8", metrics=metrics)


def serve_float(model_dir: str, reason: str) -> Served:
    report(f"serving the float model: {reason}")
    return Served(model_dir, "float", int8_refused=reason)


def build_gallery(model_dir: str, data: str, layout: RunLayout, identities: int, images_per_identity: int) -> str:
    """Embed the identity folders of `data` (an LFW root or a folder of identity folders) into a
    gallery artifact (`facesim gallery build`); returns its directory."""
    from facesim.gallery.api import GalleryError
    from facesim.gallery.cli import BuildOptions, build_gallery
    from facesim.storage.model_artifact import ModelError

    options = BuildOptions(max_images_per_identity=images_per_identity, limit_identities=identities)
    try:
        built = build_gallery(Path(model_dir), [Path(data)], layout.gallery, options)
    except (GalleryError, ModelError, FileNotFoundError, ValueError) as error:
        raise StepFailed(f"building the gallery: {error}") from error
    report(f"gallery of {built.identities} identities, {built.embeddings} embeddings")
    calibrate_gallery_threshold(layout.gallery)
    report(f"gallery built in {layout.gallery}")
    return str(layout.gallery)


# A search compares a face with every identity of the gallery, so its threshold must hold false
# accepts far lower than the model's best-accuracy threshold on LFW's balanced pairs.
GALLERY_FAR = 1e-3


def calibrate_gallery_threshold(gallery: Path) -> None:
    """Give the gallery its own threshold at GALLERY_FAR (`facesim gallery calibrate`); a gallery with
    too few pairs for that keeps the model's threshold, and the step says so."""
    from facesim.gallery.api import GalleryError
    from facesim.gallery.calibrate import TooFewPairs, calibrate_gallery
    from facesim.gallery.store import GalleryStore

    try:
        result = calibrate_gallery(GalleryStore(gallery), GALLERY_FAR)
    except TooFewPairs as reason:
        report(f"the gallery keeps the model's threshold: {reason}")
        return
    except (GalleryError, FileNotFoundError) as error:
        raise StepFailed(f"calibrating gallery {gallery}: {error}") from error
    report(
        f"gallery's own threshold {result.threshold:.4f} at FAR {result.far:.2e} (target {result.target_far:g}), "
        f"TAR {result.tar:.3f}, from {result.genuine_pairs} genuine and {result.impostor_pairs} impostor pairs"
    )


def deploy(model_dir: str, model_volume_path: str, gallery_dir: str, backend: str, where: Deployment) -> str:
    """Make the model and gallery what the predictor serves: registered in the local registry
    (where `facesim serve` finds the latest), or an InferenceService on the cluster (the model from
    its place on the models volume); returns what was deployed."""
    deployed = backend_for(backend).deploy(model_dir, model_volume_path, gallery_dir, where)
    if backend == "cluster":
        report(f"InferenceService {where.service_name} is ready at {deployed}")
    else:
        report(f"registered {deployed}: `facesim serve` now serves them")
    return deployed
