"""The pipeline's settings, each named once.

The pipeline definition takes them as its parameters (kfp needs a flat signature) and hands each
group to the components as one struct; the steps read the struct back into these dataclasses and
turn them into the TrainConfig of the final run and of each trial (pipeline/backends.py runs them).

"Use the default" is 0 in a pipeline parameter (kfp.local cannot carry None); `train_config` turns
it into TrainConfig's None, here and nowhere else.
"""

from __future__ import annotations

import dataclasses
import typing
from collections.abc import Mapping
from dataclasses import dataclass
from typing import Any, TypeVar

if typing.TYPE_CHECKING:
    from facesim.training.config import TrainConfig

Settings = TypeVar("Settings", "TrainingSettings", "TuningSettings")


@dataclass(frozen=True)
class TrainingSettings:
    """Options of every training run of the pipeline: the final run, and each tuning trial."""

    architecture: str = "mobilefacenet"
    image_size: int = 0  # 0: the architecture's native size
    max_identities: int = 0  # 0: every training identity
    val_pairs: int = 0  # 0: every validation pair of fold 9
    workers: int = 2
    epochs: int = 4
    steps_per_epoch: int = 100
    init: str = "faceapi-resnet"  # scratch | faceapi-resnet | a model directory (`facesim train --init`)

    def train_config(self, data: str, out: str, **options: Any) -> TrainConfig:
        """The TrainConfig of a run on `data` into `out` (ValueError says what TrainConfig refuses)."""
        from facesim.training.config import TrainConfig

        values = {field.name: getattr(self, field.name) for field in dataclasses.fields(self)}
        values.update({name: values[name] or None for name in ("image_size", "max_identities", "val_pairs")})
        return TrainConfig(data=data, out=out, **{**values, **options})


@dataclass(frozen=True)
class TuningSettings:
    """The search before training (tuning/space.py): its budget and each trial's length."""

    trials: int = 6
    tune_algorithm: str = "tpe"
    tune_epochs: int = 2
    tune_steps_per_epoch: int = 50


def names(kind: type[Settings]) -> tuple[str, ...]:
    return tuple(field.name for field in dataclasses.fields(kind))


def struct(kind: type[Settings], values: Mapping[str, Any]) -> dict[str, Any]:
    """The group's fields picked from `values` (the pipeline's parameters): what a component takes."""
    return {name: values[name] for name in names(kind)}


def from_struct(kind: type[Settings], values: Mapping[str, Any]) -> Settings:
    """The dataclass back from a component's struct. kfp hands numbers inside a struct over as text
    or floats ("2.0"), so each value is converted to its field's type."""
    types = typing.get_type_hints(kind)
    converted: dict[str, Any] = {}
    for name in names(kind):
        value = values[name]
        converted[name] = int(float(value)) if types[name] is int else types[name](value)
    return kind(**converted)
