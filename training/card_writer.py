"""model.json for a trained model: what serving needs (size, threshold, preprocessing) and what it was made from."""

from __future__ import annotations

import subprocess
from pathlib import Path

from facesim.contract.version import __version__
from facesim.storage.model_artifact import ModelCard, load_model_card, portable_preprocessing, save_model_card
from facesim.training.config import PRETRAINED_INIT, SCRATCH_INIT, TrainConfig
from facesim.training.data import RunData

REPO_ROOT = Path(__file__).resolve().parents[1]


def code_version() -> str:
    """Package version, plus the git commit when running from a checkout (containers have none)."""
    try:
        commit = subprocess.run(
            ["git", "rev-parse", "--short", "HEAD"],
            cwd=REPO_ROOT,
            capture_output=True,
            text=True,
            timeout=5,
            check=True,
        ).stdout.strip()
    except (OSError, subprocess.SubprocessError):
        return __version__
    return f"{__version__}+g{commit}" if commit else __version__


def write_model_card(
    out: Path,
    config: TrainConfig,
    data: RunData,
    threshold: float,
    metrics: dict[str, float],
    workers: int,
    onnx: dict,
) -> Path:
    """model.json; `onnx`: the record of model.onnx (training.export.export_onnx)."""
    assert config.margin is not None  # TrainConfig filled it
    training = {
        "data": str(data.source),
        "crops": str(data.cache_dir),
        "protocol": "LFW View 2, identity-disjoint: train people.txt sets 1-8, "
        "threshold on pairs.txt fold 9 (val), test on fold 10 (docs/protocol.md)",
        "identities": len(data.train_names),
        "images_seen": config.total_steps * config.global_batch,
        "val_pairs": len(data.val.same),
        "test_pairs": len(data.test.same),
        "workers": workers,
        "init": init_record(config),
        "params": {
            "epochs": config.epochs,
            "steps_per_epoch": config.steps_per_epoch,
            "mining": config.mining,
            "identities_per_batch": config.identities_per_batch,
            "images_per_identity": config.images_per_identity,
            "learning_rate": config.learning_rate,
            "lr_schedule": config.lr_schedule,
            "warmup_steps": config.warmup_steps,
            "weight_decay": config.weight_decay,
            "optimizer": "adamw" if config.weight_decay else "adam",
            "augment": config.augment,
            "seed": config.seed,
            "max_identities": config.max_identities,
            "freeze_stages": config.freeze_stages,
            "distill_weight": config.distill_weight,
        },
        "notes": dict(config.metadata),
    }
    card = ModelCard(
        image_size=config.size,
        embedding_dim=config.embedding_dim,
        margin=config.margin,
        architecture=config.architecture,
        preprocessing=portable_preprocessing(data.preprocessing),
        threshold=float(threshold),
        training=training,
        metrics={name: float(value) for name, value in metrics.items()},
        code_version=code_version(),
        extra={"flip_average": config.flips, "onnx": onnx},
    )
    return save_model_card(out, card)


def init_record(config: TrainConfig) -> dict:
    """Where the weights started: scratch, the pretrained dlib ResNet (with its provenance and the
    files' sha256), or another facesim model (its directory and model.json's code version)."""
    if config.init == SCRATCH_INIT:
        return {"from": SCRATCH_INIT}
    if config.init == PRETRAINED_INIT:
        from facesim.training.pretrained import FILE_SHA256, PROVENANCE

        return {"from": PRETRAINED_INIT, **PROVENANCE, "sha256": dict(FILE_SHA256)}
    source = load_model_card(config.init)
    return {
        "from": str(Path(config.init).resolve()),
        "code_version": source.code_version,
        "init": source.training.get("init"),
    }
