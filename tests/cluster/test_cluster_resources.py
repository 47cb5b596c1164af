"""facesim.cluster.resources and .client: the namespace a launcher uses, pvc:// URIs, API errors as advice."""

from __future__ import annotations

from pathlib import Path

import pytest

import facesim.cluster.resources as cluster
from facesim.cli import main as facesim_main
from facesim.cluster.client import ClusterError
from facesim.cluster.resources import ClusterConfig, Images, owner_references
from facesim.cluster.volumes import pvc_uri
from facesim.contract.version import __version__
from facesim.training.tfjob import TFJobConfig, submit_tfjob


def test_namespace_comes_from_env_then_the_pod_then_the_default(monkeypatch, tmp_path: Path) -> None:
    pod_namespace = tmp_path / "namespace"
    monkeypatch.setattr(cluster, "POD_NAMESPACE_FILE", pod_namespace)
    monkeypatch.delenv(cluster.NAMESPACE_ENV, raising=False)
    assert ClusterConfig().namespace == "facesim"
    pod_namespace.write_text("kubeflow-user-example-com\n")  # a pipeline step's pod
    assert ClusterConfig().namespace == "kubeflow-user-example-com"
    monkeypatch.setenv(cluster.NAMESPACE_ENV, "faces-dev")
    assert ClusterConfig().namespace == "faces-dev"


def test_images_are_one_setting_from_the_environment(monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.delenv(cluster.IMAGE_REGISTRY_ENV, raising=False)
    monkeypatch.delenv(cluster.IMAGE_TAG_ENV, raising=False)
    assert ClusterConfig(namespace="x").image("ui") == f"ghcr.io/facesim/facesim-ui:{__version__}"
    monkeypatch.setenv(cluster.IMAGE_REGISTRY_ENV, "registry.example.com/ml/")
    monkeypatch.setenv(cluster.IMAGE_TAG_ENV, "2026.11")
    images = Images()
    assert images.image("trainer") == "registry.example.com/ml/facesim-trainer:2026.11"
    assert images.env() == {cluster.IMAGE_REGISTRY_ENV: "registry.example.com/ml/", cluster.IMAGE_TAG_ENV: "2026.11"}
    with pytest.raises(ValueError, match="must not be empty"):
        Images(registry="", tag="1")


def test_the_launchers_inside_a_pipeline_step_use_its_images(
    monkeypatch: pytest.MonkeyPatch, capsys: pytest.CaptureFixture[str], tmp_path: Path
) -> None:
    """A compiled pipeline gives every step FACESIM_IMAGE_*; `facesim train|serve --backend cluster`
    run inside the step must create the TFJob and InferenceService from that registry and tag."""
    from tests.helpers.fake_apiserver import Answer, RunningApiServer

    monkeypatch.setenv(cluster.IMAGE_REGISTRY_ENV, "registry.example.com/ml")
    monkeypatch.setenv(cluster.IMAGE_TAG_ENV, "2026.11")
    monkeypatch.setenv(cluster.NAMESPACE_ENV, "facesim")
    tfjobs = "/apis/kubeflow.org/v1/namespaces/facesim/tfjobs"
    with RunningApiServer() as server:
        server.state.answer("POST", tfjobs, Answer(201, {}))
        kubeconfig = str(server.write_kubeconfig(tmp_path / "kubeconfig"))
        train = ["train", "--backend", "cluster", "--no-wait", "--kubeconfig", kubeconfig, "--data", "d", "--out", "o"]
        assert facesim_main(train) == 0
        (created,) = server.state.calls("POST", tfjobs)
    (worker,) = created.body["spec"]["tfReplicaSpecs"]["Worker"]["template"]["spec"]["containers"]
    assert worker["image"] == "registry.example.com/ml/facesim-trainer:2026.11"
    assert facesim_main(["serve", "--backend", "cluster", "--dry-run"]) == 0
    assert "image: registry.example.com/ml/facesim-predictor:2026.11" in capsys.readouterr().out


def test_a_pipeline_steps_pod_is_the_owner_only_inside_its_namespace(
    monkeypatch: pytest.MonkeyPatch, tmp_path: Path
) -> None:
    pod_namespace = tmp_path / "namespace"
    monkeypatch.setattr(cluster, "POD_NAMESPACE_FILE", pod_namespace)
    monkeypatch.setenv("FACESIM_POD_NAME", "step-pod")
    monkeypatch.setenv("FACESIM_POD_UID", "uid-1")
    assert owner_references("kubeflow") is None  # not in a pod
    pod_namespace.write_text("kubeflow\n")
    (owner,) = owner_references("kubeflow")
    assert (owner.kind, owner.name, owner.uid, owner.block_owner_deletion) == ("Pod", "step-pod", "uid-1", None)
    assert owner_references("facesim") is None
    monkeypatch.delenv("FACESIM_POD_UID")
    assert owner_references("kubeflow") is None


def test_pvc_uris() -> None:
    location = pvc_uri("pvc://facesim-models/facenet/2")
    assert (location.claim, location.path) == ("facesim-models", "facenet/2")
    for bad in ("pvc://facesim-models", "/mnt/models/facenet", "s3://bucket/model", "pvc://m/../x"):
        with pytest.raises(ValueError):
            pvc_uri(bad)


def test_an_unreachable_api_server_is_a_clear_error(tmp_path: Path) -> None:
    from tests.helpers.fake_apiserver import RunningApiServer

    with RunningApiServer() as server:  # a port that then closes: nothing listens there any more
        kubeconfig = server.write_kubeconfig(tmp_path / "kubeconfig")
    with pytest.raises(ClusterError, match="API server is unreachable; check KUBECONFIG"):
        submit_tfjob(TFJobConfig(), wait=False, kubeconfig=str(kubeconfig))
