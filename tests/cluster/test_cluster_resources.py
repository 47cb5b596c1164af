"""facesim.cluster.resources: the namespace a launcher uses, pvc:// URIs, and API errors turned into advice."""

from __future__ import annotations

from pathlib import Path

import pytest

import facesim.cluster.resources as cluster
from facesim.cluster.resources import ClusterConfig, ClusterError, pvc_uri
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
    assert ClusterConfig(namespace="x").image("ui") == f"ghcr.io/facesim/facesim-ui:{ClusterConfig().image_tag}"


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
