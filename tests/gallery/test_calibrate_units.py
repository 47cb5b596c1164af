"""The calibration arithmetic (gallery/calibrate.py) without a model: the threshold against what "at most
the target FAR, as high as possible" means, the record in gallery.json. Seconds, so that mutation testing (scripts/mutation.sh) can run them per mutant."""

from __future__ import annotations

import math
from dataclasses import asdict
from datetime import datetime, timedelta
from pathlib import Path

import numpy as np
import pytest

from facesim.gallery.api import GalleryError, GalleryInfo
from facesim.gallery.calibrate import calibrate_gallery, calibrated_threshold, gallery_threshold
from facesim.gallery.store import GalleryStore
from tests.helpers.metrics_reference import DIM, people, reference_pairs


@pytest.mark.parametrize("seed", range(6))
@pytest.mark.parametrize("target_far", [0.01, 0.05, 0.2])
def test_threshold_is_the_highest_that_keeps_false_accepts_within_the_target(seed: int, target_far: float) -> None:
    rng = np.random.default_rng(seed)
    genuine = rng.uniform(0.0, 1.2, 40)
    impostor = rng.uniform(0.6, 2.0, 300)
    if seed % 2:  # ties among the impostors, and genuine pairs at impostor distances
        impostor = np.round(impostor, 1)
        genuine = np.concatenate([genuine, impostor[:5]])
    threshold, far, tar = calibrated_threshold(genuine, impostor, target_far)
    accepted = int(np.sum(impostor <= threshold))
    assert accepted <= math.floor(target_far * len(impostor))  # within the target
    above = np.concatenate([genuine, impostor])
    above = above[above > threshold]
    # As high as possible: the next distance up is an impostor, and accepting it breaks the target.
    assert np.sum(impostor <= above.min()) > math.floor(target_far * len(impostor))
    below = np.concatenate([genuine, impostor, [0.0]])
    assert threshold == pytest.approx((below[below <= threshold].max() + above.min()) / 2)  # midway
    assert (far, tar) == (accepted / len(impostor), np.mean(genuine <= threshold))


def test_too_few_pairs_are_refused() -> None:
    genuine, impostor = np.linspace(0, 1, 10), np.linspace(1, 2, 100)
    assert calibrated_threshold(genuine, impostor, 0.01)[0] > 0  # just enough: 10 genuine, 1 / FAR impostors
    with pytest.raises(GalleryError, match=r"9 genuine pairs \(need 10"):
        calibrated_threshold(genuine[:9], impostor, 0.01)
    with pytest.raises(GalleryError, match=r"99 impostor pairs \(need 100"):
        calibrated_threshold(genuine, impostor[:99], 0.01)


def test_calibrating_a_gallery_records_its_threshold(tmp_path: Path) -> None:
    store = GalleryStore.create(tmp_path / "gallery", GalleryInfo(model_version="m1", embedding_dim=DIM))
    assert gallery_threshold(store, ("m1",)) is None  # not calibrated yet
    identities, vectors = people(np.random.default_rng(3), [4, 3, 5, 2, 4, 3, 6, 2, 3, 4])
    for name in dict.fromkeys(identities):
        store.add(name, vectors[[i for i, n in enumerate(identities) if n == name]])
    calibration = calibrate_gallery(store, 0.02)
    genuine, impostor = reference_pairs(identities, vectors)
    expected = calibrated_threshold(np.array(genuine), np.array(impostor), 0.02)
    assert calibration.threshold == pytest.approx(expected[0])
    assert (calibration.far, calibration.tar) == pytest.approx(expected[1:])
    assert (calibration.genuine_pairs, calibration.impostor_pairs) == (len(genuine), len(impostor))
    assert (calibration.target_far, calibration.model_version) == (0.02, "m1")
    assert datetime.fromisoformat(calibration.created).utcoffset() == timedelta(0)
    reopened = GalleryStore(store.directory)
    assert reopened.info.calibration == asdict(calibration)
    assert gallery_threshold(reopened, ("m0", "m1")) == calibration.threshold  # the legacy fingerprint too
    assert gallery_threshold(reopened, ("m2", "m11")) is None  # made with another model: not used


@pytest.mark.parametrize(
    ("target_far", "message"),
    [(0.0, "between 0 and 1"), (1.0, "between 0 and 1"), (5e-7, "give --far 1e-06"), (1e-6, "too few pairs")],
)
def test_a_target_far_it_cannot_measure_is_refused(tmp_path: Path, target_far: float, message: str) -> None:
    store = GalleryStore.create(tmp_path / "gallery", GalleryInfo(model_version="m1", embedding_dim=DIM))
    with pytest.raises(GalleryError, match=message):
        calibrate_gallery(store, target_far)
    assert GalleryStore(store.directory).info.calibration is None
