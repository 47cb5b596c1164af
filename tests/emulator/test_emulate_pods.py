"""What a pod is under `facesim emulate`, checked from inside two small pods (a few seconds): own
hostname, empty HOME and /tmp, PVC folders at their mountPath, TF_CONFIG, the Service names in
/etc/hosts, each pod its own address with the same port free in every pod, restarts to backoffLimit."""

from __future__ import annotations

import subprocess
from pathlib import Path

import yaml

from tests.helpers.emulate import emulate_command

# Worker 1 listens on 2222 and answers once; worker 0 checks its pod, then talks to worker 1 by
# its Service name. Both bind 0.0.0.0:2222, as TensorFlow's gRPC server does.
PROBE = """
import json, os, socket, sys, time
config = json.loads(os.environ["TF_CONFIG"])
index = config["task"]["index"]
server = socket.create_server(("0.0.0.0", 2222))
assert socket.gethostname() == f"probe-worker-{index}", socket.gethostname()
assert os.listdir("/tmp") == [], "/tmp not empty: " + repr(os.listdir("/tmp"))
home = os.listdir(os.environ["HOME"])  # empty but for the YuNet weights the images bake in
assert home in ([], [".facesim"]), "HOME not empty: " + repr(home)
assert open(f"/mnt/shared/from-host.txt").read() == "hello", "the PVC folder is not mounted"
open(f"/mnt/shared/from-worker-{index}.txt", "w").write(os.environ["MESSAGE"])
if index == 1:
    connection, _ = server.accept()
    connection.sendall(b"pong")
    time.sleep(1)
    sys.exit(0)
peer = config["cluster"]["worker"][1].split(":")[0]
assert socket.gethostbyname(peer) == "127.0.0.3", socket.gethostbyname(peer)
for _ in range(100):
    try:
        reply = socket.create_connection((peer, 2222), timeout=2).recv(4)
        break
    except ConnectionRefusedError:
        time.sleep(0.1)
assert reply == b"pong", reply
print("probe=ok")
"""


def _tfjob(name: str, command: list[str], restart_policy: str = "OnFailure", backoff_limit: int = 3) -> dict:
    container = {
        "name": "tensorflow",
        "image": "registry.test/facesim-trainer:smoke",
        "command": command,
        "env": [{"name": "MESSAGE", "value": "written in a pod"}],
        "ports": [{"name": "tfjob-port", "containerPort": 2222}],
        "volumeMounts": [{"name": "shared", "mountPath": "/mnt/shared"}],
    }
    pod = {"containers": [container], "volumes": [{"name": "shared", "persistentVolumeClaim": {"claimName": "pvc"}}]}
    worker = {"replicas": 2, "restartPolicy": restart_policy, "template": {"spec": pod}}
    return {
        "apiVersion": "kubeflow.org/v1",
        "kind": "TFJob",
        "metadata": {"name": name, "namespace": "ns1"},
        "spec": {"tfReplicaSpecs": {"Worker": worker}, "runPolicy": {"backoffLimit": backoff_limit}},
    }


def _emulate(tmp_path: Path, job: dict) -> subprocess.CompletedProcess:
    (tmp_path / "v" / "pvc").mkdir(parents=True, exist_ok=True)
    (tmp_path / "v" / "pvc" / "from-host.txt").write_text("hello")
    (tmp_path / "job.yaml").write_text(yaml.safe_dump(job))
    command = emulate_command([tmp_path / "job.yaml"], tmp_path / "v", tmp_path / "logs", timeout=120)
    return subprocess.run(command, capture_output=True, text=True, timeout=180)


def test_pods_have_their_own_names_files_and_addresses(tmp_path: Path) -> None:
    result = _emulate(tmp_path, _tfjob("probe", ["python", "-c", PROBE]))
    assert result.returncode == 0, result.stderr
    assert "[probe-worker-0] probe=ok" in result.stderr
    assert "TFJob ns1/probe Succeeded: probe-worker-0 succeeded" in result.stderr
    shared = tmp_path / "v" / "pvc"
    assert (
        (shared / "from-worker-0.txt").read_text() == (shared / "from-worker-1.txt").read_text() == "written in a pod"
    )


def test_a_failing_replica_restarts_until_backoff_limit(tmp_path: Path) -> None:
    result = _emulate(tmp_path, _tfjob("crash", ["sh", "-c", "exit 3"], backoff_limit=2))
    assert result.returncode == 1
    assert "TFJob ns1/crash Failed: 2 restarts reached backoffLimit 2" in result.stderr
    never = _emulate(tmp_path, _tfjob("once", ["sh", "-c", "exit 3"], restart_policy="Never"))
    assert "exit code 3 (restartPolicy Never)" in never.stderr and "restarting" not in never.stderr
