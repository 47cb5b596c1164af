"""A model is identified by its weights and what changes its answers, not by where its files lie (issue 19):
copied to another directory, with its YuNet file at another path given by `--yunet`, it still serves the
galleries built with it; and galleries built before (holding the fingerprint of the whole model.json, the
training machine's YuNet path included) still load with the model they were built with."""

from __future__ import annotations

import json
import shutil
from dataclasses import replace
from pathlib import Path

import pytest

from facesim.contract.client import PredictorClient
from facesim.gallery.calibrate import gallery_threshold
from facesim.gallery.store import GalleryError, GalleryStore
from facesim.inference.local_server import local_predictor
from facesim.inference.predictor import check_gallery_matches
from facesim.storage.model_artifact import legacy_fingerprint, read_model_info


def test_a_moved_model_with_its_detector_elsewhere_serves_the_gallery_built_with_it(
    tiny_model_dir: Path, tiny_gallery_dir: Path, yunet_path: Path, lfw_dir: Path, tmp_path: Path
) -> None:
    moved = tmp_path / "another" / "place" / "model"
    shutil.copytree(tiny_model_dir, moved)
    detector = tmp_path / "detectors" / "yunet-renamed.onnx"
    detector.parent.mkdir()
    shutil.copy(yunet_path, detector)
    gallery = tmp_path / "gallery"
    shutil.copytree(tiny_gallery_dir, gallery)
    assert GalleryStore(gallery).info.model_version == read_model_info(moved).version  # path-free
    env = {"FACESIM_HOME": str(tmp_path / "home"), "FACESIM_YUNET_MODEL": ""}  # only --yunet finds it
    photo = (lfw_dir / "lfw-deepfunneled" / "Tony_Blair" / "Tony_Blair_0001.jpg").read_bytes()
    with local_predictor(moved, gallery, ("--yunet", str(detector)), env, tmp_path / "log") as url:
        answer = PredictorClient(url).predict(photo, top_k=1)
    faces = answer["predictions"][0]["faces"]
    assert faces and all(len(face["matches"]) == 1 for face in faces)  # searched the gallery


def test_a_gallery_built_before_loads_with_its_model_and_keeps_its_calibration(
    tiny_model_dir: Path, tiny_gallery_dir: Path, yunet_path: Path, tmp_path: Path
) -> None:
    # The model as facesim wrote it before: its YuNet file by path, no sha256.
    legacy = tmp_path / "legacy-model"
    shutil.copytree(tiny_model_dir, legacy)
    card = json.loads((legacy / "model.json").read_text())
    card["preprocessing"].pop("detector_sha256")
    card["preprocessing"]["yunet_path"] = str(yunet_path)
    (legacy / "model.json").write_text(json.dumps(card, indent=2) + "\n")
    old = legacy_fingerprint(legacy)
    store = GalleryStore(shutil.copytree(tiny_gallery_dir, tmp_path / "gallery"))
    store.set_info(replace(store.info, model_version=old, calibration={"model_version": old, "threshold": 0.5}))

    info = read_model_info(legacy)
    assert info.version != old  # the new fingerprint leaves the path out
    check_gallery_matches(store, info)  # no error: built with this model
    assert gallery_threshold(store, info.fingerprints) == 0.5
    other = read_model_info(tiny_model_dir)  # the same weights, but another preprocessing record
    with pytest.raises(GalleryError, match="was built with model"):
        check_gallery_matches(store, replace(other, legacy_version="not-this"))
