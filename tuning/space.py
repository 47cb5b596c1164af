"""The hyper-parameter search space, defined once: the Katib Experiment and the local tuner both read it.

Each parameter names the TrainConfig field it sets, whose flag it passes, so a trial (a Katib TFJob or a local run) is
`python -m facesim.training ... <flag> <value>` for every parameter.
"""

from __future__ import annotations

from dataclasses import dataclass, field
from typing import Literal

import numpy as np

from facesim.training.options import flag_of, option, option_problems

ParameterKind = Literal["double", "int", "categorical"]

# Katib algorithm names that both backends run (the local tuner maps each to an optuna sampler),
# so one command line works on either; Katib alone has more (cmaes, sobol, hyperband, pbt, NAS).
ALGORITHMS: tuple[str, ...] = ("random", "grid", "tpe", "multivariate-tpe", "bayesianoptimization")
EARLY_STOPPING: tuple[str, ...] = ("medianstop", "none")
# medianstop on both backends: judge a trial only once this many trials have finished (Katib's
# min_trials_required, optuna's n_startup_trials).
MEDIAN_STOP_MIN_TRIALS = 2


@dataclass
class SearchSettings:
    """The options of a search that `facesim tune` takes for either backend, each declared once
    (training/options.py: its flag, help and check)."""

    trials: int = field(default=6, metadata=option("number of trials (default: %(default)s)", at_least=1))
    parallel: int = field(  # 0: one trial per `workers` cores
        default=0,
        metadata=option(
            "trials at a time (default: 0 = cores / workers per trial)", at_least=0, at_least_why="0: automatic"
        ),
    )
    algorithm: str = field(
        default="tpe", metadata=option(f"Katib algorithm name: {', '.join(ALGORITHMS)} (default: %(default)s)")
    )
    early_stopping: str = field(
        default="medianstop",
        metadata=option(f"stop hopeless trials: {', '.join(EARLY_STOPPING)} (default: %(default)s)"),
    )
    objective: str = field(default="val_accuracy", metadata=option("metric to optimise (default: %(default)s)"))
    minimize: bool = field(default=False, metadata=option("minimise the objective (default: maximise)"))
    workers: int = field(default=1, metadata=option("training workers per trial (default: %(default)s)", at_least=1))
    epochs: int = field(default=3, metadata=option("epochs per trial (default: %(default)s)", at_least=1))
    steps_per_epoch: int = field(default=50, metadata=option("steps per epoch (default: %(default)s)", at_least=1))
    grid_points: int = field(  # values per continuous parameter for `grid`
        default=3, metadata=option("grid values per continuous parameter (default: %(default)s)", at_least=1)
    )
    seed: int | None = field(default=0, metadata=option("sampler seed (default: %(default)s)"))

    def __post_init__(self) -> None:
        problems = option_problems(self, SearchSettings)
        if problems:
            raise ValueError("; ".join(problems))

    @property
    def maximize(self) -> bool:
        return not self.minimize


def median_stop_start(epochs: int) -> int | None:
    """The reported epoch (1-based) from which medianstop may stop a trial of `epochs` epochs:
    Katib's start_step, and one more than optuna's warm-up. The second epoch, or the first when a
    trial has only two (a later start would never stop anything); None for one-epoch trials."""
    return min(2, epochs - 1) if epochs >= 2 else None


@dataclass(frozen=True)
class SearchParameter:
    """One tuned hyper-parameter: its name (Katib's parameter name), kind, range and the TrainConfig
    field it sets (whose command-line flag a trial passes)."""

    name: str
    kind: ParameterKind
    setting: str  # a TrainConfig field
    low: float | None = None  # double / int: inclusive bounds
    high: float | None = None
    log: bool = False  # sample on a log scale (local tuner; Katib 0.14's model has no distribution field)
    values: tuple[str, ...] = ()  # categorical: the choices, as the CLI receives them

    def __post_init__(self) -> None:
        if self.kind == "categorical":
            if not self.values or self.low is not None or self.high is not None:
                raise ValueError(f"{self.name}: a categorical parameter takes values, not bounds")
        elif self.low is None or self.high is None or not self.low < self.high:
            raise ValueError(f"{self.name}: a {self.kind} parameter needs bounds with low < high")
        elif self.log and self.low <= 0:
            raise ValueError(f"{self.name}: a log-scale parameter needs low > 0")

    @property
    def flag(self) -> str:
        from facesim.training.config import TrainConfig

        return flag_of(TrainConfig, self.setting)


SEARCH_SPACE: tuple[SearchParameter, ...] = (
    # Triplet margin on squared distances of unit embeddings (FaceNet: 0.2); the range is 0..4.
    SearchParameter("margin", "double", "margin", low=0.05, high=0.5),
    SearchParameter("embedding_size", "categorical", "embedding_dim", values=("64", "128", "256")),
    SearchParameter("learning_rate", "double", "learning_rate", low=1e-4, high=1e-2, log=True),
)


def parameter(name: str, space: tuple[SearchParameter, ...] = SEARCH_SPACE) -> SearchParameter:
    """The parameter called `name`; a KeyError names the known ones."""
    for candidate in space:
        if candidate.name == name:
            return candidate
    raise KeyError(f"unknown search parameter {name!r}; known: {', '.join(p.name for p in space)}")


def trial_flags(
    assignments: dict[str, str | float | int], space: tuple[SearchParameter, ...] = SEARCH_SPACE
) -> list[str]:
    """Training CLI arguments for one trial's assignments, e.g. ['--margin', '0.2', ...]."""
    flags: list[str] = []
    for name, value in assignments.items():
        flags += [parameter(name, space).flag, str(value)]
    return flags


def grid_values(parameter: SearchParameter, points: int) -> list[float | int | str]:
    """The values a grid search tries for one parameter, on either backend (Katib gets them as a
    discrete list): `points` values over the range, geometrically for log-scale parameters."""
    if parameter.kind == "categorical":
        return list(parameter.values)
    assert parameter.low is not None and parameter.high is not None
    spread = np.geomspace if parameter.log else np.linspace
    values = spread(parameter.low, parameter.high, points)
    if parameter.kind == "int":
        return sorted({int(round(v)) for v in values})
    return [float(f"{v:.6g}") for v in values]
