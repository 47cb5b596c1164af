"""A TFJob run here as the Training Operator (v1.9) would run it on a cluster.

What the operator does, and so what this does (pkg/controller.v1/tensorflow in kubeflow/training-operator):
- one pod per replica, named `<job>-<type>-<i>` (type lower-case), reachable at the Service name
  `<job>-<type>-<i>.<namespace>.svc` (the cluster spec's addresses carry no cluster domain);
- TF_CONFIG `{"cluster": {type: ["<name>.<ns>.svc:<port>", ...]}, "task": {"type", "index"},
  "environment": "cloud"}` added to the container named `tensorflow` only, and only when the job
  has more than one replica; the port is the `tfjob-port` container port, else 2222;
- label `training.kubeflow.org/job-role: master` on the Chief/Master, else on worker 0;
- success: the Chief/Master succeeds, or with no Chief, worker 0 succeeds; a failing replica
  restarts (OnFailure/Always, ExitCode for codes >= 128) until the job's restarts reach
  runPolicy.backoffLimit, then the job fails; with restartPolicy Never a failure fails the job.
Approximated: restarts wait 1 s (the kubelet backs off 10 s, 20 s, ...); when the job ends, every
pod still running is stopped whatever cleanPodPolicy says.
"""

from __future__ import annotations

import copy
import json
import threading
import time
from collections.abc import Callable
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

from facesim.emulator.pods import Cluster, EmulationError, PodSpec, RunningPod
from facesim.emulator.template import pod_spec_of, single_container

TF_CONTAINER = "tensorflow"
TF_PORT_NAME = "tfjob-port"
TF_DEFAULT_PORT = 2222
ROLE_LABEL = "training.kubeflow.org/job-role"
REPLICA_TYPES = ("Chief", "Master", "PS", "Worker", "Evaluator")
RESTART_DELAY_S = 1.0
POLL_S = 0.2


@dataclass
class Replica:
    job: str
    kind: str  # Worker, Chief, ...
    index: int
    template: dict[str, Any]
    restart_policy: str

    @property
    def name(self) -> str:
        return f"{self.job}-{self.kind.lower()}-{self.index}".replace("/", "-")


@dataclass
class JobOutcome:
    succeeded: bool
    reason: str
    logs: dict[str, Path] = field(default_factory=dict)  # pod name -> log of its last attempt
    labels: dict[str, dict[str, str]] = field(default_factory=dict)  # pod name -> labels


def replicas_of(job: dict[str, Any]) -> list[Replica]:
    name = job["metadata"]["name"]
    specs = (job.get("spec") or {}).get("tfReplicaSpecs") or {}
    if not specs:
        raise EmulationError(f"TFJob {name} has no spec.tfReplicaSpecs")
    unknown = set(specs) - set(REPLICA_TYPES)
    if unknown:
        raise EmulationError(f"TFJob {name}: unknown replica types {sorted(unknown)}")
    return [
        Replica(name, kind, i, spec["template"], spec.get("restartPolicy", "Never"))
        for kind, spec in specs.items()
        for i in range(int(spec.get("replicas", 1)))
    ]


def _port(replica: Replica) -> int:
    for container in replica.template["spec"]["containers"]:
        if container["name"] == TF_CONTAINER:
            for port in container.get("ports") or []:
                if port.get("name") == TF_PORT_NAME:
                    return int(port["containerPort"])
    return TF_DEFAULT_PORT


def service_name(replica: Replica, namespace: str) -> str:
    return f"{replica.name}.{namespace}.svc"


def tf_config(replicas: list[Replica], replica: Replica, namespace: str) -> str:
    cluster: dict[str, list[str]] = {}
    for other in replicas:
        cluster.setdefault(other.kind.lower(), []).append(f"{service_name(other, namespace)}:{_port(other)}")
    task = {"type": replica.kind.lower(), "index": replica.index}
    return json.dumps({"cluster": cluster, "task": task, "environment": "cloud"}, separators=(",", ":"))


def is_chief(replicas: list[Replica], replica: Replica) -> bool:
    if any(r.kind in ("Chief", "Master") for r in replicas):
        return replica.kind in ("Chief", "Master")
    return replica.kind == "Worker" and replica.index == 0


def _labels(replicas: list[Replica], replica: Replica) -> dict[str, str]:
    labels = dict((replica.template.get("metadata") or {}).get("labels") or {})
    labels.update(
        {
            "training.kubeflow.org/job-name": replica.job,
            "training.kubeflow.org/replica-type": replica.kind.lower(),
            "training.kubeflow.org/replica-index": str(replica.index),
        }
    )
    if is_chief(replicas, replica):
        labels[ROLE_LABEL] = "master"
    return labels


# A hook that rewrites a pod's container before it runs (Katib wraps the primary container).
ContainerHook = Callable[[dict[str, str], dict[str, Any]], dict[str, Any]]


@dataclass
class TFJobEmulation:
    job: dict[str, Any]
    cluster: Cluster
    container_hook: ContainerHook | None = None
    cancel: threading.Event | None = None  # set: stop the pods, the job fails (default: the cluster's)

    def __post_init__(self) -> None:
        self.cancel = self.cancel or self.cluster.cancel
        self.name = self.job["metadata"]["name"]
        self.namespace = self.job["metadata"].get("namespace", "default")
        self.replicas = replicas_of(self.job)
        self.backoff_limit = ((self.job.get("spec") or {}).get("runPolicy") or {}).get("backoffLimit")
        self.addresses = {r.name: self.cluster.runtime.allocate() for r in self.replicas}
        for replica in self.replicas:
            address = self.addresses[replica.name]
            for name in (
                replica.name,
                service_name(replica, self.namespace),
                f"{service_name(replica, self.namespace)}.cluster.local",
            ):
                self.cluster.dns[name] = address

    def pod_spec(self, replica: Replica) -> PodSpec:
        pod = replica.template["spec"]
        labels = _labels(self.replicas, replica)
        container = copy.deepcopy(single_container(replica.name, pod))
        if self.container_hook is not None:
            container = self.container_hook(labels, container)
        annotations = (replica.template.get("metadata") or {}).get("annotations")
        address = self.addresses[replica.name]
        spec = pod_spec_of(self.cluster, replica.name, self.namespace, pod, container, address, labels, annotations)
        if container["name"] == TF_CONTAINER and len(self.replicas) > 1:
            spec.env["TF_CONFIG"] = tf_config(self.replicas, replica, self.namespace)
        return spec

    def run(self, deadline: float) -> JobOutcome:
        specs = {r.name: self.pod_spec(r) for r in self.replicas}  # every error before anything starts
        self.cluster.echo(
            f"TFJob {self.namespace}/{self.name}: {len(self.replicas)} pods "
            + ", ".join(f"{n} ({s.address})" for n, s in specs.items())
        )
        attempts = {r.name: 0 for r in self.replicas}
        running: dict[str, RunningPod] = {}
        outcome = JobOutcome(False, "", labels={n: s.labels for n, s in specs.items()})

        def start(replica: Replica) -> None:
            attempts[replica.name] += 1
            log = self.cluster.workdir / f"{replica.name}.{attempts[replica.name]}.log"
            outcome.logs[replica.name] = log
            running[replica.name] = self.cluster.runtime.start(specs[replica.name], log, self.cluster.echo)

        for replica in self.replicas:
            start(replica)
        try:
            outcome.succeeded, outcome.reason = self._watch(running, start, deadline)
        finally:
            for process in running.values():
                process.stop()
        verdict = "Succeeded" if outcome.succeeded else "Failed"
        self.cluster.echo(f"TFJob {self.namespace}/{self.name} {verdict}: {outcome.reason}")
        return outcome

    def _watch(
        self, running: dict[str, RunningPod], start: Callable[[Replica], None], deadline: float
    ) -> tuple[bool, str]:
        restarts = 0
        by_name = {r.name: r for r in self.replicas}
        cancel = self.cancel
        assert cancel is not None  # __post_init__ took the cluster's when none was given
        while True:
            for name, process in list(running.items()):
                code = process.poll()
                if code is None:
                    continue
                del running[name]
                replica = by_name[name]
                self.cluster.echo(f"pod {name} exited with code {code}")
                if code == 0:
                    if is_chief(self.replicas, replica):
                        return True, f"{name} succeeded"
                    continue
                if not self._restartable(replica, code):
                    return False, f"{name} failed with exit code {code} (restartPolicy {replica.restart_policy})"
                restarts += 1
                if self.backoff_limit is not None and restarts >= max(1, int(self.backoff_limit)):
                    return (
                        False,
                        f"{restarts} restarts reached backoffLimit {self.backoff_limit} (last: {name}, exit code {code})",
                    )
                self.cluster.echo(f"pod {name}: restarting ({restarts} restarts so far)")
                time.sleep(RESTART_DELAY_S)
                start(replica)
            if time.monotonic() > deadline:
                return False, "the emulation's --timeout passed"
            if cancel.wait(POLL_S):
                return False, "stopped"

    @staticmethod
    def _restartable(replica: Replica, code: int) -> bool:
        if replica.restart_policy in ("OnFailure", "Always"):
            return True
        return replica.restart_policy == "ExitCode" and code >= 128
