"""`facesim tune --backend cluster`: the same search as a Katib Experiment, followed to its
optimal trial, whose parameters land in best_params.json (what the pipeline trains with)."""

from __future__ import annotations

import json
from pathlib import Path

import pytest

from facesim.tuning.cli import main

# The cluster tests' fake Kubernetes API server (reused, not copied).
from tests.helpers.fake_apiserver import Answer, RunningApiServer, status_body

EXPERIMENTS = "/apis/kubeflow.org/v1beta1/namespaces/team-a/experiments"
SUCCEEDED = {
    "spec": {"objective": {"type": "maximize", "objectiveMetricName": "val_accuracy"}},
    "status": {
        "conditions": [{"type": "Succeeded", "status": "True"}],
        "trialsSucceeded": 3,
        "currentOptimalTrial": {
            "bestTrialName": "sweep-7-abc",
            "parameterAssignments": [
                {"name": "margin", "value": "0.3"},
                {"name": "embedding_size", "value": "64"},
                {"name": "learning_rate", "value": "0.002"},
            ],
            "observation": {"metrics": [{"name": "val_accuracy", "latest": "0.81", "max": "0.83"}]},
        },
    },
}


def test_the_experiment_is_created_followed_and_its_best_trial_written(tmp_path: Path) -> None:
    with RunningApiServer() as server:
        server.state.answer("POST", EXPERIMENTS, Answer(201, {}))
        server.state.answer("GET", f"{EXPERIMENTS}/sweep-7", Answer(200, SUCCEEDED))
        kubeconfig = server.write_kubeconfig(tmp_path / "kubeconfig", namespace="team-a")
        code = main(
            [
                "--backend",
                "cluster",
                "--namespace",
                "team-a",
                "--kubeconfig",
                str(kubeconfig),
                "--experiment-name",
                "sweep-7",
                "--trials",
                "5",
                "--algorithm",
                "random",
                "--workers",
                "2",
                "--data",
                "/mnt/data/crops/lfw-112px",
                "--out",
                str(tmp_path / "out"),
                "--",
                "--architecture",
                "tiny",
            ]
        )
        created = server.state.calls("POST", EXPERIMENTS)[0].body
    assert code == 0
    spec = created["spec"]
    assert created["metadata"]["name"] == "sweep-7"
    assert spec["algorithm"]["algorithmName"] == "random" and spec["maxTrialCount"] == 5
    worker = spec["trialTemplate"]["trialSpec"]["spec"]["tfReplicaSpecs"]["Worker"]
    assert worker["replicas"] == 2
    command = worker["template"]["spec"]["containers"][0]["command"]
    assert command[command.index("--data") + 1] == "/mnt/data/crops/lfw-112px"
    assert "--architecture" in command and "${trialParameters.margin}" in command

    best = json.loads((tmp_path / "out" / "best_params.json").read_text())
    assert best["trial"] == "sweep-7-abc"
    assert best["parameters"] == {"margin": 0.3, "embedding_size": "64", "learning_rate": 0.002}
    assert best["objective"] == {"name": "val_accuracy", "value": 0.83}  # the trial's best, not its latest


def test_a_refused_experiment_is_a_clear_error(tmp_path: Path, capsys: pytest.CaptureFixture[str]) -> None:
    with RunningApiServer() as server:
        server.state.answer("POST", EXPERIMENTS, Answer(403, status_body(403, "Forbidden", "experiments is forbidden")))
        kubeconfig = server.write_kubeconfig(tmp_path / "kubeconfig", namespace="team-a")
        code = main(["--backend", "cluster", "--namespace", "team-a", "--kubeconfig", str(kubeconfig)])
    assert code == 1
    err = capsys.readouterr().err
    assert "forbidden" in err.lower() and "Traceback" not in err


@pytest.mark.parametrize(
    ("train_options", "problem"),
    [
        ([], "the global batch (16 x 4 = 64) must divide evenly among 3 workers"),
        (["--bogus", "1"], "`facesim train` has no option --bogus 1"),
    ],
)
@pytest.mark.parametrize("backend", ["cluster", "local"])
def test_settings_every_trial_would_refuse_stop_the_sweep_before_it_starts(
    tmp_path: Path, capsys: pytest.CaptureFixture[str], backend: str, train_options: list[str], problem: str
) -> None:
    workers = ["--workers", "3"] if not train_options else []
    with RunningApiServer() as server:
        kubeconfig = server.write_kubeconfig(tmp_path / "kubeconfig", namespace="team-a")
        where = ["--kubeconfig", str(kubeconfig)] if backend == "cluster" else ["--data", str(tmp_path)]
        with pytest.raises(SystemExit) as exit_info:
            main(["--backend", backend, *where, *workers, "--out", str(tmp_path / "out"), "--", *train_options])
        calls = server.state.calls("POST", EXPERIMENTS)
    assert exit_info.value.code == 2 and calls == []
    assert capsys.readouterr().err.strip().endswith(f"facesim tune: error: every trial would fail: {problem}")
    assert not (tmp_path / "out").exists()
