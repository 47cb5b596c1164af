"""The Katib Experiment: built from kubeflow-katib 0.14 models and run with KatibClient.

Trials are TFJobs (training/tfjob.py) running `python -m facesim.training` with the trial's values
of the search space (tuning/space.py). Katib's CRD accepts any body; its admission webhook does the
validation (the tests re-check its rules: tests/helpers/katib_webhook.py), and a denial reaches the
user through `explain_api_error`. Katib 0.18 (docs/cluster.md) samples `distribution: logUniform`,
which the 0.14 models do not know, so parameters are plain dicts. Katib 0.17 (Kubeflow 1.10) drops
that field and would sample the learning rate uniformly, so for that target a log-scale parameter
is a discrete list of log-spaced values (`LOG_POINTS` of them), which every algorithm honours.
"""

from __future__ import annotations

import math
import sys
import time
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

from kubeflow.katib import models as katib
from kubernetes import client as k8s

from facesim.cluster.client import ClusterError, explain_api_error, sdk_client, sigterm_as_interrupt
from facesim.cluster.resources import EXPERIMENT_NAME_MAX, owner_references, to_manifest
from facesim.cluster.targets import Target
from facesim.cluster.targets import target as target_named
from facesim.cluster.volumes import RUNS_MOUNT
from facesim.contract.metrics_lines import KATIB_METRIC_FILTER
from facesim.training.tfjob import DEFAULT_DATA, TFJOB_CONTAINER, TFJobConfig, tfjob
from facesim.tuning.best import BestParameters, typed_value, write_best_params
from facesim.tuning.space import (
    ALGORITHMS,
    EARLY_STOPPING,
    MEDIAN_STOP_MIN_TRIALS,
    SEARCH_SPACE,
    SearchParameter,
    grid_values,
    median_stop_start,
)

EXPERIMENT_API_VERSION = "kubeflow.org/v1beta1"
# Katib reads these TFJob status conditions with gjson.
SUCCESS_CONDITION = 'status.conditions.#(type=="Succeeded")#|#(status=="True")#'
FAILURE_CONDITION = 'status.conditions.#(type=="Failed")#|#(status=="True")#'
TRIAL_NAME_PARAMETER = "trialName"
MASTER_ROLE_LABEL = {"training.kubeflow.org/job-role": "master"}  # worker 0 of a TFJob without Chief
MAX_FAILED_TRIALS = 3  # failed trials before the Experiment fails (never more than maxTrialCount)
LOG_POINTS = 9  # values of a log-scale parameter on a Katib without logUniform (4 per decade of 1e-4..1e-2)


@dataclass
class ExperimentConfig:
    """A Katib search: objective, algorithm, budget, and the TFJob each trial runs."""

    name: str = "facesim-tune"
    algorithm: str = "tpe"
    objective: str = "val_accuracy"
    maximize: bool = True
    additional_metrics: tuple[str, ...] = ("val_auc", "loss")
    max_trial_count: int = 12
    parallel_trial_count: int = 2
    max_failed_trial_count: int | None = None  # None: MAX_FAILED_TRIALS, at most max_trial_count
    early_stopping: str = "medianstop"
    grid_points: int = 3  # values per continuous parameter with the grid algorithm
    trial_epochs: int = 5
    # `python -m facesim.training` arguments shared by every trial; each trial adds --epochs, --out and
    # its parameters.
    train_args: tuple[str, ...] = ("--data", DEFAULT_DATA, "--steps-per-epoch", "100")
    trial_job: TFJobConfig = field(default_factory=lambda: TFJobConfig(workers=1))
    space: tuple[SearchParameter, ...] = SEARCH_SPACE
    target: Target = field(default_factory=target_named)  # does its Katib sample logUniform?

    def __post_init__(self) -> None:
        if len(self.name) > EXPERIMENT_NAME_MAX:
            raise ValueError(
                f"Experiment name {self.name!r} is longer than {EXPERIMENT_NAME_MAX} characters: its trials' "
                "worker Services (<name>-<8 characters>-worker-<i>) would exceed Kubernetes' 63"
            )
        if self.algorithm not in ALGORITHMS:
            raise ValueError(f"unknown algorithm {self.algorithm!r}; choose one of {', '.join(ALGORITHMS)}")
        if self.early_stopping not in EARLY_STOPPING:
            raise ValueError(f"early stopping must be one of {', '.join(EARLY_STOPPING)}")
        if self.grid_points < 2:
            raise ValueError("grid_points must be at least 2")
        if min(self.max_trial_count, self.parallel_trial_count, self.trial_epochs) < 1:
            raise ValueError("trials, parallel trials and trial epochs must be at least 1")
        if self.parallel_trial_count > self.max_trial_count:
            raise ValueError(
                f"parallel trials ({self.parallel_trial_count}) exceed the trials ({self.max_trial_count})"
            )

    @property
    def namespace(self) -> str:
        return self.trial_job.cluster.namespace

    @property
    def failed_trial_budget(self) -> int:
        """maxFailedTrialCount: Katib refuses one above maxTrialCount (e.g. 3 failures of 2 trials)."""
        budget = MAX_FAILED_TRIALS if self.max_failed_trial_count is None else self.max_failed_trial_count
        return min(budget, self.max_trial_count)


def _parameter(parameter: SearchParameter, config: ExperimentConfig) -> dict[str, Any]:
    """One search parameter as Katib takes it: the same grid as the local tuner (a discrete list),
    else the range, log-uniform where the local tuner samples on a log scale (a discrete list of
    log-spaced values where the target's Katib ignores `distribution`)."""
    spec: dict[str, Any] = {"name": parameter.name, "parameterType": parameter.kind}
    if parameter.kind == "categorical":
        spec["feasibleSpace"] = {"list": list(parameter.values)}
    elif config.algorithm == "grid" or (parameter.log and not config.target.katib_log_uniform):
        points = config.grid_points if config.algorithm == "grid" else LOG_POINTS
        values = grid_values(parameter, points)
        spec.update(parameterType="discrete", feasibleSpace={"list": [str(value) for value in values]})
    else:
        spec["feasibleSpace"] = {"min": str(parameter.low), "max": str(parameter.high)}
        if parameter.log:
            spec["feasibleSpace"]["distribution"] = "logUniform"
    return spec


def _early_stopping(config: ExperimentConfig) -> katib.V1beta1EarlyStoppingSpec | None:
    """medianstop from the same epoch, after as many finished trials, as the local tuner."""
    start = median_stop_start(config.trial_epochs)
    if config.early_stopping == "none" or start is None:
        return None
    settings = {"min_trials_required": MEDIAN_STOP_MIN_TRIALS, "start_step": start}
    return katib.V1beta1EarlyStoppingSpec(
        algorithm_name=config.early_stopping,
        algorithm_settings=[katib.V1beta1EarlyStoppingSetting(name=k, value=str(v)) for k, v in settings.items()],
    )


def _trial_spec(config: ExperimentConfig) -> dict[str, Any]:
    out = f"{RUNS_MOUNT}/tuning/{config.name}/${{trialParameters.{TRIAL_NAME_PARAMETER}}}"
    trial_args = [*config.train_args, "--epochs", str(config.trial_epochs), "--out", out]
    for parameter in config.space:
        trial_args += [parameter.flag, f"${{trialParameters.{parameter.name}}}"]
    spec = to_manifest(tfjob(config.trial_job, train_args=trial_args))
    del spec["metadata"]  # Katib names each trial's TFJob and puts it in the experiment's namespace
    return spec


def experiment(config: ExperimentConfig) -> katib.V1beta1Experiment:
    """The Experiment resource (trials: TFJobs; metrics: worker 0's stdout through Katib's filter)."""
    metrics = (config.objective, *config.additional_metrics)
    strategies = [
        katib.V1beta1MetricStrategy(name=name, value="min" if name == "loss" or name.endswith("_loss") else "max")
        for name in metrics
    ]
    trial_parameters = [
        katib.V1beta1TrialParameterSpec(name=p.name, reference=p.name, description=f"{p.flag} of the trial")
        for p in config.space
    ] + [
        katib.V1beta1TrialParameterSpec(
            name=TRIAL_NAME_PARAMETER,
            reference="${trialSpec.Name}",
            description="the trial's name: its output directory",
        )
    ]
    metadata = k8s.V1ObjectMeta(
        name=config.name, namespace=config.namespace, owner_references=owner_references(config.namespace)
    )
    return katib.V1beta1Experiment(
        api_version=EXPERIMENT_API_VERSION,
        kind="Experiment",
        metadata=metadata,
        spec=katib.V1beta1ExperimentSpec(
            objective=katib.V1beta1ObjectiveSpec(
                type="maximize" if config.maximize else "minimize",
                objective_metric_name=config.objective,
                additional_metric_names=list(config.additional_metrics),
                metric_strategies=strategies,
            ),
            algorithm=katib.V1beta1AlgorithmSpec(algorithm_name=config.algorithm),
            early_stopping=_early_stopping(config),
            parameters=[_parameter(p, config) for p in config.space],
            max_trial_count=config.max_trial_count,
            parallel_trial_count=config.parallel_trial_count,
            max_failed_trial_count=config.failed_trial_budget,
            metrics_collector_spec=katib.V1beta1MetricsCollectorSpec(
                collector=katib.V1beta1CollectorSpec(kind="StdOut"),
                source=katib.V1beta1SourceSpec(filter=katib.V1beta1FilterSpec(metrics_format=[KATIB_METRIC_FILTER])),
            ),
            trial_template=katib.V1beta1TrialTemplate(
                primary_container_name=TFJOB_CONTAINER,
                primary_pod_labels=MASTER_ROLE_LABEL,
                success_condition=SUCCESS_CONDITION,
                failure_condition=FAILURE_CONDITION,
                trial_parameters=trial_parameters,
                trial_spec=_trial_spec(config),
            ),
        ),
    )


# ---- Running it -------------------------------------------------------------------------


@dataclass
class OptimalTrial:
    """Katib's current best trial: its name, parameter values and observed metrics."""

    name: str
    parameters: dict[str, str]
    metrics: dict[str, float]  # each metric's value by its strategy (the objective's best); none unavailable


@dataclass
class FollowOptions:
    timeout: int = 7 * 24 * 3600
    poll_interval: float = 30.0


def _katib_client(kubeconfig: str | None):
    from kubeflow.katib import KatibClient

    return sdk_client(KatibClient, kubeconfig)


def submit_experiment(
    config: ExperimentConfig, wait: bool = True, kubeconfig: str | None = None, options: FollowOptions | None = None
) -> OptimalTrial | None:
    """Create the Experiment; with `wait`, follow it to the end and return the optimal trial.

    Raises ClusterError (message fit for the user) when Katib's webhook or the API refuses it, or
    it fails. Ctrl-C or SIGTERM while following deletes the Experiment (and its trials), then
    re-raises KeyboardInterrupt.
    """
    resource = experiment(config)
    katib_client = _katib_client(kubeconfig)
    namespace, name = config.namespace, config.name
    try:
        katib_client.create_experiment(resource, namespace=namespace)
    except RuntimeError as error:
        raise explain_api_error(error, "create", "Experiment", namespace, name) from None
    print(
        f"Experiment {namespace}/{name} created ({config.algorithm}, {config.max_trial_count} trials)", file=sys.stderr
    )
    if not wait:
        return None
    try:
        with sigterm_as_interrupt():
            return follow_experiment(katib_client, namespace, name, options or FollowOptions())
    except KeyboardInterrupt:
        print(f"cancelled: deleting Experiment {namespace}/{name}", file=sys.stderr)
        katib_client.delete_experiment(name, namespace=namespace)
        raise


def tune_on_cluster(config: ExperimentConfig, out: Path | None = None, kubeconfig: str | None = None) -> BestParameters:
    """Run the Experiment to its end and return its optimal trial (written to OUT/best_params.json
    too when `out` is given): what `facesim tune --backend cluster` and the pipeline's tuning step do.
    Raises ClusterError like `submit_experiment`."""
    optimal = submit_experiment(config, wait=True, kubeconfig=kubeconfig)
    assert optimal is not None  # wait=True follows the Experiment to its optimal trial
    parameters = {name: typed_value(name, text) for name, text in optimal.parameters.items()}
    value = float(optimal.metrics.get(config.objective, math.nan))
    best = BestParameters(config.objective, value, optimal.name, parameters)
    if out is not None:
        write_best_params(out, best)
    return best


def follow_experiment(katib_client, namespace: str, name: str, options: FollowOptions) -> OptimalTrial:
    """Poll the Experiment until it succeeds (returns the optimal trial) or fails (ClusterError)."""
    deadline = time.monotonic() + options.timeout
    last_progress = ""
    while time.monotonic() < deadline:
        try:
            resource = katib_client.get_experiment(name, namespace=namespace)
        except RuntimeError as error:
            raise explain_api_error(error, "get", "Experiment", namespace, name) from None
        status, strategies = resource.get("status") or {}, metric_strategies(resource.get("spec") or {})
        progress = _progress(status, strategies)
        if progress != last_progress:
            print(f"Experiment {name}: {progress}", file=sys.stderr)
            last_progress = progress
        condition = _final_condition(status)
        if condition == "Succeeded":
            return _optimal_trial(status, strategies)
        if condition == "Failed":
            raise ClusterError(
                f"Experiment {namespace}/{name} failed; see `kubectl -n {namespace} describe experiment {name}`"
            )
        time.sleep(options.poll_interval)
    raise ClusterError(f"Experiment {namespace}/{name} did not finish within {options.timeout} s")


def _final_condition(status: dict[str, Any]) -> str | None:
    for condition in status.get("conditions") or []:
        if condition.get("type") in ("Succeeded", "Failed") and condition.get("status") == "True":
            return condition["type"]
    return None


def _progress(status: dict[str, Any], strategies: dict[str, str]) -> str:
    counts = {key: status.get(f"trials{key}", 0) for key in ("Succeeded", "Running", "Failed", "EarlyStopped")}
    text = ", ".join(f"{value} {key.lower()}" for key, value in counts.items())
    best = status.get("currentOptimalTrial") or {}
    if best.get("bestTrialName"):
        text += f"; best so far {best['bestTrialName']} {_metrics(best, strategies)}"
    return text


def metric_strategies(spec: dict[str, Any]) -> dict[str, str]:
    """Which of a metric's observed `min`, `max`, `latest` counts: the Experiment's metricStrategies,
    the objective's best by its type when they leave it out, `latest` for the rest."""
    objective = spec.get("objective") or {}
    strategies = {}
    if objective.get("objectiveMetricName"):
        strategies[objective["objectiveMetricName"]] = "min" if objective.get("type") == "minimize" else "max"
    strategies.update({m["name"]: m["value"] for m in objective.get("metricStrategies") or []})
    return strategies


def _metrics(trial: dict[str, Any], strategies: dict[str, str]) -> dict[str, float]:
    """The trial's metrics as numbers, each by its strategy; those Katib reports `unavailable` (no
    value collected) or not as a finite number are left out."""
    values = {}
    for metric in (trial.get("observation") or {}).get("metrics") or []:
        text = metric.get(strategies.get(metric["name"], "latest"))
        try:
            value = float(text)
        except (TypeError, ValueError):  # None, "", or "unavailable" (Katib's consts.UnavailableMetricValue)
            continue
        if math.isfinite(value):
            values[metric["name"]] = value
    return values


def _optimal_trial(status: dict[str, Any], strategies: dict[str, str]) -> OptimalTrial:
    best = status.get("currentOptimalTrial") or {}
    if not best.get("bestTrialName"):
        raise ClusterError("the Experiment succeeded without a successful trial: check the trials' logs")
    return OptimalTrial(
        name=best["bestTrialName"],
        parameters={a["name"]: a["value"] for a in best.get("parameterAssignments") or []},
        metrics=_metrics(best, strategies),
    )
