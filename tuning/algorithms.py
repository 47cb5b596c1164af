"""Katib algorithm and early-stopping names mapped to optuna samplers and pruners.

The local tuner accepts the names a Katib Experiment uses, so one command line works for both
backends. optuna here has no SciPy/PyTorch, so Katib's `bayesianoptimization` (a Gaussian
process in Katib) runs as TPE, which is also a sequential model-based (Bayesian) method; the
run's output says so.
"""

from __future__ import annotations

from collections.abc import Callable, Mapping, Sequence

import optuna

from facesim.tuning.space import ALGORITHMS, EARLY_STOPPING, MEDIAN_STOP_MIN_TRIALS


class UnknownAlgorithm(ValueError):
    """A Katib algorithm or early-stopping name that the local tuner cannot run."""


def _tpe(seed: int | None) -> optuna.samplers.BaseSampler:
    return optuna.samplers.TPESampler(seed=seed, n_startup_trials=2)


def _multivariate_tpe(seed: int | None) -> optuna.samplers.BaseSampler:
    return optuna.samplers.TPESampler(seed=seed, n_startup_trials=2, multivariate=True)


def _random(seed: int | None) -> optuna.samplers.BaseSampler:
    return optuna.samplers.RandomSampler(seed=seed)


# Katib algorithmName -> (sampler factory, what runs locally). `grid` needs the grid itself and
# is built by `make_sampler`.
_SAMPLERS: dict[str, tuple[Callable[[int | None], optuna.samplers.BaseSampler], str]] = {
    "random": (_random, "random search"),
    "tpe": (_tpe, "TPE"),
    "multivariate-tpe": (_multivariate_tpe, "multivariate TPE"),
    "bayesianoptimization": (_tpe, "TPE (Katib uses a Gaussian process; TPE is the local Bayesian method)"),
}


def describe_algorithm(name: str) -> str:
    """What the local tuner runs for a Katib algorithm name."""
    if name == "grid":
        return "grid search"
    return _SAMPLERS[_check_algorithm(name)][1]


def _check_algorithm(name: str) -> str:
    if name not in ALGORITHMS:
        raise UnknownAlgorithm(
            f"algorithm {name!r} is not available locally; choose one of {', '.join(ALGORITHMS)} "
            "(or run it on Katib with --backend cluster)"
        )
    return name


def make_sampler(
    name: str, grid: Mapping[str, Sequence[float | int | str]] | None = None, seed: int | None = None
) -> optuna.samplers.BaseSampler:
    """The optuna sampler for Katib's `algorithmName`; `grid` (values per parameter) for `grid`."""
    if _check_algorithm(name) == "grid":
        if not grid:
            raise UnknownAlgorithm("grid search needs the grid values of every parameter")
        return optuna.samplers.GridSampler(grid, seed=seed)
    return _SAMPLERS[name][0](seed)


def make_pruner(name: str, start_epoch: int | None = 2) -> optuna.pruners.BasePruner:
    """Katib's `medianstop` early stopping: stop a trial whose epoch score is below the median
    of earlier trials at the same epoch, from epoch `start_epoch` (1-based, as Katib's start_step;
    None: never) once MEDIAN_STOP_MIN_TRIALS trials have finished."""
    if name == "medianstop" and start_epoch is not None:
        # Epochs are reported as steps 0, 1, ...: warm-up steps are the epochs before the start.
        return optuna.pruners.MedianPruner(n_startup_trials=MEDIAN_STOP_MIN_TRIALS, n_warmup_steps=start_epoch - 1)
    if name == "medianstop":
        return optuna.pruners.NopPruner()
    if name == "none":
        return optuna.pruners.NopPruner()
    raise UnknownAlgorithm(f"early stopping {name!r} is not available; choose one of {', '.join(EARLY_STOPPING)}")
