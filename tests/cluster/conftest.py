"""Fixtures of the cluster tests: the fake API server and a kubeconfig pointing at it."""

from __future__ import annotations

from collections.abc import Iterator
from pathlib import Path

import pytest

from tests.helpers.fake_apiserver import RunningApiServer


@pytest.fixture()
def api_server() -> Iterator[RunningApiServer]:
    with RunningApiServer() as server:
        yield server


@pytest.fixture()
def kubeconfig(api_server: RunningApiServer, tmp_path: Path) -> str:
    return str(api_server.write_kubeconfig(tmp_path / "kubeconfig"))


@pytest.fixture(scope="session")
def docs_cluster() -> str:
    """docs/cluster.md, which must say what the cluster needs (feature flags, versions)."""
    return (Path(__file__).resolve().parents[2] / "docs" / "cluster.md").read_text()
