"""`facesim gallery calibrate` on a gallery of real photos (the detection set's people + LFW people):
its refusal, counts and threshold, and the predictor deciding with it."""

from __future__ import annotations

import json
import shutil
import subprocess
import sys
from math import comb, floor
from pathlib import Path

import numpy as np
import pytest
import requests

from facesim.gallery.cli import main as gallery_main
from facesim.gallery.store import GalleryStore
from facesim.inference.local_server import local_predictor
from tests.inference.test_server import b64


@pytest.fixture()
def gallery(tiny_gallery_dir: Path, tmp_path: Path) -> Path:
    copy = tmp_path / "gallery"
    shutil.copytree(tiny_gallery_dir, copy)
    return copy


def expected_pairs(store: GalleryStore) -> tuple[int, int]:
    counts = [count for _, count in store.identities()]
    genuine = sum(comb(n, 2) for n in counts)
    return genuine, comb(sum(counts), 2) - genuine


def test_too_few_pairs_are_refused(gallery: Path, capsys: pytest.CaptureFixture[str]) -> None:
    genuine, impostor = expected_pairs(GalleryStore(gallery))
    assert impostor < 1000  # the tiny gallery cannot resolve FAR 1e-3
    assert gallery_main(["calibrate", "--gallery", str(gallery)]) == 2
    error = capsys.readouterr().err.strip()
    assert error == (
        f"facesim gallery: too few pairs to calibrate at FAR 0.001: {genuine} genuine pairs (need 10: enrol 2+ "
        f"photos of more identities) and {impostor} impostor pairs (need 1000: enrol more identities, or ask for "
        "a larger --far)"
    )
    assert GalleryStore(gallery).info.calibration is None


@pytest.mark.parametrize(
    ("far", "message"),
    [
        ("0", "--far must be between 0 and 1, got 0.0"),
        ("1", "--far must be between 0 and 1, got 1.0"),
        ("nan", "--far must be between 0 and 1, got nan"),
        ("inf", "--far must be between 0 and 1, got inf"),
        ("1e-300", "--far 1e-300 is below what 1,000,000 impostor pairs (the most calibration draws) can measure"),
    ],
)
def test_a_false_accept_rate_it_cannot_use_is_refused_in_one_line(
    gallery: Path, capsys: pytest.CaptureFixture[str], far: str, message: str
) -> None:
    before = (gallery / "gallery.json").read_bytes()
    assert gallery_main(["calibrate", "--gallery", str(gallery), "--far", far]) == 2
    error = capsys.readouterr().err
    assert error.startswith(f"facesim gallery: {message}") and error.count("\n") == 1
    assert (gallery / "gallery.json").read_bytes() == before


def test_what_is_not_a_gallery_is_refused(tmp_path: Path, capsys: pytest.CaptureFixture[str]) -> None:
    (tmp_path / "empty").mkdir()
    for place in (tmp_path / "nowhere", tmp_path / "empty"):
        assert gallery_main(["calibrate", "--gallery", str(place)]) == 2
        assert f"{place} is not a gallery" in capsys.readouterr().err


def test_calibration_counts_threshold_and_record(gallery: Path) -> None:
    assert gallery_main(["calibrate", "--gallery", str(gallery), "--far", "0.05"]) == 0
    store = GalleryStore(gallery)
    calibration = json.loads((gallery / "gallery.json").read_text())["calibration"]
    assert calibration == store.info.calibration
    genuine, impostor = expected_pairs(store)
    assert (calibration["genuine_pairs"], calibration["impostor_pairs"]) == (genuine, impostor)
    rows = store.rows()
    owners = np.array(rows.identities)
    vectors = rows.vectors.astype(np.float64)
    distances = ((vectors[:, None] - vectors[None]) ** 2).sum(-1)
    upper = np.triu(np.ones_like(distances, dtype=bool), k=1)
    impostors = distances[upper & (owners[:, None] != owners[None])]
    genuines = distances[upper & (owners[:, None] == owners[None])]
    threshold = calibration["threshold"]
    # As many false accepts as FAR 0.05 allows (one more would exceed it), no more.
    accepted = int((impostors <= threshold).sum())
    assert accepted == floor(0.05 * impostor) and calibration["far"] == pytest.approx(accepted / impostor)
    assert calibration["tar"] == pytest.approx(np.mean(genuines <= threshold))
    # Midway between the last accepted and the first refused distance: robust to rounding.
    refused, taken = impostors[impostors > threshold].min(), np.concatenate([[0.0], distances[upper]])
    assert threshold == pytest.approx((refused + taken[taken < refused].max()) / 2)
    assert calibration["model_version"] == store.info.model_version and calibration["target_far"] == 0.05


def test_the_predictor_decides_with_the_gallery_threshold(
    gallery: Path, tiny_model_dir: Path, yunet_path: Path, detection_dir: Path, predictor_url: str, tmp_path: Path
) -> None:
    examples = detection_dir / "face_recognition" / "examples"
    body = {"instances": [{"image": {"b64": b64((examples / "obama.jpg").read_bytes())}, "top_k": 20}]}  # all 8
    uncalibrated = requests.post(f"{predictor_url}/v1/models/facenet:predict", json=body, timeout=60).json()
    model_threshold = json.loads((tiny_model_dir / "model.json").read_text())["threshold"]
    assert (uncalibrated["threshold"], uncalibrated["threshold_source"]) == (model_threshold, "model")

    assert gallery_main(["calibrate", "--gallery", str(gallery), "--far", "0.05"]) == 0
    threshold = GalleryStore(gallery).info.calibration["threshold"]
    env = {"FACESIM_HOME": str(tmp_path / "home"), "FACESIM_YUNET_MODEL": str(yunet_path), "TF_CPP_MIN_LOG_LEVEL": "2"}
    with local_predictor(tiny_model_dir, gallery, env=env, log_path=tmp_path / "predictor.log") as url:
        answer = requests.post(f"{url}/v1/models/facenet:predict", json=body, timeout=60).json()
        assert (answer["threshold"], answer["threshold_source"]) == (threshold, "gallery")
        matches = answer["predictions"][0]["faces"][0]["matches"]
        assert all(match["same"] == (match["distance"] <= threshold) for match in matches), matches
        # The two thresholds disagree on some match (0.04 against 0.18 here), so the verdicts tell
        # which one decided.
        flipped = [m for m in matches if (m["distance"] <= threshold) != (m["distance"] <= model_threshold)]
        assert flipped, (threshold, model_threshold, matches)
        shown = subprocess.run(
            [sys.executable, "-m", "facesim", "predict", str(examples / "obama.jpg"), "--url", url],
            capture_output=True,
            text=True,
            timeout=120,
            check=True,
        ).stdout
    assert f"same-person threshold {threshold:.3f} from the gallery" in shown
