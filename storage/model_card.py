"""model.json: the model artifact's card (docs/protocol.md), as a dataclass."""

from __future__ import annotations

import json
import time
from dataclasses import asdict, dataclass, field, fields
from pathlib import Path
from typing import Any

MODEL_CARD = "model.json"
REQUIRED = ("image_size", "embedding_dim", "margin", "threshold")


def _now() -> str:
    return time.strftime("%Y-%m-%dT%H:%M:%SZ", time.gmtime())


@dataclass
class ModelCard:
    image_size: int
    embedding_dim: int
    margin: float
    threshold: float  # squared L2 distance under which two faces are "same person"
    architecture: str = ""
    preprocessing: dict[str, Any] = field(default_factory=dict)  # FacePreprocessor.describe()
    training: dict[str, Any] = field(default_factory=dict)  # data, protocol, hyper-parameters
    metrics: dict[str, float] = field(default_factory=dict)
    code_version: str = ""
    created: str = field(default_factory=_now)
    extra: dict[str, Any] = field(default_factory=dict)  # keys this version does not know, kept on round trips

    def to_dict(self) -> dict[str, Any]:
        data = asdict(self)
        return {**data.pop("extra"), **data}

    @classmethod
    def from_dict(cls, data: dict[str, Any]) -> ModelCard:
        missing = [key for key in REQUIRED if key not in data]
        if missing:
            raise ValueError(f"model card lacks {', '.join(missing)}: re-export the model with `facesim train`")
        known = {f.name for f in fields(cls)} - {"extra"}
        card = cls(**{key: value for key, value in data.items() if key in known})
        card.extra = {key: value for key, value in data.items() if key not in known}
        return card


def save_model_card(model_dir: str | Path, card: ModelCard) -> Path:
    """Write `model_dir/model.json` atomically; returns its path."""
    path = Path(model_dir) / MODEL_CARD
    path.parent.mkdir(parents=True, exist_ok=True)
    partial = path.with_name(f".{MODEL_CARD}.partial")
    partial.write_text(json.dumps(card.to_dict(), indent=2, sort_keys=False) + "\n")
    partial.replace(path)
    return path


def load_model_card(model_dir: str | Path) -> ModelCard:
    path = Path(model_dir) / MODEL_CARD
    if not path.is_file():
        raise FileNotFoundError(
            f"{path} does not exist: {model_dir} is not a model artifact (`facesim train --out DIR`)"
        )
    try:
        data = json.loads(path.read_text())
    except json.JSONDecodeError as error:
        raise ValueError(f"{path} is not valid JSON: {error}") from None
    if not isinstance(data, dict):
        raise ValueError(f"{path} must hold a JSON object")
    return ModelCard.from_dict(data)
