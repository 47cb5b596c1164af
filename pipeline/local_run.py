"""Run the pipeline on this machine through kfp.local (SubprocessRunner, no virtualenv per step).

kfp.local writes every step's full output to stdout; the run's log file keeps all of it while the
terminal shows one progress line per step and the steps' own summary lines (pipeline/steps.py
`report`). DESIGN §4: artifacts land under `<pipeline_root>/<pipeline>-<timestamp>/<task>/`.
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

from facesim.pipeline.steps import PROGRESS_PREFIX

_ANSI = re.compile(r"\x1b\[[0-9;]*m")
_STARTED = re.compile(r"Executing task '([^']+)'")
_FINISHED = re.compile(r"Task '([^']+)' finished with status (\w+)")
_EPOCH_SCORE = re.compile(r"\bval_accuracy\s*=")
# Tasks of one run: prepare, tune or given hyper-parameters, train, evaluate, gate, gallery, deploy.
PIPELINE_STEPS = 7


class PipelineFailed(RuntimeError):
    """A step failed; the message names it and the log that has its output."""


class ProgressLog(io.TextIOBase):
    """A text stream that keeps everything in `log` and shows progress lines on `terminal`."""

    def __init__(self, log: TextIO, terminal: TextIO, verbose: bool = False, steps: int = PIPELINE_STEPS) -> None:
        self.log, self.terminal, self.verbose, self.steps = log, terminal, verbose, steps
        self.step = 0
        self.started: dict[str, float] = {}
        self.tail: list[str] = []
        self._partial = ""

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

    def _line(self, line: str) -> None:
        self.tail = (self.tail + [line])[-60:]
        if self.verbose:
            self._show(line)
        elif (started := _STARTED.search(line)) and started.group(1) not in self.started:
            self.step += 1
            self.started[started.group(1)] = time.monotonic()
            self._show(f"[{self.step}/{self.steps}] {started.group(1)} ...")
        elif finished := _FINISHED.search(line):
            name, status = finished.groups()
            seconds = time.monotonic() - self.started.get(name, time.monotonic())
            self._show(f"[{self.step}/{self.steps}] {name}: {status.lower()} in {seconds:.0f} s")
        elif PROGRESS_PREFIX in line:
            self._show("      " + line.split(PROGRESS_PREFIX, 1)[1])
        elif _EPOCH_SCORE.search(line):  # training's and tuning's per-epoch score: signs of life
            self._show("      " + line.strip())

    def _show(self, line: str) -> None:
        print(line, file=self.terminal, flush=True)


@dataclass(frozen=True)
class LocalRun:
    log_path: Path
    seconds: float
    summary: list[str]  # the steps' progress lines


def run_locally(arguments: dict[str, Any], pipeline_root: Path, log_path: Path, verbose: bool = False) -> LocalRun:
    """Run the whole pipeline with `arguments` (backend local); PipelineFailed names the failed step."""
    from kfp import local

    from facesim.cluster.resources import Images
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
                build_pipeline(Images())(**{**arguments, "backend": "local"})
        except RuntimeError as error:
            progress.flush()
            raise PipelineFailed(_failure_message(error, progress, log_path)) from None
    summary = [line.split(PROGRESS_PREFIX, 1)[1] for line in progress.tail if PROGRESS_PREFIX in line]
    return LocalRun(log_path, time.monotonic() - started, summary)


def _failure_message(error: RuntimeError, progress: ProgressLog, log_path: Path) -> str:
    reason = _ANSI.sub("", str(error))
    step_errors = [line.strip() for line in progress.tail if "StepFailed" in line or "Error" in line]
    detail = f"\n  {step_errors[-1]}" if step_errors else ""
    return f"{reason}{detail}\n  full output: {log_path}"
