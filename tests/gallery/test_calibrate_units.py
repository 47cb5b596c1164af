"""The calibration arithmetic (gallery/calibrate.py) without a model: pairs against a double loop,
the threshold against what "at most the target FAR, as high as possible" means, the record in
gallery.json. Seconds, so that mutation testing (scripts/mutation.sh) can run them per mutant."""

from __future__ import annotations

import math
from dataclasses import asdict
from datetime import datetime, timedelta
from itertools import combinations
from pathlib import Path

import numpy as np
import pytest

from facesim.gallery import calibrate
from facesim.gallery.api import GalleryError, GalleryInfo
from facesim.gallery.calibrate import calibrate_gallery, gallery_threshold, pair_distances, threshold_at_far
from facesim.gallery.store import GalleryStore

DIM = 8


def reference_pairs(identities: list[str], vectors: np.ndarray) -> tuple[list[float], list[float]]:
    genuine, impostor = [], []
    for i, j in combinations(range(len(identities)), 2):
        distance = float(sum((float(a) - float(b)) ** 2 for a, b in zip(vectors[i], vectors[j], strict=True)))
        (genuine if identities[i] == identities[j] else impostor).append(distance)
    return genuine, impostor


def people(rng: np.random.Generator, counts: list[int]) -> tuple[list[str], np.ndarray]:
    """Unit vectors, each identity's clustered around its own centre."""
    identities = [f"person {k}" for k, count in enumerate(counts) for _ in range(count)]
    centres = rng.normal(size=(len(counts), DIM))
    vectors = np.repeat(centres, counts, axis=0) + 0.6 * rng.normal(size=(len(identities), DIM))
    return identities, (vectors / np.linalg.norm(vectors, axis=1, keepdims=True)).astype(np.float32)


def test_pair_distances_are_every_pair_once() -> None:
    identities, vectors = people(np.random.default_rng(0), [3, 1, 4, 2])
    order = np.random.default_rng(1).permutation(len(identities))  # identities need not be grouped
    identities, vectors = [identities[i] for i in order], vectors[order]
    genuine, impostor = pair_distances(identities, vectors)
    expected_genuine, expected_impostor = reference_pairs(identities, vectors)
    np.testing.assert_allclose(np.sort(genuine), sorted(expected_genuine), rtol=1e-6)
    np.testing.assert_allclose(np.sort(impostor), sorted(expected_impostor), rtol=1e-6)


def test_impostor_pairs_beyond_the_cap_are_a_seeded_sample(monkeypatch: pytest.MonkeyPatch) -> None:
    identities, vectors = people(np.random.default_rng(2), [2, 2, 3, 1, 2])
    expected_genuine, expected_impostor = reference_pairs(identities, vectors)
    monkeypatch.setattr(calibrate, "MAX_IMPOSTOR_PAIRS", 30)  # of 39: drawn with replacement, some would repeat
    genuine, impostor = pair_distances(identities, vectors)
    assert len(genuine) == len(expected_genuine) and len(impostor) == 30  # genuine pairs are never sampled
    drawn = [int(np.argmin(np.abs(np.array(expected_impostor) - d))) for d in impostor]
    assert len(set(drawn)) == 30  # without replacement
    np.testing.assert_allclose(impostor, np.array(expected_impostor)[drawn], rtol=1e-6)
    np.testing.assert_array_equal(pair_distances(identities, vectors)[1], impostor)  # the same seed, the same pairs
    assert not np.array_equal(pair_distances(identities, vectors, seed=1)[1], impostor)


@pytest.mark.parametrize("seed", range(6))
@pytest.mark.parametrize("target_far", [0.01, 0.05, 0.2])
def test_threshold_is_the_highest_that_keeps_false_accepts_within_the_target(seed: int, target_far: float) -> None:
    rng = np.random.default_rng(seed)
    genuine = rng.uniform(0.0, 1.2, 40)
    impostor = rng.uniform(0.6, 2.0, 300)
    if seed % 2:  # ties among the impostors, and genuine pairs at impostor distances
        impostor = np.round(impostor, 1)
        genuine = np.concatenate([genuine, impostor[:5]])
    threshold, far, tar = threshold_at_far(genuine, impostor, target_far)
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
    assert threshold_at_far(genuine, impostor, 0.01)[0] > 0  # just enough: 10 genuine, 1 / FAR impostors
    with pytest.raises(GalleryError, match=r"9 genuine pairs \(need 10"):
        threshold_at_far(genuine[:9], impostor, 0.01)
    with pytest.raises(GalleryError, match=r"99 impostor pairs \(need 100"):
        threshold_at_far(genuine, impostor[:99], 0.01)


def test_calibrating_a_gallery_records_its_threshold(tmp_path: Path) -> None:
    store = GalleryStore.create(tmp_path / "gallery", GalleryInfo(model_version="m1", embedding_dim=DIM))
    assert gallery_threshold(store, "m1") is None  # not calibrated yet
    identities, vectors = people(np.random.default_rng(3), [4, 3, 5, 2, 4, 3, 6, 2, 3, 4])
    for name in dict.fromkeys(identities):
        store.add(name, vectors[[i for i, n in enumerate(identities) if n == name]])
    calibration = calibrate_gallery(store, 0.02)
    genuine, impostor = reference_pairs(identities, vectors)
    expected = threshold_at_far(np.array(genuine), np.array(impostor), 0.02)
    assert calibration.threshold == pytest.approx(expected[0])
    assert (calibration.far, calibration.tar) == pytest.approx(expected[1:])
    assert (calibration.genuine_pairs, calibration.impostor_pairs) == (len(genuine), len(impostor))
    assert (calibration.target_far, calibration.model_version) == (0.02, "m1")
    assert datetime.fromisoformat(calibration.created).utcoffset() == timedelta(0)
    reopened = GalleryStore(store.directory)
    assert reopened.info.calibration == asdict(calibration)
    assert gallery_threshold(reopened, "m1") == calibration.threshold
    assert gallery_threshold(reopened, "m2") is None  # made with another model: not used


@pytest.mark.parametrize(
    ("target_far", "message"),
    [(0.0, "between 0 and 1"), (1.0, "between 0 and 1"), (5e-7, "give --far 1e-06"), (1e-6, "too few pairs")],
)
def test_a_target_far_it_cannot_measure_is_refused(tmp_path: Path, target_far: float, message: str) -> None:
    store = GalleryStore.create(tmp_path / "gallery", GalleryInfo(model_version="m1", embedding_dim=DIM))
    with pytest.raises(GalleryError, match=message):
        calibrate_gallery(store, target_far)
    assert GalleryStore(store.directory).info.calibration is None
