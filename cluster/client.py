"""Kubernetes SDK clients (Training Operator, Katib, KServe) from a kubeconfig, with one error
message for a missing or broken kubeconfig."""

from __future__ import annotations

from collections.abc import Callable
from typing import TypeVar

from facesim.cluster.resources import ClusterError

Client = TypeVar("Client")


def sdk_client(factory: Callable[..., Client], kubeconfig: str | None, **options: object) -> Client:
    """`factory(config_file=kubeconfig, **options)`, turning a kubeconfig problem into ClusterError."""
    from kubernetes.config import ConfigException

    try:
        return factory(config_file=kubeconfig, **options)
    except (ConfigException, OSError) as error:
        raise ClusterError(f"no usable kubeconfig ({error}); set KUBECONFIG or pass --kubeconfig") from error
