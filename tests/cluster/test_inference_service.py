"""The InferenceService: its shape, the official CRD, and KServeClient create-or-update against the fake API server."""

from __future__ import annotations

import copy
from pathlib import Path

import pytest
import yaml

from facesim.cluster.client import ClusterError
from facesim.cluster.inference_service import (
    InferenceServiceConfig,
    ReadyOptions,
    deploy_inference_service,
    inference_service,
    main,
)
from facesim.cluster.resources import to_manifest
from tests.helpers.crd_validation import crd_errors
from tests.helpers.fake_apiserver import Answer, RunningApiServer, status_body

ISVCS = "/apis/serving.kserve.io/v1beta1/namespaces/facesim/inferenceservices"
ISVC = f"{ISVCS}/facesim"
FAST = ReadyOptions(timeout=3, poll_interval=0.05)


@pytest.fixture(scope="module")
def isvc_crd(crds_dir: Path) -> Path:
    return crds_dir / "serving.kserve.io_inferenceservices.yaml"


def rendered(config: InferenceServiceConfig | None = None) -> dict:
    return to_manifest(inference_service(config or InferenceServiceConfig()))


def test_custom_predictor_container() -> None:
    isvc = rendered(InferenceServiceConfig(model_uri="pvc://models/facenet/7", predictor_args=("--workers", "2")))
    assert isvc["metadata"]["annotations"] == {"serving.kserve.io/deploymentMode": "Standard"}
    predictor = isvc["spec"]["predictor"]
    (container,) = predictor["containers"]
    assert container["name"] == "kserve-container"
    assert container["command"] == ["python", "-m", "facesim.inference"]
    args = container["args"]
    assert args[args.index("--model_name") + 1] == "facenet" and args[args.index("--model_dir") + 1] == "/mnt/models"
    assert args[-2:] == ["--workers", "2"]
    assert args[args.index("--host") + 1] == "0.0.0.0"  # the pod listens for the Service (the default is loopback)
    token = {"secretKeyRef": {"name": "facesim-admin-token", "key": "token", "optional": True}}
    # No STORAGE_URI: KServe would add a second volume on the claim (cluster/inference_service.py).
    assert container["env"] == [{"name": "FACESIM_ADMIN_TOKEN", "valueFrom": token}]  # gallery writes
    assert container["readinessProbe"]["httpGet"] == {"path": "/v2/health/ready", "port": 8080}
    assert container["securityContext"]["runAsNonRoot"] is True
    assert container["resources"]["limits"] == {"cpu": "2", "memory": "4Gi"}
    model, gallery = container["volumeMounts"]
    assert (model["name"], model["mountPath"], model["subPath"], model["readOnly"]) == (
        "models",
        "/mnt/models",
        "facenet/7",
        True,
    )
    assert (gallery["name"], gallery["mountPath"], gallery["subPath"]) == (
        "facesim-models",
        "/mnt/gallery",
        "galleries/lfw/1",
    )
    assert "readOnly" not in gallery  # the enrol endpoint writes the gallery
    assert [v["persistentVolumeClaim"] for v in predictor["volumes"]] == [
        {"claimName": "models"},
        {"claimName": "facesim-models"},
    ]


def test_a_startup_probe_covers_loading_before_the_server_listens() -> None:
    """The predictor loads the model, gallery and detector before it listens: without a startup
    probe the liveness probe (4 x 15 s) restarts a slow start forever."""
    (container,) = rendered()["spec"]["predictor"]["containers"]
    startup, liveness = container["startupProbe"], container["livenessProbe"]
    assert startup["httpGet"] == liveness["httpGet"] == {"path": "/v2/health/live", "port": 8080}
    assert startup["periodSeconds"] * startup["failureThreshold"] >= 300
    assert liveness["periodSeconds"] * liveness["failureThreshold"] < 300


def test_inference_service_passes_the_official_crd(isvc_crd: Path) -> None:
    for mode in ("Standard", "Knative"):
        assert crd_errors(rendered(InferenceServiceConfig(deployment_mode=mode)), isvc_crd) == []


def test_the_crd_validator_rejects_broken_inference_services(isvc_crd: Path) -> None:
    broken = copy.deepcopy(rendered())
    broken["spec"]["predictor"]["containers"][0]["readinessProbe"]["httpGet"]["port"] = [8080]
    broken["spec"]["predictor"]["minReplica"] = 1
    errors = crd_errors(broken, isvc_crd)
    assert any("minReplica" in e for e in errors) and any("port" in e for e in errors)


def test_the_crd_validator_enforces_list_types(isvc_crd: Path) -> None:
    """`map` lists are unique by their keys (env by name), `set` lists by value."""
    duplicate_env = copy.deepcopy(rendered())
    env = duplicate_env["spec"]["predictor"]["containers"][0]["env"]
    env.append(copy.deepcopy(env[0]))
    assert crd_errors(duplicate_env, isvc_crd) == [
        "spec.predictor.containers.0.env: duplicate entries for key [name='FACESIM_ADMIN_TOKEN']"
    ]
    duplicate_codes = copy.deepcopy(rendered())
    rule = {"action": "Restart", "exitCodes": {"operator": "In", "values": [42, 42]}}
    duplicate_codes["spec"]["predictor"]["containers"][0]["restartPolicyRules"] = [rule]
    assert crd_errors(duplicate_codes, isvc_crd) == [
        "spec.predictor.containers.0.restartPolicyRules.0.exitCodes.values: duplicate entries for key [42]"
    ]


@pytest.mark.parametrize(
    "bad",
    [
        dict(model_uri="s3://bucket/model"),
        dict(gallery_uri="pvc://only-a-claim"),
        dict(deployment_mode="ModelMesh"),
        dict(min_replicas=2, max_replicas=1),
    ],
)
def test_bad_configs_are_refused(bad: dict) -> None:
    with pytest.raises(ValueError):
        InferenceServiceConfig(**bad)


def _with_status(ready: str, generation: int = 1) -> dict:
    isvc = rendered()
    isvc["metadata"].update(resourceVersion="41", generation=generation)
    isvc["status"] = {"observedGeneration": generation, "conditions": [{"type": "Ready", "status": ready}]}
    return isvc


def test_deploy_creates_when_absent_and_waits_for_ready(api_server: RunningApiServer, kubeconfig: str) -> None:
    not_found = Answer(404, status_body(404, "NotFound", "not found"))
    api_server.state.answer(
        "GET", ISVC, not_found, Answer(200, _with_status("False")), Answer(200, _with_status("True"))
    )
    api_server.state.answer("POST", ISVCS, Answer(201, rendered()))
    url = deploy_inference_service(InferenceServiceConfig(), kubeconfig=kubeconfig, options=FAST)
    assert url == "http://facesim-predictor.facesim.svc.cluster.local"
    (create,) = api_server.state.calls("POST")
    assert create.path == ISVCS and create.body == rendered()
    assert api_server.state.calls("PUT") == []
    assert len(api_server.state.calls("GET", ISVC)) == 3


def test_deploy_replaces_an_existing_service(api_server: RunningApiServer, kubeconfig: str) -> None:
    api_server.state.answer("GET", ISVC, Answer(200, _with_status("True", 1)), Answer(200, _with_status("True", 2)))
    api_server.state.answer("PUT", ISVC, Answer(200, _with_status("False", 2)))
    deploy_inference_service(InferenceServiceConfig(), kubeconfig=kubeconfig, options=FAST)
    (replace,) = api_server.state.calls("PUT")
    assert replace.body["metadata"]["resourceVersion"] == "41"
    assert replace.body["spec"] == rendered()["spec"]
    assert api_server.state.calls("POST") == []


def test_not_ready_in_time_is_a_clear_error(api_server: RunningApiServer, kubeconfig: str) -> None:
    not_found = Answer(404, status_body(404, "NotFound", "not found"))
    api_server.state.answer("GET", ISVC, not_found, Answer(200, _with_status("False")))
    api_server.state.answer("POST", ISVCS, Answer(201, rendered()))
    with pytest.raises(ClusterError, match="not Ready after 1 s; see `kubectl -n facesim describe inferenceservice"):
        deploy_inference_service(InferenceServiceConfig(), kubeconfig=kubeconfig, options=ReadyOptions(1, 0.05))


@pytest.mark.parametrize(
    "status, reason, expected",
    [(409, "AlreadyExists", "already exists"), (403, "Forbidden", "forbidden by RBAC")],
)
def test_api_errors_say_what_to_do(
    api_server: RunningApiServer, kubeconfig: str, status: int, reason: str, expected: str
) -> None:
    api_server.state.answer("GET", ISVC, Answer(404, status_body(404, "NotFound", "not found")))
    api_server.state.answer("POST", ISVCS, Answer(status, status_body(status, reason, "no")))
    with pytest.raises(ClusterError, match=expected):
        deploy_inference_service(InferenceServiceConfig(), wait=False, kubeconfig=kubeconfig)


def test_serve_cluster_command(api_server: RunningApiServer, kubeconfig: str, capsys) -> None:
    api_server.state.answer("GET", ISVC, Answer(403, status_body(403, "Forbidden", "user cannot get")))
    assert main(["--backend", "cluster", "--kubeconfig", kubeconfig, "--no-wait"]) == 1
    err = capsys.readouterr().err
    assert "forbidden by RBAC" in err and "Traceback" not in err

    assert main(["--dry-run", "--model", "pvc://m/facenet/3", "--workers", "2", "--image-tag", "v9"]) == 0
    printed = yaml.safe_load(capsys.readouterr().out)
    container = printed["spec"]["predictor"]["containers"][0]
    assert container["image"].endswith("/facesim-predictor:v9") and container["args"][-2:] == ["--workers", "2"]

    for bad in (["--model", "/local/dir"], ["--port", "9000"]):
        with pytest.raises(SystemExit) as exited:
            main(["--dry-run", *bad])
        assert exited.value.code == 2
    assert "pvc://CLAIM/PATH" in capsys.readouterr().err
