"""storage.model_artifact: model.json round trips, the fingerprint (what it covers, the legacy one), the
detector by sha256."""

from __future__ import annotations

import hashlib
import json
import shutil
from dataclasses import replace
from pathlib import Path

import pytest

from facesim.storage.model_artifact import (
    ModelCard,
    ModelError,
    load_model_card,
    portable_preprocessing,
    preprocessor_for,
    read_model_info,
    save_model_card,
)


def test_round_trip_keeps_every_field_and_unknown_keys(tmp_path: Path) -> None:
    card = ModelCard(
        image_size=112,
        embedding_dim=128,
        margin=0.2,
        threshold=1.1,
        architecture="mobilefacenet",
        preprocessing={"detector_used": "yunet", "image_size": 112},
        metrics={"test_accuracy": 0.9},
    )
    path = save_model_card(tmp_path / "model", card)
    data = json.loads(path.read_text())
    data["calibration_note"] = "from a newer facesim"
    path.write_text(json.dumps(data))
    loaded = load_model_card(tmp_path / "model")
    assert (
        loaded.threshold == 1.1 and loaded.preprocessing["detector_used"] == "yunet" and loaded.created == card.created
    )
    assert loaded.extra == {"calibration_note": "from a newer facesim"}
    assert save_model_card(tmp_path / "again", loaded).read_text().count("calibration_note") == 1


def test_bad_cards(tmp_path: Path) -> None:
    with pytest.raises(FileNotFoundError, match="not a model artifact"):
        load_model_card(tmp_path)
    (tmp_path / "model.json").write_text('{"image_size": 112}')
    with pytest.raises(ValueError, match="lacks embedding_dim, margin, threshold"):
        load_model_card(tmp_path)
    (tmp_path / "model.json").write_text("{not json")
    with pytest.raises(ValueError, match="not valid JSON"):
        load_model_card(tmp_path)


# --- the fingerprint ----------------------------------------------------------------------------


def _artifact(directory: Path, card: ModelCard, weights: bytes = b"weights") -> Path:
    """What read_model_info reads of an artifact, without a real network: weight files and model.json."""
    (directory / "variables").mkdir(parents=True)
    (directory / "variables" / "variables.index").write_bytes(weights)
    (directory / "saved_model.pb").write_bytes(b"graph")
    save_model_card(directory, card)
    return directory


def _card(**changes: object) -> ModelCard:
    preprocessing = {"detector_used": "yunet", "image_size": 112, "template": "arcface-5pt", "detector_sha256": "ab"}
    card = ModelCard(image_size=112, embedding_dim=128, margin=0.2, threshold=1.1, preprocessing=preprocessing)
    return replace(card, **changes)


def test_the_fingerprint_covers_weights_and_answers_not_paths_or_history(tmp_path: Path) -> None:
    base = read_model_info(_artifact(tmp_path / "base", _card())).version
    moved = _card(preprocessing={**_card().preprocessing, "yunet_path": "/elsewhere/yunet.onnx"})
    history = _card(metrics={"test_accuracy": 0.5}, created="2020-01-01T00:00:00Z", training={"data": "/x"})
    for name, card in {"moved": moved, "history": history}.items():
        assert read_model_info(_artifact(tmp_path / name, card)).version == base, name
    answers = {
        "threshold": _card(threshold=1.2),
        "preprocessing": _card(preprocessing={**_card().preprocessing, "template": "dlib-chip-5pt"}),
        "detector": _card(preprocessing={**_card().preprocessing, "detector_sha256": "cd"}),
        "flips": _card(extra={"flip_average": True}),
    }
    for name, card in answers.items():
        assert read_model_info(_artifact(tmp_path / name, card)).version != base, name
    assert read_model_info(_artifact(tmp_path / "weights", _card(), b"other weights")).version != base


def test_the_legacy_fingerprint_is_the_whole_model_json_without_its_onnx_record(tmp_path: Path) -> None:
    card = _card(preprocessing={**_card().preprocessing, "yunet_path": "/train/machine/yunet.onnx"})
    directory = _artifact(tmp_path / "m", card)
    expected = hashlib.sha256(b"weights" + b"graph" + (directory / "model.json").read_bytes()).hexdigest()[:16]
    info = read_model_info(directory)
    assert info.legacy_version == expected and info.fingerprints == (info.version, expected)
    assert info.made(expected) and info.made(info.version) and not info.made("0" * 16) and not info.made(None)
    card.extra["onnx"] = {"file": "model.onnx", "sha256": "ef"}  # `facesim model export-onnx` adds one
    save_model_card(directory, card)
    assert read_model_info(directory).fingerprints == info.fingerprints


def test_a_model_names_its_detector_by_sha256_not_by_path(yunet_path: Path, tmp_path: Path) -> None:
    described = {"detector_used": "yunet", "yunet_path": str(yunet_path), "image_size": 112, "detector": "yunet"}
    portable = portable_preprocessing(described)
    assert "yunet_path" not in portable
    assert portable["detector_sha256"] == hashlib.sha256(yunet_path.read_bytes()).hexdigest()
    assert "detector_sha256" not in portable_preprocessing({**described, "detector_used": "haar"})

    info = read_model_info(_artifact(tmp_path / "m", _card(preprocessing=portable)))
    elsewhere = tmp_path / "detectors" / "any-name.onnx"
    elsewhere.parent.mkdir()
    shutil.copy(yunet_path, elsewhere)
    assert preprocessor_for(info, str(elsewhere)).detector.name == "yunet"  # found at another path, checked
    other = tmp_path / "other.onnx"
    other.write_bytes(yunet_path.read_bytes()[:-1] + b"x")
    with pytest.raises(ModelError, match=f"is not the YuNet file .* sha256 {portable['detector_sha256']}"):
        preprocessor_for(info, str(other))
