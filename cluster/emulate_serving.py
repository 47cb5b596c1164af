"""A KServe (v1beta1) InferenceService with a custom predictor container, run here.

As KServe does for `STORAGE_URI=pvc://NAME/PATH`, the folder VOLUMES/NAME/PATH is mounted
read-only at /mnt/models; the pod's own volumes are mounted as for any pod. The pod answers at
`<name>-predictor.<namespace>.svc` inside the emulated network, and a relay on this machine's
127.0.0.1 (the printed URL) forwards to it. Approximated: one replica (minReplicas is ignored),
no restarts, and readiness is the container's readinessProbe httpGet (or a TCP connect).
"""

from __future__ import annotations

import http.client
import socket
import threading
import time
from dataclasses import dataclass
from pathlib import Path
from typing import Any

from facesim.cluster.emulate_pods import (
    Cluster,
    EmulationError,
    Mount,
    PodProcess,
    PodSpec,
    connect_inside,
    container_env,
    pod_argv,
    pod_env,
)
from facesim.cluster.emulate_volumes import claim_folder, container_mounts

PREDICTOR_CONTAINER = "kserve-container"
KSERVE_MODEL_MOUNT = "/mnt/models"
DEFAULT_PORT = 8080
POLL_S = 0.5


def _storage_mount(storage_uri: str, volumes: Path) -> Mount:
    if not storage_uri.startswith("pvc://"):
        raise EmulationError(f"STORAGE_URI {storage_uri!r}: only pvc://NAME/PATH is emulated")
    claim, _, path = storage_uri[len("pvc://") :].partition("/")
    folder = claim_folder(volumes, claim, path)
    if not folder.exists():
        raise EmulationError(
            f"STORAGE_URI {storage_uri}: {folder} does not exist (train or copy the model there first)"
        )
    return Mount(str(folder), KSERVE_MODEL_MOUNT, read_only=True)


def _predictor_container(predictor: dict[str, Any], name: str) -> dict[str, Any]:
    containers = predictor.get("containers") or []
    if not containers:
        raise EmulationError(
            f"InferenceService {name}: only custom predictors (spec.predictor.containers) are emulated"
        )
    return next((c for c in containers if c.get("name") == PREDICTOR_CONTAINER), containers[0])


def _port(container: dict[str, Any]) -> int:
    ports = container.get("ports") or []
    return int(ports[0]["containerPort"]) if ports else DEFAULT_PORT


class Relay:
    """127.0.0.1:PORT on this machine, forwarded to ADDRESS:PORT inside a pod's network namespace."""

    def __init__(self, sandbox, target: tuple[str, int]) -> None:
        self.sandbox, self.target = sandbox, target
        self.server = socket.create_server(("127.0.0.1", 0))
        self.port = self.server.getsockname()[1]
        threading.Thread(target=self._accept, daemon=True).start()

    def _accept(self) -> None:
        while True:
            try:
                client, _ = self.server.accept()
            except OSError:  # closed
                return
            try:
                upstream = connect_inside(self.sandbox, self.target)
            except OSError:
                client.close()
                continue
            upstream.settimeout(None)
            for source, sink in ((client, upstream), (upstream, client)):
                threading.Thread(target=_pump, args=(source, sink), daemon=True).start()

    def close(self) -> None:
        self.server.close()


def _pump(source: socket.socket, sink: socket.socket) -> None:
    try:
        while data := source.recv(65536):
            sink.sendall(data)
    except OSError:
        pass
    finally:
        for end in (source, sink):
            try:
                end.shutdown(socket.SHUT_RDWR)
            except OSError:
                pass


@dataclass
class InferenceServiceEmulation:
    service: dict[str, Any]
    cluster: Cluster

    def __post_init__(self) -> None:
        self.name = self.service["metadata"]["name"]
        self.namespace = self.service["metadata"].get("namespace", "default")
        predictor = (self.service.get("spec") or {}).get("predictor") or {}
        self.container = _predictor_container(predictor, self.name)
        self.pod_name = f"{self.name}-predictor-0"
        self.address = self.cluster.sandboxes.network.allocate()
        env = container_env(self.container)
        mounts = container_mounts(predictor, self.container, self.cluster.volumes, self.pod_name)
        if env.get("STORAGE_URI"):
            mounts.append(_storage_mount(env["STORAGE_URI"], self.cluster.volumes))
        service = f"{self.name}-predictor.{self.namespace}.svc"
        self.spec = PodSpec(
            name=self.pod_name,
            argv=pod_argv([*(self.container.get("command") or []), *(self.container.get("args") or [])]),
            env=pod_env(env, self.pod_name),
            mounts=mounts,
            address=self.address,
            hosts={service: self.address, f"{service}.cluster.local": self.address},
        )
        self.port = _port(self.container)

    def _ready(self, relay: Relay) -> bool:
        probe = (self.container.get("readinessProbe") or {}).get("httpGet")
        try:
            if probe is None:
                socket.create_connection(("127.0.0.1", relay.port), timeout=2).close()
                return True
            connection = http.client.HTTPConnection("127.0.0.1", relay.port, timeout=5)
            connection.request("GET", probe.get("path", "/"))
            return connection.getresponse().status < 400
        except (OSError, http.client.HTTPException):
            return False

    def run(self, deadline: float) -> bool:
        """Serve until the deadline or `cancel`; True when it became ready and never died."""
        sandbox = self.cluster.sandboxes.create(self.pod_name, self.address)
        log = self.cluster.workdir / f"{self.pod_name}.1.log"
        process = self.cluster.sandboxes.track(
            PodProcess(self.spec, sandbox, self.cluster.workdir, log, self.cluster.echo)
        )
        relay = Relay(sandbox, (self.address, self.port))
        ready = False
        try:
            while not self.cluster.cancel.is_set() and time.monotonic() < deadline:
                code = process.poll()
                if code is not None:
                    self.cluster.echo(
                        f"InferenceService {self.namespace}/{self.name}: predictor exited with code {code}"
                    )
                    return False
                if not ready and self._ready(relay):
                    ready = True
                    print(f"http://127.0.0.1:{relay.port}", flush=True)  # stdout: the URL alone, for scripts
                    self.cluster.echo(
                        f"InferenceService {self.namespace}/{self.name} ready: http://127.0.0.1:{relay.port} "
                        f"(in the emulated cluster http://{self.name}-predictor.{self.namespace}.svc.cluster.local:{self.port}); "
                        "Ctrl-C stops it"
                    )
                time.sleep(POLL_S)
            if not ready:
                self.cluster.echo(f"InferenceService {self.namespace}/{self.name} never became ready")
            return ready
        finally:
            relay.close()
            process.stop()
