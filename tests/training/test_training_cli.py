"""`facesim train` routes: bad options exit 2 with a message; --backend cluster submits a TFJob
that runs `python -m facesim.training` with the very options given (TrainConfig.to_args)."""

from __future__ import annotations

from dataclasses import replace

import pytest

from facesim.training.cli import evaluate_main, train_main
from facesim.training.config import parse_config
from tests.helpers.fake_apiserver import Answer, RunningApiServer

TFJOBS = "/apis/kubeflow.org/v1/namespaces/facesim/tfjobs"


def test_cluster_backend_submits_a_tfjob_running_the_same_options(tmp_path):
    options = [
        "--data",
        "/mnt/data/lfw",
        "--out",
        "/mnt/models/m",
        "--workers",
        "2",
        "--epochs",
        "5",
        "--margin",
        "0.3",
        "--mining",
        "batch_hard",
        "--embedding-dim",
        "64",
    ]
    with RunningApiServer() as server:
        kubeconfig = server.write_kubeconfig(tmp_path / "kubeconfig")
        server.state.answer("POST", TFJOBS, Answer(201, {"metadata": {"name": "facesim-train"}}))
        assert train_main(["--backend", "cluster", "--kubeconfig", str(kubeconfig), "--no-wait", *options]) == 0
        (request,) = server.state.calls("POST", TFJOBS)
    spec = request.body["spec"]["tfReplicaSpecs"]["Worker"]
    assert spec["replicas"] == 2
    command = spec["template"]["spec"]["containers"][0]["command"]
    assert command[:3] == ["python", "-m", "facesim.training"]
    # The same options, with the checkpoints on the runs volume (not beside the model on the models volume).
    assert parse_config(command[3:]) == replace(parse_config(options), run_dir="/mnt/runs/m")


def test_missing_data_is_a_clear_error(tmp_path, capsys):
    assert train_main(["--data", str(tmp_path / "nowhere"), "--out", str(tmp_path / "m")]) == 2
    assert "does not exist" in capsys.readouterr().err


def test_indivisible_batch_is_a_usage_error(tmp_path):
    with pytest.raises(SystemExit) as exit_info:
        train_main(["--data", str(tmp_path), "--out", str(tmp_path / "m"), "--workers", "3"])
    assert exit_info.value.code == 2


def test_evaluate_without_a_model_card_is_a_clear_error(tmp_path, lfw_dir, capsys):
    code = evaluate_main(["--model", str(tmp_path), "--data", str(lfw_dir), "--pairs", str(lfw_dir / "pairs.txt")])
    assert code == 2
    assert "not a model artifact" in capsys.readouterr().err
