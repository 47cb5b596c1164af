"""Pods on this machine, for `facesim emulate`: the pod model both runtimes share (PodSpec: the
container's command, env, volumes, securityContext and limits, and the Service names it
resolves), env as the kubelet resolves it, and the process runtime (ProcessRuntime): each pod a
process tree with its own network, UTS and mount namespaces (as root; util-linux
`unshare`/`nsenter`, iproute2 `ip`). The podman runtime is emulate_podman.

- Network: one bridge in a namespace of its own is the emulated cluster network. Each pod joins
  it with a veth and gets its own loopback-range address 127.0.0.N (`route_localnet` lets
  127/8 travel between namespaces), so every pod can bind the same port (TensorFlow's gRPC
  server binds 0.0.0.0:2222) and reach the others by address, as pods do.
- Names: a per-pod /etc/hosts (bind-mounted) resolves the Service DNS names of the emulation.
- Files: an empty tmpfs on /tmp, /home (HOME) and /mnt; each volume bound at its mountPath.
- The image is this machine's Python environment: `python`/`python3` is the interpreter running
  `facesim emulate` (its venv's bin/ leads PATH) and `facesim` is `python -m facesim`; the Python
  installation, the environment and facesim's source stay visible even under /tmp or /home.
- Processes run as root (no runAsUser), share the host's PID namespace, and have no
  CPU/memory limits (the podman runtime honours both).
"""

from __future__ import annotations

import base64
import contextlib
import ctypes
import json
import math
import os
import re
import shutil
import signal
import socket
import subprocess
import sys
import threading
import time
import uuid
from collections.abc import Callable
from dataclasses import asdict, dataclass, field
from pathlib import Path
from typing import Protocol

from facesim.faces.detect import find_yunet_weights

BRIDGE = "facesim0"
# What the facesim images set (containers/*.Dockerfile): HOME and FACESIM_HOME of user `facesim`.
IMAGE_HOME = "/home/facesim"
IMAGE_ENV = {"HOME": IMAGE_HOME, "FACESIM_HOME": f"{IMAGE_HOME}/.facesim", "LANG": "C.UTF-8"}
# The images bake the YuNet weights into FACESIM_HOME (their build runs find_yunet_weights()).
IMAGE_YUNET = f"{IMAGE_HOME}/.facesim/models/face_detection_yunet.onnx"
REQUIRED_TOOLS = {"unshare": "util-linux", "nsenter": "util-linux", "mount": "mount", "ip": "iproute2"}
CLONE_NEWNET = 0x40000000
STOP_GRACE_S = 5.0
STARTUP_S = 10.0


class EmulationError(RuntimeError):
    """The emulation cannot go on; the message says what to do."""


def check_host() -> None:
    """Root, the namespace tools, and an interpreter a pod can still see."""
    if os.geteuid() != 0:
        raise EmulationError("needs root (it makes a mount and network namespace per pod): run it as root or with sudo")
    missing = sorted({package for tool, package in REQUIRED_TOOLS.items() if shutil.which(tool) is None})
    if missing:
        raise EmulationError(f"needs unshare, nsenter, mount and ip: apt-get install {' '.join(missing)}")
    if any(_under(path, "/mnt") for path in image_paths()):
        raise EmulationError(
            f"the Python environment or facesim's source is under /mnt, which a pod sees empty "
            f"({', '.join(image_paths())}): run facesim from an environment elsewhere"
        )


def image_paths() -> list[str]:
    """What stands for the image: the Python installation, the environment, facesim's source."""
    source = Path(__file__).resolve().parents[1]  # the repository (editable install) or the facesim package
    paths = sorted({str(Path(p).resolve()) for p in (sys.base_prefix, sys.prefix, source)})
    return [p for p in paths if not any(_under(p, other) for other in paths if other != p)]


def _under(path: str, root: str) -> bool:
    return path == root or path.startswith(root.rstrip("/") + "/")


def _run(*command: str) -> None:
    result = subprocess.run(command, capture_output=True, text=True, check=False)
    if result.returncode:
        raise EmulationError(f"`{' '.join(command)}` failed: {result.stderr.strip() or result.returncode}")


def _holder(*namespaces: str) -> subprocess.Popen:
    """A process that only keeps new namespaces alive; it ends when we close its stdin (or die).

    Returns once it is in its own network namespace: before that, entering /proc/PID/ns/net would
    enter ours (and configure this machine's network instead of the pod's)."""
    holder = subprocess.Popen(["unshare", *namespaces, "--", "cat"], stdin=subprocess.PIPE, stdout=subprocess.DEVNULL)
    ours = os.readlink("/proc/self/ns/net")
    deadline = time.monotonic() + STARTUP_S
    while time.monotonic() < deadline:
        try:
            if os.readlink(f"/proc/{holder.pid}/ns/net") != ours and _exec_done(holder.pid):
                return holder
        except FileNotFoundError:
            break  # it died
        time.sleep(0.01)
    _end(holder)
    raise EmulationError(f"`unshare {' '.join(namespaces)}` did not start (exit code {holder.poll()})")


def _exec_done(pid: int) -> bool:
    """unshare has switched every namespace and exec'd its command (`cat`)."""
    return Path(f"/proc/{pid}/comm").read_text().strip() == "cat"


def _in(holder: subprocess.Popen, *command: str) -> tuple[str, ...]:
    return ("nsenter", f"--net=/proc/{holder.pid}/ns/net", "--", *command)


def _end(process: subprocess.Popen) -> None:
    if process.stdin:
        process.stdin.close()
    try:
        process.wait(timeout=STOP_GRACE_S)
    except subprocess.TimeoutExpired:
        process.kill()
        process.wait()


class Network:
    """The emulated cluster network: a bridge, and 127.0.0.N addresses handed out in order."""

    def __init__(self) -> None:
        self.next_host = 2  # 127.0.0.1 stays every pod's own loopback
        self.lock = threading.Lock()
        self.bridge = _holder("--net")
        _run(*_in(self.bridge, "ip", "link", "add", BRIDGE, "type", "bridge", "forward_delay", "0"))
        _run(*_in(self.bridge, "ip", "link", "set", BRIDGE, "up"))

    def allocate(self) -> str:
        with self.lock:
            if self.next_host > 254:
                raise EmulationError("more than 253 pods in one emulation")
            self.next_host += 1
            return f"127.0.0.{self.next_host - 1}"

    def sandbox(self, hostname: str, address: str) -> subprocess.Popen:
        """A pod's network and UTS namespaces (its "pause container"), joined to the bridge at `address`."""
        holder = _holder("--net", "--uts")
        veth = f"veth{address.rsplit('.', 1)[1]}"
        _run(
            *_in(
                self.bridge, "ip", "link", "add", veth, "type", "veth", "peer", "name", "eth0", "netns", str(holder.pid)
            )
        )
        _run(*_in(self.bridge, "ip", "link", "set", veth, "master", BRIDGE, "up"))
        inside = [
            "sysctl -qw net.ipv4.conf.all.route_localnet=1 net.ipv4.conf.eth0.route_localnet=1",
            "ip link set lo up",
            "ip addr del 127.0.0.1/8 dev lo",
            "ip addr add 127.0.0.1/32 dev lo",
            f"ip addr add {address}/8 dev eth0",
            "ip link set eth0 up",
            f"hostname {hostname}",
        ]
        _run(
            "nsenter",
            f"--net=/proc/{holder.pid}/ns/net",
            f"--uts=/proc/{holder.pid}/ns/uts",
            "--",
            "sh",
            "-ec",
            "; ".join(inside),
        )
        return holder

    def close(self) -> None:
        _end(self.bridge)


def connect_inside(sandbox: subprocess.Popen, address: tuple[str, int], timeout: float = 5.0) -> socket.socket:
    """A TCP connection made from inside a pod's network namespace (a thread can switch its own)."""
    outcome: dict[str, object] = {}

    def connect() -> None:
        libc = ctypes.CDLL(None, use_errno=True)
        fd = os.open(f"/proc/{sandbox.pid}/ns/net", os.O_RDONLY)
        try:
            if libc.setns(fd, CLONE_NEWNET) != 0:
                outcome["error"] = OSError(ctypes.get_errno(), "setns failed")
                return
            outcome["socket"] = socket.create_connection(address, timeout=timeout)
        except OSError as error:
            outcome["error"] = error
        finally:
            os.close(fd)

    thread = threading.Thread(target=connect, daemon=True)  # ends with the switched namespace
    thread.start()
    thread.join()
    if "error" in outcome:
        raise outcome["error"]  # type: ignore[misc]
    return outcome["socket"]  # type: ignore[return-value]


@dataclass(frozen=True)
class Mount:
    """`source` (a host folder or file; "tmpfs" for an emptyDir) at `target` in the pod."""

    source: str
    target: str
    read_only: bool = False


@dataclass(frozen=True)
class Security:
    """The securityContext a container runs with (the container's fields over the pod's)."""

    run_as_user: int | None = None
    run_as_group: int | None = None
    fs_group: int | None = None
    supplemental_groups: tuple[int, ...] = ()
    no_new_privileges: bool = False
    drop_all_capabilities: bool = False


@dataclass(frozen=True)
class Limits:
    """resources.limits as cgroup limits (None: unlimited)."""

    memory_bytes: int | None = None
    cpus: float | None = None


@dataclass
class PodSpec:
    """One container of one pod, as it will run here: `command` and `args` as the pod gives them
    (command replaces the image's entrypoint, args its CMD), `env` the container's own variables."""

    name: str
    command: list[str]
    args: list[str]
    env: dict[str, str]
    mounts: list[Mount]
    hosts: dict[str, str]  # DNS name -> address
    address: str = ""
    labels: dict[str, str] = field(default_factory=dict)
    image: str = ""
    security: Security = field(default_factory=Security)
    limits: Limits = field(default_factory=Limits)
    service_ports: dict[int, int] = field(default_factory=dict)  # a Service's port -> the container's

    @property
    def argv(self) -> list[str]:
        return [*self.command, *self.args]


def pod_argv(command: list[str]) -> list[str]:
    """The container's command with the image's `python`/`facesim` mapped to this environment."""
    if not command:
        raise EmulationError("a container without command: the emulator cannot read an image's entrypoint")
    head = command[0]
    if head in ("python", "python3"):
        return [sys.executable, *command[1:]]
    if head == "facesim":
        return [sys.executable, "-m", "facesim", *command[1:]]
    return list(command)


@dataclass
class EnvSources:
    """What env references read, as the kubelet reads them from the API server: the Secrets and
    ConfigMaps given to the emulation, by (namespace, name)."""

    secrets: dict[tuple[str, str], dict[str, str]] = field(default_factory=dict)
    config_maps: dict[tuple[str, str], dict[str, str]] = field(default_factory=dict)

    @classmethod
    def from_resources(cls, resources: list[dict]) -> EnvSources:
        sources = cls()
        for resource in resources:
            meta = resource.get("metadata") or {}
            key = (meta.get("namespace", "default"), meta.get("name", ""))
            if resource["kind"] == "Secret":
                data = {k: base64.b64decode(v).decode() for k, v in (resource.get("data") or {}).items()}
                sources.secrets[key] = {**data, **{k: str(v) for k, v in (resource.get("stringData") or {}).items()}}
            elif resource["kind"] == "ConfigMap":
                sources.config_maps[key] = {k: str(v) for k, v in (resource.get("data") or {}).items()}
        return sources


@dataclass(frozen=True)
class PodFields:
    """The pod's own fields that the downward API (`fieldRef`) gives its containers."""

    name: str
    namespace: str = "default"
    address: str = ""
    labels: dict[str, str] = field(default_factory=dict)
    annotations: dict[str, str] = field(default_factory=dict)
    service_account: str = "default"

    @property
    def uid(self) -> str:
        return str(uuid.uuid5(uuid.NAMESPACE_URL, f"pod/{self.namespace}/{self.name}"))

    def value_of(self, path: str) -> str:
        if found := re.fullmatch(r"metadata\.(labels|annotations)\['([^']+)'\]", path):
            return (self.labels if found.group(1) == "labels" else self.annotations).get(found.group(2), "")
        values = {
            "metadata.name": self.name,
            "metadata.namespace": self.namespace,
            "metadata.uid": self.uid,
            "spec.nodeName": socket.gethostname(),
            "spec.serviceAccountName": self.service_account,
            "status.podIP": self.address,
            "status.podIPs": self.address,
            "status.hostIP": self.address,
        }
        if path not in values:
            raise EmulationError(f"pod {self.name}: fieldRef {path!r} is not one the downward API gives")
        return values[path]


def container_env(container: dict, sources: EnvSources | None = None, pod: PodFields | None = None) -> dict[str, str]:
    """The container's env as the kubelet sets it: envFrom, then env (later names win), with
    plain values, Secret and ConfigMap keys (from `sources`), the pod's fields (fieldRef) and the
    container's own resources (resourceFieldRef, such as `limits.cpu` in whole cores, rounded up).
    A missing Secret, ConfigMap or key that is not `optional` stops the pod, as the kubelet's
    CreateContainerConfigError does."""
    sources = sources or EnvSources()
    namespace = pod.namespace if pod else "default"
    env: dict[str, str] = {}
    for item in container.get("envFrom") or []:
        kind, ref = ("Secret", item["secretRef"]) if "secretRef" in item else ("ConfigMap", item["configMapRef"])
        store = sources.secrets if kind == "Secret" else sources.config_maps
        data = store.get((namespace, ref["name"]))
        if data is None and not ref.get("optional"):
            raise EmulationError(f'CreateContainerConfigError: {kind.lower()} "{ref["name"]}" not found')
        env.update({item.get("prefix", "") + k: v for k, v in (data or {}).items()})
    for item in container.get("env") or []:
        if "value" in item:
            env[item["name"]] = str(item["value"])
            continue
        value_from = item.get("valueFrom") or {}
        if field_ref := value_from.get("resourceFieldRef"):
            env[item["name"]] = _resource_field(container, field_ref)
        elif field_ref := value_from.get("fieldRef"):
            if pod is None:
                raise EmulationError(f"env {item['name']}: a fieldRef needs the pod's fields")
            env[item["name"]] = pod.value_of(field_ref["fieldPath"])
        elif "secretKeyRef" in value_from or "configMapKeyRef" in value_from:
            value = _key_ref(value_from, sources, namespace)
            if value is not None:
                env[item["name"]] = value
        else:
            env[item["name"]] = ""  # `value` left out: the empty string
    return env


def _key_ref(value_from: dict, sources: EnvSources, namespace: str) -> str | None:
    kind, ref = (
        ("secret", value_from["secretKeyRef"])
        if "secretKeyRef" in value_from
        else ("configmap", value_from["configMapKeyRef"])
    )
    store = sources.secrets if kind == "secret" else sources.config_maps
    data = store.get((namespace, ref["name"]))
    if data is not None and ref["key"] in data:
        return data[ref["key"]]
    if ref.get("optional"):
        return None
    missing = (
        f'{kind} "{ref["name"]}" not found'
        if data is None
        else f"couldn't find key {ref['key']} in {kind.capitalize()} {namespace}/{ref['name']}"
    )
    raise EmulationError(f"CreateContainerConfigError: {missing}")


def _resource_field(container: dict, field_ref: dict) -> str:
    kind, resource = field_ref["resource"].split(".", 1)  # e.g. limits.cpu
    quantity = ((container.get("resources") or {}).get(kind) or {}).get(resource)
    if quantity is None:
        return str(os.cpu_count() or 1) if resource == "cpu" else "0"
    return str(math.ceil(cpu_cores(quantity) / float(field_ref.get("divisor", "1"))))


def cpu_cores(quantity: object) -> float:
    """A CPU quantity in cores: "500m" is 0.5."""
    text = str(quantity)
    return float(text[:-1]) / 1000 if text.endswith("m") else float(text)


BINARY_SUFFIXES = {"Ki": 2**10, "Mi": 2**20, "Gi": 2**30, "Ti": 2**40, "Pi": 2**50, "Ei": 2**60}
DECIMAL_SUFFIXES = {"k": 10**3, "M": 10**6, "G": 10**9, "T": 10**12, "P": 10**15, "E": 10**18, "m": 10**-3}


def memory_bytes(quantity: object) -> int:
    """A memory quantity in bytes: "4Gi", "512M", "1e9", "1048576"."""
    text = str(quantity)
    for suffixes in (BINARY_SUFFIXES, DECIMAL_SUFFIXES):
        for suffix, factor in suffixes.items():
            if text.endswith(suffix):
                return math.ceil(float(text[: -len(suffix)]) * factor)
    return math.ceil(float(text))


def pod_security(pod: dict, container: dict) -> Security:
    """The container's securityContext over the pod's (as the kubelet merges them)."""
    pod_context, own = pod.get("securityContext") or {}, container.get("securityContext") or {}

    def pick(key: str):
        return own.get(key, pod_context.get(key))

    return Security(
        run_as_user=pick("runAsUser"),
        run_as_group=pick("runAsGroup"),
        fs_group=pod_context.get("fsGroup"),
        supplemental_groups=tuple(pod_context.get("supplementalGroups") or ()),
        no_new_privileges=own.get("allowPrivilegeEscalation") is False,
        drop_all_capabilities="ALL" in ((own.get("capabilities") or {}).get("drop") or []),
    )


def container_limits(container: dict) -> Limits:
    limits = (container.get("resources") or {}).get("limits") or {}
    return Limits(
        memory_bytes=memory_bytes(limits["memory"]) if "memory" in limits else None,
        cpus=cpu_cores(limits["cpu"]) if "cpu" in limits else None,
    )


def pod_env(container_env: dict[str, str], hostname: str) -> dict[str, str]:
    """The image's environment, then the container's (as Kubernetes layers them)."""
    path = f"{Path(sys.executable).parent}:/usr/local/sbin:/usr/local/bin:/usr/sbin:/usr/bin:/sbin:/bin"
    return {"PATH": path, "HOSTNAME": hostname, **IMAGE_ENV, **container_env}


def _hosts_file(spec: PodSpec) -> str:
    lines = ["127.0.0.1\tlocalhost", f"{spec.address}\t{spec.name}"]
    lines += [f"{address}\t{name}" for name, address in spec.hosts.items()]
    return "\n".join(lines) + "\n"


def _write_init(spec: PodSpec, workdir: Path) -> Path:
    """What emulate_init needs inside the pod, as a JSON file (with the pod's /etc/hosts beside it)."""
    hosts = workdir / f"{spec.name}.hosts"
    hosts.write_text(_hosts_file(spec))
    yunet = find_yunet_weights(allow_download=False)
    init = workdir / f"{spec.name}.init.json"
    settings = {
        "argv": pod_argv(spec.argv),
        "env": pod_env(spec.env, spec.name),
        "hosts": str(hosts),
        "mounts": [asdict(m) for m in spec.mounts],
        "home": IMAGE_HOME,
        "keep": image_paths(),
        "yunet": str(yunet) if yunet else None,
        "yunet_target": IMAGE_YUNET,
    }
    init.write_text(json.dumps(settings))
    return init


def follow_output(process: subprocess.Popen, log: Path, echo: Callable[[str], None]) -> threading.Thread:
    """A thread copying a pod's output, line by line, to its log file and to `echo`."""

    def pump() -> None:
        assert process.stdout is not None
        with log.open("w", encoding="utf-8", errors="replace") as stream:
            for raw in process.stdout:
                line = raw.decode("utf-8", errors="replace").rstrip("\n")
                stream.write(line + "\n")
                stream.flush()
                echo(line)

    reader = threading.Thread(target=pump, daemon=True)
    reader.start()
    return reader


class PodProcess:
    """One run (attempt) of a pod's container; its output goes to `log` and to `echo`, line by line."""

    def __init__(
        self, spec: PodSpec, sandbox: subprocess.Popen, workdir: Path, log: Path, echo: Callable[[str], None]
    ) -> None:
        self.spec, self.log = spec, log
        namespaces = [f"--net=/proc/{sandbox.pid}/ns/net", f"--uts=/proc/{sandbox.pid}/ns/uts"]
        new_mounts = ["unshare", "--mount", "--propagation", "private", "--"]
        init = [sys.executable, "-m", "facesim.emulator.pod_init", str(_write_init(spec, workdir))]
        self.process = subprocess.Popen(
            ["nsenter", *namespaces, "--", *new_mounts, *init],
            stdin=subprocess.DEVNULL,
            stdout=subprocess.PIPE,
            stderr=subprocess.STDOUT,
            start_new_session=True,  # its own process group: stopped as a whole
            env={"PATH": os.environ.get("PATH", "/usr/bin:/bin")},
        )
        self.reader = follow_output(self.process, log, lambda line: echo(f"[{spec.name}] {line}"))

    def poll(self) -> int | None:
        code = self.process.poll()
        if code is not None:
            self.reader.join(timeout=5)
        return code

    def signal(self, sig: int) -> None:
        with contextlib.suppress(ProcessLookupError):
            os.killpg(self.process.pid, sig)  # its own process group: children too

    def stop(self) -> None:
        stop_pods([self])


def stop_pods(pods: list[PodProcess]) -> None:
    """SIGTERM to every running pod, SIGKILL to those still there after the grace period (as the kubelet)."""
    live = [pod for pod in pods if pod.process.poll() is None]
    for pod in live:
        pod.signal(signal.SIGTERM)
    deadline = time.monotonic() + STOP_GRACE_S
    for pod in live:
        try:
            pod.process.wait(timeout=max(0.0, deadline - time.monotonic()))
        except subprocess.TimeoutExpired:
            pod.signal(signal.SIGKILL)
            pod.process.wait()
        pod.reader.join(timeout=5)  # its last lines reach the log


class Sandboxes:
    """The pods' sandboxes of one emulation and the pods in them; all end with `close`, which does
    not rely on the threads that started them (an interrupted emulation still stops every pod)."""

    def __init__(self, network: Network) -> None:
        self.network = network
        self.holders: list[subprocess.Popen] = []
        self.pods: list[PodProcess] = []
        self.lock = threading.Lock()

    def track(self, pod: PodProcess) -> PodProcess:
        with self.lock:
            self.pods.append(pod)
        return pod

    def create(self, hostname: str, address: str) -> subprocess.Popen:
        holder = self.network.sandbox(hostname, address)
        self.holders.append(holder)
        return holder

    def close(self) -> None:
        with self.lock:
            stop_pods(self.pods)
        for holder in self.holders:
            _end(holder)


class RunningPod(Protocol):
    """One run (attempt) of a pod's container, in either runtime."""

    def poll(self) -> int | None: ...

    def stop(self) -> None: ...


class PodRuntime(Protocol):
    """What runs the pods of an emulation: host processes in namespaces (ProcessRuntime) or
    containers of the built images (emulate_podman.PodmanRuntime)."""

    name: str

    def allocate(self) -> str:
        """A new pod's address on the emulated cluster network."""

    def start(self, spec: PodSpec, log: Path, echo: Callable[[str], None]) -> RunningPod:
        """Start one attempt of the pod; its output goes to `log` and, line by line, to `echo`."""

    def connect(self, spec: PodSpec, port: int) -> socket.socket:
        """A TCP connection from this machine to the pod's port."""

    def close(self) -> None:
        """Stop every pod this runtime started and remove what it made."""


class ProcessRuntime:
    """Pods as host processes of this Python environment, each in its own network, UTS and mount
    namespaces (the module docstring says what that gives and what it leaves out)."""

    name = "process"

    def __init__(self, workdir: Path) -> None:
        check_host()
        self.workdir = workdir
        self.network = Network()
        self.sandboxes = Sandboxes(self.network)
        self.by_pod: dict[str, subprocess.Popen] = {}  # a pod's sandbox outlives its restarts

    def allocate(self) -> str:
        return self.network.allocate()

    def _sandbox(self, spec: PodSpec) -> subprocess.Popen:
        if spec.name not in self.by_pod:
            holder = self.sandboxes.create(spec.name, spec.address)
            for port, target in spec.service_ports.items():  # kube-proxy's DNAT, inside the pod
                rule = ["-p", "tcp", "--dport", str(port), "-j", "REDIRECT", "--to-ports", str(target)]
                _run(*_in(holder, "iptables", "-t", "nat", "-A", "PREROUTING", *rule))
                _run(*_in(holder, "iptables", "-t", "nat", "-A", "OUTPUT", "-o", "lo", *rule))
            self.by_pod[spec.name] = holder
        return self.by_pod[spec.name]

    def start(self, spec: PodSpec, log: Path, echo: Callable[[str], None]) -> PodProcess:
        for mount in spec.mounts:  # the host's tree is the pod's: a mount point must exist, or be under the empty /mnt
            if not mount.target.startswith("/mnt/") and not Path(mount.target).is_dir():
                raise EmulationError(
                    f"{spec.name}: mountPath {mount.target} must be under /mnt or an existing folder here "
                    "(--runtime process; podman mounts anywhere)"
                )
        return self.sandboxes.track(PodProcess(spec, self._sandbox(spec), self.workdir, log, echo))

    def connect(self, spec: PodSpec, port: int) -> socket.socket:
        return connect_inside(self._sandbox(spec), (spec.address, port))

    def close(self) -> None:
        self.sandboxes.close()
        self.network.close()


@dataclass
class Cluster:
    """What every emulated resource shares: the PVC folders, the runtime that runs the pods, the
    folder of pod logs, the progress output, `cancel` (set: stop every pod, e.g. on Ctrl-C), the
    Service names every pod resolves (name -> pod address) and the Secrets and ConfigMaps."""

    volumes: Path
    runtime: PodRuntime
    workdir: Path
    echo: Callable[[str], None]
    cancel: threading.Event = field(default_factory=threading.Event)
    dns: dict[str, str] = field(default_factory=dict)
    env_sources: EnvSources = field(default_factory=EnvSources)
