"""Katib's algorithm names run locally with optuna, over the shared search space."""

from __future__ import annotations

import itertools

import optuna
import pytest

from facesim.tuning.algorithms import UnknownAlgorithm, make_pruner, make_sampler
from facesim.tuning.local import LocalTuneConfig, suggest
from facesim.tuning.space import ALGORITHMS, SEARCH_SPACE, grid_values, parameter


def test_grid_values_spread_over_each_range() -> None:
    assert grid_values(parameter("margin"), 3) == [0.05, 0.275, 0.5]
    assert grid_values(parameter("learning_rate"), 3) == pytest.approx([1e-4, 1e-3, 1e-2])  # log scale
    assert grid_values(parameter("embedding_size"), 3) == ["64", "128", "256"]


def test_grid_search_visits_every_combination_once() -> None:
    grid = {p.name: grid_values(p, 2) for p in SEARCH_SPACE}
    study = optuna.create_study(direction="maximize", sampler=make_sampler("grid", grid, seed=0))
    seen: list[tuple] = []

    def objective(trial: optuna.Trial) -> float:
        seen.append(tuple(suggest(trial, p) for p in SEARCH_SPACE))
        return 0.0

    optuna.logging.set_verbosity(optuna.logging.ERROR)
    study.optimize(objective, n_trials=12)
    assert sorted(seen, key=str) == sorted(itertools.product(*grid.values()), key=str)


@pytest.mark.parametrize("name", [a for a in ALGORITHMS if a != "grid"])
def test_every_local_algorithm_samples_inside_the_space(name: str) -> None:
    study = optuna.create_study(direction="maximize", sampler=make_sampler(name, seed=1))
    for _ in range(4):
        trial = study.ask()
        values = {p.name: suggest(trial, p) for p in SEARCH_SPACE}
        assert 0.05 <= values["margin"] <= 0.5 and values["embedding_size"] in ("64", "128", "256")
        study.tell(trial, values["margin"])


def test_unknown_names_say_what_is_available(tmp_path) -> None:
    with pytest.raises(UnknownAlgorithm, match="random, grid, tpe"):
        LocalTuneConfig(data=str(tmp_path), out=tmp_path, algorithm="cmaes")
    with pytest.raises(UnknownAlgorithm, match="medianstop, none"):
        make_pruner("hyperband")
