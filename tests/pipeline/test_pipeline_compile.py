"""The compiled pipeline IR: fresh in the repo, and shaped as the issue asks."""

from __future__ import annotations

from pathlib import Path

import yaml

from facesim.pipeline.cli import PACKAGE_YAML, main


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
    ):
        assert name in parameters
    # Each step runs the project's own code in the project's image, installing nothing at run time.
    for executor in pipeline_spec["deploymentSpec"]["executors"].values():
        container = executor["container"]
        assert container["image"].endswith(":" + __import__("facesim").__version__)
        assert "pip install" not in " ".join(container["command"])
        assert "from facesim.pipeline import steps" in container["command"][-1] or "given" in container["command"][-1]
    mounts = platform_spec["platforms"]["kubernetes"]["deploymentSpec"]["executors"]["exec-train-model"]["pvcMount"]
    assert {m["mountPath"] for m in mounts} == {"/mnt/data", "/mnt/runs", "/mnt/models"}
