"""The TFJob: its shape, the official CRD, and the TrainingClient calls against the fake API server."""

from __future__ import annotations

import copy
import os
import signal
import threading
from pathlib import Path

import pytest

import facesim.cluster.resources as resources
from facesim.cluster.client import ClusterError
from facesim.cluster.resources import ClusterConfig, to_manifest
from facesim.training.tfjob import TFJobConfig, WaitOptions, submit_tfjob, tfjob
from tests.helpers.crd_validation import crd_errors, unchecked_rules
from tests.helpers.fake_apiserver import Answer, RunningApiServer, status_body

TFJOBS = "/apis/kubeflow.org/v1/namespaces/facesim/tfjobs"
FAST = WaitOptions(timeout=10, poll_interval=0.05)


@pytest.fixture(scope="module")
def tfjob_crd(crds_dir: Path) -> Path:
    return crds_dir / "kubeflow.org_tfjobs.yaml"


def rendered(config: TFJobConfig | None = None) -> dict:
    return to_manifest(tfjob(config or TFJobConfig()))


def test_tfjob_has_workers_only_a_tensorflow_container_and_the_volumes() -> None:
    job = rendered(TFJobConfig(workers=3, train_args=("--data", "/mnt/data/lfw", "--out", "/mnt/models/m")))
    specs = job["spec"]["tfReplicaSpecs"]
    assert list(specs) == ["Worker"]  # no Chief: worker 0 is the chief
    worker = specs["Worker"]
    assert worker["replicas"] == 3 and worker["restartPolicy"] == "OnFailure"
    pod = worker["template"]["spec"]
    (container,) = pod["containers"]
    assert container["name"] == "tensorflow"
    assert container["command"] == [
        "python",
        "-m",
        "facesim.training",
        "--data",
        "/mnt/data/lfw",
        "--out",
        "/mnt/models/m",
    ]
    assert container["ports"] == [{"containerPort": 2222, "name": "tfjob-port"}]
    assert container["securityContext"]["runAsNonRoot"] is True
    assert container["securityContext"]["allowPrivilegeEscalation"] is False
    assert {m["mountPath"] for m in container["volumeMounts"]} == {"/mnt/data", "/mnt/runs", "/mnt/models"}
    assert {v["persistentVolumeClaim"]["claimName"] for v in pod["volumes"]} == {
        "facesim-data",
        "facesim-runs",
        "facesim-models",
    }
    assert job["spec"]["runPolicy"]["cleanPodPolicy"] == "Running"
    assert job["spec"]["runPolicy"]["backoffLimit"] == 3


def test_worker_pods_opt_out_of_istio_and_size_tensorflow_to_their_cpu_limit() -> None:
    """In a Kubeflow profile namespace an Istio sidecar never exits, so the pod never completes;
    TensorFlow would size its threads from the node's cores, not the container's CPU limit."""
    pod = rendered()["spec"]["tfReplicaSpecs"]["Worker"]["template"]
    assert pod["metadata"]["annotations"] == {"sidecar.istio.io/inject": "false"}
    (container,) = pod["spec"]["containers"]
    threads = next(env for env in container["env"] if env["name"] == "TF_NUM_INTRAOP_THREADS")
    assert threads["valueFrom"]["resourceFieldRef"] == {
        "containerName": "tensorflow",
        "resource": "limits.cpu",
        "divisor": "1",
    }
    assert container["resources"]["limits"]["cpu"] == "4"
    assert pod["spec"]["securityContext"]["fsGroupChangePolicy"] == "OnRootMismatch"


def test_a_pipeline_steps_pod_owns_the_tfjob(monkeypatch: pytest.MonkeyPatch, tmp_path: Path) -> None:
    """A TFJob created by a pipeline step goes when the step's pod goes (a deleted run)."""
    assert "ownerReferences" not in rendered()["metadata"]  # outside a pipeline step: nobody owns it
    pod_namespace = tmp_path / "namespace"
    pod_namespace.write_text("kubeflow\n")
    monkeypatch.setattr(resources, "POD_NAMESPACE_FILE", pod_namespace)
    monkeypatch.setenv("FACESIM_POD_NAME", "facesim-abc-train-model-123")
    monkeypatch.setenv("FACESIM_POD_UID", "6f1d-uid")
    owned = rendered(TFJobConfig(cluster=ClusterConfig(namespace="kubeflow")))["metadata"]["ownerReferences"]
    assert owned == [{"apiVersion": "v1", "kind": "Pod", "name": "facesim-abc-train-model-123", "uid": "6f1d-uid"}]
    elsewhere = rendered(TFJobConfig(cluster=ClusterConfig(namespace="other")))["metadata"]
    assert "ownerReferences" not in elsewhere  # an owner must share the namespace


def test_tfjob_passes_the_official_crd(tfjob_crd: Path) -> None:
    assert crd_errors(rendered(), tfjob_crd) == []


@pytest.mark.parametrize(
    "breakage",
    [
        lambda job: job["spec"]["tfReplicaSpecs"]["Worker"]["template"]["spec"]["containers"][0].update(nmae="typo"),
        lambda job: job["spec"]["tfReplicaSpecs"]["Worker"].update(replicas="two"),
        lambda job: job["spec"]["tfReplicaSpecs"]["Worker"]["template"]["spec"]["containers"][0]["resources"][
            "limits"
        ].update(memory="lots"),
        lambda job: job["spec"]["tfReplicaSpecs"]["Worker"]["template"]["spec"]["containers"][0].pop("name"),
        lambda job: job["spec"]["tfReplicaSpecs"]["Worker"]["template"]["spec"]["containers"][0]["ports"][0].update(
            containerPort="2222"
        ),
    ],
    ids=["unknown-field", "replicas-not-int", "bad-quantity", "missing-required", "port-not-int"],
)
def test_the_crd_validator_rejects_broken_tfjobs(tfjob_crd: Path, breakage) -> None:
    job = copy.deepcopy(rendered())
    breakage(job)
    assert crd_errors(job, tfjob_crd)


def _container(job: dict) -> dict:
    return job["spec"]["tfReplicaSpecs"]["Worker"]["template"]["spec"]["containers"][0]


def test_list_map_keys_are_enforced(tfjob_crd: Path) -> None:
    """`x-kubernetes-list-map-keys`: the API server refuses two env entries with one name, or two
    ports with one (containerPort, protocol), the protocol defaulting to TCP."""
    job = rendered()
    _container(job)["env"] = [{"name": "A", "value": "1"}, {"name": "A", "value": "2"}]
    assert crd_errors(job, tfjob_crd) == [
        "spec.tfReplicaSpecs.Worker.template.spec.containers.0.env: duplicate entries for key [name='A']"
    ]
    job = rendered()
    _container(job)["ports"] = [{"containerPort": 2222, "name": "a"}, {"containerPort": 2222, "protocol": "TCP"}]
    assert "duplicate entries for key [containerPort=2222, protocol='TCP']" in crd_errors(job, tfjob_crd)[0]
    _container(job)["ports"][1]["protocol"] = "UDP"
    assert crd_errors(job, tfjob_crd) == []


def test_the_validator_names_the_rules_it_cannot_check(tfjob_crd: Path) -> None:
    assert unchecked_rules(tfjob_crd, "v1") == [
        ".spec.runPolicy.schedulingPolicy.queue: CEL rule 'self == oldSelf' "
        "(spec.runPolicy.schedulingPolicy.queue is immutable)"
    ]


def test_int_or_string_fields_accept_both(tfjob_crd: Path) -> None:
    job = rendered()
    container = job["spec"]["tfReplicaSpecs"]["Worker"]["template"]["spec"]["containers"][0]
    for port in (8080, "tfjob-port"):
        container["readinessProbe"] = {"tcpSocket": {"port": port}}
        assert crd_errors(job, tfjob_crd) == []
    container["readinessProbe"] = {"tcpSocket": {"port": 1.5}}
    assert crd_errors(job, tfjob_crd)


def _job_with(condition: str) -> dict:
    job = rendered()
    job["status"] = {
        "conditions": [
            {"type": condition, "status": "True", "reason": "x", "lastTransitionTime": "2026-01-01T00:00:00Z"}
        ]
    }
    return job


POD_LIST = {
    "kind": "PodList",
    "apiVersion": "v1",
    "items": [{"metadata": {"name": "facesim-train-worker-0", "namespace": "facesim"}, "status": {"phase": "Running"}}],
}


def test_submit_creates_follows_logs_and_waits(api_server: RunningApiServer, kubeconfig: str, capsys) -> None:
    job_path = f"{TFJOBS}/facesim-train"
    api_server.state.answer("POST", TFJOBS, Answer(201, rendered()))
    api_server.state.answer("GET", job_path, Answer(200, _job_with("Running")), Answer(200, _job_with("Succeeded")))
    api_server.state.answer("GET", "/api/v1/namespaces/facesim/pods", Answer(200, POD_LIST))
    log_path = "/api/v1/namespaces/facesim/pods/facesim-train-worker-0/log"
    api_server.state.answer("GET", log_path, Answer(200, "epoch=1\nloss=0.5\nval_accuracy=0.81\n"))

    assert submit_tfjob(TFJobConfig(), wait=True, kubeconfig=kubeconfig, options=FAST) == "facesim-train"

    (create,) = api_server.state.calls("POST")
    assert create.path == TFJOBS
    assert create.body == rendered()  # the exact resource the builder made
    (pods,) = api_server.state.calls("GET", "/api/v1/namespaces/facesim/pods")
    assert pods.query["labelSelector"] == [
        "training.kubeflow.org/job-name=facesim-train,training.kubeflow.org/job-role=master"
    ]
    (logs,) = api_server.state.calls("GET", log_path)
    assert logs.query["container"] == ["tensorflow"] and logs.query["follow"] == ["True"]
    assert "val_accuracy=0.81" in capsys.readouterr().out
    assert len(api_server.state.calls("GET", job_path)) == 2


def test_submit_without_wait_only_creates(api_server: RunningApiServer, kubeconfig: str) -> None:
    api_server.state.answer("POST", TFJOBS, Answer(201, rendered()))
    submit_tfjob(TFJobConfig(), wait=False, kubeconfig=kubeconfig)
    assert [(r.method, r.path) for r in api_server.state.requests] == [("POST", TFJOBS)]


def test_a_failed_job_is_a_clear_error(api_server: RunningApiServer, kubeconfig: str) -> None:
    api_server.state.answer("POST", TFJOBS, Answer(201, rendered()))
    api_server.state.answer("GET", f"{TFJOBS}/facesim-train", Answer(200, _job_with("Failed")))
    with pytest.raises(ClusterError, match="failed; see `kubectl -n facesim logs facesim-train-worker-0`"):
        submit_tfjob(TFJobConfig(), kubeconfig=kubeconfig, options=FAST)


@pytest.mark.parametrize(
    "status, reason, expected",
    [
        (409, "AlreadyExists", "a TFJob named facesim-train already exists; delete it"),
        (403, "Forbidden", "forbidden by RBAC .*apply rbac.yaml"),
        (404, "NotFound", "is the TFJob API installed"),
    ],
)
def test_api_errors_say_what_to_do(
    api_server: RunningApiServer, kubeconfig: str, status: int, reason: str, expected: str
) -> None:
    api_server.state.answer("POST", TFJOBS, Answer(status, status_body(status, reason, "denied by the server")))
    with pytest.raises(ClusterError, match=expected):
        submit_tfjob(TFJobConfig(), kubeconfig=kubeconfig)


@pytest.mark.parametrize("stop", [signal.SIGINT, signal.SIGTERM], ids=["ctrl-c", "sigterm"])
def test_ctrl_c_or_sigterm_deletes_the_job(api_server: RunningApiServer, kubeconfig: str, stop) -> None:
    """SIGTERM: what a pipeline step gets when its KFP run is terminated."""
    api_server.state.answer("POST", TFJOBS, Answer(201, rendered()))
    api_server.state.answer("GET", f"{TFJOBS}/facesim-train", Answer(200, _job_with("Created")))
    api_server.state.answer("DELETE", f"{TFJOBS}/facesim-train", Answer(200, status_body(200, "", "deleted")))
    interrupt = threading.Timer(0.5, lambda: os.kill(os.getpid(), stop))
    interrupt.start()
    with pytest.raises(KeyboardInterrupt):
        submit_tfjob(TFJobConfig(), kubeconfig=kubeconfig, options=FAST)
    interrupt.join()
    assert api_server.state.calls("DELETE", f"{TFJOBS}/facesim-train")


def test_missing_kubeconfig_is_a_clear_error(tmp_path: Path) -> None:
    with pytest.raises(ClusterError, match="no usable kubeconfig"):
        submit_tfjob(TFJobConfig(), kubeconfig=str(tmp_path / "absent"))
