"""Serving pods run here until the emulation ends: a KServe (v1beta1) InferenceService with a
custom predictor container, and a Deployment (the UI) with the Services that select it.

As KServe's webhook does for `STORAGE_URI=pvc://NAME/PATH`, the predictor gets a volume
`kserve-pvc-source` on claim NAME (unless it has a volume of that name already: KServe
de-duplicates by name only) mounted read-only at /mnt/models with PATH as subPath; a pod with
two volumes on one claim is refused as the kubelet refuses it. The predictor answers at
`<name>-predictor.<namespace>.svc` port 80 (and its container port) inside the emulated network,
a Deployment's pod at each selecting Service's name and port; a relay on this machine's 127.0.0.1
(the printed URL) forwards to the pod. Approximated: one replica (minReplicas and replicas are
ignored), no restarts, and readiness is the container's readinessProbe httpGet (or a TCP connect).
"""

from __future__ import annotations

import contextlib
import http.client
import socket
import threading
import time
from collections.abc import Callable
from dataclasses import dataclass, field
from typing import Any

from facesim.emulator.pods import Cluster, EmulationError, PodSpec
from facesim.emulator.template import pod_spec_of, single_container
from facesim.emulator.volumes import claim_folder

PREDICTOR_CONTAINER = "kserve-container"
KSERVE_MODEL_MOUNT = "/mnt/models"
KSERVE_PVC_VOLUME = "kserve-pvc-source"
DEFAULT_PORT = 8080
SERVICE_PORT = 80  # KServe's predictor Service
POLL_S = 0.5


def with_storage_volume(predictor: dict[str, Any], container: dict[str, Any], cluster: Cluster) -> tuple[dict, dict]:
    """The predictor pod and container as KServe's webhook leaves them for STORAGE_URI=pvc://NAME/PATH."""
    env = {e["name"]: e.get("value") for e in container.get("env") or []}
    storage_uri = env.get("STORAGE_URI")
    if not storage_uri:
        return predictor, container
    if not storage_uri.startswith("pvc://"):
        raise EmulationError(f"STORAGE_URI {storage_uri!r}: only pvc://NAME/PATH is emulated")
    claim, _, path = storage_uri[len("pvc://") :].partition("/")
    folder = claim_folder(cluster.volumes, claim, path)
    if not folder.exists():
        raise EmulationError(
            f"STORAGE_URI {storage_uri}: {folder} does not exist (train or copy the model there first)"
        )
    volumes = list(predictor.get("volumes") or [])
    if not any(v["name"] == KSERVE_PVC_VOLUME for v in volumes):
        volumes.append({"name": KSERVE_PVC_VOLUME, "persistentVolumeClaim": {"claimName": claim, "readOnly": True}})
    mount = {"name": KSERVE_PVC_VOLUME, "mountPath": KSERVE_MODEL_MOUNT, "subPath": path, "readOnly": True}
    return {**predictor, "volumes": volumes}, {
        **container,
        "volumeMounts": [*(container.get("volumeMounts") or []), mount],
    }


def _predictor_container(predictor: dict[str, Any], name: str) -> dict[str, Any]:
    containers = predictor.get("containers") or []
    if not containers:
        raise EmulationError(
            f"InferenceService {name}: only custom predictors (spec.predictor.containers) are emulated"
        )
    return next((c for c in containers if c.get("name") == PREDICTOR_CONTAINER), containers[0])


def _port(container: dict[str, Any], port: int | str | None = None) -> int:
    """The container port a Service's targetPort names (a number or a port name), else its first port."""
    ports = container.get("ports") or []
    if isinstance(port, int) or (isinstance(port, str) and port.isdigit()):
        return int(port)
    if port is not None:
        named = [p["containerPort"] for p in ports if p.get("name") == port]
        if not named:
            raise EmulationError(f"container {container.get('name')}: no port named {port!r}")
        return int(named[0])
    return int(ports[0]["containerPort"]) if ports else DEFAULT_PORT


def service_names(service: str, namespace: str) -> list[str]:
    """How a pod in the namespace reaches a Service: short, namespaced and fully qualified names."""
    return [service, f"{service}.{namespace}", f"{service}.{namespace}.svc", f"{service}.{namespace}.svc.cluster.local"]


class Relay:
    """127.0.0.1:PORT on this machine, forwarded to a pod through `connect`."""

    def __init__(self, connect: Callable[[], socket.socket]) -> None:
        self.connect = connect
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
                upstream = self.connect()
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
            with contextlib.suppress(OSError):
                end.shutdown(socket.SHUT_RDWR)


@dataclass
class ServingPod:
    """One long-running pod: started, probed for readiness, reachable from this machine by a relay."""

    cluster: Cluster
    title: str  # e.g. "InferenceService facesim/facesim"
    spec: PodSpec
    container: dict[str, Any]
    in_cluster_url: str
    port: int

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
        log = self.cluster.workdir / f"{self.spec.name}.1.log"
        process = self.cluster.runtime.start(self.spec, log, self.cluster.echo)
        relay = Relay(lambda: self.cluster.runtime.connect(self.spec, self.port))
        ready = False
        try:
            while not self.cluster.cancel.is_set() and time.monotonic() < deadline:
                code = process.poll()
                if code is not None:
                    self.cluster.echo(f"{self.title}: pod {self.spec.name} exited with code {code}")
                    return False
                if not ready and self._ready(relay):
                    ready = True
                    print(f"http://127.0.0.1:{relay.port}", flush=True)  # stdout: the URL alone, for scripts
                    self.cluster.echo(
                        f"{self.title} ready: http://127.0.0.1:{relay.port} (in the emulated cluster "
                        f"{self.in_cluster_url}; {self.cluster.runtime.name} runtime); Ctrl-C stops it"
                    )
                time.sleep(POLL_S)
            if not ready:
                self.cluster.echo(f"{self.title} never became ready")
            return ready
        finally:
            relay.close()
            process.stop()


@dataclass
class InferenceServiceEmulation:
    service: dict[str, Any]
    cluster: Cluster

    def __post_init__(self) -> None:
        name = self.service["metadata"]["name"]
        namespace = self.service["metadata"].get("namespace", "default")
        predictor = (self.service.get("spec") or {}).get("predictor") or {}
        container = _predictor_container(predictor, name)
        predictor, container = with_storage_volume(predictor, container, self.cluster)
        pod_name = f"{name}-predictor-0"
        address = self.cluster.runtime.allocate()
        service = f"{name}-predictor"
        for dns_name in service_names(service, namespace):
            self.cluster.dns[dns_name] = address
        labels = {"serving.kserve.io/inferenceservice": name, "component": "predictor"}
        spec = pod_spec_of(self.cluster, pod_name, namespace, predictor, container, address, labels)
        port = _port(container)
        spec.service_ports = {SERVICE_PORT: port} if port != SERVICE_PORT else {}
        url = f"http://{service}.{namespace}.svc.cluster.local (port {SERVICE_PORT}, the container's {port})"
        self.pod = ServingPod(self.cluster, f"InferenceService {namespace}/{name}", spec, container, url, port)

    def run(self, deadline: float) -> bool:
        return self.pod.run(deadline)


@dataclass
class DeploymentEmulation:
    """One pod of a Deployment, at the names of the Services (given in `services`) that select it."""

    deployment: dict[str, Any]
    cluster: Cluster
    services: list[dict[str, Any]] = field(default_factory=list)

    def __post_init__(self) -> None:
        name = self.deployment["metadata"]["name"]
        namespace = self.deployment["metadata"].get("namespace", "default")
        template = (self.deployment.get("spec") or {}).get("template") or {}
        pod = template.get("spec") or {}
        labels = (template.get("metadata") or {}).get("labels") or {}
        pod_name = f"{name}-0"
        container = single_container(pod_name, pod)
        address = self.cluster.runtime.allocate()
        service_ports: dict[int, int] = {}
        urls = []
        for service in self.services:
            meta, spec = service["metadata"], service.get("spec") or {}
            selector = spec.get("selector") or {}
            if meta.get("namespace", "default") != namespace or not selector:
                continue
            if any(labels.get(k) != v for k, v in selector.items()):
                continue
            for dns_name in service_names(meta["name"], namespace):
                self.cluster.dns[dns_name] = address
            for port in spec.get("ports") or []:
                target = _port(container, port.get("targetPort", port["port"]))
                if int(port["port"]) != target:
                    service_ports[int(port["port"])] = target
                urls.append(f"http://{meta['name']}.{namespace}.svc.cluster.local:{port['port']}")
        annotations = (template.get("metadata") or {}).get("annotations")
        spec = pod_spec_of(self.cluster, pod_name, namespace, pod, container, address, labels, annotations)
        spec.service_ports = service_ports
        port = _port(container)
        url = ", ".join(urls) or f"{address}:{port} (no Service selects it)"
        self.pod = ServingPod(self.cluster, f"Deployment {namespace}/{name}", spec, container, url, port)

    def run(self, deadline: float) -> bool:
        return self.pod.run(deadline)
