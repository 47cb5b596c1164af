"""`--target kubeflow-1.10`: a compiled pipeline that the KFP 2.4.0 driver parses, steps that render
for Kubeflow 1.10's operators, and a deploy step that passes the deployment mode."""

from __future__ import annotations

from pathlib import Path

import pytest
import yaml

from facesim.cluster.resources import IMAGE_REGISTRY_ENV, IMAGE_TAG_ENV
from facesim.cluster.targets import TARGET_ENV
from facesim.pipeline import steps
from facesim.pipeline.cli import PACKAGE_YAML, main
from tests.helpers.kfp_api_server import recording_server
from tests.helpers.kfp_driver_schema import pipeline_problems


@pytest.fixture(autouse=True)
def _defaults(monkeypatch: pytest.MonkeyPatch, tmp_path: Path) -> None:
    for variable in (IMAGE_REGISTRY_ENV, IMAGE_TAG_ENV, TARGET_ENV):
        monkeypatch.delenv(variable, raising=False)
    monkeypatch.setenv("HOME", str(tmp_path))  # no user kfp context


@pytest.fixture(scope="module")
def kubeflow_ir(tmp_path_factory: pytest.TempPathFactory) -> tuple[dict, dict]:
    out = tmp_path_factory.mktemp("ir") / "pipeline.yaml"
    assert main(["compile", "--out", str(out), "--target", "kubeflow-1.10"]) == 0
    pipeline_spec, platform_spec = yaml.safe_load_all(out.read_text())
    return pipeline_spec, platform_spec


def test_kubeflow_ir_has_no_field_the_kfp_2_4_0_driver_rejects(kubeflow_ir: tuple[dict, dict]) -> None:
    assert pipeline_problems(*kubeflow_ir) == []


def test_the_standalone_ir_is_for_a_newer_driver() -> None:
    """The check bites: the IR kept for KFP 2.17.3 names its PVCs by pvcNameParameter, unknown to 2.4.0."""
    problems = pipeline_problems(*yaml.safe_load_all(PACKAGE_YAML.read_text()))
    assert problems and {problem.rsplit(".", 1)[1] for problem in problems} == {"pvcNameParameter"}


def test_kubeflow_ir_keeps_what_the_steps_need(kubeflow_ir: tuple[dict, dict]) -> None:
    """Resources as the numbers the 2.4.0 driver reads, the PVCs by name, the target in every step."""
    pipeline_spec, platform_spec = kubeflow_ir
    for name, executor in pipeline_spec["deploymentSpec"]["executors"].items():
        container = executor["container"]
        assert {"cpuLimit", "cpuRequest", "memoryLimit", "memoryRequest"} == set(container["resources"]), name
        env = {item["name"]: item["value"] for item in container["env"]}
        assert env[TARGET_ENV] == "kubeflow-1.10", name
    kubernetes = platform_spec["platforms"]["kubernetes"]["deploymentSpec"]["executors"]
    for name, executor in kubernetes.items():
        mounts = {m["constant"]: m["mountPath"] for m in executor["pvcMount"]}
        assert mounts == {"facesim-data": "/mnt/data", "facesim-runs": "/mnt/runs", "facesim-models": "/mnt/models"}


def test_submit_compiles_for_the_target(capsys: pytest.CaptureFixture[str]) -> None:
    with recording_server() as (url, requests):
        assert main(["submit", "--host", url, "--target", "kubeflow-1.10"]) == 0, capsys.readouterr().err
    run = next(r for r in requests if r.method == "POST" and r.path == "/apis/v2beta1/runs").json()
    spec = run["pipeline_spec"]
    assert pipeline_problems(spec["pipeline_spec"], spec["platform_spec"]) == []


def test_the_deploy_step_passes_the_deployment_mode(monkeypatch: pytest.MonkeyPatch) -> None:
    """The docs' RawDeployment never reached the pipeline: the deploy step passed no mode."""
    from facesim.cluster import inference_service

    deployed: list[inference_service.InferenceServiceConfig] = []
    monkeypatch.setattr(inference_service, "deploy_inference_service", lambda config: deployed.append(config) or "u")
    where = steps.Deployment("faces", "Knative")
    assert steps.deploy("/m", "/mnt/models/run/model", "/mnt/models/run/gallery", "cluster", where) == "u"
    (config,) = deployed
    assert (config.deployment_mode, config.name) == ("Knative", "faces")
    assert config.model_uri == "pvc://facesim-models/run/model"
