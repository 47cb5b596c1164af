"""`facesim emulate FILE... --volumes DIR [--timeout S] [--runtime podman|process]`: run rendered
TFJob, Katib Experiment, InferenceService and Deployment resources on this machine with pod
semantics, each pod a container of its built image (emulate_podman) or a host process in its own
namespaces (emulate_pods); emulate_tfjob, emulate_katib and emulate_serving say what each
operator does.

TFJobs and Experiments run one after another in file order; InferenceServices and Deployments
then serve until Ctrl-C or --timeout. Secrets and ConfigMaps feed the pods' env, Services name
the Deployments' pods; other kinds (PVCs, RBAC...) are skipped with a note.
"""

from __future__ import annotations

import argparse
import signal
import sys
import tempfile
import threading
import time
from pathlib import Path
from typing import Any

import yaml

from facesim.emulator.pods import Cluster, EmulationError, EnvSources, PodRuntime, ProcessRuntime

RUNNABLE = ("TFJob", "Experiment", "InferenceService", "Deployment")
READ = ("Secret", "ConfigMap", "Service")  # what the pods' env and names come from
RUNTIMES = ("podman", "process")
DEFAULT_TIMEOUT_S = 3600


def _parser() -> argparse.ArgumentParser:
    parser = argparse.ArgumentParser(
        prog="facesim emulate",
        description="Run rendered TFJob, Katib Experiment, InferenceService and Deployment resources (e.g. "
        "`facesim manifests` output) on this machine as pods; PVC NAME is the folder DIR/NAME. With --runtime podman "
        "each pod is a container of the image it names (`facesim images build`), run as its securityContext's user "
        "with its resources.limits, on a podman network of the emulation where every Service name resolves. With "
        "--runtime process each pod is a process with its own mount, network and UTS namespaces, an empty tmpfs "
        "/tmp, /home and /mnt, its own 127.0.0.N address and an /etc/hosts resolving the Service names, and the "
        f"image is this Python environment (`python` is {sys.executable}). Needs root. "
        "Exit 0 when every job and Experiment succeeded and every server served until the end. "
        "docs/cluster.md says what each operator does here and what is approximated.",
    )
    parser.add_argument("files", nargs="+", type=Path, metavar="FILE", help="YAML files of resources")
    parser.add_argument(
        "--volumes",
        type=Path,
        required=True,
        metavar="DIR",
        help="folder holding one folder per PVC (DIR/facesim-data, DIR/facesim-runs, ...)",
    )
    parser.add_argument(
        "--timeout",
        type=float,
        default=DEFAULT_TIMEOUT_S,
        metavar="S",
        help="seconds for the whole emulation; InferenceServices serve until then (default: %(default)s)",
    )
    parser.add_argument("--logs", type=Path, metavar="DIR", help="where pod logs go (default: a new temporary folder)")
    parser.add_argument(
        "--runtime",
        choices=RUNTIMES,
        help="podman: each pod a container of its image; process: each pod a host process of this environment "
        "(default: podman where it works here, else process)",
    )
    return parser


def load_resources(files: list[Path]) -> list[dict[str, Any]]:
    resources = []
    for path in files:
        try:
            documents = list(yaml.safe_load_all(path.read_text()))
        except OSError as error:
            raise EmulationError(f"cannot read {path}: {error.strerror}") from None
        except yaml.YAMLError as error:
            raise EmulationError(f"{path} is not valid YAML: {error}") from None
        for document in documents:
            if isinstance(document, dict) and document.get("kind"):
                resources.append(document)
    return resources


def _interrupt(signum: int, frame: object) -> None:
    raise KeyboardInterrupt


def _say(line: str) -> None:
    print(line, file=sys.stderr, flush=True)


def choose_runtime(wanted: str | None, workdir: Path) -> PodRuntime:
    """The runtime asked for, or podman where it works and the host processes elsewhere."""
    from facesim.emulator.podman import PodmanRuntime, podman_works

    if wanted == "podman" or (wanted is None and podman_works() is None):
        return PodmanRuntime()
    if wanted is None:
        _say(f"podman runtime unavailable ({podman_works()}): pods run as host processes")
    return ProcessRuntime(workdir)


def _run_all(resources: list[dict[str, Any]], cluster: Cluster, deadline: float) -> bool:
    from facesim.emulator.katib import ExperimentEmulation
    from facesim.emulator.serving import DeploymentEmulation, InferenceServiceEmulation
    from facesim.emulator.tfjob import TFJobEmulation

    threads: list[threading.Thread] = []
    try:
        ok = True
        for resource in [r for r in resources if r["kind"] in ("TFJob", "Experiment")]:
            if resource["kind"] == "TFJob":
                ok = TFJobEmulation(resource, cluster).run(deadline).succeeded and ok
            else:
                ok = ExperimentEmulation(resource, cluster).run(deadline) and ok
        services = [r for r in resources if r["kind"] == "Service"]
        servers = [
            InferenceServiceEmulation(r, cluster)
            if r["kind"] == "InferenceService"
            else DeploymentEmulation(r, cluster, services)
            for r in resources
            if r["kind"] in ("InferenceService", "Deployment")
        ]
        results: list[bool] = []
        threads = [threading.Thread(target=lambda s=s: results.append(s.run(deadline))) for s in servers]
        for thread in threads:
            thread.start()
        for thread in threads:
            while thread.is_alive():  # a short join: Ctrl-C reaches this thread
                thread.join(timeout=0.5)
        return ok and all(results)
    finally:
        cluster.cancel.set()
        for thread in threads:  # each stops its pod
            thread.join()
        cluster.runtime.close()


def main(argv: list[str] | None = None) -> int:
    parser = _parser()
    args = parser.parse_args(argv)
    if args.timeout <= 0:
        parser.error("--timeout must be positive")
    logs = args.logs or Path(tempfile.mkdtemp(prefix="facesim-emulate-"))
    try:
        if not args.volumes.is_dir():
            raise EmulationError(f"--volumes {args.volumes} is not a folder (make it, with one folder per PVC)")
        resources = load_resources(args.files)
        for resource in resources:
            if resource["kind"] not in (*RUNNABLE, *READ):
                _say(
                    f"skipped {resource['kind']} {(resource.get('metadata') or {}).get('name', '')}: not run by the emulator"
                )
        if not any(r["kind"] in RUNNABLE for r in resources):
            raise EmulationError(
                f"no TFJob, Experiment, InferenceService or Deployment in {', '.join(map(str, args.files))}"
            )
        logs.mkdir(parents=True, exist_ok=True)
        runtime = choose_runtime(args.runtime, logs)
    except EmulationError as error:
        print(f"facesim emulate: {error}", file=sys.stderr)
        return 2
    _say(f"runtime: {runtime.name}; pod logs: {logs}")
    cluster = Cluster(args.volumes.resolve(), runtime, logs, _say, env_sources=EnvSources.from_resources(resources))
    signal.signal(signal.SIGTERM, _interrupt)  # `kill` stops the pods too, as Ctrl-C does
    try:
        ok = _run_all(resources, cluster, time.monotonic() + args.timeout)
    except EmulationError as error:
        print(f"facesim emulate: {error}", file=sys.stderr)
        return 1
    return 0 if ok else 1
