"""The local tuner reads trial output the way Katib's StdOut collector does (docs/protocol.md)."""

from __future__ import annotations

import sys
import textwrap
import time
from pathlib import Path

import pytest

from facesim.tuning.trial import MetricStream, run_trial


@pytest.mark.parametrize(
    ("line", "expected"),
    [
        ("val_accuracy=0.8125", {"val_accuracy": 0.8125}),
        ("val_accuracy = 0.75", {"val_accuracy": 0.75}),
        ("epoch=2 loss=0.31 val_accuracy=0.7", {"epoch": 2.0, "loss": 0.31, "val_accuracy": 0.7}),
        ("loss=1.5e-03", {"loss": 1.5e-3}),
        ("loss=2E+1", {"loss": 20.0}),
        ("delta=-0.5 gain=+.25", {"delta": -0.5, "gain": 0.25}),
        ("val_tar_at_far_1e-3=0.42", {"val_tar_at_far_1e-3": 0.42}),
        ("[worker 0] 12:00:01 INFO val_accuracy=0.66", {"val_accuracy": 0.66}),
        ("val_accuracy=0.5,val_auc=0.6", {"val_accuracy": 0.5, "val_auc": 0.6}),
        ("val_accuracy=nan", {}),  # format_metric never prints one; Katib would record an empty value
        ("loss=inf", {}),
        ("val_accuracy=", {}),
        ("val_accuracy 0.9 (no equals sign)", {}),
    ],
)
def test_katib_filter_edge_cases(line: str, expected: dict[str, float]) -> None:
    stream = MetricStream("val_accuracy")
    stream.feed(line)
    assert stream.latest == pytest.approx(expected)
    assert stream.history == ([expected["val_accuracy"]] if "val_accuracy" in expected else [])


def test_objective_is_the_best_epoch_and_other_metrics_the_latest() -> None:
    stream = MetricStream("val_accuracy")
    for line in [
        "epoch=1",
        "loss=0.9 val_accuracy=0.61",
        "epoch=2",
        "loss=0.5 val_accuracy=0.72",
        "epoch=3",
        "loss=0.4 val_accuracy=0.70",
    ]:
        stream.feed(line)
    assert stream.history == [0.61, 0.72, 0.70]
    assert stream.best(maximize=True) == 0.72
    assert stream.best(maximize=False) == 0.61
    assert stream.latest["loss"] == 0.4 and stream.latest["epoch"] == 3


def _script(tmp_path: Path, body: str) -> list[str]:
    path = tmp_path / "fake_training.py"
    path.write_text(textwrap.dedent(body))
    return [sys.executable, "-u", str(path)]


def test_a_trial_is_followed_epoch_by_epoch_and_logged(tmp_path: Path) -> None:
    command = _script(
        tmp_path,
        """
        for epoch, accuracy in enumerate([0.55, 0.6, 0.65], start=1):
            print(f"epoch={epoch}")
            print(f"loss={1 / epoch:.3f} val_accuracy={accuracy}")
    """,
    )
    seen: list[tuple[int, float]] = []
    stream = MetricStream("val_accuracy")
    outcome = run_trial(command, tmp_path / "t" / "train.log", stream, lambda e, v: seen.append((e, v)) or False)
    assert outcome.returncode == 0 and not outcome.stopped_early
    assert seen == [(0, 0.55), (1, 0.6), (2, 0.65)]
    assert "val_accuracy=0.65" in (tmp_path / "t" / "train.log").read_text()


def test_a_hopeless_trial_is_stopped_with_its_workers(tmp_path: Path) -> None:
    # The "launcher" starts a worker in its process group; stopping the trial must end both.
    pid_file = tmp_path / "worker.pid"
    command = _script(
        tmp_path,
        f"""
        import subprocess, sys, time
        worker = subprocess.Popen([sys.executable, "-c", "import time; time.sleep(60)"])
        open({str(pid_file)!r}, "w").write(str(worker.pid))
        for epoch in range(1, 100):
            print(f"epoch={{epoch}} val_accuracy=0.5", flush=True)
            time.sleep(0.2)
    """,
    )
    started = time.monotonic()
    outcome = run_trial(command, tmp_path / "train.log", MetricStream("val_accuracy"), lambda e, v: e >= 1)
    assert outcome.stopped_early and outcome.returncode != 0
    assert time.monotonic() - started < 10
    worker = Path(f"/proc/{int(pid_file.read_text())}")
    deadline = time.monotonic() + 5  # SIGTERM is delivered, not yet acted on, when killpg returns
    while _alive(worker) and time.monotonic() < deadline:
        time.sleep(0.05)
    assert not _alive(worker)


def _alive(proc: Path) -> bool:
    try:
        return (proc / "stat").read_text().rsplit(")", 1)[1].split()[0] != "Z"
    except FileNotFoundError:
        return False


def test_ctrl_c_on_the_tuner_stops_running_trials(tmp_path: Path) -> None:
    import os
    import signal
    import threading

    from facesim.tuning.trial import trials_stop_with_the_tuner

    command = _script(
        tmp_path,
        """
        import time
        for epoch in range(1, 600):
            print(f"epoch={epoch} val_accuracy=0.5", flush=True)
            time.sleep(0.1)
    """,
    )
    running: set[int] = set()
    outcomes = []
    trial = threading.Thread(
        target=lambda: outcomes.append(
            run_trial(
                command, tmp_path / "train.log", MetricStream("val_accuracy"), lambda e, v: False, running=running
            )
        )
    )
    with pytest.raises(KeyboardInterrupt), trials_stop_with_the_tuner(running):
        trial.start()
        while not running:
            time.sleep(0.05)
        os.kill(os.getpid(), signal.SIGINT)  # what Ctrl-C sends the tuner
        trial.join(timeout=30)
    trial.join(timeout=30)
    assert outcomes and outcomes[0].returncode == -signal.SIGTERM and not running
    assert signal.getsignal(signal.SIGINT) is signal.default_int_handler  # handlers restored
