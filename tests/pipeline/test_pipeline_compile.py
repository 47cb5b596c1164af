"""The compiled pipeline IR: fresh in the repo, and shaped as the issue asks."""

from __future__ import annotations

import math
from pathlib import Path

import pytest
import yaml

from facesim.cluster.resources import IMAGE_REGISTRY_ENV, IMAGE_TAG_ENV, OWNER_POD_ENV, Resources
from facesim.pipeline.cli import PACKAGE_YAML, main

# Integration: each test compiles the whole kfp pipeline.
pytestmark = pytest.mark.integration


@pytest.fixture(autouse=True)
def _default_images(monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.delenv(IMAGE_REGISTRY_ENV, raising=False)
    monkeypatch.delenv(IMAGE_TAG_ENV, raising=False)


def test_compile_writes_ir_and_the_kept_copy_is_fresh(tmp_path: Path) -> None:
    out = tmp_path / "facesim_pipeline.yaml"
    assert main(["compile", "--out", str(out)]) == 0
    assert out.read_text() == PACKAGE_YAML.read_text(), (
        "pipeline/facesim_pipeline.yaml is stale: run `facesim pipeline compile` and commit it"
    )


def _task_names(spec: dict, component: dict) -> set[str]:
    """Every task of a DAG, with those inside its condition branches."""
    names: set[str] = set()
    for name, task in component.get("dag", {}).get("tasks", {}).items():
        names.add(name)
        names |= _task_names(spec, spec["components"][task["componentRef"]["name"]])
    return names


def test_the_ir_has_every_step_parameter_and_volume() -> None:
    pipeline_spec, platform_spec = yaml.safe_load_all(PACKAGE_YAML.read_text())
    assert pipeline_spec["schemaVersion"].startswith("2.")
    steps = _task_names(pipeline_spec, pipeline_spec["root"])
    for step in (
        "prepare-data",
        "tune-hyperparameters",
        "given-hyperparameters",
        "train-model",
        "evaluate-model",
        "accuracy-gate",
        "quantize-model",
        "build-gallery",
        "deploy-predictor",
    ):
        assert step in steps
    parameters = pipeline_spec["root"]["inputDefinitions"]["parameters"]
    for name in (
        "data",
        "backend",
        "workers",
        "epochs",
        "steps_per_epoch",
        "margin",
        "embedding_dim",
        "tune",
        "trials",
        "min_accuracy",
        "int8",
    ):
        assert name in parameters
    # Each step runs the project's own code in the project's image, installing nothing at run time.
    for executor in pipeline_spec["deploymentSpec"]["executors"].values():
        container = executor["container"]
        assert container["image"].endswith(":" + __import__("facesim").__version__)
        assert "pip install" not in " ".join(container["command"])
        assert "from facesim.pipeline import" in container["command"][-1] or "given" in container["command"][-1]
    mounts = platform_spec["platforms"]["kubernetes"]["deploymentSpec"]["executors"]["exec-train-model"]["pvcMount"]
    assert {m["mountPath"] for m in mounts} == {"/mnt/data", "/mnt/runs", "/mnt/models"}


def test_compile_puts_the_registry_and_tag_in_every_step_and_its_launchers(tmp_path: Path) -> None:
    """The images came from the default registry whatever one pushed to: the steps' own image, and
    the TFJobs, trials and InferenceService the steps create (they read FACESIM_IMAGE_*)."""
    out = tmp_path / "pipeline.yaml"
    assert (
        main(["compile", "--out", str(out), "--image-registry", "registry.example.com/ml", "--image-tag", "2026.11"])
        == 0
    )
    pipeline_spec, _ = yaml.safe_load_all(out.read_text())
    executors = pipeline_spec["deploymentSpec"]["executors"]
    assert len(executors) == 9
    for executor in executors.values():
        container = executor["container"]
        assert container["image"] == "registry.example.com/ml/facesim-pipeline:2026.11"
        env = {item["name"]: item["value"] for item in container["env"]}
        assert env[IMAGE_REGISTRY_ENV] == "registry.example.com/ml" and env[IMAGE_TAG_ENV] == "2026.11"
    assert "ghcr.io" not in out.read_text()


def test_steps_request_resources_size_tensorflow_and_own_their_jobs() -> None:
    pipeline_spec, platform_spec = yaml.safe_load_all(PACKAGE_YAML.read_text())
    for name, executor in pipeline_spec["deploymentSpec"]["executors"].items():
        container = executor["container"]
        resources = container["resources"]
        assert {"resourceCpuRequest", "resourceMemoryRequest", "resourceCpuLimit", "resourceMemoryLimit"} <= set(
            resources
        ), name
        threads = next(item["value"] for item in container["env"] if item["name"] == "TF_NUM_INTRAOP_THREADS")
        assert int(threads) == math.ceil(Resources(cpu_limit=resources["resourceCpuLimit"]).cpu_limit_cores()), name
    kubernetes = platform_spec["platforms"]["kubernetes"]["deploymentSpec"]["executors"]
    owner = {item["name"]: item["fieldPath"] for item in kubernetes["exec-train-model"]["fieldPathAsEnv"]}
    assert owner == OWNER_POD_ENV


def test_the_model_travels_as_a_model_artifact_and_deploy_waits_for_the_gate() -> None:
    pipeline_spec, _ = yaml.safe_load_all(PACKAGE_YAML.read_text())
    components = pipeline_spec["components"]
    produced = components["comp-train-model"]["outputDefinitions"]["artifacts"]["model"]
    assert produced["artifactType"]["schemaTitle"] == "system.Model"
    for consumer in ("comp-evaluate-model", "comp-quantize-model", "comp-build-gallery", "comp-deploy-predictor"):
        assert components[consumer]["inputDefinitions"]["artifacts"]["model"]["artifactType"]["schemaTitle"] == (
            "system.Model"
        )
    tasks = pipeline_spec["root"]["dag"]["tasks"]
    # Evaluate scores the trained (float) model; the gallery and deploy get the model the quantize step serves.
    assert tasks["evaluate-model"]["inputs"]["artifacts"]["model"]["taskOutputArtifact"]["producerTask"] == (
        "train-model"
    )
    for consumer in ("build-gallery", "deploy-predictor"):
        assert tasks[consumer]["inputs"]["artifacts"]["model"]["taskOutputArtifact"] == {
            "outputArtifactKey": "served_model",
            "producerTask": "quantize-model",
        }
    assert "accuracy-gate" in tasks["quantize-model"]["dependentTasks"]
    assert "accuracy-gate" in tasks["deploy-predictor"]["dependentTasks"]
    gate_inputs = tasks["accuracy-gate"]["inputs"]["parameters"]
    assert gate_inputs["min_accuracy"] == {"componentInputParameter": "min_accuracy"}
    assert gate_inputs["accuracy"]["taskOutputParameter"]["producerTask"] == "evaluate-model"
