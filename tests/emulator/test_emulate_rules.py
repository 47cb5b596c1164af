"""The operators' rules the emulator follows (no pods started): TF_CONFIG and success as the
Training Operator, trial substitution and metrics collection as Katib, and its errors."""

from __future__ import annotations

import json
import random
import subprocess
import sys
from pathlib import Path

import pytest
import yaml

from facesim.contract.metrics_lines import KATIB_METRIC_FILTER, format_metric
from facesim.emulator import pods as emulate_pods
from facesim.emulator.katib import (
    UNAVAILABLE,
    ZERO_TIME,
    ExperimentEmulation,
    Trial,
    collect_metrics,
    objective_value,
    observation,
    stdout_collector_hook,
    suggestions,
    trial_job,
)
from facesim.emulator.pods import Cluster, EmulationError, container_env, pod_argv
from facesim.emulator.tfjob import is_chief, replicas_of, tf_config
from facesim.emulator.volumes import container_mounts


def _manifests(out: Path, *extra: str) -> Path:
    from facesim.manifests import main

    assert main(["--out", str(out), "--namespace", "ns1", *extra]) == 0
    return out


@pytest.fixture(scope="module")
def rendered(tmp_path_factory: pytest.TempPathFactory) -> Path:
    out = tmp_path_factory.mktemp("manifests")
    return _manifests(out, "--workers", "2", "--trials", "2", "--", "--architecture", "tiny")


def _load(path: Path) -> dict:
    return next(d for d in yaml.safe_load_all(path.read_text()) if d)


def test_tf_config_is_the_operators(rendered: Path) -> None:
    replicas = replicas_of(_load(rendered / "tfjob.yaml"))
    assert [r.name for r in replicas] == ["facesim-train-worker-0", "facesim-train-worker-1"]
    config = json.loads(tf_config(replicas, replicas[1], "ns1"))
    assert config == {
        "cluster": {"worker": ["facesim-train-worker-0.ns1.svc:2222", "facesim-train-worker-1.ns1.svc:2222"]},
        "task": {"type": "worker", "index": 1},
        "environment": "cloud",
    }
    assert [is_chief(replicas, r) for r in replicas] == [True, False]  # no Chief: worker 0 decides


def test_manifests_train_options_reach_tfjob_and_trials(rendered: Path) -> None:
    job_command = _load(rendered / "tfjob.yaml")["spec"]["tfReplicaSpecs"]["Worker"]["template"]["spec"]["containers"][
        0
    ]
    assert job_command["command"][-2:] == ["--architecture", "tiny"]
    trial = _load(rendered / "experiment.yaml")["spec"]["trialTemplate"]["trialSpec"]
    trial_command = trial["spec"]["tfReplicaSpecs"]["Worker"]["template"]["spec"]["containers"][0]["command"]
    assert trial_command.index("--architecture") < trial_command.index("--margin")  # the trial's values win


def test_tfjob_pods_share_crop_caches_and_keep_runs_on_the_runs_volume(rendered: Path) -> None:
    container = _load(rendered / "tfjob.yaml")["spec"]["tfReplicaSpecs"]["Worker"]["template"]["spec"]["containers"][0]
    env = container_env(container)
    assert env["FACESIM_CACHE"] == "/mnt/data/cache"
    assert int(env["TF_NUM_INTRAOP_THREADS"]) >= 1
    command = container["command"]
    assert command[command.index("--run-dir") + 1] == "/mnt/runs/facenet/1"


def test_env_resolves_resource_fields_as_the_kubelet_does() -> None:
    cpu = {"resourceFieldRef": {"containerName": "tensorflow", "resource": "limits.cpu", "divisor": "1"}}
    secret = {"secretKeyRef": {"name": "facesim-admin", "key": "token", "optional": True}}
    container = {
        "resources": {"limits": {"cpu": "1500m"}},
        "env": [
            {"name": "PLAIN", "value": 7},
            {"name": "THREADS", "valueFrom": cpu},
            {"name": "TOKEN", "valueFrom": secret},
        ],
    }
    assert container_env(container) == {"PLAIN": "7", "THREADS": "2"}  # rounded up; an optional Secret may be absent


def test_pvcs_bind_folders_and_missing_ones_say_what_to_do(rendered: Path, tmp_path: Path) -> None:
    pod = _load(rendered / "tfjob.yaml")["spec"]["tfReplicaSpecs"]["Worker"]["template"]["spec"]
    with pytest.raises(EmulationError, match=r"PVC facesim-data: no folder .*facesim-data; create it"):
        container_mounts(pod, pod["containers"][0], tmp_path, "pod")
    for claim in ("facesim-data", "facesim-runs", "facesim-models"):
        (tmp_path / claim).mkdir()
    mounts = {m.target: m.source for m in container_mounts(pod, pod["containers"][0], tmp_path, "pod")}
    assert mounts == {f"/mnt/{role}": str(tmp_path / f"facesim-{role}") for role in ("data", "runs", "models")}


def test_trial_substitution_and_the_stdout_collector_wrap(rendered: Path) -> None:
    template = _load(rendered / "experiment.yaml")["spec"]["trialTemplate"]
    trial = Trial("facesim-tune-abcd1234", {"margin": "0.3", "embedding_size": "64", "learning_rate": "0.001"})
    job = trial_job(template, trial, "ns1")
    assert job["metadata"] == {"name": "facesim-tune-abcd1234", "namespace": "ns1"}
    container = job["spec"]["tfReplicaSpecs"]["Worker"]["template"]["spec"]["containers"][0]
    command = container["command"]
    assert command[command.index("--margin") + 1] == "0.3"
    assert command[command.index("--out") + 1].endswith("/facesim-tune/facesim-tune-abcd1234")
    hook = stdout_collector_hook({"training.kubeflow.org/job-role": "master"}, "tensorflow")
    wrapped = hook({"training.kubeflow.org/job-role": "master"}, container)
    assert wrapped["command"] == ["sh", "-c"] and wrapped["args"] == [" ".join(command) + " 2>&1"]
    assert hook({}, container) is container  # only the primary pod is wrapped


def test_collector_reads_timestamps_and_records_nan_as_empty() -> None:
    names = ["val_accuracy", "loss"]
    lines = [
        "2026-01-01T00:00:02Z val_accuracy=0.7",
        "2026-01-01T00:00:01.5Z val_accuracy=0.9",  # older, printed later
        "val_accuracy=nan",  # zero time, empty value
        "epoch 3 done",  # no metric name: not read
        "2026-01-01T00:00:03Z loss=0.25 other=1",
    ]
    logs = collect_metrics(lines, names, [KATIB_METRIC_FILTER])
    assert [(log.timestamp, log.name, log.value) for log in logs] == [
        ("2026-01-01T00:00:02Z", "val_accuracy", "0.7"),
        ("2026-01-01T00:00:01.5Z", "val_accuracy", "0.9"),
        (ZERO_TIME, "val_accuracy", ""),
        ("2026-01-01T00:00:03Z", "loss", "0.25"),
    ]
    metrics = observation(logs, names)
    assert metrics["val_accuracy"] == {"min": "0.7", "max": "0.9", "latest": "0.7"}  # newest timestamp
    assert objective_value(metrics, "val_accuracy", "max") == "0.9"
    assert collect_metrics(["loss=1"], names, [])[0].value == UNAVAILABLE  # no objective: unavailable


def test_untimestamped_nan_becomes_katibs_latest_objective() -> None:
    """The defect the timestamps and the skipped nan lines fix: with equal (zero) times the last line
    wins `latest`, and an empty value is then the objective."""
    names = ["val_accuracy"]
    metrics = observation(collect_metrics(["val_accuracy=0.8", "val_accuracy=nan"], names, []), names)
    assert objective_value(metrics, "val_accuracy", "latest") == ""
    printed = [format_metric("val_accuracy", 0.8), format_metric("val_accuracy", float("nan"))]
    assert printed[1] is None
    fixed = observation(collect_metrics([printed[0]], names, []), names)
    assert objective_value(fixed, "val_accuracy", "latest") == "0.8"
    assert collect_metrics([printed[0]], names, [])[0].timestamp != ZERO_TIME


def test_grid_walks_every_point_and_random_stays_in_bounds() -> None:
    spec = {
        "algorithm": {"algorithmName": "grid"},
        "parameters": [
            {"name": "m", "parameterType": "double", "feasibleSpace": {"min": "0.1", "max": "0.3", "step": "0.1"}},
            {"name": "e", "parameterType": "categorical", "feasibleSpace": {"list": ["64", "128"]}},
        ],
    }
    grid = list(suggestions(spec, random.Random(0)))
    assert len(grid) == 6 and {g["e"] for g in grid} == {"64", "128"}
    draws = suggestions({**spec, "algorithm": {"algorithmName": "random"}}, random.Random(0))
    for _, values in zip(range(20), draws, strict=False):  # draws never end
        assert 0.1 <= float(values["m"]) <= 0.3


def test_optimal_trial_and_max_failed_rule(rendered: Path, tmp_path: Path) -> None:
    experiment = _load(rendered / "experiment.yaml")
    cluster = Cluster(tmp_path, None, tmp_path, lambda line: None)  # type: ignore[arg-type] (no pods here)
    emulation = ExperimentEmulation(experiment, cluster)
    emulation.trials = [
        Trial("a", {}, "Succeeded", objective="0.7"),
        Trial("b", {}, "Succeeded", objective="0.9"),
        Trial("c", {}, "MetricsUnavailable"),
    ]
    assert emulation.optimal_trial().name == "b"
    assert emulation._condition(False, float("inf")) == (True, "maxTrialCount (2) trials completed")
    emulation.spec = {**emulation.spec, "maxTrialCount": 10, "maxFailedTrialCount": 1}
    assert emulation._condition(False, float("inf")) == (False, "1 trials failed (maxFailedTrialCount 1)")


def test_image_commands_map_to_this_environment() -> None:
    assert pod_argv(["python", "-m", "facesim.training"]) == [sys.executable, "-m", "facesim.training"]
    assert pod_argv(["facesim", "serve"]) == [sys.executable, "-m", "facesim", "serve"]
    with pytest.raises(EmulationError, match="without command"):
        pod_argv([])


def test_not_root_is_one_line_saying_what_to_do(monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setattr(emulate_pods.os, "geteuid", lambda: 1000)
    with pytest.raises(EmulationError, match=r"needs root .*run it as root or with sudo"):
        emulate_pods.check_host()


def test_cli_refuses_files_with_nothing_to_run(rendered: Path, tmp_path: Path) -> None:
    result = subprocess.run(
        [sys.executable, "-m", "facesim", "emulate", str(rendered / "pvcs.yaml"), "--volumes", str(tmp_path)],
        capture_output=True,
        text=True,
        timeout=60,
    )
    assert result.returncode == 2
    assert "no TFJob, Experiment, InferenceService or Deployment" in result.stderr
    assert "Traceback" not in result.stderr
