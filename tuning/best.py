"""`best_params.json`: the outcome of a search, written by both backends and read by the pipeline."""

from __future__ import annotations

import json
from dataclasses import dataclass
from pathlib import Path

from facesim.tuning.space import SEARCH_SPACE, SearchParameter, parameter, trial_flags

BEST_PARAMS_FILE = "best_params.json"

ParameterValue = float | int | str


@dataclass(frozen=True)
class BestParameters:
    objective: str
    value: float
    trial: str  # optuna trial number or Katib trial name
    parameters: dict[str, ParameterValue]

    @property
    def flags(self) -> list[str]:
        return trial_flags(dict(self.parameters))


def typed_value(name: str, text: str, space: tuple[SearchParameter, ...] = SEARCH_SPACE) -> ParameterValue:
    """A parameter value as its kind says (Katib reports every assignment as text)."""
    kind = parameter(name, space).kind
    if kind == "double":
        return float(text)
    if kind == "int":
        return int(float(text))
    return text


def write_best_params(out: Path, best: BestParameters) -> Path:
    out.mkdir(parents=True, exist_ok=True)
    path = out / BEST_PARAMS_FILE
    document = {
        "objective": {"name": best.objective, "value": best.value},
        "trial": best.trial,
        "parameters": best.parameters,
        "flags": best.flags,
    }
    path.write_text(json.dumps(document, indent=2) + "\n")
    return path


def read_best_params(out: Path) -> BestParameters:
    document = json.loads((out / BEST_PARAMS_FILE).read_text())
    return BestParameters(
        document["objective"]["name"],
        float(document["objective"]["value"]),
        str(document["trial"]),
        document["parameters"],
    )
