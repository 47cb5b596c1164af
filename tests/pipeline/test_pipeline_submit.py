"""`facesim pipeline submit` against a local server posing as the Kubeflow Pipelines API."""

from __future__ import annotations

import json
from pathlib import Path

import pytest
import yaml

from facesim.pipeline.cli import PACKAGE_YAML, main
from tests.helpers.kfp_api_server import recording_server

# Integration: each test compiles the whole kfp pipeline and submits it to a recording server.
pytestmark = pytest.mark.integration


@pytest.fixture(autouse=True)
def _no_user_kfp_context(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setenv("HOME", str(tmp_path))  # the kfp client reads ~/.config/kfp/context.json
    monkeypatch.delenv("KF_PIPELINES_TOKEN", raising=False)
    monkeypatch.delenv("FACESIM_IMAGE_REGISTRY", raising=False)
    monkeypatch.delenv("FACESIM_IMAGE_TAG", raising=False)


def test_submit_uploads_the_package_and_creates_a_run(capsys: pytest.CaptureFixture[str]) -> None:
    with recording_server() as (url, requests):
        code = main(
            [
                "submit",
                "--host",
                url,
                "--upload",
                "facesim",
                "--workers",
                "4",
                "--tune",
                "--init",
                "scratch",
                "--data",
                "/mnt/data/lfw-small",
                "--token",
                "secret-token",
            ]
        )
    assert code == 0, capsys.readouterr().err
    assert f"run run-42 created: {url}/#/runs/details/run-42" in capsys.readouterr().out

    upload = next(r for r in requests if r.path == "/apis/v2beta1/pipelines/upload")
    assert upload.method == "POST" and "name=facesim" in upload.query
    assert b"pipelineInfo" in upload.body and b"facesim" in upload.body  # the IR YAML, multipart

    run = next(r for r in requests if r.method == "POST" and r.path == "/apis/v2beta1/runs")
    body = run.json()
    assert body["experiment_id"] == "exp-1"
    pipeline_spec, platform_spec = yaml.safe_load_all(PACKAGE_YAML.read_text())
    assert body["pipeline_spec"] == {"pipeline_spec": pipeline_spec, "platform_spec": platform_spec}
    assert "facesim-models" in json.dumps(platform_spec)  # the PVC mounts travel with the run
    # Only the options given are sent, typed as the pipeline declares them.
    assert body["runtime_config"]["parameters"] == {
        "workers": 4,
        "tune": True,
        "init": "scratch",
        "data": "/mnt/data/lfw-small",
    }
    assert all(r.headers.get("authorization") == "Bearer secret-token" for r in requests)

    experiment = next(r for r in requests if r.method == "POST" and r.path == "/apis/v2beta1/experiments")
    assert experiment.json()["display_name"] == "facesim"


def test_submit_says_what_is_wrong_when_the_server_refuses(capsys: pytest.CaptureFixture[str]) -> None:
    denied = {"error": "tfjobs.kubeflow.org is forbidden for system:serviceaccount:kubeflow:default", "code": 7}
    with recording_server({("POST", "/apis/v2beta1/runs"): (403, denied)}) as (url, _):
        code = main(["submit", "--host", url, "--package", str(PACKAGE_YAML)])
    assert code == 1
    err = capsys.readouterr().err
    assert url in err and "403" in err and "forbidden" in err and "Traceback" not in err


def test_submit_needs_a_compiled_package(tmp_path: Path, capsys: pytest.CaptureFixture[str]) -> None:
    assert main(["submit", "--host", "http://127.0.0.1:9", "--package", str(tmp_path / "missing.yaml")]) == 2
    assert "facesim pipeline compile" in capsys.readouterr().err


def test_submit_to_a_host_that_is_not_kfp_fails_fast(capsys: pytest.CaptureFixture[str]) -> None:
    with recording_server() as (url, requests):
        code = main(["submit", "--host", url + "/not-kfp", "--package", str(PACKAGE_YAML)])
    assert code == 1 and len(requests) == 1  # one look, no retries, no run
    err = capsys.readouterr().err
    assert "404" in err and "Kubeflow Pipelines API" in err and "Traceback" not in err


def test_submit_compiles_for_the_registry_and_runs_as_the_facesim_account(capsys: pytest.CaptureFixture[str]) -> None:
    """The steps' image, and the TFJobs/trials/InferenceService they create, come from --image-registry
    and --image-tag; the run's pods use the account rbac.yaml gives what KFP and facesim need."""
    images = ["--image-registry", "registry.example.com/ml", "--image-tag", "2026.11"]
    with recording_server() as (url, requests):
        assert main(["submit", "--host", url, *images]) == 0, capsys.readouterr().err
    run = next(r for r in requests if r.method == "POST" and r.path == "/apis/v2beta1/runs").json()
    executors = run["pipeline_spec"]["pipeline_spec"]["deploymentSpec"]["executors"].values()
    assert {e["container"]["image"] for e in executors} == {"registry.example.com/ml/facesim-pipeline:2026.11"}
    for executor in executors:
        env = {item["name"]: item["value"] for item in executor["container"]["env"]}
        assert env["FACESIM_IMAGE_REGISTRY"] == "registry.example.com/ml" and env["FACESIM_IMAGE_TAG"] == "2026.11"
    assert run["service_account"] == "facesim-pipeline"
