"""The local tuner: Katib's search run with optuna, each trial a local training run.

Trials are `facesim train --backend local` subprocesses with the trial's flags (tuning/space.py),
run in parallel up to the cores available, followed through their metrics lines (the same filter
as Katib's StdOut collector), and stopped early by the pruner when hopeless. The results table and
the best parameters are written as JSON artifacts.
"""

from __future__ import annotations

import json
import os
import sys
import threading
from dataclasses import asdict, dataclass, field
from pathlib import Path

import optuna
from tqdm import tqdm

from facesim.tuning.algorithms import describe_algorithm, make_pruner, make_sampler
from facesim.tuning.best import BestParameters, write_best_params
from facesim.tuning.space import (
    SEARCH_SPACE,
    SearchParameter,
    SearchSettings,
    grid_values,
    median_stop_start,
    trial_flags,
)
from facesim.tuning.trial import MetricStream, TrialOutcome, run_trial, trials_stop_with_the_tuner

RESULTS_FILE = "results.json"


class TuningFailed(RuntimeError):
    """No trial finished with an objective value."""


class _TrialFailed(RuntimeError):
    """A trial exited with an error or printed no objective (recorded as FAIL, the search goes on)."""


@dataclass(kw_only=True)
class LocalTuneConfig(SearchSettings):
    """A search run here: its settings, the data, where its trials and results go, and the options
    every trial's `facesim train` gets."""

    data: str
    out: Path
    train_args: list[str] = field(default_factory=list)  # passed to every trial's `facesim train`

    def __post_init__(self) -> None:
        super().__post_init__()
        describe_algorithm(self.algorithm)  # UnknownAlgorithm (a ValueError) names the choices
        make_pruner(self.early_stopping)

    def parallel_trials(self) -> int:
        if self.parallel:
            return min(self.parallel, self.trials)
        return max(1, min(self.trials, (os.cpu_count() or 1) // self.workers))


@dataclass(frozen=True)
class TrialRecord:
    number: int
    state: str  # COMPLETE, PRUNED, FAIL
    params: dict[str, float | int | str]
    objective: float | None
    epochs: int
    metrics: dict[str, float]
    seconds: float
    log: str
    error: str = ""


@dataclass(frozen=True)
class TuneResult:
    objective: str
    maximize: bool
    algorithm: str
    best: TrialRecord
    trials: list[TrialRecord]
    out: Path

    def best_parameters(self) -> BestParameters:
        """The best trial as `best_params.json` records it (what the pipeline trains with)."""
        assert self.best.objective is not None  # only trials with an objective can be the best
        return BestParameters(self.objective, self.best.objective, str(self.best.number), self.best.params)


def suggest(trial: optuna.Trial, parameter: SearchParameter) -> float | int | str:
    if parameter.kind == "categorical":
        return trial.suggest_categorical(parameter.name, list(parameter.values))
    assert parameter.low is not None and parameter.high is not None
    if parameter.kind == "int":
        return trial.suggest_int(parameter.name, int(parameter.low), int(parameter.high), log=parameter.log)
    return trial.suggest_float(parameter.name, parameter.low, parameter.high, log=parameter.log)


def trial_command(config: LocalTuneConfig, params: dict[str, float | int | str], model_dir: Path) -> list[str]:
    """One trial: the training launcher with the trial's hyper-parameters."""
    return [
        sys.executable,
        "-m",
        "facesim",
        "train",
        "--backend",
        "local",
        "--data",
        config.data,
        "--out",
        str(model_dir),
        "--workers",
        str(config.workers),
        "--epochs",
        str(config.epochs),
        "--steps-per-epoch",
        str(config.steps_per_epoch),
        *trial_flags(params),
        *config.train_args,
    ]


class LocalTuner:
    """Runs one study; thread-safe objective (optuna runs parallel trials in threads)."""

    def __init__(self, config: LocalTuneConfig, space: tuple[SearchParameter, ...] = SEARCH_SPACE) -> None:
        self.config = config
        self.space = space
        self.records: dict[int, TrialRecord] = {}
        self._lock = threading.Lock()
        self._progress: tqdm | None = None
        self._running: set[int] = set()  # process groups of the trials running now

    def run(self) -> TuneResult:
        config = self.config
        config.out.mkdir(parents=True, exist_ok=True)
        grid = {p.name: grid_values(p, config.grid_points) for p in self.space} if config.algorithm == "grid" else None
        study = optuna.create_study(
            direction="maximize" if config.maximize else "minimize",
            sampler=make_sampler(config.algorithm, grid, config.seed),
            pruner=make_pruner(config.early_stopping, median_stop_start(config.epochs)),
        )
        parallel = config.parallel_trials()
        tqdm.write(
            f"tuning {', '.join(p.name for p in self.space)} with {describe_algorithm(config.algorithm)}: "
            f"{config.trials} trials, {parallel} at a time, early stopping {config.early_stopping}; "
            f"trial logs under {config.out}"
        )
        with tqdm(total=config.trials, desc="trials", unit="trial") as self._progress:
            with trials_stop_with_the_tuner(self._running):
                study.optimize(self._objective, n_trials=config.trials, n_jobs=parallel, catch=(_TrialFailed,))
        return self._result()

    def _objective(self, trial: optuna.Trial) -> float:
        params = {p.name: suggest(trial, p) for p in self.space}
        trial_dir = self.config.out / f"trial-{trial.number:03d}"
        stream = MetricStream(self.config.objective)

        def report(epoch: int, value: float) -> bool:
            trial.report(value, epoch)
            stop = trial.should_prune()
            verdict = ": stopped early (below the median of earlier trials)" if stop else ""
            tqdm.write(f"trial {trial.number} epoch {epoch + 1}: {self.config.objective}={value:.4f}{verdict}")
            return stop

        outcome = run_trial(
            trial_command(self.config, params, trial_dir / "model"),
            trial_dir / "train.log",
            stream,
            report,
            env={"PYTHONUNBUFFERED": "1"},  # each epoch's metrics reach the pruner as they are printed
            running=self._running,
        )
        state, error = self._judge(outcome, stream)
        self._record(trial.number, state, params, stream, outcome, error)
        if state == "PRUNED":
            raise optuna.TrialPruned()
        if state == "FAIL":
            raise _TrialFailed(error)
        value = stream.best(self.config.maximize)
        assert value is not None
        return value

    def _judge(self, outcome: TrialOutcome, stream: MetricStream) -> tuple[str, str]:
        if outcome.stopped_early:
            return "PRUNED", ""
        if outcome.returncode < 0:
            return "FAIL", f"stopped by signal {-outcome.returncode}"
        if outcome.returncode != 0:
            last = next((line for line in reversed(outcome.log_tail) if line.strip()), "")
            return "FAIL", f"exit code {outcome.returncode}: {last}"
        if not stream.history:
            return "FAIL", f"printed no {self.config.objective}= line"
        return "COMPLETE", ""

    def _record(
        self,
        number: int,
        state: str,
        params: dict[str, float | int | str],
        stream: MetricStream,
        outcome: TrialOutcome,
        error: str,
    ) -> None:
        record = TrialRecord(
            number=number,
            state=state,
            params=params,
            objective=stream.best(self.config.maximize),
            epochs=len(stream.history),
            metrics=dict(stream.latest),
            seconds=round(outcome.seconds, 1),
            log=str(outcome.log_path),
            error=error,
        )
        with self._lock:
            self.records[number] = record
            if error:
                tqdm.write(f"trial {number} failed ({error}); log: {outcome.log_path}")
            if self._progress is not None:
                self._progress.update(1)

    def _result(self) -> TuneResult:
        records = [self.records[n] for n in sorted(self.records)]
        complete = [r for r in records if r.state == "COMPLETE" and r.objective is not None]
        if not complete:
            reasons = "; ".join(f"trial {r.number}: {r.error or r.state}" for r in records)
            raise TuningFailed(f"no trial finished with {self.config.objective} ({reasons})")
        pick = max if self.config.maximize else min
        best = pick(complete, key=lambda r: r.objective)
        result = TuneResult(
            self.config.objective, self.config.maximize, self.config.algorithm, best, records, self.config.out
        )
        write_results(result)
        return result


def write_results(result: TuneResult) -> None:
    """`results.json` (every trial) and `best_params.json` (what the pipeline trains with)."""
    trials = [asdict(r) for r in result.trials]
    summary = {
        "objective": result.objective,
        "goal": "maximize" if result.maximize else "minimize",
        "algorithm": result.algorithm,
        "trials": trials,
    }
    (result.out / RESULTS_FILE).write_text(json.dumps(summary, indent=2) + "\n")
    write_best_params(result.out, result.best_parameters())


def results_table(result: TuneResult, space: tuple[SearchParameter, ...] = SEARCH_SPACE) -> str:
    """The trials as an aligned text table, best marked with '*'."""
    header = ["trial", "state", *(p.name for p in space), result.objective, "epochs", "seconds"]
    rows = [header]
    for r in result.trials:
        mark = "*" if r.number == result.best.number else ""
        values = [_cell(r.params.get(p.name)) for p in space]
        objective = "" if r.objective is None else f"{r.objective:.4f}"
        rows.append([f"{r.number}{mark}", r.state, *values, objective, str(r.epochs), f"{r.seconds:.0f}"])
    widths = [max(len(row[i]) for row in rows) for i in range(len(header))]
    return "\n".join("  ".join(cell.ljust(w) for cell, w in zip(row, widths)).rstrip() for row in rows)


def _cell(value: float | int | str | None) -> str:
    if isinstance(value, float):
        return f"{value:.4g}"
    return "" if value is None else str(value)


def tune_locally(config: LocalTuneConfig) -> TuneResult:
    optuna.logging.set_verbosity(optuna.logging.ERROR)  # the tuner prints its own per-trial lines
    return LocalTuner(config).run()
