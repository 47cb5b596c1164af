"""`facesim pipeline run`'s terminal: a line per step, a live progress line, the summary and --reuse."""

from __future__ import annotations

import io
import json
from dataclasses import asdict
from pathlib import Path

import pytest

from facesim.pipeline import local_run
from facesim.pipeline.local_run import ProgressLog
from facesim.pipeline.summary import (
    Registered,
    RunSummary,
    StepTiming,
    data_fingerprint,
    human_line,
    model_precision,
    read_last_run,
    reusable,
    write_summary,
)

# What kfp.local echoes of a step (tqdm's carriage returns arrive as line ends through the pipe).
STEP_OUTPUT = [
    "Executing task 'prepare-data'",
    "aligning:  10%|#         | 1323/13233 [00:12<01:48, 110.1img/s]",
    "aligning:  50%|#####     | 6617/13233 [01:00<01:00, 110.3img/s]",
    "aligning: 100%|##########| 13233/13233 [02:00<00:00, 110.2img/s]",
    "facesim-pipeline: face crops ready in /x/crops",
    "Task 'prepare-data' finished with status SUCCESS",
    "Executing task 'train-model'",
    "[worker 0] epoch 1:  46%|####6     | 23/50 [01:10<01:22, 3.05s/step, loss 0.4123]",
    "[worker 0] epoch 1:  46%|####6     | 23/50 [01:10<01:22, 3.05s/step, loss 0.4123]",
    "[worker 0] loss=0.41",
    "[worker 0] val_accuracy=0.655",
    "Task 'train-model' finished with status SUCCESS",
    "Executing task 'evaluate-model'",
    "accuracy=0.705",
    "auc=0.784",
    "tar_at_far_1e-3=0.05",
    "Task 'evaluate-model' finished with status SUCCESS",
]


class Terminal(io.StringIO):
    def __init__(self, tty: bool) -> None:
        super().__init__()
        self.tty = tty

    def isatty(self) -> bool:
        return self.tty


def _feed(terminal: Terminal) -> tuple[ProgressLog, io.StringIO]:
    log = io.StringIO()
    progress = ProgressLog(log, terminal)
    for line in STEP_OUTPUT:
        progress.write(line + "\n")
    return progress, log


def test_a_terminal_gets_one_live_line_per_bar_and_the_log_gets_everything() -> None:
    terminal = Terminal(tty=True)
    progress, log = _feed(terminal)
    assert log.getvalue() == "\n".join(STEP_OUTPUT) + "\n"
    shown = terminal.getvalue()
    assert "\r\x1b[K      aligning: 6617/13233, ETA 01:00" in shown
    assert "aligning: 13233/13233\n" in shown  # the finished bar, its live line ended before the next line
    assert shown.count("epoch 1: 23/50, loss 0.4123, ETA 01:22") == 1  # tqdm's repeat on close shows once
    assert "[1/8] prepare-data: success in" in shown and "[3/8] evaluate-model: success in" in shown
    assert [step.name for step in progress.timings] == ["prepare-data", "train-model", "evaluate-model"]
    metrics = progress.step_metrics()
    assert metrics["evaluate-model"] == {"accuracy": 0.705, "auc": 0.784, "tar_at_far_1e-3": 0.05}
    assert metrics["train-model"]["val_accuracy"] == 0.655
    assert "prepare-data" not in metrics  # a progress bar's rate is no metric


def test_piped_output_gets_a_progress_line_at_most_every_interval(monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setattr(local_run, "PIPED_PROGRESS_EVERY_S", 3600.0)
    terminal = Terminal(tty=False)
    _feed(terminal)
    shown = terminal.getvalue()
    assert "\r" not in shown
    assert shown.count("aligning:") == 2  # the first update and the finished bar, nothing in between
    assert "aligning: 1323/13233, ETA 01:48\n" in shown


def _summary(data: Path, arguments: dict, home: Path) -> RunSummary:
    return RunSummary(
        finished="2026-11-30T18:00:00Z",
        seconds=1074.0,
        steps=[StepTiming("prepare-data", 125.0, "success"), StepTiming("train-model", 500.4, "success")],
        metrics={"evaluate-model": {"accuracy": 0.705, "auc": 0.784}},
        model=Registered("v2", str(home / "models" / "v2")),
        gallery=Registered("v1", str(home / "galleries" / "v1")),
        arguments=arguments,
        data_fingerprint=data_fingerprint(data),
        command="facesim pipeline run --data x",
        log="run.log",
        precision="int8",
    )


def test_the_summary_reads_back_and_says_it_in_one_line(tmp_path: Path) -> None:
    summary = _summary(tmp_path, {"data": str(tmp_path), "epochs": 3}, tmp_path)
    path = write_summary(summary, tmp_path)
    assert path.parent == tmp_path / "summaries"
    assert read_last_run(tmp_path) == summary
    assert human_line(summary) == (
        "17.9 min (prepare 125 s, train 500 s); test accuracy 0.705, test auc 0.784; model v2 (int8), gallery v1"
    )


def test_the_summary_names_the_registered_model_s_precision(tmp_path: Path) -> None:
    card = {"image_size": 64, "embedding_dim": 64, "margin": 0.2, "threshold": 1.0}
    (tmp_path / "float").mkdir()
    (tmp_path / "float" / "model.json").write_text(json.dumps(card))
    (tmp_path / "int8").mkdir()
    (tmp_path / "int8" / "model.json").write_text(json.dumps({**card, "quantization": {"method": "static QDQ"}}))
    assert (model_precision(tmp_path / "float"), model_precision(tmp_path / "int8")) == ("float", "int8")
    older = asdict(_summary(tmp_path, {}, tmp_path))
    older.pop("precision")  # a summary written before the field
    assert RunSummary.from_dict(older).precision == ""


def test_reuse_only_when_data_settings_and_registry_all_match(tmp_path: Path) -> None:
    data = tmp_path / "lfw"
    data.mkdir()
    (data / "pairs.txt").write_text("10\t300\n")
    arguments = {"data": str(data), "epochs": 3}
    summary = _summary(data, arguments, tmp_path)
    registered = (Path(summary.model.path), Path(summary.gallery.path))
    assert reusable(arguments, tmp_path, registered).summary is None  # nothing written yet
    write_summary(summary, tmp_path)
    reuse = reusable(arguments, tmp_path, registered)
    assert reuse.summary == summary
    assert reuse.reason == (
        f"model v2 and gallery v1, registered by the run of {summary.finished}, came from the same data and settings"
    )
    changed = reusable({**arguments, "epochs": 5}, tmp_path, registered)
    assert changed.summary is None and "epochs 3 -> 5" in changed.reason
    newer = reusable(arguments, tmp_path, (tmp_path / "models" / "v3", registered[1]))
    assert newer.summary is None and "registered since" in newer.reason
    (data / "pairs.txt").write_text("10\t300\nchanged\n")
    assert "protocol files changed" in reusable(arguments, tmp_path, registered).reason
