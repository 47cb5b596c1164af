"""Pods as podman containers of the built images (`facesim images build`), for `facesim emulate
--runtime podman`. Each pod is one container `<emulation>-<pod>` of the image its template names:

- Network: one podman network per emulation (`facesim-<id>`), each pod at its own address on
  it; every Service name of the emulation resolves there through the container's /etc/hosts
  (`--add-host`; podman's DNS takes no dotted aliases such as `<job>-worker-0.<ns>.svc`). A
  Service port other than the container's (80 -> 8080) is redirected inside the pod's network
  namespace, as kube-proxy would send it. This machine reaches a pod at its address.
- securityContext: runAsUser/runAsGroup as the container's user, fsGroup and supplementalGroups
  as its groups, allowPrivilegeEscalation false as no-new-privileges, dropped capabilities. A PVC
  folder is mounted as it is (no chown: an NFS share does not take the kubelet's fsGroup change),
  so a volume that uid cannot write fails as it does on NFS with root_squash; an emptyDir is a
  fresh tmpfs writable by all (mode 0777, as the kubelet makes it).
- resources.limits: memory and CPUs as cgroup limits (CPUs capped at this machine's cores);
  a container over its memory limit is killed and reported OOMKilled.
- command replaces the image's entrypoint, args its CMD, as in Kubernetes.
"""

from __future__ import annotations

import ipaddress
import json
import os
import secrets
import shutil
import socket
import subprocess
import threading
import time
from collections.abc import Callable
from pathlib import Path

from facesim.emulator.pods import EmulationError, PodSpec, follow_output

STOP_GRACE_S = 5
STARTED_S = 60.0


def _podman(*args: str, check: bool = True) -> str:
    result = subprocess.run(["podman", *args], capture_output=True, text=True, check=False)
    if check and result.returncode:
        raise EmulationError(f"`podman {' '.join(args)}` failed: {result.stderr.strip() or result.returncode}")
    return result.stdout.strip()


def podman_works() -> str | None:
    """None when podman runs containers here, else why not."""
    if shutil.which("podman") is None:
        return "podman is not installed (scripts/install-tools.sh installs it)"
    if os.geteuid() != 0:
        return "the podman runtime runs rootful podman: run as root"
    result = subprocess.run(["podman", "info", "--format", "{{.Host.OCIRuntime.Name}}"], capture_output=True, text=True)
    if result.returncode:
        return f"`podman info` failed: {result.stderr.strip()}"
    return None


class PodmanPod:
    """One attempt of a pod: `podman run` in the foreground (its output is the pod's log)."""

    def __init__(self, runtime: PodmanRuntime, spec: PodSpec, log: Path, echo: Callable[[str], None]) -> None:
        self.runtime, self.spec, self.log = runtime, spec, log
        self.container = f"{runtime.network}-{spec.name}"
        command = runtime.run_command(self.container, spec)
        echo(f"pod {spec.name}: container {self.container} of image {spec.image} (podman)")
        # conmon's working folder: where podman 4.3's conmon leaves its `oom` marker on cgroup v1.
        self.run_dir = log.with_suffix(".conmon")
        self.run_dir.mkdir(parents=True, exist_ok=True)
        self.process = subprocess.Popen(
            command, stdin=subprocess.DEVNULL, stdout=subprocess.PIPE, stderr=subprocess.STDOUT, cwd=self.run_dir
        )
        self.reader = follow_output(self.process, log, lambda line: echo(f"[{spec.name}] {line}"))
        self.echo = echo
        self.finished = False
        if spec.service_ports:
            self._redirect_service_ports()

    def _redirect_service_ports(self) -> None:
        """The Service's port to the container's, inside the pod's network namespace (kube-proxy's DNAT)."""
        deadline = time.monotonic() + STARTED_S
        pid = "0"
        while pid in ("", "0") and self.process.poll() is None and time.monotonic() < deadline:
            pid = _podman("inspect", "--format", "{{.State.Pid}}", self.container, check=False)
            time.sleep(0.2)
        if pid in ("", "0"):
            return  # it ended before running: poll() reports it
        for port, target in self.spec.service_ports.items():
            rule = ["-p", "tcp", "--dport", str(port), "-j", "REDIRECT", "--to-ports", str(target)]
            subprocess.run(["nsenter", "-t", pid, "-n", "iptables", "-t", "nat", "-A", "PREROUTING", *rule], check=True)

    def poll(self) -> int | None:
        code = self.process.poll()
        if code is not None and not self.finished:
            self.finished = True
            self.reader.join(timeout=5)
            if oom_killed(self.container, self.run_dir):
                self.echo(f"pod {self.spec.name}: container {self.container} OOMKilled (over its memory limit)")
            _podman("rm", "--force", self.container, check=False)
            shutil.rmtree(self.run_dir, ignore_errors=True)
        return code

    def stop(self) -> None:
        if self.process.poll() is None:
            _podman("stop", "--time", str(STOP_GRACE_S), self.container, check=False)
            try:
                self.process.wait(timeout=STOP_GRACE_S + 10)
            except subprocess.TimeoutExpired:
                self.process.kill()
                self.process.wait()
        self.poll()


class PodmanRuntime:
    """The pods of one emulation as podman containers on a podman network of their own."""

    name = "podman"

    def __init__(self) -> None:
        if problem := podman_works():
            raise EmulationError(problem)
        self.network = f"facesim-{secrets.token_hex(3)}"
        _podman("network", "create", self.network)
        subnet = json.loads(_podman("network", "inspect", self.network))[0]["subnets"][0]
        self.subnet = ipaddress.ip_network(subnet["subnet"])
        self.gateway = ipaddress.ip_address(subnet["gateway"])
        self.hosts = (h for h in self.subnet.hosts() if h != self.gateway)
        self.lock = threading.Lock()
        self.pods: list[PodmanPod] = []

    def allocate(self) -> str:
        with self.lock:
            address = next(self.hosts, None)
        if address is None:
            raise EmulationError(f"no address left on {self.subnet}")
        return str(address)

    def run_command(self, container: str, spec: PodSpec) -> list[str]:
        if not spec.image:
            raise EmulationError(f"pod {spec.name}: its container names no image")
        command = ["podman", "run", "--name", container, "--replace", "--pull", "never"]
        command += ["--network", self.network, "--ip", spec.address, "--hostname", spec.name[:63]]
        for name, address in sorted(spec.hosts.items()):
            command += ["--add-host", f"{name}:{address}"]
        command += _security_options(spec)
        if spec.limits.memory_bytes is not None:
            command += ["--memory", str(spec.limits.memory_bytes), "--memory-swap", str(spec.limits.memory_bytes)]
        if spec.limits.cpus is not None:
            command += ["--cpus", f"{min(spec.limits.cpus, float(os.cpu_count() or 1)):g}"]
        for key, value in spec.env.items():
            command += ["--env", f"{key}={value}"]
        for mount in spec.mounts:
            if mount.source == "tmpfs":  # an emptyDir
                command += ["--tmpfs", f"{mount.target}:rw,mode=0777"]
            else:
                command += ["--volume", f"{mount.source}:{mount.target}:{'ro' if mount.read_only else 'rw'}"]
        if spec.command:
            command += ["--entrypoint", json.dumps(spec.command)]
        return [*command, spec.image, *spec.args]

    def start(self, spec: PodSpec, log: Path, echo: Callable[[str], None]) -> PodmanPod:
        if not _image_exists(spec.image):
            raise EmulationError(
                f"pod {spec.name}: image {spec.image} is not on this machine: build it with `facesim images build` "
                "(with the --registry and --tag the resources were rendered with)"
            )
        pod = PodmanPod(self, spec, log, echo)
        with self.lock:
            self.pods.append(pod)
        return pod

    def connect(self, spec: PodSpec, port: int) -> socket.socket:
        return socket.create_connection((spec.address, port), timeout=5.0)

    def close(self) -> None:
        with self.lock:
            pods = list(self.pods)
        for pod in pods:
            pod.stop()
        _podman("network", "rm", "--force", self.network, check=False)


def oom_killed(container: str, run_dir: Path) -> bool:
    """Podman's State.OOMKilled, or conmon's `oom` marker: on cgroup v1 (this sandbox) podman 4.3's
    conmon sees the OOM kill but writes its marker into its working folder, not where podman reads it."""
    state = _podman("inspect", "--format", "{{.State.OOMKilled}}", container, check=False)
    return state == "true" or (run_dir / "oom").exists()


def _image_exists(image: str) -> bool:
    return subprocess.run(["podman", "image", "exists", image], capture_output=True).returncode == 0


def _security_options(spec: PodSpec) -> list[str]:
    security, options = spec.security, []
    if security.run_as_user is not None:
        group = f":{security.run_as_group}" if security.run_as_group is not None else ""
        options += ["--user", f"{security.run_as_user}{group}"]
    for gid in dict.fromkeys([security.fs_group, *security.supplemental_groups]):
        if gid is not None:
            options += ["--group-add", str(gid)]
    if security.no_new_privileges:
        options += ["--security-opt", "no-new-privileges"]
    if security.drop_all_capabilities:
        options += ["--cap-drop", "all"]
    return options
