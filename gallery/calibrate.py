"""A same-person threshold for the user's own photos: chosen at a target false-accept rate from the
gallery's genuine pairs (two embeddings of one identity) and impostor pairs (of two identities).

A threshold calibrated on LFW transfers poorly to other photos, so a gallery may carry its own:
`facesim gallery calibrate` records it in gallery.json and the predictor then decides with it.
"""

from __future__ import annotations

import math
from collections.abc import Collection
from dataclasses import asdict, dataclass, replace
from datetime import datetime, timezone

import numpy as np

from facesim.contract.metrics import accept_rate, pair_distances, threshold_at_far
from facesim.gallery.api import Gallery, GalleryError
from facesim.gallery.store import GalleryStore

MIN_GENUINE_PAIRS = 10
# Impostor pairs beyond this are drawn at random (a fixed seed): 1e6 pairs resolve a FAR of 1e-5.
MAX_IMPOSTOR_PAIRS = 1_000_000


class TooFewPairs(GalleryError):
    """The gallery's pairs cannot measure the target FAR: it keeps the model's threshold."""


@dataclass(frozen=True)
class Calibration:
    threshold: float  # squared L2: at or under it, the same person
    target_far: float
    far: float  # measured on the impostor pairs at the threshold
    tar: float  # measured on the genuine pairs at the threshold
    genuine_pairs: int
    impostor_pairs: int
    model_version: str
    created: str


def calibrated_threshold(genuine: np.ndarray, impostor: np.ndarray, target_far: float) -> tuple[float, float, float]:
    """(threshold, FAR, TAR): the threshold at `target_far`, midway in its gap (contract.metrics). Refuses
    (TooFewPairs) when the pairs are too few for that FAR to mean anything."""
    needed_impostors = math.ceil(1 / target_far)
    if len(genuine) < MIN_GENUINE_PAIRS or len(impostor) < needed_impostors:
        raise TooFewPairs(
            f"too few pairs to calibrate at FAR {target_far:g}: {len(genuine)} genuine pairs (need "
            f"{MIN_GENUINE_PAIRS}: enrol 2+ photos of more identities) and {len(impostor)} impostor pairs "
            f"(need {needed_impostors}: enrol more identities, or ask for a larger --far)"
        )
    threshold = threshold_at_far(impostor, target_far, genuine, midway=True)
    return threshold, accept_rate(impostor, threshold), accept_rate(genuine, threshold)


def calibrate_gallery(store: GalleryStore, target_far: float = 1e-3) -> Calibration:
    """Compute the gallery's threshold and record it in gallery.json."""
    if not 0 < target_far < 1:
        raise GalleryError(f"--far must be between 0 and 1, got {target_far}")
    if target_far < 1 / MAX_IMPOSTOR_PAIRS:
        raise GalleryError(
            f"--far {target_far:g} is below what {MAX_IMPOSTOR_PAIRS:,} impostor pairs (the most calibration "
            f"draws) can measure: give --far {1 / MAX_IMPOSTOR_PAIRS:g} or more"
        )
    rows = store.rows()
    genuine, impostor = pair_distances(rows.identities, rows.vectors, MAX_IMPOSTOR_PAIRS)
    threshold, far, tar = calibrated_threshold(genuine, impostor, target_far)
    calibration = Calibration(
        threshold=threshold,
        target_far=target_far,
        far=far,
        tar=tar,
        genuine_pairs=len(genuine),
        impostor_pairs=len(impostor),
        model_version=store.info.model_version,
        created=datetime.now(timezone.utc).isoformat(timespec="seconds"),
    )
    store.set_info(replace(store.info, calibration=asdict(calibration)))
    return calibration


def gallery_threshold(gallery: Gallery, model_versions: Collection[str]) -> float | None:
    """The gallery's calibrated threshold, when it has one made with this model (one of its fingerprints:
    storage.model_artifact.ModelInfo.fingerprints)."""
    calibration = gallery.info.calibration
    if not calibration or calibration.get("model_version") not in model_versions:
        return None
    return float(calibration["threshold"])
