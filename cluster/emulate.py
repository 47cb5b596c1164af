"""`facesim emulate FILE... --volumes DIR [--timeout S]`: run rendered TFJob, Katib Experiment and
InferenceService resources on this machine with pod semantics (see emulate_pods for what a pod
is here, and emulate_tfjob, emulate_katib, emulate_serving for what each operator does).

TFJobs and Experiments run one after another in file order; InferenceServices then serve until
Ctrl-C or --timeout. Other kinds (PVCs, RBAC, Deployments...) are skipped with a note.
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

from facesim.cluster.emulate_pods import Cluster, EmulationError, Network, Sandboxes, check_host

RUNNABLE = ("TFJob", "Experiment", "InferenceService")
DEFAULT_TIMEOUT_S = 3600


def _parser() -> argparse.ArgumentParser:
    parser = argparse.ArgumentParser(
        prog="facesim emulate",
        description="Run rendered TFJob, Katib Experiment and InferenceService resources (e.g. `facesim manifests` "
        "output) on this machine as pods: each pod a process with its own mount, network and UTS namespaces, an "
        "empty tmpfs /tmp, /home and /mnt, its own 127.0.0.N address and an /etc/hosts resolving the Service names; "
        "PVC NAME is the folder DIR/NAME. The image is this Python environment: the container's `python` is "
        f"{sys.executable} and `facesim` is `python -m facesim`. Needs root, util-linux and iproute2. "
        "Exit 0 when every job and Experiment succeeded and every InferenceService served until the end. "
        "docs/cluster.md (section 9) says what each operator does here and what is approximated.",
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


def _run_all(
    resources: list[dict[str, Any]], volumes: Path, workdir: Path, deadline: float, cancel: threading.Event
) -> bool:
    from facesim.cluster.emulate_katib import ExperimentEmulation
    from facesim.cluster.emulate_serving import InferenceServiceEmulation
    from facesim.cluster.emulate_tfjob import TFJobEmulation

    network = Network()
    sandboxes = Sandboxes(network)
    cluster = Cluster(volumes, sandboxes, workdir, _say, cancel)
    threads: list[threading.Thread] = []
    try:
        ok = True
        for resource in [r for r in resources if r["kind"] in ("TFJob", "Experiment")]:
            if resource["kind"] == "TFJob":
                ok = TFJobEmulation(resource, cluster).run(deadline).succeeded and ok
            else:
                ok = ExperimentEmulation(resource, cluster).run(deadline) and ok
        services = [InferenceServiceEmulation(r, cluster) for r in resources if r["kind"] == "InferenceService"]
        results: list[bool] = []
        threads = [threading.Thread(target=lambda s=s: results.append(s.run(deadline))) for s in services]
        for thread in threads:
            thread.start()
        for thread in threads:
            while thread.is_alive():  # a short join: Ctrl-C reaches this thread
                thread.join(timeout=0.5)
        return ok and all(results)
    finally:
        cancel.set()
        for thread in threads:  # each stops its pod
            thread.join()
        sandboxes.close()
        network.close()


def main(argv: list[str] | None = None) -> int:
    parser = _parser()
    args = parser.parse_args(argv)
    if args.timeout <= 0:
        parser.error("--timeout must be positive")
    try:
        check_host()
        if not args.volumes.is_dir():
            raise EmulationError(f"--volumes {args.volumes} is not a folder (make it, with one folder per PVC)")
        resources = load_resources(args.files)
        for resource in resources:
            if resource["kind"] not in RUNNABLE:
                _say(
                    f"skipped {resource['kind']} {(resource.get('metadata') or {}).get('name', '')}: not run by the emulator"
                )
        if not any(r["kind"] in RUNNABLE for r in resources):
            raise EmulationError(f"no TFJob, Experiment or InferenceService in {', '.join(map(str, args.files))}")
    except EmulationError as error:
        print(f"facesim emulate: {error}", file=sys.stderr)
        return 2
    logs = args.logs or Path(tempfile.mkdtemp(prefix="facesim-emulate-"))
    logs.mkdir(parents=True, exist_ok=True)
    _say(f"pod logs: {logs}")
    cancel = threading.Event()
    signal.signal(signal.SIGTERM, _interrupt)  # `kill` stops the pods too, as Ctrl-C does
    try:
        ok = _run_all(resources, args.volumes.resolve(), logs, time.monotonic() + args.timeout, cancel)
    except EmulationError as error:
        print(f"facesim emulate: {error}", file=sys.stderr)
        return 1
    return 0 if ok else 1
