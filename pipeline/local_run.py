"""Run the pipeline on this machine through kfp.local (SubprocessRunner, no virtualenv per step).

kfp.local writes every step's full output to stdout; the run's log file keeps all of it while the
terminal shows one line per step, the steps' own summary lines (pipeline/steps.py `report`) and a
live progress line (crops, training steps with their loss, ETA). kfp.local puts artifacts under
`<pipeline_root>/<pipeline>-<timestamp>/<task>/`.
"""

from __future__ import annotations

import contextlib
import io
import re
import sys
import time
import warnings
from dataclasses import dataclass
from pathlib import Path
from typing import Any, TextIO

from facesim.pipeline.steps import PROGRESS_PREFIX, facesim_metrics
from facesim.pipeline.summary import StepTiming

_ANSI = re.compile(r"\x1b\[[0-9;]*m")
_STARTED = re.compile(r"Executing task '([^']+)'")
_FINISHED = re.compile(r"Task '([^']+)' finished with status (\w+)")
_EPOCH_SCORE = re.compile(r"\bval_accuracy\s*=")
# A tqdm bar as written to a pipe: "epoch 1:  46%|####6     | 23/50 [01:10<01:22, 3.05s/step, loss 0.41]".
_BAR = re.compile(
    r"(?P<desc>[\w ]+):\s+\d+%\|[^|]*\|\s*(?P<done>\d+)/(?P<total>\d+)\s*"
    r"\[[\d:]+<(?P<eta>[\d:?]+)[^\]]*?(?:,\s*(?P<postfix>[a-z][^\],=]*))?\]"
)
# One metric per line (the contract's `[timestamp] name=value`), possibly behind a worker's "[worker 0] ".
_METRIC_LINE = re.compile(r"^(?:\[[^\]]*\]\s*)?(?:\d{4}-\d\d-\d\dT\S+\s+)?[a-z][\w|-]*=\S+\s*$")
# Tasks of one run: prepare, tune or given hyper-parameters, train, evaluate, gate, quantize, gallery, deploy.
PIPELINE_STEPS = 8
# Without a terminal (output piped to a file) a progress line at most this often.
PIPED_PROGRESS_EVERY_S = 30.0


class PipelineFailed(RuntimeError):
    """A step failed; the message names it and the log that has its output."""


class ProgressLog(io.TextIOBase):
    """A text stream that keeps everything in `log` and shows progress on `terminal`: a line per
    step, the steps' own report lines, and one live line for the running step's progress bar
    (rewritten in place on a terminal, every PIPED_PROGRESS_EVERY_S when piped)."""

    def __init__(self, log: TextIO, terminal: TextIO, verbose: bool = False, steps: int = PIPELINE_STEPS) -> None:
        self.log, self.terminal, self.verbose, self.steps = log, terminal, verbose, steps
        self.step = 0
        self.started: dict[str, float] = {}
        self.timings: list[StepTiming] = []
        self.metric_lines: dict[str, list[str]] = {}
        self.tail: list[str] = []
        self._partial = ""
        self._task = ""
        self._live = False  # a progress line is on the terminal, not yet ended
        self._last_live: float | None = None  # when the last piped progress line was shown
        self._last_text = ""  # tqdm repeats its final state on close: shown once
        self._tty = terminal.isatty()

    def writable(self) -> bool:
        return True

    def write(self, text: str) -> int:
        self.log.write(text)
        self._partial += text
        *lines, self._partial = self._partial.split("\n")
        for line in lines:
            self._line(_ANSI.sub("", line))
        return len(text)

    def flush(self) -> None:
        self.log.flush()
        self.terminal.flush()

    def step_metrics(self) -> dict[str, dict[str, float]]:
        """The last value of each metric line each step printed."""
        return {task: facesim_metrics(lines) for task, lines in self.metric_lines.items()}

    def _line(self, line: str) -> None:
        self.tail = [*self.tail, line][-60:]
        if self._task and _METRIC_LINE.match(line.strip()):
            self.metric_lines.setdefault(self._task, []).append(line)
        if self.verbose:
            self._show(line)
        elif (started := _STARTED.search(line)) and started.group(1) not in self.started:
            self._task = started.group(1)
            self.step += 1
            self.started[self._task] = time.monotonic()
            self._show(f"[{self.step}/{self.steps}] {self._task} ...")
        elif finished := _FINISHED.search(line):
            self._finished(*finished.groups())
        elif PROGRESS_PREFIX in line:
            self._show("      " + line.split(PROGRESS_PREFIX, 1)[1])
        elif _EPOCH_SCORE.search(line):  # training's and tuning's per-epoch score: signs of life
            self._show("      " + line.strip())
        elif bar := _BAR.search(line):
            self._progress(bar)

    def _finished(self, name: str, status: str) -> None:
        seconds = time.monotonic() - self.started.get(name, time.monotonic())
        self.timings.append(StepTiming(name, round(seconds, 1), status.lower()))
        self._task = ""
        self._show(f"[{self.step}/{self.steps}] {name}: {status.lower()} in {seconds:.0f} s")

    def _progress(self, bar: re.Match[str]) -> None:
        done, total = int(bar["done"]), int(bar["total"])
        now = time.monotonic()
        if not self._tty and done < total and self._last_live and now - self._last_live < PIPED_PROGRESS_EVERY_S:
            return
        self._last_live = now
        postfix = f", {bar['postfix'].strip()}" if bar["postfix"] else ""
        eta = f", ETA {bar['eta']}" if done < total and "?" not in bar["eta"] else ""
        text = f"      {bar['desc'].strip()}: {done}/{total}{postfix}{eta}"
        if text == self._last_text:
            return
        self._last_text = text
        if self._tty:
            print(f"\r\x1b[K{text}", end="", file=self.terminal, flush=True)
            self._live = True
        else:
            self._show(text)

    def _show(self, line: str) -> None:
        if self._live:  # end the live line first
            print(file=self.terminal)
            self._live = False
        print(line, file=self.terminal, flush=True)


@dataclass(frozen=True)
class LocalRun:
    log_path: Path
    seconds: float
    summary: list[str]  # the steps' progress lines
    steps: list[StepTiming]
    metrics: dict[str, dict[str, float]]  # per step: its metric lines' last values


def run_locally(arguments: dict[str, Any], pipeline_root: Path, log_path: Path, verbose: bool = False) -> LocalRun:
    """Run the whole pipeline with `arguments` (backend local); PipelineFailed names the failed step."""
    from kfp import local

    from facesim.cluster.resources import Images
    from facesim.cluster.targets import target
    from facesim.pipeline.definition import build_pipeline

    pipeline_root.mkdir(parents=True, exist_ok=True)
    log_path.parent.mkdir(parents=True, exist_ok=True)
    started = time.monotonic()
    with open(log_path, "w", encoding="utf-8") as log:
        progress = ProgressLog(log, sys.stdout, verbose)
        local.init(runner=local.SubprocessRunner(use_venv=False), pipeline_root=str(pipeline_root), raise_on_error=True)
        try:
            with contextlib.redirect_stdout(progress), warnings.catch_warnings():
                # Expected locally: display names and the step image are for Kubeflow.
                warnings.filterwarnings("ignore", message=".*have no effect in the current local runner")
                warnings.filterwarnings("ignore", message=".*non-Python base image")
                build_pipeline(Images(), target())(**{**arguments, "backend": "local"})
        except RuntimeError as error:
            progress.flush()
            raise PipelineFailed(_failure_message(error, progress, log_path)) from None
    summary = [line.split(PROGRESS_PREFIX, 1)[1] for line in progress.tail if PROGRESS_PREFIX in line]
    return LocalRun(log_path, time.monotonic() - started, summary, progress.timings, progress.step_metrics())


def _failure_message(error: RuntimeError, progress: ProgressLog, log_path: Path) -> str:
    reason = _ANSI.sub("", str(error))
    step_errors = [line.strip() for line in progress.tail if "StepFailed" in line or "Error" in line]
    detail = f"\n  {step_errors[-1]}" if step_errors else ""
    return f"{reason}{detail}\n  full output: {log_path}"
