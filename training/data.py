"""What a run reads: training identities (people sets 1-8), validation pairs (fold 9), test pairs
(fold 10) and a dozen test identities for the embedding map (docs/protocol.md), as in-memory crops.

Only the identities the run touches are prepared (aligned into the crop cache): the batches a
run will draw are known in advance (training.sampler), so a 3-step smoke run on raw LFW
prepares a few thousand crops, not all 13k.
"""

from __future__ import annotations

import hashlib
import json
import sys
from dataclasses import asdict, dataclass
from pathlib import Path

import numpy as np
from tqdm import tqdm

from facesim.contract.metrics import squared_l2
from facesim.faces.image import read_image
from facesim.faces.preprocess import PreprocessConfig
from facesim.storage.cache import cache_root, prepare_crops, read_manifest, resolve_config
from facesim.storage.lfw import CACHE_MANIFEST, LfwLayout, Pair, protocol_split
from facesim.training.config import TrainConfig
from facesim.training.sampler import PKSampler
from facesim.training.verification import Scores, image_pair_figures, verify

MAP_IMAGES_PER_IDENTITY = 8


@dataclass
class PairSet:
    images: np.ndarray  # uint8 [M, S, S, 3], each distinct image once
    first: np.ndarray  # [pairs] rows of `images`
    second: np.ndarray
    same: np.ndarray  # [pairs] bool
    identities: np.ndarray  # [M] whose face each image is

    def distances(self, embeddings: np.ndarray) -> np.ndarray:
        """The listed pairs' squared L2 distances, from the images' embeddings."""
        return np.asarray(squared_l2(embeddings[self.first], embeddings[self.second]))  # rows: an array

    def score(
        self,
        embeddings: np.ndarray,
        threshold: float | None = None,
        far_thresholds: dict[str, float] | None = None,
        image_pairs: bool = True,
    ) -> Scores:
        """Figures from the images' embeddings: at these thresholds, or calibrated on these images (None);
        over every pair of the images too unless `image_pairs` is False."""
        distances = self.distances(embeddings)
        images = image_pair_figures(embeddings, self.identities, far_thresholds) if image_pairs else None
        return Scores(verify(distances, self.same, threshold), images)


@dataclass
class RunData:
    source: Path  # the LFW root given as --data
    cache_dir: Path  # the crops read
    preprocessing: dict  # FacePreprocessor.describe() of the crops
    train_names: list[str]  # identity of each label
    train_images: np.ndarray  # uint8 [N, S, S, 3]; rows no planned batch reads stay zero
    sampler: PKSampler
    val: PairSet
    test: PairSet
    map_images: np.ndarray
    map_names: list[str]


def preprocess_config(config: TrainConfig) -> PreprocessConfig:
    # LFW images are cropped around their subject: the face nearest the centre is the labelled person
    # (a bigger one beside it is someone else), and a missed detection falls back to the centre crop.
    return PreprocessConfig(
        image_size=config.size,
        detector=config.detector,
        yunet_path=config.yunet_path,
        fallback="center",
        subject="central",
        template=config.alignment_template,
    )


def default_cache_dir(source: Path, preprocessing: PreprocessConfig) -> Path:
    """<cache root ($FACESIM_CACHE)>/<source name>-<key of source path + preprocessing settings>."""
    settings = {k: v for k, v in asdict(preprocessing).items() if k != "yunet_path"}
    text = json.dumps({"source": str(source.resolve()), **settings}, sort_keys=True)
    return cache_root() / f"{source.resolve().name}-{hashlib.sha256(text.encode()).hexdigest()[:12]}"


def limit_pairs(pairs: list[Pair], limit: int | None) -> list[Pair]:
    """At most `limit` pairs, half same and half different (folds list the same pairs first)."""
    if limit is None or limit >= len(pairs):
        return pairs
    same = [p for p in pairs if p.same]
    different = [p for p in pairs if not p.same]
    return same[: (limit + 1) // 2] + different[: limit // 2]


def choose_train_identities(identities: dict[str, int], limit: int | None, images_per_identity: int) -> dict[str, int]:
    """All of them, or the first `limit` by name that fill a K-image group (smoke runs want anchors)."""
    ranked = sorted(identities.items(), key=lambda item: (item[1] < images_per_identity, item[0]))
    return dict(sorted(ranked[:limit] if limit is not None else ranked))


@dataclass
class RunPlan:
    """Which images a run reads, decided before any is prepared or loaded."""

    layout: LfwLayout
    keys: list[tuple[str, int]]  # (identity, image number) of each training image
    names: list[str]
    sampler: PKSampler
    planned_rows: np.ndarray  # rows of `keys` the run's batches read
    val_pairs: list[Pair]
    test_pairs: list[Pair]
    map_keys: list[tuple[str, int]]

    def touched_identities(self) -> list[str]:
        names = {self.keys[row][0] for row in self.planned_rows} | {name for name, _ in self.map_keys}
        names |= {name for pair in self.val_pairs + self.test_pairs for name in (pair.name1, pair.name2)}
        return sorted(names)


def plan_run(config: TrainConfig) -> RunPlan:
    layout = LfwLayout.find(config.data)
    split = protocol_split(layout)
    identities = choose_train_identities(split.train_identities, config.max_identities, config.images_per_identity)
    names = list(identities)
    keys = [(name, n) for name in names for n in range(1, identities[name] + 1)]
    label_of = {name: i for i, name in enumerate(names)}
    labels = np.array([label_of[name] for name, _ in keys], dtype=np.int32)
    sampler = PKSampler(labels, config.identities_per_batch, config.images_per_identity, config.seed)
    test_pairs = limit_pairs(split.test_pairs, config.test_pairs)
    return RunPlan(
        layout=layout,
        keys=keys,
        names=names,
        sampler=sampler,
        planned_rows=sampler.planned_indices(0, config.total_steps),
        val_pairs=limit_pairs(split.val_pairs, config.val_pairs),
        test_pairs=test_pairs,
        map_keys=_map_keys(layout, test_pairs, config.map_identities),
    )


def prepare_run(config: TrainConfig, plan: RunPlan, prepare: bool = True) -> tuple[Path, dict]:
    """The crop cache to read and its preprocessing; with `prepare`, the identities the run
    touches are prepared first (unless --data is already a prepared cache)."""
    identities = plan.touched_identities() if prepare else []
    return crop_source(plan.layout, preprocess_config(config), config.cache_dir, identities, config.prepare_workers)


def load_run_data(config: TrainConfig, plan: RunPlan) -> RunData:
    """The crops of a planned run, already prepared (`prepare_run`)."""
    cache_dir, preprocessing = prepare_run(config, plan, prepare=False)
    crops = CropReader(cache_dir, config.size)
    train_images = np.zeros((len(plan.keys), config.size, config.size, 3), np.uint8)
    for row in tqdm(plan.planned_rows, desc="loading crops", unit="img", disable=len(plan.planned_rows) < 500):
        train_images[row] = crops.read(plan.keys[row])
    return RunData(
        source=plan.layout.root,
        cache_dir=cache_dir,
        preprocessing=preprocessing,
        train_names=plan.names,
        train_images=train_images,
        sampler=plan.sampler,
        val=pair_set(crops, plan.val_pairs),
        test=pair_set(crops, plan.test_pairs),
        map_images=np.stack([crops.read(k) for k in plan.map_keys]),
        map_names=[name for name, _ in plan.map_keys],
    )


def _map_keys(layout: LfwLayout, pairs: list[Pair], identities: int) -> list[tuple[str, int]]:
    """Images of the test identities with the most images (at most 8 each)."""
    names = sorted({name for pair in pairs for name in (pair.name1, pair.name2)})
    counts = {name: len(list((layout.images / name).glob(f"*{layout.suffix}"))) for name in names}
    chosen = sorted(names, key=lambda name: (-counts[name], name))[:identities]
    return [(name, n) for name in chosen for n in range(1, min(counts[name], MAP_IMAGES_PER_IDENTITY) + 1)]


def crop_source(
    layout: LfwLayout, wanted: PreprocessConfig, cache_dir: str | None, identities: list[str], workers: int
) -> tuple[Path, dict]:
    """A prepared cache given as the data is read as is; else the cache for these settings, with
    `identities` prepared into it (none: only locate it)."""
    if (layout.root / CACHE_MANIFEST).is_file():
        preprocessing = read_manifest(layout.root).get("preprocessing", {})
        if preprocessing.get("image_size") != wanted.image_size:
            raise ValueError(
                f"{layout.root} holds {preprocessing.get('image_size')} px crops but {wanted.image_size} px are "
                "needed: give a matching --image-size, or the raw LFW root"
            )
        return layout.root, preprocessing
    pinned, _ = resolve_config(wanted)  # "auto" -> the detector that runs, so the cache key is stable
    target = Path(cache_dir) if cache_dir else default_cache_dir(layout.root, pinned)
    if identities:
        report = prepare_crops(layout.root, target, pinned, workers=workers, only=identities)
        if report.done:
            print(report.summary(), file=sys.stderr, flush=True)
    return target, read_manifest(target).get("preprocessing", {})


class CropReader:
    """Reads crops `<cache>/<name>/<name>_<nnnn>.png`, checking their size."""

    def __init__(self, cache_dir: Path, size: int):
        self.layout = LfwLayout(cache_dir, cache_dir, ".png")
        self.size = size

    def read(self, key: tuple[str, int]) -> np.ndarray:
        path = self.layout.image_path(*key)
        if not path.is_file():
            raise FileNotFoundError(
                f"no crop {path} in the cache (the image had no face or could not be read: "
                f"see {self.layout.root / CACHE_MANIFEST})"
            )
        crop = read_image(path)
        if crop.shape != (self.size, self.size, 3):
            raise ValueError(f"{path} is {crop.shape[1]}x{crop.shape[0]}, expected {self.size} px crops")
        return crop


def pair_set(crops: CropReader, pairs: list[Pair]) -> PairSet:
    keys = sorted({key for p in pairs for key in ((p.name1, p.n1), (p.name2, p.n2))})
    row = {key: i for i, key in enumerate(keys)}
    images = [crops.read(key) for key in tqdm(keys, desc="loading pairs", unit="img", disable=len(keys) < 500)]
    return PairSet(
        images=np.stack(images) if images else np.zeros((0, crops.size, crops.size, 3), np.uint8),
        first=np.array([row[(p.name1, p.n1)] for p in pairs], dtype=np.int64),
        second=np.array([row[(p.name2, p.n2)] for p in pairs], dtype=np.int64),
        same=np.array([p.same for p in pairs], dtype=bool),
        identities=np.array([name for name, _ in keys]),
    )
