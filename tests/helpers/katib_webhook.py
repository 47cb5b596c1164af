"""Katib's admission webhook rules (katib pkg/webhook/v1beta1/experiment/validator, v0.18), re-checked here.

Katib's Experiment CRD preserves unknown fields: a cluster rejects a bad Experiment in the webhook,
not in the schema. The tests run every rendered Experiment through these rules (and show that
broken ones fail); on a cluster the webhook itself answers, and the launchers report its denial.
"""

from __future__ import annotations

import json
import re
from typing import Any

from facesim.tuning.space import ALGORITHMS

KATIB_ALGORITHMS: frozenset[str] = frozenset(
    {*ALGORITHMS, "cmaes", "sobol", "hyperband", "pbt", "enas", "darts"}
)  # Katib's default katib-config suggestions
METRICS_COLLECTORS = frozenset({"StdOut", "File", "TensorFlowEvent", "PrometheusMetric", "Custom", "None"})
DISTRIBUTIONS = frozenset({"uniform", "logUniform", "normal", "logNormal"})  # Katib 0.18+
# Trial metadata a trialParameter may reference instead of an experiment parameter.
TRIAL_METADATA_REFERENCE = re.compile(
    r"^\$\{trialSpec\.(Name|Namespace|Kind|APIVersion|Annotations\[.+\]|Labels\[.+\])\}$"
)
TRIAL_PARAMETER_USE = re.compile(r"\$\{trialParameters\.([^}]*)\}")
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
        if space.get("distribution", "uniform") not in DISTRIBUTIONS:
            found.append(f"{where}: feasibleSpace.distribution {space['distribution']!r} is not supported")
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
            if kind == "discrete" and not all(_is_number(value) for value in space.get("list") or []):
                found.append(f"{where}: a discrete parameter lists numbers")
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
