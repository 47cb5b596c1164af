"""TrainConfig: every option of a training run, and its round trip through the command line.

The local launcher and the TFJob launcher (training/tfjob.py) both start `python -m facesim.training`
with `config.to_args()`, so a worker on a cluster runs exactly the options given locally.
"""

from __future__ import annotations

import argparse
import dataclasses
import math
from collections.abc import Collection
from dataclasses import dataclass, field
from pathlib import Path

from facesim.faces.detect import add_yunet_argument

ARCHITECTURES = ("mobilefacenet", "inception_resnet_v1", "faceapi_resnet", "tiny")
MINERS = ("semi_hard", "batch_hard")
LR_SCHEDULES = ("constant", "cosine")
DEFAULT_IMAGE_SIZE = {"mobilefacenet": 112, "inception_resnet_v1": 160, "faceapi_resnet": 150, "tiny": 64}
# Where the five points go in the crop (faces.align.TEMPLATES): dlib's network was trained on dlib's chips.
DEFAULT_TEMPLATE = {"faceapi_resnet": "dlib-chip-5pt"}
PRETRAINED_INIT = "faceapi-resnet"  # --init: the pretrained dlib ResNet (training.pretrained)
SCRATCH_INIT = "scratch"


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
    data: str
    out: str
    run_dir: str | None = None  # checkpoints, TensorBoard logs; default: OUT.run beside OUT
    cache_dir: str | None = None  # face-crop cache; default: $FACESIM_CACHE/<preprocessing key>
    workers: int = 1
    epochs: int = 1
    steps_per_epoch: int = 100
    architecture: str = "mobilefacenet"
    image_size: int | None = None  # None: the architecture's native size
    embedding_dim: int = 128
    margin: float | None = None  # None: the --init's recipe (RECIPES)
    mining: str = "semi_hard"
    identities_per_batch: int = 16  # P
    images_per_identity: int = 4  # K
    learning_rate: float | None = None  # None: the --init's recipe
    lr_schedule: str = "cosine"  # cosine: linear warm-up, then cosine decay to 0 over the run
    warmup_steps: int | None = None  # None: the --init's recipe
    weight_decay: float = 0.0  # AdamW decoupled weight decay; 0: plain Adam
    augment: bool = True
    max_identities: int | None = None  # training identities used (smoke tests)
    val_pairs: int | None = None  # validation pairs used (smoke tests), balanced same/different
    test_pairs: int | None = None  # test pairs used (smoke tests), balanced same/different
    map_identities: int = 12  # test identities drawn in the embedding map
    checkpoint_steps: int = 0  # 0: checkpoint at the end of each epoch only
    detector: str = "auto"
    yunet_path: str | None = None
    prepare_workers: int = 2
    threads: int = 0  # TensorFlow intra-op threads per worker; 0: cores / workers
    seed: int = 0
    init: str = SCRATCH_INIT  # scratch | faceapi-resnet | a model directory to start from
    init_weights: str | None = None  # --init faceapi-resnet: the weights folder (else env, cache or npm)
    freeze_stages: int | None = None  # faceapi_resnet: leading stages kept frozen; None: the recipe
    distill_weight: float | None = None  # weight of the pull to the --init network's embeddings; None: the recipe
    template: str | None = None  # alignment template; None: the architecture's (DEFAULT_TEMPLATE)
    flip_average: bool | None = None  # embed crop + mirror; None: on for faceapi_resnet
    metadata: dict[str, str] = field(default_factory=dict)  # free-form notes for model.json

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
        found: list[str] = []
        if self.architecture == "faceapi_resnet" and self.embedding_dim != 128:
            found.append("faceapi_resnet embeds in 128 dimensions (its pretrained last layer): drop --embedding-dim")
        if not 0 <= self.freeze_stages <= 3:
            found.append("--freeze-stages must be 0..3")
        if self.architecture not in ARCHITECTURES:
            found.append(f"--architecture must be one of {', '.join(ARCHITECTURES)}")
        if self.mining not in MINERS:
            found.append(f"--mining must be one of {', '.join(MINERS)}")
        if self.epochs < (1 if self.init == SCRATCH_INIT else 0):
            found.append("--epochs must be at least 1 (0, export the starting weights calibrated, needs an --init)")
        for name in ("workers", "steps_per_epoch", "embedding_dim", "identities_per_batch"):
            if getattr(self, name) < 1:
                found.append(f"--{name.replace('_', '-')} must be at least 1")
        if self.images_per_identity < 2:
            found.append("--images-per-identity must be at least 2 (a triplet needs an anchor and a positive)")
        if self.identities_per_batch < 2:
            found.append("--identities-per-batch must be at least 2 (a triplet needs a negative)")
        if self.workers >= 1 and self.global_batch % self.workers:
            found.append(
                f"the global batch ({self.identities_per_batch} x {self.images_per_identity} = "
                f"{self.global_batch}) must divide evenly among {self.workers} workers"
            )
        for name in ("margin", "learning_rate", "weight_decay", "distill_weight"):
            if not math.isfinite(getattr(self, name)):  # nan slips past every comparison below
                found.append(f"--{name.replace('_', '-')} must be a finite number")
        if self.margin <= 0:
            found.append("--margin must be positive")
        if self.learning_rate <= 0:
            found.append("--learning-rate must be positive")
        if self.lr_schedule not in LR_SCHEDULES:
            found.append(f"--lr-schedule must be one of {', '.join(LR_SCHEDULES)}")
        if self.warmup_steps < 0 or self.weight_decay < 0 or self.distill_weight < 0:
            found.append("--warmup-steps, --weight-decay and --distill-weight must not be negative")
        if self.distill_weight and self.init == SCRATCH_INIT:
            found.append("--distill-weight needs an --init to distil from (random weights teach nothing)")
        if self.image_size is not None and self.image_size < 32:
            found.append("--image-size must be at least 32")
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
        args: list[str] = []
        defaults = {f.name: f.default for f in dataclasses.fields(self) if f.default is not dataclasses.MISSING}
        for f in dataclasses.fields(self):
            if f.name in exclude:
                continue
            value = getattr(self, f.name)
            flag = "--" + f.name.replace("_", "-")
            if f.name == "metadata":
                args += [item for key, text in value.items() for item in ("--metadata", f"{key}={text}")]
            elif f.name in ("data", "out") or value != defaults.get(f.name):
                if isinstance(value, bool):
                    args.append(flag if value else "--no-" + flag[2:])
                elif value is not None:
                    args += [flag, str(value)]
        return args


def add_config_arguments(parser: argparse.ArgumentParser) -> None:
    """Every TrainConfig field as an option (shared by `facesim train` and `python -m facesim.training`)."""
    d = TrainConfig.__dataclass_fields__
    add = parser.add_argument
    add("--data", required=True, help="LFW-layout root (images + people.txt/pairs.txt) or a prepared crop cache")
    add("--out", required=True, help="model directory to export (SavedModel + model.json)")
    add("--run-dir", help="checkpoints and TensorBoard logs (default: OUT.run beside OUT); reuse it to resume")
    add("--cache-dir", help="face-crop cache (default: $FACESIM_CACHE/<preprocessing key>)")
    add("--workers", type=int, default=d["workers"].default, help="worker processes (default: %(default)s)")
    add(
        "--epochs",
        type=int,
        default=d["epochs"].default,
        help="epochs; 0 with an --init exports the starting weights, calibrated (default: %(default)s)",
    )
    add(
        "--steps-per-epoch",
        type=int,
        default=d["steps_per_epoch"].default,
        help="steps per epoch (default: %(default)s)",
    )
    add(
        "--architecture",
        choices=ARCHITECTURES,
        default=d["architecture"].default,
        help="embedding network: mobilefacenet (~1M params, 112 px), inception_resnet_v1 (FaceNet, 160 px), "
        "tiny (tests) (default: %(default)s)",
    )
    add("--image-size", type=int, help="crop size in pixels (default: the architecture's native size)")
    add("--embedding-dim", type=int, default=d["embedding_dim"].default, help="embedding size (default: %(default)s)")
    add(
        "--margin",
        type=float,
        help=f"triplet margin on squared L2 (default: {RECIPES[SCRATCH_INIT].margin} from scratch, "
        f"{RECIPES[PRETRAINED_INIT].margin} fine-tuning)",
    )
    add("--mining", choices=MINERS, default=d["mining"].default, help="online triplet mining (default: %(default)s)")
    add(
        "--identities-per-batch",
        type=int,
        default=d["identities_per_batch"].default,
        help="P: identities in each global batch (default: %(default)s)",
    )
    add(
        "--images-per-identity",
        type=int,
        default=d["images_per_identity"].default,
        help="K: images of each identity in a batch (default: %(default)s)",
    )
    add(
        "--learning-rate",
        type=float,
        help=f"peak Adam learning rate (default: {RECIPES[SCRATCH_INIT].learning_rate} from scratch, "
        f"{RECIPES[PRETRAINED_INIT].learning_rate} fine-tuning)",
    )
    add(
        "--lr-schedule",
        choices=LR_SCHEDULES,
        default=d["lr_schedule"].default,
        help="constant, or cosine decay to 0 over all the run's steps (default: %(default)s)",
    )
    add(
        "--warmup-steps",
        type=int,
        help=f"steps of linear warm-up to the peak learning rate (default: {RECIPES[SCRATCH_INIT].warmup_steps} "
        f"from scratch, {RECIPES[PRETRAINED_INIT].warmup_steps} fine-tuning)",
    )
    add(
        "--weight-decay",
        type=float,
        default=d["weight_decay"].default,
        help="AdamW decoupled weight decay; 0 is plain Adam (default: %(default)s)",
    )
    add(
        "--augment", action=argparse.BooleanOptionalAction, default=True, help="flip, crop jitter, colour (default: on)"
    )
    add("--max-identities", type=int, help="use at most this many training identities (smoke tests)")
    add("--val-pairs", type=int, help="use at most this many validation pairs (smoke tests)")
    add("--test-pairs", type=int, help="use at most this many test pairs (smoke tests)")
    add(
        "--map-identities",
        type=int,
        default=d["map_identities"].default,
        help="test identities in the embedding map (default: %(default)s)",
    )
    add("--checkpoint-steps", type=int, default=0, help="also checkpoint every N steps (default: each epoch end)")
    add("--detector", default=d["detector"].default, help="face detector for preparing crops: auto, yunet, haar")
    add_yunet_argument(parser)
    add("--prepare-workers", type=int, default=d["prepare_workers"].default, help="processes preparing crops")
    add("--threads", type=int, default=0, help="TensorFlow threads per worker (default: cores / workers)")
    add("--seed", type=int, default=0, help="sampling and initialisation seed (default: %(default)s)")
    add(
        "--init",
        default=SCRATCH_INIT,
        metavar="faceapi-resnet|scratch|MODEL_DIR",
        help="where the weights start: random (scratch), dlib's pretrained ResNet (faceapi-resnet: implies "
        "--architecture faceapi_resnet, 150 px, 128-d), or an exported facesim model (its network and "
        "preprocessing) (default: %(default)s)",
    )
    add(
        "--init-weights",
        help="--init faceapi-resnet: folder with the face-api weights (default: "
        "$FACESIM_FACEAPI_WEIGHTS, the cache under $FACESIM_HOME, or npm)",
    )
    add(
        "--freeze-stages",
        type=int,
        help="faceapi_resnet: keep the first N of its 4 stages frozen (0-3; default: "
        f"{RECIPES[PRETRAINED_INIT].freeze_stages} fine-tuning, 0 from scratch)",
    )
    add(
        "--distill-weight",
        type=float,
        help="add this times the mean squared distance between each crop's embedding and the starting "
        "network's embedding of it: fine-tuning keeps the pretrained geometry (default: "
        f"{RECIPES[PRETRAINED_INIT].distill_weight} fine-tuning, 0 from scratch)",
    )
    add("--template", help="alignment template (arcface-5pt, dlib-chip-5pt; default: the architecture's)")
    add(
        "--flip-average",
        action=argparse.BooleanOptionalAction,
        default=None,
        help="embed each crop and its mirror image and average (default: on for faceapi_resnet)",
    )
    add("--metadata", action="append", default=[], metavar="KEY=VALUE", help="a note to record in model.json")


def config_from_namespace(args: argparse.Namespace) -> TrainConfig:
    values = {f.name: getattr(args, f.name) for f in dataclasses.fields(TrainConfig) if hasattr(args, f.name)}
    notes: dict[str, str] = {}
    for item in values.pop("metadata", []):
        key, sep, text = item.partition("=")
        if not sep or not key:
            raise ValueError(f"--metadata expects KEY=VALUE, got {item!r}")
        notes[key] = text
    return TrainConfig(**values, metadata=notes)


def parse_config(argv: list[str], prog: str = "python -m facesim.training") -> TrainConfig:
    parser = argparse.ArgumentParser(prog=prog)
    add_config_arguments(parser)
    return config_from_namespace(parser.parse_args(argv))
