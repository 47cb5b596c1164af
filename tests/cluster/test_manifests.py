"""`facesim manifests --out DIR` (issue 6 acceptance): every resource rendered and validated as a cluster would."""

from __future__ import annotations

import copy
import re
from pathlib import Path

import kubernetes_validate
import pytest
import yaml

from facesim.cli import main as facesim_main
from facesim.cluster.inference_service import KNATIVE_FEATURE_FLAGS
from facesim.training.config import parse_config
from tests.helpers.crd_validation import crd_errors
from tests.helpers.katib_webhook import experiment_problems

K8S_VERSION = kubernetes_validate.latest_version()
OPTIONS = [
    "--namespace",
    "faces-prod",
    "--image-registry",
    "registry.example.com/ml",
    "--image-tag",
    "2026.11",
    "--nfs-server",
    "10.0.0.5",
    "--nfs-share",
    "/srv/nfs/facesim",
    "--workers",
    "4",
    "--model-version",
    "3",
    "--algorithm",
    "grid",
    "--trials",
    "9",
    "--ui-replicas",
    "2",
]
CRDS = {"TFJob": "kubeflow.org_tfjobs.yaml", "InferenceService": "serving.kserve.io_inferenceservices.yaml"}


@pytest.fixture(scope="module")
def rendered(tmp_path_factory: pytest.TempPathFactory) -> dict[str, list[dict]]:
    out = tmp_path_factory.mktemp("manifests")
    assert facesim_main(["manifests", "--out", str(out), *OPTIONS]) == 0
    return {path.name: list(yaml.safe_load_all(path.read_text())) for path in sorted(out.glob("*.yaml"))}


def by_kind(rendered: dict[str, list[dict]]) -> dict[str, list[dict]]:
    kinds: dict[str, list[dict]] = {}
    for documents in rendered.values():
        for document in documents:
            kinds.setdefault(document["kind"], []).append(document)
    return kinds


def test_one_file_per_kind_or_component(rendered: dict[str, list[dict]]) -> None:
    assert set(rendered) == {
        "namespace.yaml",
        "storageclass.yaml",
        "pvcs.yaml",
        "rbac.yaml",
        "tfjob.yaml",
        "experiment.yaml",
        "secret.yaml",
        "inferenceservice.yaml",
        "ui.yaml",
    }
    assert [d["kind"] for d in rendered["ui.yaml"]] == ["Deployment", "Service"]
    assert [d["kind"] for d in rendered["rbac.yaml"]] == ["ServiceAccount", "Role", "RoleBinding"]


def test_custom_resources_pass_the_official_crds(rendered: dict[str, list[dict]], crds_dir: Path) -> None:
    """TFJob and InferenceService against their CRDs. The Experiment's CRD preserves unknown fields, so
    it would accept anything: the Experiment gets Katib's webhook rules instead, and its trial
    template's TFJob the TFJob CRD."""
    kinds = by_kind(rendered)
    for kind, crd in CRDS.items():
        (resource,) = kinds[kind]
        assert crd_errors(resource, crds_dir / crd) == [], kind
    (search,) = kinds["Experiment"]
    assert experiment_problems(search) == []
    trial = {**search["spec"]["trialTemplate"]["trialSpec"], "metadata": {"name": "facesim-tune-trial"}}
    assert crd_errors(trial, crds_dir / CRDS["TFJob"]) == []


def test_core_kinds_pass_kubernetes_schemas(rendered: dict[str, list[dict]]) -> None:
    core = [
        d
        for documents in rendered.values()
        for d in documents
        if d["kind"] not in ("TFJob", "InferenceService", "Experiment")
    ]
    assert {d["kind"] for d in core} == {
        "Namespace",
        "StorageClass",
        "PersistentVolumeClaim",
        "ServiceAccount",
        "Role",
        "RoleBinding",
        "Deployment",
        "Service",
        "Secret",
    }
    for document in core:
        kubernetes_validate.validate(document, K8S_VERSION, strict=True)


def test_kubernetes_validate_rejects_broken_core_resources(rendered: dict[str, list[dict]]) -> None:
    claim = copy.deepcopy(rendered["pvcs.yaml"][0])
    claim["spec"]["accessModes"] = "ReadWriteMany"  # a string, not a list
    deployment = copy.deepcopy(rendered["ui.yaml"][0])
    deployment["spec"]["template"]["spec"]["containers"][0]["livenessprobe"] = {}  # misspelt field
    for broken in (claim, deployment):
        with pytest.raises(kubernetes_validate.ValidationError):
            kubernetes_validate.validate(broken, K8S_VERSION, strict=True)


def test_nfs_storage_class_and_read_write_many_claims(rendered: dict[str, list[dict]]) -> None:
    (storage_class,) = rendered["storageclass.yaml"]
    assert storage_class["provisioner"] == "nfs.csi.k8s.io"
    assert storage_class["parameters"] == {"server": "10.0.0.5", "share": "/srv/nfs/facesim"}
    claims = rendered["pvcs.yaml"]
    assert {c["metadata"]["name"] for c in claims} == {"facesim-data", "facesim-runs", "facesim-models"}
    for claim in claims:
        assert claim["spec"]["accessModes"] == ["ReadWriteMany"]
        assert claim["spec"]["storageClassName"] == storage_class["metadata"]["name"]
        assert claim["metadata"]["namespace"] == "faces-prod"


def test_rbac_grants_the_pipeline_exactly_its_resources(rendered: dict[str, list[dict]]) -> None:
    account, role, binding = rendered["rbac.yaml"]
    granted = {
        (group, resource): set(rule["verbs"])
        for rule in role["rules"]
        for group in rule["apiGroups"]
        for resource in rule["resources"]
    }
    assert set(granted) == {
        ("kubeflow.org", "tfjobs"),
        ("kubeflow.org", "experiments"),
        ("kubeflow.org", "trials"),
        ("serving.kserve.io", "inferenceservices"),
        ("", "pods"),
        ("", "pods/log"),
        ("argoproj.io", "workflowtaskresults"),
        ("", "configmaps"),
        ("", "secrets"),
    }
    assert {"create", "get", "watch", "delete"} <= granted[("kubeflow.org", "tfjobs")]
    assert {"create", "get", "watch"} <= granted[("kubeflow.org", "experiments")]
    assert {"create", "get", "update", "watch"} <= granted[("serving.kserve.io", "inferenceservices")]
    assert granted[("", "pods/log")] == {"get"}
    assert all("*" not in verbs for verbs in granted.values())
    # Pipeline steps run as this account: what Argo's executor and KFP's launcher need in them.
    assert granted[("argoproj.io", "workflowtaskresults")] == {"create", "patch"}
    by_resource = {rule["resources"][0]: rule for rule in role["rules"]}
    assert by_resource["secrets"]["resourceNames"] == ["mlpipeline-minio-artifact"]
    assert by_resource["configmaps"]["resourceNames"] == ["kfp-launcher"]
    assert granted[("", "secrets")] == granted[("", "configmaps")] == {"get"}
    assert role["kind"] == "Role"  # namespaced: nothing outside the pipeline's namespace
    assert binding["roleRef"]["name"] == role["metadata"]["name"]
    assert binding["subjects"] == [
        {"kind": "ServiceAccount", "name": account["metadata"]["name"], "namespace": "faces-prod"}
    ]


def test_components_agree_on_names_paths_and_images(rendered: dict[str, list[dict]]) -> None:
    kinds = by_kind(rendered)
    (job,) = kinds["TFJob"]
    worker = job["spec"]["tfReplicaSpecs"]["Worker"]
    assert worker["replicas"] == 4
    command = worker["template"]["spec"]["containers"][0]["command"]
    assert command[command.index("--out") + 1] == "/mnt/models/facenet/3"
    assert command[:3] == ["python", "-m", "facesim.training"]
    assert parse_config(command[3:]).workers == 4  # the worker's own parser accepts what the TFJob runs
    assert worker["template"]["spec"]["containers"][0]["image"] == "registry.example.com/ml/facesim-trainer:2026.11"
    (isvc,) = kinds["InferenceService"]
    container = isvc["spec"]["predictor"]["containers"][0]
    model_mount = next(m for m in container["volumeMounts"] if m["mountPath"] == "/mnt/models")
    assert model_mount["subPath"] == "facenet/3"
    # The predictor and the UI take the admin token from the one Secret, rendered with an empty token.
    (secret,) = kinds["Secret"]
    assert secret["stringData"] == {"token": ""} and secret["metadata"]["namespace"] == "faces-prod"
    ui_env = kinds["Deployment"][0]["spec"]["template"]["spec"]["containers"][0]["env"]
    for env in (container["env"], ui_env):
        token = next(item for item in env if item["name"] == "FACESIM_ADMIN_TOKEN")
        assert token["valueFrom"]["secretKeyRef"]["name"] == secret["metadata"]["name"]
    (search,) = kinds["Experiment"]
    assert search["spec"]["algorithm"]["algorithmName"] == "grid" and search["spec"]["maxTrialCount"] == 9
    (ui,) = kinds["Deployment"]
    assert ui["spec"]["replicas"] == 2
    ui_command = ui["spec"]["template"]["spec"]["containers"][0]["command"]
    isvc_url = f"http://{isvc['metadata']['name']}-predictor.faces-prod.svc.cluster.local"
    assert ui_command[ui_command.index("--predictor") + 1] == isvc_url
    assert ui_command[ui_command.index("--host") + 1] == "0.0.0.0"  # the pod listens for the Service
    (namespace,) = kinds["Namespace"]
    assert namespace["metadata"]["labels"]["katib.kubeflow.org/metrics-collector-injection"] == "enabled"
    namespaced = [
        d for documents in rendered.values() for d in documents if d["kind"] not in ("Namespace", "StorageClass")
    ]
    assert {d["metadata"]["namespace"] for d in namespaced} == {"faces-prod"}


def test_job_pods_opt_out_of_the_istio_sidecar(rendered: dict[str, list[dict]]) -> None:
    """In a Kubeflow profile namespace an injected sidecar never exits: TFJob and trial pods never complete."""
    kinds = by_kind(rendered)
    trial_job = kinds["Experiment"][0]["spec"]["trialTemplate"]["trialSpec"]
    for job in (kinds["TFJob"][0], trial_job):
        annotations = job["spec"]["tfReplicaSpecs"]["Worker"]["template"]["metadata"]["annotations"]
        assert annotations["sidecar.istio.io/inject"] == "false"


def test_two_trials_pass_katib_and_every_image_is_the_one_setting(tmp_path: Path) -> None:
    """`--trials 2` was refused by Katib's webhook (maxFailedTrialCount 3 > maxTrialCount 2)."""
    images = ["--image-registry", "registry.example.com/ml", "--image-tag", "2026.11"]
    assert facesim_main(["manifests", "--out", str(tmp_path), "--trials", "2", *images]) == 0
    (search,) = yaml.safe_load_all((tmp_path / "experiment.yaml").read_text())
    assert experiment_problems(search) == [] and search["spec"]["maxFailedTrialCount"] == 2
    text = "".join(path.read_text() for path in tmp_path.glob("*.yaml"))
    used = set(re.findall(r"image: (\S+)", text))
    assert used == {f"registry.example.com/ml/facesim-{c}:2026.11" for c in ("trainer", "predictor", "ui")}


def test_knative_mode_names_the_feature_flags_it_needs(tmp_path: Path, docs_cluster: str) -> None:
    assert facesim_main(["manifests", "--out", str(tmp_path), "--deployment-mode", "Knative"]) == 0
    header = (tmp_path / "inferenceservice.yaml").read_text().splitlines()[0]
    (isvc,) = yaml.safe_load_all((tmp_path / "inferenceservice.yaml").read_text())
    for flag in KNATIVE_FEATURE_FLAGS:
        assert flag in header and flag in docs_cluster
    # Knative's securityContext flag admits fsGroup, not fsGroupChangePolicy.
    assert "fsGroupChangePolicy" not in isvc["spec"]["predictor"]["securityContext"]


def test_every_workload_runs_as_non_root(rendered: dict[str, list[dict]]) -> None:
    kinds = by_kind(rendered)
    pods = [
        kinds["TFJob"][0]["spec"]["tfReplicaSpecs"]["Worker"]["template"]["spec"],
        kinds["Experiment"][0]["spec"]["trialTemplate"]["trialSpec"]["spec"]["tfReplicaSpecs"]["Worker"]["template"][
            "spec"
        ],
        kinds["InferenceService"][0]["spec"]["predictor"],
        kinds["Deployment"][0]["spec"]["template"]["spec"],
    ]
    for pod in pods:
        assert pod["securityContext"]["runAsNonRoot"] is True
        assert pod["securityContext"]["fsGroupChangePolicy"] == "OnRootMismatch"  # no chown walk of NFS
        for container in pod["containers"]:
            assert container["securityContext"]["runAsNonRoot"] is True
            assert container["securityContext"]["allowPrivilegeEscalation"] is False
            assert container["resources"]["requests"] and container["resources"]["limits"]


@pytest.mark.parametrize(
    "bad, message",
    [
        (["--namespace", "Faces_Prod"], "is not a DNS label"),
        (["--nfs-share", "srv/nfs"], "must be an absolute path"),
        (["--algorithm", "annealing"], "unknown algorithm"),
        (["--workers", "0"], "--workers must be at least 1"),
        (["--workers", "3"], "must divide evenly among 3 workers (--workers 3)"),
        (["--trial-workers", "5"], "must divide evenly among 5 workers (--trial-workers 5)"),
        (["--deployment-mode", "ModelMesh"], "deployment mode must be one of"),
        (["--image-registry", ""], "--image-registry and --image-tag must not be empty"),
        (["--trials", "1"], "parallel trials (2) exceed the trials (1)"),
    ],
)
def test_bad_options_exit_2_with_a_message(tmp_path: Path, capsys, bad: list[str], message: str) -> None:
    with pytest.raises(SystemExit) as exited:
        facesim_main(["manifests", "--out", str(tmp_path), *bad])
    assert exited.value.code == 2
    err = capsys.readouterr().err
    assert message in err and "Traceback" not in err
    assert list(tmp_path.iterdir()) == []


def test_an_unwritable_out_is_exit_1(tmp_path: Path, capsys) -> None:
    blocker = tmp_path / "file"
    blocker.write_text("not a directory")
    assert facesim_main(["manifests", "--out", str(blocker / "sub")]) == 1
    assert "cannot write to" in capsys.readouterr().err
