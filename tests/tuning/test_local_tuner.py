"""`facesim tune --backend local`: two tiny real trials, metrics parsed, best parameters written."""

from __future__ import annotations

import json
import os
import re
import subprocess
import sys
from pathlib import Path

import pytest

from facesim.tuning.space import SEARCH_SPACE


@pytest.mark.slow
def test_two_tiny_trials_write_results_and_best_params(lfw_sliver: Path, yunet_path: Path, tmp_path: Path) -> None:
    env = {
        **os.environ,
        "FACESIM_HOME": str(tmp_path / "home"),
        "FACESIM_YUNET_MODEL": str(yunet_path),
        "TF_CPP_MIN_LOG_LEVEL": "2",
    }
    out = tmp_path / "tuning"
    run = subprocess.run(
        [
            sys.executable,
            "-m",
            "facesim.tuning",
            "--data",
            str(lfw_sliver),
            "--out",
            str(out),
            "--trials",
            "2",
            "--algorithm",
            "random",
            "--epochs",
            "2",
            "--steps-per-epoch",
            "1",
            "--",
            "--architecture",
            "tiny",
            "--identities-per-batch",
            "8",
        ],
        env=env,
        capture_output=True,
        text=True,
        timeout=300,
    )
    assert run.returncode == 0, run.stdout[-3000:] + run.stderr[-3000:]

    results = json.loads((out / "results.json").read_text())
    assert results["objective"] == "val_accuracy" and results["algorithm"] == "random"
    assert [t["state"] for t in results["trials"]] == ["COMPLETE", "COMPLETE"]
    for trial in results["trials"]:
        # The objective is the best epoch's val_accuracy as the trial printed it (Katib's max strategy).
        printed = [float(v) for v in re.findall(r"val_accuracy=([0-9.]+)", Path(trial["log"]).read_text())]
        assert len(printed) == trial["epochs"] == 2
        assert trial["objective"] == pytest.approx(max(printed))
        assert "loss" in trial["metrics"] and "val_auc" in trial["metrics"]
        assert (Path(trial["log"]).parent / "model" / "model.json").is_file()

    best = json.loads((out / "best_params.json").read_text())
    best_trial = max(results["trials"], key=lambda t: t["objective"])
    assert best["objective"] == {"name": "val_accuracy", "value": best_trial["objective"]}
    assert best["parameters"] == best_trial["params"]
    for parameter in SEARCH_SPACE:
        value = best["parameters"][parameter.name]
        assert (
            value in parameter.values if parameter.kind == "categorical" else parameter.low <= value <= parameter.high
        )
        assert parameter.flag in best["flags"]
    # The results table: a header and one row per trial, the best marked.
    table = run.stdout[run.stdout.index("trial  state") :].splitlines()
    assert any(line.startswith(f"{best['trial']}*") for line in table[1:3])


def test_bad_options_are_reported_without_a_traceback(tmp_path: Path) -> None:
    run = subprocess.run(
        [sys.executable, "-m", "facesim.tuning", "--data", str(tmp_path), "--algorithm", "hyperband"],
        capture_output=True,
        text=True,
        timeout=60,
    )
    assert run.returncode == 2
    assert "hyperband" in run.stderr and "tpe" in run.stderr and "Traceback" not in run.stderr
    run = subprocess.run(
        [sys.executable, "-m", "facesim.tuning", "--data", str(tmp_path / "nowhere")],
        capture_output=True,
        text=True,
        timeout=60,
    )
    assert run.returncode == 2 and "no such directory" in run.stderr
