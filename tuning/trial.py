"""One local trial: a training run as a subprocess, followed through its metrics lines.

The trial's stdout is read the way Katib's StdOut collector reads it (facesim.contract.metrics_lines, the
same filter), every line is kept in the trial's log, and each objective value is handed to a
callback that may stop the run early (the pruner's decision).
"""

from __future__ import annotations

import contextlib
import os
import signal
import subprocess
import threading
import time
from collections.abc import Callable, Iterator, Sequence
from dataclasses import dataclass, field
from pathlib import Path

from facesim.contract.metrics_lines import parse_metrics

# Seconds a stopped trial gets to exit on SIGTERM before it is killed.
_STOP_GRACE_S = 15.0


@dataclass
class MetricStream:
    """Metrics seen so far in a run's output: the latest value of each name, and the objective's
    values in order (one per epoch: training prints it after each validation)."""

    objective: str
    latest: dict[str, float] = field(default_factory=dict)
    history: list[float] = field(default_factory=list)

    def feed(self, line: str) -> float | None:
        """Parse one output line; return the objective's value if the line carries one."""
        found = None
        for name, value in parse_metrics([line]):
            self.latest[name] = value
            if name == self.objective:
                self.history.append(value)
                found = value
        return found

    def best(self, maximize: bool) -> float | None:
        """The objective as Katib reports it by default: the max (maximize) or min over epochs."""
        if not self.history:
            return None
        return max(self.history) if maximize else min(self.history)


@dataclass(frozen=True)
class TrialOutcome:
    returncode: int
    stopped_early: bool
    seconds: float
    log_path: Path
    log_tail: list[str]


# Called with (epoch index from 0, objective value); returns True to stop the trial now.
ObjectiveCallback = Callable[[int, float], bool]


def run_trial(
    command: Sequence[str],
    log_path: Path,
    stream: MetricStream,
    on_objective: ObjectiveCallback,
    env: dict[str, str] | None = None,
    running: set[int] | None = None,
) -> TrialOutcome:
    """Run `command`, log its output to `log_path`, feed each line to `stream`, and stop the
    whole process group (the launcher and its workers) when `on_objective` says so. While it runs,
    its process group id is in `running` (see `stop_all`)."""
    log_path.parent.mkdir(parents=True, exist_ok=True)
    started = time.monotonic()
    stopped_early = False
    tail: list[str] = []
    with (
        open(log_path, "w", encoding="utf-8") as log,
        subprocess.Popen(
            list(command),
            stdout=subprocess.PIPE,
            stderr=subprocess.STDOUT,
            text=True,
            bufsize=1,
            env={**os.environ, **(env or {})},
            start_new_session=True,  # its own process group, so stopping it stops its workers too
        ) as process,
    ):
        assert process.stdout is not None
        group = running if running is not None else set()
        group.add(process.pid)
        try:
            for line in process.stdout:
                log.write(line)
                tail = [*tail, line.rstrip()][-40:]
                value = stream.feed(line)
                if value is not None and not stopped_early and on_objective(len(stream.history) - 1, value):
                    stopped_early = True
                    _stop(process)
            returncode = process.wait()
        finally:
            group.discard(process.pid)
    return TrialOutcome(returncode, stopped_early, time.monotonic() - started, log_path, tail)


def stop_all(running: set[int]) -> None:
    """SIGTERM every running trial's process group."""
    for group in list(running):
        with contextlib.suppress(ProcessLookupError):
            os.killpg(group, signal.SIGTERM)


@contextlib.contextmanager
def trials_stop_with_the_tuner(running: set[int]) -> Iterator[None]:
    """Ctrl-C or SIGTERM on the tuner stops every running trial, then interrupts the tuner.

    Trials run in their own sessions, so the terminal's Ctrl-C does not reach them, and the tuner's
    thread pool waits for its trials before an interrupt can unwind: stop the trials first."""
    if threading.current_thread() is not threading.main_thread():  # signal handlers live in the main thread
        yield
        return

    def interrupt(signum: int, frame: object) -> None:
        stop_all(running)
        raise KeyboardInterrupt

    previous = {sig: signal.signal(sig, interrupt) for sig in (signal.SIGINT, signal.SIGTERM)}
    try:
        yield
    finally:
        for sig, handler in previous.items():
            signal.signal(sig, handler)


def _stop(process: subprocess.Popen) -> None:
    try:
        os.killpg(process.pid, signal.SIGTERM)
        process.wait(timeout=_STOP_GRACE_S)
    except subprocess.TimeoutExpired:
        os.killpg(process.pid, signal.SIGKILL)
    except ProcessLookupError:
        pass
