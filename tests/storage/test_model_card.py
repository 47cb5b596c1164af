from __future__ import annotations

import json
from pathlib import Path

import pytest

from facesim.storage.model_artifact import ModelCard, load_model_card, save_model_card


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
