"""A Katib (v1beta1) Experiment run here: trials are TFJobs emulated as in emulate_tfjob.

What Katib does, and so what this does (kubeflow/katib pkg/controller.v1beta1, pkg/webhook,
pkg/metricscollector):
- each trial is named `<experiment>-<8 random characters>`; its trialSpec gets every
  `${trialParameters.NAME}` replaced by the parameter it references (or `${trialSpec.Name}` etc.);
- the StdOut collector wraps the primary container (primaryContainerName in the pod matching
  primaryPodLabels) as `sh -c "<command and args joined by spaces> 1>FILE 2>&1"`, and parses FILE:
  a line is read only if it contains a metric name; its first word is its timestamp when it
  parses as RFC 3339 (else the zero time); every filter match (name, value) of a known metric
  is recorded, the value as text (`loss=nan` records an empty value);
- observation per metric: min and max over the values that parse as numbers, latest = the one with
  the newest timestamp (with equal timestamps, the order Katib's database returns them in);
  no objective value: the trial's metrics are unavailable (it counts as failed);
- the objective value is the one its metricStrategy picks (min/max, else latest); the optimal trial
  is the best numeric objective (a non-numeric one wins outright, as in Katib);
- the Experiment succeeds at the goal, at maxTrialCount completed trials or when the suggestions
  run out, and fails when failed + metrics-unavailable trials reach maxFailedTrialCount.
Approximated: suggestions are random (any algorithm but grid) or a grid walk; early stopping is
not emulated.
"""

from __future__ import annotations

import itertools
import json
import random
import re
import string
import threading
import time
from collections.abc import Iterator
from dataclasses import dataclass, field
from datetime import datetime
from typing import Any

from facesim.emulator.pods import Cluster, EmulationError
from facesim.emulator.tfjob import JobOutcome, TFJobEmulation

DEFAULT_FILTER = r"([\w|-]+)\s*=\s*([+-]?\d*(\.\d+)?([Ee][+-]?\d+)?)"  # katib pkg/metricscollector/v1beta1/common
ZERO_TIME = "0001-01-01T00:00:00Z"
UNAVAILABLE = "unavailable"
RFC3339 = re.compile(r"^\d{4}-\d{2}-\d{2}T\d{2}:\d{2}:\d{2}(\.\d{1,9})?(Z|[+-]\d{2}:\d{2})$")
MASTER_LABEL = {"training.kubeflow.org/job-role": "master"}
POLL_S = 0.5


@dataclass(frozen=True)
class MetricLog:
    timestamp: str
    name: str
    value: str


def _is_rfc3339(text: str) -> bool:
    if not RFC3339.match(text):
        return False
    try:
        datetime.fromisoformat(re.sub(r"\.(\d{1,6})\d*", r".\1", text).replace("Z", "+00:00"))
    except ValueError:
        return False
    return True


def collect_metrics(lines: list[str], metrics: list[str], filters: list[str]) -> list[MetricLog]:
    """What Katib's StdOut collector reports from a log (objective = metrics[0])."""
    patterns = [re.compile(f, re.ASCII) for f in (filters or [DEFAULT_FILTER])]  # Go's \d, \w, \s are ASCII
    found: list[MetricLog] = []
    for line in lines:
        if not any(name in line for name in metrics):
            continue
        head, space, _ = line.partition(" ")
        timestamp = head if space and _is_rfc3339(head) else ZERO_TIME
        for pattern in patterns:
            for match in pattern.finditer(line):
                if pattern.groups < 2:
                    continue
                name, value = (match.group(1) or "").strip(), (match.group(2) or "").strip()
                if name in metrics:
                    found.append(MetricLog(timestamp, name, value))
    if not any(log.name == metrics[0] for log in found):
        return [MetricLog(ZERO_TIME, metrics[0], UNAVAILABLE)]
    return found


def _number(text: str) -> float | None:
    try:
        return float(text)
    except ValueError:
        return None


def _instant(timestamp: str) -> datetime:
    return datetime.fromisoformat(re.sub(r"\.(\d{1,6})\d*", r".\1", timestamp).replace("Z", "+00:00"))


def observation(logs: list[MetricLog], names: list[str]) -> dict[str, dict[str, str]]:
    """Katib's trial observation: min, max and latest of each metric ("unavailable" if none)."""
    result = {n: {"min": UNAVAILABLE, "max": UNAVAILABLE, "latest": UNAVAILABLE} for n in names}
    newest: dict[str, datetime] = {}
    for log in logs:
        metric = result.get(log.name)
        if metric is None:
            continue
        value = _number(log.value)
        if value is not None:
            if metric["min"] == UNAVAILABLE:
                metric["min"] = metric["max"] = log.value
            elif value < float(metric["min"]):
                metric["min"] = log.value
            elif value > float(metric["max"]):
                metric["max"] = log.value
        when = _instant(log.timestamp)
        if log.name not in newest or not newest[log.name] > when:
            newest[log.name] = when
            metric["latest"] = log.value
    return result


def objective_value(metrics: dict[str, dict[str, str]], name: str, strategy: str) -> str:
    metric = metrics.get(name)
    if metric is None:
        return UNAVAILABLE
    if strategy in ("min", "max") and metric[strategy] != UNAVAILABLE:
        return metric[strategy]
    return metric["latest"]


# ---- suggestions ---------------------------------------------------------------------------


def _grid_values(parameter: dict[str, Any]) -> list[str]:
    space, kind = parameter.get("feasibleSpace") or {}, parameter["parameterType"]
    if kind in ("categorical", "discrete"):
        return [str(v) for v in space["list"]]
    low, high = float(space["min"]), float(space["max"])
    step = float(space.get("step") or 1)
    count = round((high - low) / step) + 1
    values = [low + i * step for i in range(count) if low + i * step <= high + 1e-12]
    return [str(int(v)) if kind == "int" else repr(round(v, 12)) for v in values]


def _random_value(parameter: dict[str, Any], rng: random.Random) -> str:
    space, kind = parameter.get("feasibleSpace") or {}, parameter["parameterType"]
    if kind in ("categorical", "discrete"):
        return str(rng.choice(space["list"]))
    if kind == "int":
        return str(rng.randint(int(space["min"]), int(space["max"])))
    return repr(rng.uniform(float(space["min"]), float(space["max"])))


def suggestions(spec: dict[str, Any], rng: random.Random) -> Iterator[dict[str, str]]:
    """Parameter assignments: a grid walk for `grid`, random draws for any other algorithm."""
    parameters = spec["parameters"]
    if spec["algorithm"]["algorithmName"] == "grid":
        for values in itertools.product(*(_grid_values(p) for p in parameters)):
            yield {p["name"]: v for p, v in zip(parameters, values, strict=True)}
        return
    while True:
        yield {p["name"]: _random_value(p, rng) for p in parameters}


# ---- trials --------------------------------------------------------------------------------


@dataclass
class Trial:
    name: str
    assignments: dict[str, str]
    status: str = "Running"  # Succeeded, Failed, MetricsUnavailable
    metrics: dict[str, dict[str, str]] = field(default_factory=dict)
    objective: str = UNAVAILABLE
    reason: str = ""


def trial_job(template: dict[str, Any], trial: Trial, namespace: str) -> dict[str, Any]:
    """The trial's TFJob: the trialSpec with its trialParameters replaced, named after the trial."""
    meta = {
        "Name": trial.name,
        "Namespace": namespace,
        "Kind": template["trialSpec"].get("kind", ""),
        "APIVersion": template["trialSpec"].get("apiVersion", ""),
    }
    text = json.dumps(template["trialSpec"])
    for parameter in template.get("trialParameters") or []:
        reference = parameter["reference"]
        if reference in trial.assignments:
            value = trial.assignments[reference]
        else:
            found = re.fullmatch(r"\$\{trialSpec\.(\w+)\}", reference)
            if not found or found.group(1) not in meta:
                raise EmulationError(f"trialParameter {parameter['name']}: reference {reference!r} is not emulated")
            value = meta[found.group(1)]
        text = text.replace("${trialParameters." + parameter["name"] + "}", value)
    left = re.findall(r"\$\{trialParameters\.[^}]*\}", text)
    if left:
        raise EmulationError(f"trialSpec uses undefined trial parameters: {', '.join(sorted(set(left)))}")
    job = json.loads(text)
    job["metadata"] = {**(job.get("metadata") or {}), "name": trial.name, "namespace": namespace}
    return job


def stdout_collector_hook(primary_labels: dict[str, str], primary_container: str):
    """Katib's webhook rewrite of the primary container: `sh -c "<command args> 1>FILE 2>&1"` (the
    pipe to the emulator stands for FILE)."""

    def hook(labels: dict[str, str], container: dict[str, Any]) -> dict[str, Any]:
        if container["name"] != primary_container or any(labels.get(k) != v for k, v in primary_labels.items()):
            return container
        argv = [*(container.get("command") or []), *(container.get("args") or [])]
        return {**container, "command": ["sh", "-c"], "args": [" ".join(argv) + " 2>&1"]}

    return hook


@dataclass
class ExperimentEmulation:
    experiment: dict[str, Any]
    cluster: Cluster
    stop_trials: threading.Event = field(default_factory=threading.Event)  # set when the Experiment ends
    trials: list[Trial] = field(default_factory=list)
    threads: list[threading.Thread] = field(default_factory=list)

    def __post_init__(self) -> None:
        self.name = self.experiment["metadata"]["name"]
        self.namespace = self.experiment["metadata"].get("namespace", "default")
        self.spec = self.experiment["spec"]
        objective = self.spec["objective"]
        self.metric_names = [objective["objectiveMetricName"], *(objective.get("additionalMetricNames") or [])]
        strategies = {s["name"]: s["value"] for s in objective.get("metricStrategies") or []}
        self.strategy = strategies.get(
            objective["objectiveMetricName"], "max" if objective["type"] == "maximize" else "min"
        )
        collector = self.spec.get("metricsCollectorSpec") or {"collector": {"kind": "StdOut"}}
        if collector["collector"]["kind"] != "StdOut":
            raise EmulationError(f"Experiment {self.name}: only the StdOut metrics collector is emulated")
        self.filters = ((collector.get("source") or {}).get("filter") or {}).get("metricsFormat") or []
        self.rng = random.Random(self.name)

    def _new_trial(self, assignments: dict[str, str]) -> Trial:
        suffix = "".join(self.rng.choice(string.ascii_lowercase + string.digits) for _ in range(8))
        return Trial(f"{self.name}-{suffix}", assignments)

    def _run_trial(self, trial: Trial, deadline: float) -> None:
        template = self.spec["trialTemplate"]
        job = trial_job(template, trial, self.namespace)
        if job.get("kind") != "TFJob":
            raise EmulationError(f"trial kind {job.get('kind')}: the emulator runs TFJob trials")
        hook = stdout_collector_hook(template.get("primaryPodLabels") or MASTER_LABEL, template["primaryContainerName"])
        emulation = TFJobEmulation(job, self.cluster, hook, self.stop_trials)
        outcome = emulation.run(deadline)
        self._record(trial, outcome, template)

    def _record(self, trial: Trial, outcome: JobOutcome, template: dict[str, Any]) -> None:
        primary = template.get("primaryPodLabels") or MASTER_LABEL
        pods = [n for n, labels in outcome.labels.items() if all(labels.get(k) == v for k, v in primary.items())]
        lines = (
            outcome.logs[pods[0]].read_text(errors="replace").splitlines() if pods and pods[0] in outcome.logs else []
        )
        logs = collect_metrics(lines, self.metric_names, self.filters)
        if any(log.timestamp == ZERO_TIME for log in logs if log.value != UNAVAILABLE):
            self.cluster.echo(
                f"trial {trial.name}: metric lines without an RFC 3339 timestamp: Katib orders them by "
                "its database's whim, so `latest` is not reliable"
            )
        trial.metrics = observation(logs, self.metric_names)
        trial.objective = objective_value(trial.metrics, self.metric_names[0], self.strategy)
        trial.reason = outcome.reason
        if outcome.reason == "stopped":
            trial.status = "Killed"
        elif not outcome.succeeded:
            trial.status = "Failed"
        else:
            trial.status = "Succeeded" if trial.objective != UNAVAILABLE else "MetricsUnavailable"
        self.cluster.echo(f"trial {trial.name} {trial.status}: {_describe(trial)}")

    def run(self, deadline: float) -> bool:
        """Run trials until the Experiment ends; True when it Succeeded."""
        algorithm = self.spec["algorithm"]["algorithmName"]
        if algorithm not in ("random", "grid"):
            self.cluster.echo(f"Experiment {self.name}: algorithm {algorithm} is approximated by random suggestions")
        if self.spec.get("earlyStopping"):
            self.cluster.echo(f"Experiment {self.name}: early stopping is not emulated")
        source = suggestions(self.spec, self.rng)
        parallel = int(self.spec.get("parallelTrialCount", 1))
        max_trials = self.spec.get("maxTrialCount")
        active: set[str] = set()
        errors: list[BaseException] = []
        exhausted, verdict = False, None
        try:
            while verdict is None:
                while (
                    not exhausted and len(active) < parallel and (max_trials is None or len(self.trials) < max_trials)
                ):
                    assignments = next(source, None)
                    if assignments is None:
                        exhausted = True
                        break
                    active.add(self._start_trial(assignments, deadline, errors).name)
                time.sleep(POLL_S)
                for trial in self.trials:
                    if trial.status != "Running":
                        active.discard(trial.name)
                if errors:
                    raise errors[0]
                verdict = self._condition(exhausted and not active, deadline)
                if self.cluster.cancel.is_set():
                    verdict = (False, "stopped")
        finally:
            self.stop_trials.set()  # the Experiment ended (or was interrupted): running trials are stopped
            for thread in self.threads:
                thread.join()
        succeeded, reason = verdict
        self._report(succeeded, reason)
        return succeeded

    def _start_trial(self, assignments: dict[str, str], deadline: float, errors: list[BaseException]) -> Trial:
        trial = self._new_trial(assignments)
        self.trials.append(trial)
        self.cluster.echo(f"trial {trial.name} created: " + " ".join(f"{k}={v}" for k, v in assignments.items()))
        thread = threading.Thread(target=self._guarded, args=(trial, deadline, errors), daemon=True)
        self.threads.append(thread)
        thread.start()
        return trial

    def _guarded(self, trial: Trial, deadline: float, errors: list[BaseException]) -> None:
        try:
            self._run_trial(trial, deadline)
        except BaseException as error:  # noqa: BLE001 - any failure, reported by the main loop
            trial.status, trial.reason = "Failed", str(error)
            errors.append(error)

    def _condition(self, suggestions_done: bool, deadline: float) -> tuple[bool, str] | None:
        """Katib's UpdateExperimentStatusCondition over the finished trials."""
        done = [t for t in self.trials if t.status != "Running"]
        failed = sum(t.status in ("Failed", "MetricsUnavailable") for t in done)
        goal = self.spec["objective"].get("goal")
        best = self.optimal_trial()
        if goal is not None and best is not None and (value := _number(best.objective)) is not None:
            maximize = self.spec["objective"]["type"] == "maximize"
            if (value >= float(goal)) if maximize else (value <= float(goal)):
                return True, "the objective goal was reached"
        max_failed = self.spec.get("maxFailedTrialCount")
        if max_failed is not None and failed and failed >= int(max_failed):
            return False, f"{failed} trials failed (maxFailedTrialCount {max_failed})"
        max_trials = self.spec.get("maxTrialCount")
        if max_trials is not None and len(done) >= int(max_trials):
            return True, f"maxTrialCount ({max_trials}) trials completed"
        if suggestions_done:
            return True, "the suggestions ran out"
        if time.monotonic() > deadline:
            return False, "the emulation's --timeout passed"
        return None

    def optimal_trial(self) -> Trial | None:
        """Katib's choice: the best numeric objective; a non-numeric one is taken as it comes."""
        best, best_value = None, None
        maximize = self.spec["objective"]["type"] == "maximize"
        for trial in self.trials:
            if trial.status == "Running" or trial.objective == UNAVAILABLE:
                continue
            value = _number(trial.objective)
            if value is None:
                best = trial
                continue
            if best_value is None or (value > best_value if maximize else value < best_value):
                best, best_value = trial, value
        return best

    def _report(self, succeeded: bool, reason: str) -> None:
        counts = {
            s: sum(t.status == s for t in self.trials) for s in ("Succeeded", "Failed", "MetricsUnavailable", "Killed")
        }
        verdict = "Succeeded" if succeeded else "Failed"
        self.cluster.echo(
            f"Experiment {self.namespace}/{self.name} {verdict} ({reason}): "
            + ", ".join(f"{v} {k}" for k, v in counts.items())
        )
        best = self.optimal_trial()
        if best is None:
            self.cluster.echo("optimal trial: none (no trial reported the objective)")
            return
        self.cluster.echo(f"optimal trial: {best.name} {_describe(best)}")


def _describe(trial: Trial) -> str:
    parameters = " ".join(f"{k}={v}" for k, v in trial.assignments.items())
    metrics = "; ".join(f"{n} latest={m['latest']} min={m['min']} max={m['max']}" for n, m in trial.metrics.items())
    return f"parameters {parameters}; observation {metrics or 'none'}" + (
        f" ({trial.reason})" if trial.status == "Failed" else ""
    )
