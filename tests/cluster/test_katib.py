"""The Katib Experiment: its shape, Katib's webhook rules, and the KatibClient calls against the fake API server."""

from __future__ import annotations

import copy
import os
import re
import signal
import threading
from pathlib import Path

import pytest

from facesim.cluster.client import ClusterError
from facesim.cluster.resources import to_manifest
from facesim.contract.metrics_lines import KATIB_METRIC_FILTER
from facesim.training.config import parse_config
from facesim.tuning.algorithms import make_pruner
from facesim.tuning.katib import (
    ExperimentConfig,
    FollowOptions,
    _optimal_trial,
    _progress,
    experiment,
    metric_strategies,
    submit_experiment,
)
from facesim.tuning.space import SEARCH_SPACE, grid_values, median_stop_start, parameter
from tests.helpers.crd_validation import crd_errors, unchecked_rules
from tests.helpers.fake_apiserver import Answer, RunningApiServer, status_body
from tests.helpers.katib_webhook import experiment_problems

EXPERIMENTS = "/apis/kubeflow.org/v1beta1/namespaces/facesim/experiments"


def rendered(config: ExperimentConfig | None = None) -> dict:
    return to_manifest(experiment(config or ExperimentConfig()))


def test_experiment_objective_algorithm_and_collector() -> None:
    spec = rendered(ExperimentConfig(algorithm="random", max_trial_count=9, parallel_trial_count=3))["spec"]
    assert spec["objective"]["type"] == "maximize"
    assert spec["objective"]["objectiveMetricName"] == "val_accuracy"
    assert spec["objective"]["additionalMetricNames"] == ["val_auc", "loss"]
    assert {s["name"]: s["value"] for s in spec["objective"]["metricStrategies"]} == {
        "val_accuracy": "max",
        "val_auc": "max",
        "loss": "min",
    }
    assert spec["algorithm"] == {"algorithmName": "random"}
    assert (spec["maxTrialCount"], spec["parallelTrialCount"], spec["maxFailedTrialCount"]) == (9, 3, 3)
    assert spec["metricsCollectorSpec"] == {
        "collector": {"kind": "StdOut"},
        "source": {"filter": {"metricsFormat": [KATIB_METRIC_FILTER]}},
    }


def test_parameters_come_from_the_shared_search_space() -> None:
    parameters = {p["name"]: p for p in rendered()["spec"]["parameters"]}
    assert set(parameters) == {p.name for p in SEARCH_SPACE} == {"margin", "embedding_size", "learning_rate"}
    assert parameters["margin"]["parameterType"] == "double"
    assert parameters["embedding_size"] == {
        "name": "embedding_size",
        "parameterType": "categorical",
        "feasibleSpace": {"list": ["64", "128", "256"]},
    }
    assert "step" not in parameters["learning_rate"]["feasibleSpace"]


def test_log_scale_parameters_are_log_uniform_on_katib_as_locally() -> None:
    """The local tuner samples learning_rate on a log scale; Katib 0.18 does too, when told."""
    parameters = {p["name"]: p["feasibleSpace"] for p in rendered()["spec"]["parameters"]}
    assert parameters["learning_rate"]["distribution"] == "logUniform"
    assert "distribution" not in parameters["margin"]  # linear: Katib's default, uniform


def test_grid_tries_the_same_values_as_the_local_grid() -> None:
    grid = {p["name"]: p for p in rendered(ExperimentConfig(algorithm="grid", grid_points=3))["spec"]["parameters"]}
    for name, values in (("margin", [0.05, 0.275, 0.5]), ("learning_rate", [1e-4, 1e-3, 1e-2])):
        assert grid[name]["parameterType"] == "discrete"
        assert [float(v) for v in grid[name]["feasibleSpace"]["list"]] == pytest.approx(values)
        assert [float(v) for v in grid[name]["feasibleSpace"]["list"]] == grid_values(parameter(name), 3)


@pytest.mark.parametrize("epochs, start", [(2, 1), (3, 2), (5, 2)])
def test_medianstop_starts_within_the_trials_epochs(epochs: int, start: int) -> None:
    """Katib's default start_step (4) never stops the pipeline's 2-epoch trials; it must be below
    the trial's epochs, and the same epoch the local pruner starts from."""
    early = rendered(ExperimentConfig(trial_epochs=epochs))["spec"]["earlyStopping"]
    settings = {s["name"]: int(s["value"]) for s in early["algorithmSettings"]}
    assert settings == {"min_trials_required": 2, "start_step": start} and start < epochs
    pruner = make_pruner("medianstop", median_stop_start(epochs))
    assert (pruner._n_warmup_steps, pruner._n_startup_trials) == (start - 1, 2)


def test_one_epoch_trials_run_without_early_stopping() -> None:
    assert "earlyStopping" not in rendered(ExperimentConfig(trial_epochs=1))["spec"]


@pytest.mark.parametrize("trials", [1, 2, 12])
def test_failed_trial_budget_never_exceeds_the_trials(trials: int) -> None:
    """`--trials 2` was refused by Katib: maxFailedTrialCount stayed 3."""
    spec = rendered(ExperimentConfig(max_trial_count=trials, parallel_trial_count=1))["spec"]
    assert spec["maxFailedTrialCount"] == min(3, trials)
    assert experiment_problems(rendered(ExperimentConfig(max_trial_count=trials, parallel_trial_count=1))) == []


def test_trial_template_runs_a_tfjob_with_the_trial_parameters(crds_dir: Path) -> None:
    template = rendered()["spec"]["trialTemplate"]
    assert template["primaryContainerName"] == "tensorflow"
    assert template["primaryPodLabels"] == {"training.kubeflow.org/job-role": "master"}
    assert "Succeeded" in template["successCondition"] and "Failed" in template["failureCondition"]
    trial_spec = template["trialSpec"]
    assert trial_spec["kind"] == "TFJob" and "metadata" not in trial_spec
    command = trial_spec["spec"]["tfReplicaSpecs"]["Worker"]["template"]["spec"]["containers"][0]["command"]
    text = " ".join(command)
    for flag, name in (
        ("--margin", "margin"),
        ("--embedding-dim", "embedding_size"),
        ("--learning-rate", "learning_rate"),
    ):
        assert f"{flag} ${{trialParameters.{name}}}" in text
    named = {**trial_spec, "metadata": {"name": "facesim-tune-abc123"}}
    assert crd_errors(named, crds_dir / "kubeflow.org_tfjobs.yaml") == []


def test_a_substituted_trial_command_parses_as_a_training_config() -> None:
    """What Katib substitutes is what `python -m facesim.training` accepts (training/config.py's parser)."""
    template = rendered()["spec"]["trialTemplate"]
    values = {"margin": "0.3", "embedding_size": "256", "learning_rate": "0.002", "trialName": "facesim-tune-x1"}
    command = template["trialSpec"]["spec"]["tfReplicaSpecs"]["Worker"]["template"]["spec"]["containers"][0]["command"]
    substituted = [re.sub(r"\$\{trialParameters\.(\w+)\}", lambda m: values[m.group(1)], part) for part in command]
    assert substituted[:3] == ["python", "-m", "facesim.training"]
    config = parse_config(substituted[3:])
    assert (config.margin, config.embedding_dim, config.learning_rate) == (0.3, 256, 0.002)
    assert config.out == "/mnt/runs/tuning/facesim-tune/facesim-tune-x1"


def test_rendered_experiments_pass_the_webhook_rules() -> None:
    for algorithm in ("random", "grid", "tpe", "multivariate-tpe", "bayesianoptimization"):
        assert experiment_problems(rendered(ExperimentConfig(algorithm=algorithm))) == [], algorithm


def test_the_experiment_crd_checks_nothing_so_only_the_webhook_rules_do(crds_dir: Path) -> None:
    """Katib's Experiment CRD preserves unknown fields from its root: schema validation would accept any
    Experiment, which is why the tests check Katib's webhook rules (experiment_problems) instead."""
    experiments = crds_dir / "kubeflow.org_experiments.yaml"
    assert unchecked_rules(experiments, "v1beta1") == [".: unknown fields preserved, anything below is accepted"]
    broken = rendered()
    broken["spec"]["algorithm"]["algorithmName"] = "no-such-algorithm"
    broken["spec"]["maxTrialCount"] = 0
    problems = " ".join(experiment_problems(broken))
    assert crd_errors(broken, experiments) == []
    assert "is not a Katib algorithm" in problems and "maxTrialCount must be greater than 0" in problems


def _template(e: dict) -> dict:
    return e["spec"]["trialTemplate"]


def _command(e: dict) -> list:
    return _template(e)["trialSpec"]["spec"]["tfReplicaSpecs"]["Worker"]["template"]["spec"]["containers"][0]["command"]


BREAKAGES = {
    "undefined trial parameter": (lambda e: _command(e).append("${trialParameters.dropout}"), "dropout} is used"),
    "unused trial parameter": (
        lambda e: _template(e)["trialParameters"].append({"name": "seed", "reference": "margin"}),
        "seed is defined but not used",
    ),
    "reference not a parameter": (
        lambda e: _template(e)["trialParameters"][0].update(reference="momentum"),
        "neither an experiment parameter",
    ),
    "primary container missing": (
        lambda e: _template(e).update(primaryContainerName="trainer"),
        "primaryContainerName",
    ),
    "no success condition": (lambda e: _template(e).pop("successCondition"), "successCondition and failureCondition"),
    "no objective": (lambda e: e["spec"].pop("objective"), "objective must be set"),
    "objective also additional": (
        lambda e: e["spec"]["objective"]["additionalMetricNames"].append("val_accuracy"),
        "must not contain",
    ),
    "unknown algorithm": (lambda e: e["spec"]["algorithm"].update(algorithmName="simulated-annealing"), "not a Katib"),
    "empty range": (lambda e: e["spec"]["parameters"][0]["feasibleSpace"].update(min="0.5", max="0.1"), "min < max"),
    "empty categorical": (lambda e: e["spec"]["parameters"][1]["feasibleSpace"].update(list=[]), "non-empty list"),
    "unknown distribution": (
        lambda e: e["spec"]["parameters"][2]["feasibleSpace"].update(distribution="log_uniform"),
        "distribution 'log_uniform' is not supported",
    ),
    "bad parameter type": (lambda e: e["spec"]["parameters"][0].update(parameterType="float"), "parameterType"),
    "filter with one group": (
        lambda e: e["spec"]["metricsCollectorSpec"]["source"]["filter"].update(metricsFormat=[r"loss=(\d+)"]),
        "two groups",
    ),
    "trial spec named": (lambda e: _template(e)["trialSpec"].update(metadata={"name": "x"}), "must be omitted"),
    "parallel over max": (lambda e: e["spec"].update(parallelTrialCount=50), "must not exceed"),
    "no parameters": (lambda e: e["spec"].update(parameters=[]), "at least one parameter"),
}


@pytest.mark.parametrize("breakage", list(BREAKAGES), ids=list(BREAKAGES))
def test_the_webhook_checker_rejects_broken_experiments(breakage: str) -> None:
    mutate, expected = BREAKAGES[breakage]
    resource = copy.deepcopy(rendered())
    mutate(resource)
    problems = experiment_problems(resource)
    assert any(expected in problem for problem in problems), problems


def _experiment_with(status: dict) -> dict:
    return {**rendered(), "status": status}


SUCCEEDED = {
    "conditions": [
        {"type": "Created", "status": "True"},
        {"type": "Running", "status": "False"},
        {"type": "Succeeded", "status": "True"},
    ],
    "trialsSucceeded": 12,
    "currentOptimalTrial": {
        "bestTrialName": "facesim-tune-7xk2",
        "parameterAssignments": [
            {"name": "margin", "value": "0.21"},
            {"name": "embedding_size", "value": "128"},
            {"name": "learning_rate", "value": "0.0012"},
        ],
        "observation": {"metrics": [{"name": "val_accuracy", "latest": "0.912", "max": "0.915", "min": "0.6"}]},
    },
}
RUNNING = {"conditions": [{"type": "Running", "status": "True"}], "trialsRunning": 2}


def test_submit_creates_and_follows_to_the_optimal_trial(api_server: RunningApiServer, kubeconfig: str) -> None:
    api_server.state.answer("POST", EXPERIMENTS, Answer(201, rendered()))
    path = f"{EXPERIMENTS}/facesim-tune"
    api_server.state.answer(
        "GET", path, Answer(200, _experiment_with(RUNNING)), Answer(200, _experiment_with(SUCCEEDED))
    )
    best = submit_experiment(ExperimentConfig(), kubeconfig=kubeconfig, options=FollowOptions(10, 0.05))
    assert best is not None and best.name == "facesim-tune-7xk2"
    assert best.parameters == {"margin": "0.21", "embedding_size": "128", "learning_rate": "0.0012"}
    assert best.metrics == {"val_accuracy": 0.915}  # the objective's best (maximize: max), not the latest
    (create,) = api_server.state.calls("POST")
    assert create.path == EXPERIMENTS and create.body == rendered()
    assert len(api_server.state.calls("GET", path)) == 2


def test_metrics_are_each_metrics_best_by_its_strategy_and_unavailable_ones_are_left_out() -> None:
    """Katib's observation holds min, max and latest; the objective counts by its best, as Katib
    chose the trial. A metric Katib never collected reads `unavailable`, which is no number."""
    trial = {
        "bestTrialName": "t",
        "observation": {
            "metrics": [
                {"name": "val_accuracy", "latest": "0.80", "max": "0.85", "min": "0.5"},
                {"name": "loss", "latest": "0.4", "max": "0.9", "min": "0.3"},
                {"name": "val_auc", "latest": "unavailable", "max": "unavailable", "min": "unavailable"},
            ]
        },
    }
    maximize = metric_strategies(rendered()["spec"])
    assert maximize["val_accuracy"] == "max" and maximize["loss"] == "min"
    assert _optimal_trial({"currentOptimalTrial": trial}, maximize).metrics == {"val_accuracy": 0.85, "loss": 0.3}
    minimize = metric_strategies({"objective": {"type": "minimize", "objectiveMetricName": "loss"}})
    assert _optimal_trial({"currentOptimalTrial": trial}, minimize).metrics == {"val_accuracy": 0.80, "loss": 0.3}
    assert "unavailable" not in _progress({"currentOptimalTrial": trial}, maximize)


def test_a_failed_experiment_is_a_clear_error(api_server: RunningApiServer, kubeconfig: str) -> None:
    api_server.state.answer("POST", EXPERIMENTS, Answer(201, rendered()))
    failed = {"conditions": [{"type": "Failed", "status": "True", "reason": "ExperimentMaxFailedTrialsReached"}]}
    api_server.state.answer("GET", f"{EXPERIMENTS}/facesim-tune", Answer(200, _experiment_with(failed)))
    with pytest.raises(ClusterError, match="failed; see `kubectl -n facesim describe experiment facesim-tune`"):
        submit_experiment(ExperimentConfig(), kubeconfig=kubeconfig, options=FollowOptions(10, 0.05))


@pytest.mark.parametrize(
    "status, reason, expected",
    [(409, "AlreadyExists", "already exists; delete it"), (403, "Forbidden", "forbidden by RBAC")],
)
def test_api_errors_say_what_to_do(
    api_server: RunningApiServer, kubeconfig: str, status: int, reason: str, expected: str
) -> None:
    api_server.state.answer("POST", EXPERIMENTS, Answer(status, status_body(status, reason, "no")))
    with pytest.raises(ClusterError, match=expected):
        submit_experiment(ExperimentConfig(), wait=False, kubeconfig=kubeconfig)


def test_a_webhook_denial_is_reported_as_such(api_server: RunningApiServer, kubeconfig: str) -> None:
    """Katib's webhook answers 403: the message must name the webhook, not RBAC."""
    denial = 'admission webhook "validator.experiment.katib.kubeflow.org" denied the request: spec.objective ...'
    api_server.state.answer("POST", EXPERIMENTS, Answer(403, status_body(403, "Forbidden", denial)))
    with pytest.raises(ClusterError, match="admission webhook rejected it: .*denied the request") as raised:
        submit_experiment(ExperimentConfig(), wait=False, kubeconfig=kubeconfig)
    assert "RBAC" not in str(raised.value)


@pytest.mark.parametrize("stop", [signal.SIGINT, signal.SIGTERM], ids=["ctrl-c", "sigterm"])
def test_ctrl_c_or_sigterm_deletes_the_experiment(api_server: RunningApiServer, kubeconfig: str, stop) -> None:
    """SIGTERM: what a pipeline step gets when its KFP run is terminated."""
    path = f"{EXPERIMENTS}/facesim-tune"
    api_server.state.answer("POST", EXPERIMENTS, Answer(201, rendered()))
    api_server.state.answer("GET", path, Answer(200, _experiment_with(RUNNING)))
    api_server.state.answer("DELETE", path, Answer(200, status_body(200, "", "deleted")))
    interrupt = threading.Timer(0.5, lambda: os.kill(os.getpid(), stop))
    interrupt.start()
    with pytest.raises(KeyboardInterrupt):
        submit_experiment(ExperimentConfig(), kubeconfig=kubeconfig, options=FollowOptions(10, 0.05))
    interrupt.join()
    assert api_server.state.calls("DELETE", path)
