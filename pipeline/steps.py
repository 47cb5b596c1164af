"""What each pipeline step does, as plain functions (testable without kfp).

The kfp components (pipeline/components.py) are thin: each imports this module and calls one
function, which runs the project's own command as a user would (`facesim train --backend B`,
`facesim tune --backend B`, ...). With `backend="cluster"` those commands go through the cluster
launchers (TFJob, Katib Experiment, InferenceService), and the files live on the PVCs that every
facesim pod mounts at the same paths (cluster/volumes.py).
"""

from __future__ import annotations

import hashlib
import json
import os
import re
import shutil
import subprocess
import sys
from collections.abc import Sequence
from dataclasses import dataclass
from pathlib import Path

from facesim.contract.display import format_number
from facesim.contract.metrics_lines import latest_metrics
from facesim.pipeline.settings import TrainingSettings, TuningSettings

BACKENDS = ("local", "cluster")
PROGRESS_PREFIX = "facesim-pipeline: "  # `facesim pipeline run` shows these lines on the terminal
# model.json fields recorded on the pipeline's Model artifact (visible in the Kubeflow UI).
MODEL_CARD_METADATA = ("architecture", "image_size", "embedding_dim", "margin", "threshold")


class StepFailed(RuntimeError):
    """A step's command failed; the message says which and how."""


def report(message: str) -> None:
    print(f"{PROGRESS_PREFIX}{message}", flush=True)


def check_backend(backend: str) -> str:
    if backend not in BACKENDS:
        raise StepFailed(f"backend must be one of {', '.join(BACKENDS)}, not {backend!r}")
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


def run_facesim(args: Sequence[str]) -> list[str]:
    """Run `facesim ARGS` as a user would, echo its output, return its lines; StepFailed if it fails."""
    command = [sys.executable, "-m", "facesim", *args]
    lines: list[str] = []
    env = {**os.environ, "PYTHONUNBUFFERED": "1"}  # its progress shows as it happens
    with subprocess.Popen(
        command, stdout=subprocess.PIPE, stderr=subprocess.STDOUT, text=True, bufsize=1, env=env
    ) as process:
        assert process.stdout is not None
        for line in process.stdout:
            print(line, end="", flush=True)
            lines.append(line)
    if process.returncode != 0:
        last = next((line.strip() for line in reversed(lines) if line.strip()), "no output")
        raise StepFailed(f"`facesim {' '.join(args)}` failed with exit code {process.returncode}: {last}")
    return lines


def prepare_data(data: str, layout: RunLayout, settings: TrainingSettings) -> str:
    """Aligned face crops of the dataset (an LFW-layout root); returns the crop cache (itself an
    LFW-layout root with the protocol files)."""
    source = Path(data)
    if not source.is_dir():
        raise StepFailed(f"data {data}: no such directory (give an LFW-layout root with people.txt and pairs.txt)")
    # One cache per dataset and crop size, reused by later runs (prepare skips what is done).
    size, template = str(settings.crop_size()), settings.template()
    source_key = hashlib.sha256(str(source.resolve()).encode()).hexdigest()[:8]
    crops = layout.crops_root / f"{source.resolve().name}-{size}px-{template}-{source_key}"
    prepare = ["data", "prepare", "--data", str(source), "--out", str(crops), "--image-size", size]
    run_facesim([*prepare, "--template", template])
    report(f"face crops ready in {crops}")
    return str(crops)


@dataclass(frozen=True)
class Hyperparameters:
    margin: float  # 0: the --init's recipe (training.config.RECIPES)
    embedding_dim: int
    learning_rate: float  # 0: the --init's recipe


# What `facesim tune` sets itself on each trial; the rest of the training settings go after `--`.
TUNER_OPTIONS = ("data", "out", "workers", "epochs", "steps_per_epoch")


def tune_command(
    crops: str, backend: str, layout: RunLayout, run_name: str, settings: TrainingSettings, tuning: TuningSettings
) -> list[str]:
    """`facesim tune` of the search: its budget from `tuning`, each trial's options from `settings`."""
    trial = settings.train_config(crops, str(layout.tuning))
    search = ["--trials", str(tuning.trials), "--algorithm", tuning.tune_algorithm, "--workers", str(trial.workers)]
    length = ["--epochs", str(tuning.tune_epochs), "--steps-per-epoch", str(tuning.tune_steps_per_epoch)]
    cluster = ["--experiment-name", resource_name(run_name, "tune")] if check_backend(backend) == "cluster" else []
    where = ["--backend", backend, "--data", crops, "--out", str(layout.tuning)]
    return ["tune", *where, *search, *length, *cluster, "--", *trial.to_args(exclude=TUNER_OPTIONS)]


def tune(
    crops: str, backend: str, layout: RunLayout, run_name: str, settings: TrainingSettings, tuning: TuningSettings
) -> tuple[Hyperparameters, dict[str, float]]:
    """The best hyper-parameters of a search (tuning/space.py): local optuna trials or a Katib
    Experiment (`facesim tune --backend ...`); also the best trial's objective."""
    from facesim.tuning.best import read_best_params

    run_facesim(tune_command(crops, backend, layout, run_name, settings, tuning))
    best = read_best_params(layout.tuning)
    params = best.parameters
    chosen = Hyperparameters(float(params["margin"]), int(params["embedding_size"]), float(params["learning_rate"]))
    report(
        f"best of {tuning.trials} trials: {best.objective}={best.value:.4f} with margin={chosen.margin:.3g}, "
        f"embedding_dim={chosen.embedding_dim}, learning_rate={chosen.learning_rate:.3g}"
    )
    return chosen, {best.objective: best.value}


def train_command(
    crops: str, backend: str, layout: RunLayout, run_name: str, settings: TrainingSettings, hyper: Hyperparameters
) -> list[str]:
    """`facesim train` of the final run: checkpoints on the runs volume, the model on the models volume."""
    config = settings.train_config(
        crops,
        str(layout.model),
        run_dir=str(layout.checkpoints),
        margin=hyper.margin or None,
        embedding_dim=hyper.embedding_dim,
        learning_rate=hyper.learning_rate or None,
    )
    cluster = ["--job-name", resource_name(run_name, "train")] if check_backend(backend) == "cluster" else []
    return ["train", "--backend", backend, *cluster, *config.to_args()]


def train(
    crops: str, backend: str, layout: RunLayout, run_name: str, settings: TrainingSettings, hyper: Hyperparameters
) -> tuple[str, dict[str, float]]:
    """Train (local worker processes or a TFJob: `facesim train --backend ...`) and export the model
    artifact; returns its directory and the last metrics printed."""
    lines = run_facesim(train_command(crops, backend, layout, run_name, settings, hyper))
    metrics = facesim_metrics(lines)
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
    """The test figures (docs/protocol.md: pairs.txt fold 10) of an exported model."""
    pairs = Path(crops) / "pairs.txt"
    lines = run_facesim(["evaluate", "--model", model_dir, "--data", crops, "--pairs", str(pairs), "--fold", "10"])
    metrics = facesim_metrics(lines)
    report("test figures: " + ", ".join(f"{name}={format_number(value)}" for name, value in metrics.items()))
    return metrics


def check_accuracy(accuracy: float, min_accuracy: float) -> None:
    """The gate before deploy: StepFailed when the test accuracy is below `min_accuracy` (0: no gate)."""
    if not accuracy >= min_accuracy:  # NaN (no accuracy line) fails too
        raise StepFailed(f"test accuracy {accuracy:.4f} is below min_accuracy {min_accuracy:.4f}: not deploying")
    report(f"test accuracy {accuracy:.4f} passes the gate (min_accuracy {min_accuracy:.4f})")


def build_gallery(model_dir: str, data: str, layout: RunLayout, identities: int, images_per_identity: int) -> str:
    """Embed the identity folders of `data` (an LFW root or a folder of identity folders) into a
    gallery artifact; returns its directory."""
    limits = ["--limit-identities", str(identities), "--max-images-per-identity", str(images_per_identity)]
    run_facesim(["gallery", "build", "--model", model_dir, "--data", data, "--out", str(layout.gallery), *limits])
    calibrate_gallery_threshold(layout.gallery)
    report(f"gallery built in {layout.gallery}")
    return str(layout.gallery)


# A search compares a face with every identity of the gallery, so its threshold must hold false
# accepts far lower than the model's best-accuracy threshold on LFW's balanced pairs.
GALLERY_FAR = 1e-3


def calibrate_gallery_threshold(gallery: Path) -> None:
    """Give the gallery its own threshold at GALLERY_FAR (`facesim gallery calibrate`); a gallery with
    too few pairs for that keeps the model's threshold, and the step says so."""
    try:
        lines = run_facesim(["gallery", "calibrate", "--gallery", str(gallery), "--far", str(GALLERY_FAR)])
        report("gallery's own " + lines[-1].strip().split(": ", 1)[-1])  # threshold, FAR, TAR, pair counts
    except StepFailed as failed:
        if "too few pairs" not in str(failed):
            raise
        reason = "too few pairs" + str(failed).split("too few pairs", 1)[1]
        report(f"the gallery keeps the model's threshold: {reason}")


@dataclass(frozen=True)
class Deployment:
    """The InferenceService of a cluster deploy (the target comes from $FACESIM_TARGET, set by compile)."""

    service_name: str = "facesim"
    deployment_mode: str = "Standard"


def deploy(model_dir: str, model_volume_path: str, gallery_dir: str, backend: str, where: Deployment) -> str:
    """Make the model and gallery what the predictor serves: registered in the local registry
    (where `facesim serve` finds the latest), or an InferenceService on the cluster (`facesim serve
    --backend cluster`, the model from its place on the models volume); returns what was deployed."""
    if check_backend(backend) == "cluster":
        paths = ["--model", volume_uri(model_volume_path), "--gallery", volume_uri(gallery_dir)]
        service = ["--name", where.service_name, "--deployment-mode", where.deployment_mode]
        lines = run_facesim(["serve", "--backend", "cluster", *paths, *service])
        url = lines[-1].strip()
        report(f"InferenceService {where.service_name} is ready at {url}")
        return url
    from facesim.storage.paths import register_gallery, register_model

    model_version = register_model(Path(model_dir))
    gallery_version = register_gallery(Path(gallery_dir))
    report(
        f"registered model version {model_version} and gallery version {gallery_version}: "
        "`facesim serve` now serves them"
    )
    return f"model {model_version}, gallery {gallery_version}"


def volume_uri(path: str) -> str:
    """`pvc://CLAIM/SUBPATH` of a path under one of the facesim PVC mounts (what KServe takes)."""
    from facesim.cluster.volumes import StorageConfig

    for claim in StorageConfig().claims:
        mount = Path(claim.mount_path)
        if Path(path).is_relative_to(mount):
            return f"pvc://{claim.name}/{Path(path).relative_to(mount)}"
    raise StepFailed(f"{path} is on no facesim volume ({', '.join(c.mount_path for c in StorageConfig().claims)})")
