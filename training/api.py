"""Training from Python: `train(TrainConfig(...)) -> model dir`, the same route as `facesim train`."""

from __future__ import annotations

from pathlib import Path

from facesim.training.config import TrainConfig
from facesim.training.data import plan_run, prepare_run
from facesim.training.launcher import launch_local


class TrainingFailed(RuntimeError):
    def __init__(self, exit_code: int):
        super().__init__(f"training failed: a worker exited with code {exit_code} (its output above says why)")
        self.exit_code = exit_code


def train(config: TrainConfig) -> Path:
    """Prepare the crops the run needs, run `config.workers` local workers, return the exported model dir.

    Raises FileNotFoundError / ValueError for bad data or options, TrainingFailed when a worker fails.
    """
    # Prepared once here, so that the workers find every crop in the cache.
    prepare_run(config, plan_run(config))
    exit_code = launch_local(config)
    if exit_code:
        raise TrainingFailed(exit_code)
    return Path(config.out)
