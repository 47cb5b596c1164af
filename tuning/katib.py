"""The Katib Experiment: built from kubeflow-katib 0.14 models, checked like Katib's webhook, run with KatibClient.

Trials are TFJobs (training/tfjob.py) running `python -m facesim.training` with the trial's values of the
search space (tuning/space.py). Katib's CRD accepts any body; its admission webhook does the
validation, so `experiment_problems` re-checks the webhook's rules before anything is sent.
"""

from __future__ import annotations

import json
import re
import sys
import time
from dataclasses import dataclass, field
from typing import Any

from kubeflow.katib import models as katib
from kubernetes import client as k8s

from facesim.cluster.client import sdk_client
from facesim.cluster.resources import RUNS_MOUNT, ClusterError, explain_api_error, to_manifest
from facesim.contract.metrics_lines import KATIB_METRIC_FILTER
from facesim.training.tfjob import DEFAULT_DATA, TFJOB_CONTAINER, TFJobConfig, tfjob
from facesim.tuning.space import ALGORITHMS, EARLY_STOPPING, SEARCH_SPACE, SearchParameter

EXPERIMENT_API_VERSION = "kubeflow.org/v1beta1"
KATIB_ALGORITHMS: frozenset[str] = frozenset(
    {*ALGORITHMS, "cmaes", "sobol", "hyperband", "pbt", "enas", "darts"}
)  # Katib's default katib-config suggestions
METRICS_COLLECTORS = frozenset({"StdOut", "File", "TensorFlowEvent", "PrometheusMetric", "Custom", "None"})
# Katib reads these TFJob status conditions with gjson.
SUCCESS_CONDITION = 'status.conditions.#(type=="Succeeded")#|#(status=="True")#'
FAILURE_CONDITION = 'status.conditions.#(type=="Failed")#|#(status=="True")#'
TRIAL_NAME_PARAMETER = "trialName"
# Trial metadata a trialParameter may reference instead of an experiment parameter.
TRIAL_METADATA_REFERENCE = re.compile(
    r"^\$\{trialSpec\.(Name|Namespace|Kind|APIVersion|Annotations\[.+\]|Labels\[.+\])\}$"
)
TRIAL_PARAMETER_USE = re.compile(r"\$\{trialParameters\.([^}]*)\}")
MASTER_ROLE_LABEL = {"training.kubeflow.org/job-role": "master"}  # worker 0 of a TFJob without Chief


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
    max_failed_trial_count: int = 3
    early_stopping: str = "medianstop"
    grid_points: int = 3  # values per continuous parameter with the grid algorithm
    # `python -m facesim.training` arguments shared by every trial; each trial adds --out and its parameters.
    train_args: tuple[str, ...] = ("--data", DEFAULT_DATA, "--epochs", "5", "--steps-per-epoch", "100")
    trial_job: TFJobConfig = field(default_factory=lambda: TFJobConfig(workers=1))
    space: tuple[SearchParameter, ...] = SEARCH_SPACE

    def __post_init__(self) -> None:
        if self.algorithm not in ALGORITHMS:
            raise ValueError(f"unknown algorithm {self.algorithm!r}; choose one of {', '.join(ALGORITHMS)}")
        if self.early_stopping not in EARLY_STOPPING:
            raise ValueError(f"early stopping must be one of {', '.join(EARLY_STOPPING)}")
        if self.grid_points < 2:
            raise ValueError("grid_points must be at least 2")

    @property
    def namespace(self) -> str:
        return self.trial_job.cluster.namespace


def _feasible_space(parameter: SearchParameter, config: ExperimentConfig) -> katib.V1beta1FeasibleSpace:
    if parameter.kind == "categorical":
        return katib.V1beta1FeasibleSpace(list=list(parameter.values))
    step = None
    if config.algorithm == "grid":  # Katib's grid needs a step for continuous parameters
        step = str((parameter.high - parameter.low) / (config.grid_points - 1))
    return katib.V1beta1FeasibleSpace(min=str(parameter.low), max=str(parameter.high), step=step)


def _trial_spec(config: ExperimentConfig) -> dict[str, Any]:
    out = f"{RUNS_MOUNT}/tuning/{config.name}/${{trialParameters.{TRIAL_NAME_PARAMETER}}}"
    trial_args = [*config.train_args, "--out", out]
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
    early_stopping = None
    if config.early_stopping != "none":
        early_stopping = katib.V1beta1EarlyStoppingSpec(
            algorithm_name=config.early_stopping,
            algorithm_settings=[katib.V1beta1EarlyStoppingSetting(name="min_trials_required", value="3")],
        )
    return katib.V1beta1Experiment(
        api_version=EXPERIMENT_API_VERSION,
        kind="Experiment",
        metadata=k8s.V1ObjectMeta(name=config.name, namespace=config.namespace),
        spec=katib.V1beta1ExperimentSpec(
            objective=katib.V1beta1ObjectiveSpec(
                type="maximize" if config.maximize else "minimize",
                objective_metric_name=config.objective,
                additional_metric_names=list(config.additional_metrics),
                metric_strategies=strategies,
            ),
            algorithm=katib.V1beta1AlgorithmSpec(algorithm_name=config.algorithm),
            early_stopping=early_stopping,
            parameters=[
                katib.V1beta1ParameterSpec(
                    name=p.name, parameter_type=p.kind, feasible_space=_feasible_space(p, config)
                )
                for p in config.space
            ],
            max_trial_count=config.max_trial_count,
            parallel_trial_count=config.parallel_trial_count,
            max_failed_trial_count=config.max_failed_trial_count,
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


# ---- Katib's admission webhook rules (katib pkg/webhook/v1beta1/experiment/validator) ----

DNS_1035_LABEL = re.compile(r"^[a-z]([-a-z0-9]*[a-z0-9])?$")


def experiment_problems(resource: dict[str, Any]) -> list[str]:
    """Why Katib's webhook would reject this Experiment (rendered dict); empty when it would accept it."""
    spec = resource.get("spec") or {}
    name = (resource.get("metadata") or {}).get("name", "")
    problems = (
        [] if DNS_1035_LABEL.match(name) and len(name) <= 63 else [f"metadata.name {name!r} is not a DNS-1035 label"]
    )
    problems += _count_problems(spec)
    problems += _objective_problems(spec.get("objective"))
    algorithm = (spec.get("algorithm") or {}).get("algorithmName")
    if algorithm not in KATIB_ALGORITHMS:
        problems.append(f"spec.algorithm.algorithmName {algorithm!r} is not a Katib algorithm")
    early = spec.get("earlyStopping")
    if early is not None and early.get("algorithmName") != "medianstop":
        problems.append(f"spec.earlyStopping.algorithmName {early.get('algorithmName')!r} is unknown")
    parameters = spec.get("parameters") or []
    problems += _parameter_problems(parameters, algorithm)
    problems += _collector_problems(spec.get("metricsCollectorSpec") or {"collector": {"kind": "StdOut"}})
    problems += _template_problems(spec.get("trialTemplate"), {p.get("name") for p in parameters})
    return problems


def _count_problems(spec: dict[str, Any]) -> list[str]:
    found = []
    max_trials, parallel = spec.get("maxTrialCount"), spec.get("parallelTrialCount", 1)
    failed = spec.get("maxFailedTrialCount", 0)
    if max_trials is not None and max_trials <= 0:
        found.append("spec.maxTrialCount must be greater than 0")
    if parallel <= 0:
        found.append("spec.parallelTrialCount must be greater than 0")
    if failed < 0:
        found.append("spec.maxFailedTrialCount must be 0 or more")
    if max_trials is not None and (parallel > max_trials or failed > max_trials):
        found.append("spec.parallelTrialCount and spec.maxFailedTrialCount must not exceed spec.maxTrialCount")
    return found


def _objective_problems(objective: dict[str, Any] | None) -> list[str]:
    if not objective:
        return ["spec.objective must be set"]
    found = []
    if objective.get("type") not in ("minimize", "maximize"):
        found.append("spec.objective.type must be minimize or maximize")
    metric = objective.get("objectiveMetricName")
    if not metric:
        found.append("spec.objective.objectiveMetricName must be set")
    if metric in (objective.get("additionalMetricNames") or []):
        found.append("spec.objective.additionalMetricNames must not contain the objective metric")
    return found


def _is_number(text: Any) -> bool:
    try:
        float(text)
    except (TypeError, ValueError):
        return False
    return True


def _parameter_problems(parameters: list[dict[str, Any]], algorithm: str | None) -> list[str]:
    if not parameters:
        return ["spec.parameters must list at least one parameter"]
    found = []
    names = [p.get("name") for p in parameters]
    if len(set(names)) != len(names):
        found.append("spec.parameters names must be unique")
    for parameter in parameters:
        where = f"spec.parameters[{parameter.get('name')}]"
        kind, space = parameter.get("parameterType"), parameter.get("feasibleSpace") or {}
        if kind in ("int", "double"):
            low, high = space.get("min"), space.get("max")
            if space.get("list"):
                found.append(f"{where}: feasibleSpace.list is for categorical/discrete parameters")
            if not (_is_number(low) and _is_number(high)) or float(low) >= float(high):
                found.append(f"{where}: feasibleSpace needs numeric min < max")
            if algorithm == "grid" and kind == "double" and not _is_number(space.get("step")):
                found.append(f"{where}: the grid algorithm needs feasibleSpace.step for a double parameter")
        elif kind in ("categorical", "discrete"):
            if not space.get("list") or "min" in space or "max" in space:
                found.append(f"{where}: feasibleSpace needs a non-empty list and no min/max")
        else:
            found.append(f"{where}: parameterType {kind!r} is not int, double, categorical or discrete")
    return found


def _collector_problems(collector_spec: dict[str, Any]) -> list[str]:
    kind = (collector_spec.get("collector") or {}).get("kind")
    if kind not in METRICS_COLLECTORS:
        return [f"metricsCollectorSpec.collector.kind {kind!r} is unknown"]
    source = collector_spec.get("source") or {}
    found = []
    if kind == "StdOut" and "fileSystemPath" in source:
        found.append("a StdOut metrics collector takes no source.fileSystemPath")
    for pattern in (source.get("filter") or {}).get("metricsFormat") or []:
        try:
            groups = re.compile(pattern).groups
        except re.error as error:
            found.append(f"metrics filter {pattern!r} is not a regular expression: {error}")
            continue
        if groups < 2:
            found.append(f"metrics filter {pattern!r} needs two groups (name and value)")
    return found


def _container_names(node: Any) -> set[str]:
    """Names of every container in the pod templates inside a trial spec."""
    if isinstance(node, list):
        return set().union(*(_container_names(item) for item in node)) if node else set()
    if not isinstance(node, dict):
        return set()
    names = {c.get("name") for c in node.get("containers", []) if isinstance(c, dict)}
    return names | set().union(*(_container_names(v) for k, v in node.items() if k != "containers"))


def _template_problems(template: dict[str, Any] | None, parameter_names: set[str]) -> list[str]:
    if not template:
        return ["spec.trialTemplate must be set"]
    trial_spec = template.get("trialSpec")
    if (trial_spec is None) == (template.get("configMap") is None):
        return ["spec.trialTemplate needs exactly one of trialSpec and configMap"]
    found = []
    trial_parameters = template.get("trialParameters") or []
    defined = [p.get("name") for p in trial_parameters]
    if not defined or len(set(defined)) != len(defined):
        found.append("spec.trialTemplate.trialParameters must be non-empty with unique names")
    for trial_parameter in trial_parameters:
        reference = trial_parameter.get("reference", "")
        if reference not in parameter_names and not TRIAL_METADATA_REFERENCE.match(reference):
            found.append(
                f"trialParameter {trial_parameter.get('name')} references {reference!r}, "
                "which is neither an experiment parameter nor trial metadata"
            )
    if trial_spec is None:
        return found
    used = set(TRIAL_PARAMETER_USE.findall(json.dumps(trial_spec)))
    found += [f"${{trialParameters.{n}}} is used in trialSpec but not defined" for n in sorted(used - set(defined))]
    found += [f"trialParameter {n} is defined but not used in trialSpec" for n in sorted(set(defined) - used)]
    metadata = trial_spec.get("metadata") or {}
    if "name" in metadata or "namespace" in metadata:
        found.append("trialSpec.metadata.name and .namespace must be omitted (Katib sets them)")
    if not trial_spec.get("apiVersion") or not trial_spec.get("kind"):
        found.append("trialSpec needs apiVersion and kind")
    primary = template.get("primaryContainerName")
    if not primary or primary not in _container_names(trial_spec):
        found.append(f"primaryContainerName {primary!r} is not a container of the trialSpec")
    if trial_spec.get("kind") != "Job" and not (template.get("successCondition") and template.get("failureCondition")):
        found.append(f"a {trial_spec.get('kind')} trial needs successCondition and failureCondition")
    return found


# ---- Running it -------------------------------------------------------------------------


@dataclass
class OptimalTrial:
    """Katib's current best trial: its name, parameter values and observed metrics."""

    name: str
    parameters: dict[str, str]
    metrics: dict[str, str]


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

    Raises ClusterError (message fit for the user) when Katib's rules reject it, the API refuses
    it, or it fails. Ctrl-C while following deletes the Experiment (and its trials), then re-raises.
    """
    resource = experiment(config)
    problems = experiment_problems(to_manifest(resource))
    if problems:
        raise ClusterError("Katib would reject this Experiment: " + "; ".join(problems))
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
        return follow_experiment(katib_client, namespace, name, options or FollowOptions())
    except KeyboardInterrupt:
        print(f"cancelled: deleting Experiment {namespace}/{name}", file=sys.stderr)
        katib_client.delete_experiment(name, namespace=namespace)
        raise


def follow_experiment(katib_client, namespace: str, name: str, options: FollowOptions) -> OptimalTrial:
    """Poll the Experiment until it succeeds (returns the optimal trial) or fails (ClusterError)."""
    deadline = time.monotonic() + options.timeout
    last_progress = ""
    while time.monotonic() < deadline:
        try:
            status = katib_client.get_experiment(name, namespace=namespace).get("status") or {}
        except RuntimeError as error:
            raise explain_api_error(error, "get", "Experiment", namespace, name) from None
        progress = _progress(status)
        if progress != last_progress:
            print(f"Experiment {name}: {progress}", file=sys.stderr)
            last_progress = progress
        condition = _final_condition(status)
        if condition == "Succeeded":
            return _optimal_trial(status)
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


def _progress(status: dict[str, Any]) -> str:
    counts = {key: status.get(f"trials{key}", 0) for key in ("Succeeded", "Running", "Failed", "EarlyStopped")}
    text = ", ".join(f"{value} {key.lower()}" for key, value in counts.items())
    best = status.get("currentOptimalTrial") or {}
    if best.get("bestTrialName"):
        text += f"; best so far {best['bestTrialName']} {_metrics(best)}"
    return text


def _metrics(trial: dict[str, Any]) -> dict[str, str]:
    return {m["name"]: m.get("latest", m.get("max", "")) for m in (trial.get("observation") or {}).get("metrics") or []}


def _optimal_trial(status: dict[str, Any]) -> OptimalTrial:
    best = status.get("currentOptimalTrial") or {}
    if not best.get("bestTrialName"):
        raise ClusterError("the Experiment succeeded without a successful trial: check the trials' logs")
    return OptimalTrial(
        name=best["bestTrialName"],
        parameters={a["name"]: a["value"] for a in best.get("parameterAssignments") or []},
        metrics=_metrics(best),
    )
