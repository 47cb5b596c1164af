"""`--target`: what Kubeflow 1.10's operators accept, checked against their upstream definitions."""

from __future__ import annotations

from pathlib import Path

import numpy as np
import pytest
import yaml

from facesim.cluster.inference_service import main as serve_cluster
from facesim.cluster.resources import to_manifest
from facesim.cluster.targets import TARGET_ENV, TARGETS
from facesim.manifests import main as manifests_main
from facesim.tuning.katib import LOG_POINTS, ExperimentConfig, experiment
from facesim.tuning.space import parameter
from tests.helpers.crd_validation import crd_errors
from tests.helpers.katib_webhook import experiment_problems

MODE = "serving.kserve.io/deploymentMode"
# kserve/kserve v0.14.1 pkg/constants/constants.go, `type DeploymentModeType`: the modes KServe
# 0.13-0.15 (Kubeflow 1.9/1.10) knows; any other annotation value falls back to the default mode.
KSERVE_0_14_MODES = {"Serverless", "RawDeployment", "ModelMesh"}
# kserve/kserve v0.20.0 pkg/constants/constants.go: the renamed modes, the former names still accepted.
KSERVE_0_20_MODES = {"Knative", "Standard", "Serverless", "RawDeployment", "ModelMesh"}

# kserve/kserve v0.14.1 config/crd/full/serving.kserve.io_inferenceservices.yaml: the properties of
# spec.predictor in v1beta1 (a structural schema: kubectl's strict validation refuses any other).
KSERVE_0_14_PREDICTOR_FIELDS = set(
    "activeDeadlineSeconds affinity annotations automountServiceAccountToken batcher canaryTrafficPercent "
    "containerConcurrency containers deploymentStrategy dnsConfig dnsPolicy enableServiceLinks hostAliases hostIPC "
    "hostNetwork hostPID hostUsers hostname huggingface imagePullSecrets initContainers labels lightgbm logger "
    "maxReplicas minReplicas model nodeName nodeSelector onnx os overhead paddle pmml preemptionPolicy priority "
    "priorityClassName pytorch readinessGates resourceClaims restartPolicy runtimeClassName scaleMetric scaleTarget "
    "schedulerName schedulingGates securityContext serviceAccount serviceAccountName setHostnameAsFQDN "
    "shareProcessNamespace sklearn subdomain tensorflow terminationGracePeriodSeconds timeout tolerations "
    "topologySpreadConstraints triton volumes workerSpec xgboost".split()
)


@pytest.fixture(autouse=True)
def _no_target_in_env(monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.delenv(TARGET_ENV, raising=False)


def _isvc(tmp_path: Path, *options: str) -> dict:
    assert manifests_main(["--out", str(tmp_path), *options]) == 0
    return yaml.safe_load_all((tmp_path / "inferenceservice.yaml").read_text()).__next__()


@pytest.mark.parametrize("mode, rendered", [("Standard", "RawDeployment"), ("Knative", "Serverless")])
def test_kubeflow_target_renders_a_mode_kserve_0_14_knows(
    tmp_path: Path, crds_dir: Path, mode: str, rendered: str
) -> None:
    isvc = _isvc(tmp_path, "--target", "kubeflow-1.10", "--deployment-mode", mode)
    assert isvc["metadata"]["annotations"][MODE] == rendered and rendered in KSERVE_0_14_MODES
    assert crd_errors(isvc, crds_dir / "serving.kserve.io_inferenceservices.yaml") == []
    knative = mode == "Knative"
    assert ("fsGroupChangePolicy" in isvc["spec"]["predictor"]["securityContext"]) is not knative


@pytest.mark.parametrize("options", [(), ("--gallery-backend", "postgresql"), ("--deployment-mode", "Knative")])
def test_kubeflow_target_renders_only_predictor_fields_kserve_0_14_knows(tmp_path: Path, options: tuple) -> None:
    predictor = _isvc(tmp_path, "--target", "kubeflow-1.10", *options)["spec"]["predictor"]
    assert set(predictor) <= KSERVE_0_14_PREDICTOR_FIELDS


def test_the_standalone_autoscaled_predictor_has_a_field_kserve_0_14_lacks(tmp_path: Path) -> None:
    predictor = _isvc(tmp_path, "--gallery-backend", "postgresql")["spec"]["predictor"]
    assert set(predictor) - KSERVE_0_14_PREDICTOR_FIELDS == {"scaleMetricType"}


def test_the_standalone_default_is_kserve_0_20s_name_which_0_14_does_not_know(tmp_path: Path) -> None:
    mode = _isvc(tmp_path)["metadata"]["annotations"][MODE]
    assert mode == "Standard" and mode in KSERVE_0_20_MODES and mode not in KSERVE_0_14_MODES


def test_every_target_renders_every_mode_by_a_name_its_kserve_knows() -> None:
    known = {"standalone": KSERVE_0_20_MODES, "kubeflow-1.10": KSERVE_0_14_MODES}
    for name, target in TARGETS.items():
        for mode in ("Standard", "Knative", "RawDeployment", "Serverless"):
            assert target.deployment_mode(mode) in known[name]


def test_serve_takes_the_target_from_the_pipeline_step(monkeypatch: pytest.MonkeyPatch, capsys) -> None:
    """A compiled pipeline gives its steps FACESIM_TARGET; `facesim serve --backend cluster` renders for it."""
    monkeypatch.setenv(TARGET_ENV, "kubeflow-1.10")
    assert serve_cluster(["--dry-run", "--deployment-mode", "Standard"]) == 0
    assert yaml.safe_load(capsys.readouterr().out)["metadata"]["annotations"][MODE] == "RawDeployment"
    assert serve_cluster(["--dry-run", "--target", "standalone"]) == 0
    assert yaml.safe_load(capsys.readouterr().out)["metadata"]["annotations"][MODE] == "Standard"


def _parameters(config: ExperimentConfig) -> dict[str, dict]:
    resource = to_manifest(experiment(config))
    assert experiment_problems(resource) == []
    return {p["name"]: p for p in resource["spec"]["parameters"]}


@pytest.mark.parametrize("algorithm", ["tpe", "random", "bayesianoptimization"])
def test_katib_0_17_gets_the_learning_rate_as_log_spaced_values(algorithm: str) -> None:
    """Katib 0.17 ignores `distribution: logUniform` (added in 0.18) and would draw the learning rate
    uniformly (90 % of draws above 1e-3); a discrete list of log-spaced values it honours."""
    learning_rate = _parameters(ExperimentConfig(algorithm=algorithm, target=TARGETS["kubeflow-1.10"]))["learning_rate"]
    assert learning_rate["parameterType"] == "discrete" and "distribution" not in learning_rate["feasibleSpace"]
    values = [float(v) for v in learning_rate["feasibleSpace"]["list"]]
    space = parameter("learning_rate")
    assert len(values) == LOG_POINTS and values[0] == space.low and values[-1] == space.high
    assert np.allclose(np.diff(np.log(values)), np.log(values[1] / values[0]), rtol=1e-3)  # evenly log-spaced
    margin = _parameters(ExperimentConfig(algorithm=algorithm, target=TARGETS["kubeflow-1.10"]))["margin"]
    assert margin["parameterType"] == "double"  # linear parameters keep their range


def test_katib_0_18_samples_log_uniform() -> None:
    learning_rate = _parameters(ExperimentConfig(target=TARGETS["standalone"]))["learning_rate"]
    assert learning_rate["parameterType"] == "double" and learning_rate["feasibleSpace"]["distribution"] == "logUniform"


def test_the_docs_give_the_nfs_export_that_works_and_the_matrix(docs_cluster: str) -> None:
    """ "Writable by uid/gid 1000" is not enough: with root_squash the kubelet's fsGroup chown and
    subPath mkdir fail; all_squash to 1000 works."""
    assert "rw,sync,no_subtree_check,all_squash,anonuid=1000,anongid=1000" in docs_cluster
    assert "writable by uid/gid 1000, or with `no_root_squash`" not in docs_cluster
    matrix = docs_cluster.split("### Versions and targets", 1)[1].split("\n## ", 1)[0]
    for name in [*TARGETS, "RawDeployment", "Serverless", "pvcNameParameter", "resourceCpuLimit", "logUniform"]:
        assert name in matrix, name


def test_an_unknown_target_is_a_usage_error_given_or_from_the_environment(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch, capsys
) -> None:
    for argv in (["--target", "kubeflow-1.8"], []):
        if not argv:
            monkeypatch.setenv(TARGET_ENV, "kubeflow-1.8")
        with pytest.raises(SystemExit) as exited:
            manifests_main(["--out", str(tmp_path), *argv])
        assert exited.value.code == 2
        assert "unknown target 'kubeflow-1.8'; choose one of standalone, kubeflow-1.10" in capsys.readouterr().err
