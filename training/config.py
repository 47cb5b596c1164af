"""TrainConfig: every option of a training run, declared once (training/options.py: each field's flag,
help and checks), and its round trip through the command line.

The local launcher and the TFJob launcher (training/tfjob.py) both start `python -m facesim.training`
with `config.to_args()`, so a worker on a cluster runs exactly the options given locally.
"""

from __future__ import annotations

import argparse
from collections.abc import Collection
from dataclasses import dataclass, field
from pathlib import Path

from facesim.faces.detect import add_yunet_argument
from facesim.training.options import add_options, from_namespace, option, option_problems, to_args

# The registry of embedding networks (training/model.py builds each): name -> what it is, for --help.
ARCHITECTURE_NOTES = {
    "mobilefacenet": "~1M params",
    "inception_resnet_v1": "FaceNet",
    "faceapi_resnet": "dlib's face ResNet, 128-d, for pretrained weights",
    "tiny": "tests",
}
ARCHITECTURES = tuple(ARCHITECTURE_NOTES)
MINERS = ("semi_hard", "batch_hard")
LR_SCHEDULES = ("constant", "cosine")
DEFAULT_IMAGE_SIZE = {"mobilefacenet": 112, "inception_resnet_v1": 160, "faceapi_resnet": 150, "tiny": 64}
# Where the five points go in the crop (faces.align.TEMPLATES): dlib's network was trained on dlib's chips.
DEFAULT_TEMPLATE = {"faceapi_resnet": "dlib-chip-5pt"}
PRETRAINED_INIT = "faceapi-resnet"  # --init: the pretrained dlib ResNet (training.pretrained)
SCRATCH_INIT = "scratch"


def architecture_help() -> str:
    """`--architecture`'s help, from the registry, so a new network cannot be left out."""
    networks = [f"{name} ({note}, {DEFAULT_IMAGE_SIZE[name]} px)" for name, note in ARCHITECTURE_NOTES.items()]
    return f"embedding network: {', '.join(networks)} (default: %(default)s)"


@dataclass(frozen=True)
class Recipe:
    """Defaults that depend on where the weights start (docs/results.md: how they were chosen)."""

    learning_rate: float
    warmup_steps: int
    margin: float  # on squared L2 distances of unit vectors
    freeze_stages: int
    distill_weight: float  # pull towards the starting network's embeddings of the same crops (0: none)


# From scratch: FaceNet's margin, Adam 1e-3. Fine-tuning dlib's network, whose same-person threshold
# sits near 0.17 (squared, normalised): a small rate and margin; only its last stage (conv256) and fc
# learn, which also makes a step ~3x cheaper than training all (the backward pass skips the large maps).
# Triplets alone spread dlib's tight geometry within 50 steps (threshold 0.18 -> 0.77) and cost fold-9
# TAR at FAR 1e-3; the pull to the starting network's embeddings (weight 4) keeps the threshold at
# 0.19 and raised that TAR (docs/results.md: the runs behind these numbers).
RECIPES = {
    SCRATCH_INIT: Recipe(learning_rate=1e-3, warmup_steps=0, margin=0.2, freeze_stages=0, distill_weight=0.0),
    PRETRAINED_INIT: Recipe(learning_rate=2e-5, warmup_steps=20, margin=0.1, freeze_stages=3, distill_weight=4.0),
}


@dataclass
class TrainConfig:
    """Every option of a training run. Each field's `option(...)` is its flag, help and checks
    (training/options.py); `problems()` adds the checks that span several fields."""

    data: str = field(metadata=option("LFW-layout root (images + people.txt/pairs.txt) or a prepared crop cache"))
    out: str = field(metadata=option("model directory to export (SavedModel + model.json)"))
    run_dir: str | None = field(  # default: OUT.run beside OUT
        default=None,
        metadata=option("checkpoints and TensorBoard logs (default: OUT.run beside OUT); reuse it to resume"),
    )
    cache_dir: str | None = field(
        default=None, metadata=option("face-crop cache (default: $FACESIM_CACHE/<preprocessing key>)")
    )
    workers: int = field(default=1, metadata=option("worker processes (default: %(default)s)", at_least=1))
    epochs: int = field(  # its bound depends on --init: problems()
        default=1,
        metadata=option("epochs; 0 with an --init exports the starting weights, calibrated (default: %(default)s)"),
    )
    steps_per_epoch: int = field(default=100, metadata=option("steps per epoch (default: %(default)s)", at_least=1))
    architecture: str = field(
        default="mobilefacenet",
        metadata=option(
            architecture_help(),
            choices=ARCHITECTURES,
        ),
    )
    image_size: int | None = field(  # None: the architecture's native size
        default=None, metadata=option("crop size in pixels (default: the architecture's native size)", at_least=32)
    )
    embedding_dim: int = field(default=128, metadata=option("embedding size (default: %(default)s)", at_least=1))
    margin: float | None = field(  # None: the --init's recipe (RECIPES)
        default=None,
        metadata=option(
            f"triplet margin on squared L2 (default: {RECIPES[SCRATCH_INIT].margin} from scratch, "
            f"{RECIPES[PRETRAINED_INIT].margin} fine-tuning)",
            finite=True,
            positive=True,
        ),
    )
    mining: str = field(
        default="semi_hard", metadata=option("online triplet mining (default: %(default)s)", choices=MINERS)
    )
    identities_per_batch: int = field(  # P
        default=16,
        metadata=option(
            "P: identities in each global batch (default: %(default)s)",
            at_least=2,
            at_least_why="a triplet needs a negative",
        ),
    )
    images_per_identity: int = field(  # K
        default=4,
        metadata=option(
            "K: images of each identity in a batch (default: %(default)s)",
            at_least=2,
            at_least_why="a triplet needs an anchor and a positive",
        ),
    )
    learning_rate: float | None = field(  # None: the --init's recipe
        default=None,
        metadata=option(
            f"peak Adam learning rate (default: {RECIPES[SCRATCH_INIT].learning_rate} from scratch, "
            f"{RECIPES[PRETRAINED_INIT].learning_rate} fine-tuning)",
            finite=True,
            positive=True,
        ),
    )
    lr_schedule: str = field(  # cosine: linear warm-up, then cosine decay to 0 over the run
        default="cosine",
        metadata=option(
            "constant, or cosine decay to 0 over all the run's steps (default: %(default)s)", choices=LR_SCHEDULES
        ),
    )
    warmup_steps: int | None = field(  # None: the --init's recipe
        default=None,
        metadata=option(
            f"steps of linear warm-up to the peak learning rate (default: {RECIPES[SCRATCH_INIT].warmup_steps} "
            f"from scratch, {RECIPES[PRETRAINED_INIT].warmup_steps} fine-tuning)",
            not_negative=True,
        ),
    )
    weight_decay: float = field(
        default=0.0,
        metadata=option(
            "AdamW decoupled weight decay; 0 is plain Adam (default: %(default)s)", finite=True, not_negative=True
        ),
    )
    augment: bool = field(default=True, metadata=option("flip, crop jitter, colour (default: on)"))
    max_identities: int | None = field(
        default=None, metadata=option("use at most this many training identities (smoke tests)")
    )
    val_pairs: int | None = field(  # balanced same/different
        default=None, metadata=option("use at most this many validation pairs (smoke tests)")
    )
    test_pairs: int | None = field(  # balanced same/different
        default=None, metadata=option("use at most this many test pairs (smoke tests)")
    )
    map_identities: int = field(
        default=12, metadata=option("test identities in the embedding map (default: %(default)s)")
    )
    checkpoint_steps: int = field(  # 0: checkpoint at the end of each epoch only
        default=0, metadata=option("also checkpoint every N steps (default: each epoch end)")
    )
    detector: str = field(default="auto", metadata=option("face detector for preparing crops: auto, yunet, haar"))
    yunet_path: str | None = field(default=None, metadata=option(flag="--yunet", add=add_yunet_argument))
    prepare_workers: int = field(default=2, metadata=option("processes preparing crops"))
    threads: int = field(  # TensorFlow intra-op threads per worker; 0: cores / workers
        default=0, metadata=option("TensorFlow threads per worker (default: cores / workers)")
    )
    seed: int = field(default=0, metadata=option("sampling and initialisation seed (default: %(default)s)"))
    init: str = field(  # scratch | faceapi-resnet | a model directory to start from
        default=SCRATCH_INIT,
        metadata=option(
            "where the weights start: random (scratch), dlib's pretrained ResNet (faceapi-resnet: implies "
            "--architecture faceapi_resnet, 150 px, 128-d), or an exported facesim model (its network and "
            "preprocessing) (default: %(default)s)",
            metavar="faceapi-resnet|scratch|MODEL_DIR",
        ),
    )
    init_weights: str | None = field(
        default=None,
        metadata=option(
            "--init faceapi-resnet: folder with the face-api weights (default: "
            "$FACESIM_FACEAPI_WEIGHTS, the cache under $FACESIM_HOME, or npm)"
        ),
    )
    freeze_stages: int | None = field(  # faceapi_resnet: leading stages kept frozen; None: the recipe
        default=None,
        metadata=option(
            "faceapi_resnet: keep the first N of its 4 stages frozen (0-3; default: "
            f"{RECIPES[PRETRAINED_INIT].freeze_stages} fine-tuning, 0 from scratch)",
            at_least=0,
            at_most=3,
        ),
    )
    distill_weight: float | None = field(  # None: the recipe
        default=None,
        metadata=option(
            "add this times the mean squared distance between each crop's embedding and the starting "
            "network's embedding of it: fine-tuning keeps the pretrained geometry (default: "
            f"{RECIPES[PRETRAINED_INIT].distill_weight} fine-tuning, 0 from scratch)",
            finite=True,
            not_negative=True,
        ),
    )
    template: str | None = field(  # None: the architecture's (DEFAULT_TEMPLATE)
        default=None, metadata=option("alignment template (arcface-5pt, dlib-chip-5pt; default: the architecture's)")
    )
    flip_average: bool | None = field(  # None: on for faceapi_resnet
        default=None,
        metadata=option("embed each crop and its mirror image and average (default: on for faceapi_resnet)"),
    )
    metadata: dict[str, str] = field(  # free-form notes for model.json
        default_factory=dict, metadata=option("a note to record in model.json", metavar="KEY=VALUE")
    )

    def __post_init__(self) -> None:
        self._follow_init()
        problems = self.problems()
        if problems:
            raise ValueError("; ".join(problems))

    def _follow_init(self) -> None:
        """--init faceapi-resnet implies its architecture; --init MODEL_DIR takes that model's network,
        size, embedding size, template and flip averaging (its weights only fit that network).
        Options left unset take the init's recipe (a model directory: the fine-tuning one)."""
        recipe = RECIPES.get(self.init, RECIPES[PRETRAINED_INIT])
        for name in ("learning_rate", "warmup_steps", "margin", "freeze_stages", "distill_weight"):
            if getattr(self, name) is None:
                setattr(self, name, getattr(recipe, name))
        if self.architecture not in ARCHITECTURES:
            return  # problems() names it, whatever the init
        if self.init == PRETRAINED_INIT:
            self.architecture = "faceapi_resnet"
        elif self.init != SCRATCH_INIT:
            from facesim.storage.model_artifact import load_model_card

            card = load_model_card(self.init)
            self.architecture = card.architecture
            self.image_size = int(card.image_size)
            self.embedding_dim = int(card.embedding_dim)
            self.template = card.preprocessing.get("template", self.template)
            self.flip_average = bool(card.extra.get("flip_average", False))

    def problems(self) -> list[str]:
        """Every field's own checks (its option(...)), then those that span several fields."""
        found = option_problems(self)
        if self.architecture == "faceapi_resnet" and self.embedding_dim != 128:
            found.append("faceapi_resnet embeds in 128 dimensions (its pretrained last layer): drop --embedding-dim")
        if self.epochs < (1 if self.init == SCRATCH_INIT else 0):
            found.append("--epochs must be at least 1 (0, export the starting weights calibrated, needs an --init)")
        if self.workers >= 1 and self.global_batch % self.workers:
            found.append(
                f"the global batch ({self.identities_per_batch} x {self.images_per_identity} = "
                f"{self.global_batch}) must divide evenly among {self.workers} workers"
            )
        if self.distill_weight and self.init == SCRATCH_INIT:
            found.append("--distill-weight needs an --init to distil from (random weights teach nothing)")
        return found

    @property
    def global_batch(self) -> int:
        return self.identities_per_batch * self.images_per_identity

    @property
    def size(self) -> int:
        return self.image_size or DEFAULT_IMAGE_SIZE[self.architecture]

    @property
    def alignment_template(self) -> str:
        return self.template or DEFAULT_TEMPLATE.get(self.architecture, "arcface-5pt")

    @property
    def flips(self) -> bool:
        """Whether embeddings average the crop's and its mirror image's (evaluation and export)."""
        return self.architecture == "faceapi_resnet" if self.flip_average is None else self.flip_average

    @property
    def total_steps(self) -> int:
        return self.epochs * self.steps_per_epoch

    def resolved_run_dir(self) -> Path:
        if self.run_dir:
            return Path(self.run_dir)
        out = Path(self.out)
        return out.with_name(out.name + ".run")

    def to_args(self, exclude: Collection[str] = ()) -> list[str]:
        """Command-line arguments that `parse_config` turns back into this config (without the
        fields in `exclude`, for a caller that sets those itself)."""
        return to_args(self, exclude)


def add_config_arguments(parser: argparse.ArgumentParser) -> None:
    """Every TrainConfig field as an option (shared by `facesim train` and `python -m facesim.training`)."""
    add_options(parser, TrainConfig)


def config_from_namespace(args: argparse.Namespace) -> TrainConfig:
    return from_namespace(TrainConfig, args)


def parse_config(argv: list[str], prog: str = "python -m facesim.training") -> TrainConfig:
    parser = argparse.ArgumentParser(prog=prog)
    add_config_arguments(parser)
    return config_from_namespace(parser.parse_args(argv))
