"""Talking to a cluster: Kubernetes SDK clients (Training Operator, Katib, KServe) from a kubeconfig,
API errors turned into messages that say what to do (`ClusterError`), and SIGTERM taking the Ctrl-C
path while a launcher follows its job. The resources themselves are built in `facesim.cluster.resources`."""

from __future__ import annotations

import contextlib
import json
import signal
import threading
from collections.abc import Callable, Iterator
from typing import TypeVar

from kubernetes import client as k8s

Client = TypeVar("Client")


def sdk_client(factory: Callable[..., Client], kubeconfig: str | None, **options: object) -> Client:
    """`factory(config_file=kubeconfig, **options)`, turning a kubeconfig problem into ClusterError."""
    from kubernetes.config import ConfigException

    try:
        return factory(config_file=kubeconfig, **options)
    except (ConfigException, OSError) as error:
        raise ClusterError(f"no usable kubeconfig ({error}); set KUBECONFIG or pass --kubeconfig") from error


@contextlib.contextmanager
def sigterm_as_interrupt() -> Iterator[None]:
    """While a launcher follows its job: SIGTERM (Kubernetes stopping a terminated run's step pod)
    takes the Ctrl-C path, which deletes the job before the process ends."""
    if threading.current_thread() is not threading.main_thread():
        yield
        return

    def interrupt(signum: int, frame: object) -> None:
        raise KeyboardInterrupt

    previous = signal.signal(signal.SIGTERM, interrupt)
    try:
        yield
    finally:
        signal.signal(signal.SIGTERM, previous)


class ClusterError(RuntimeError):
    """A cluster operation failed for a reason the user can act on; the message says what to do."""


def _api_exception(error: BaseException) -> k8s.ApiException | None:
    """The Kubernetes ApiException behind an SDK error (the SDKs wrap it in RuntimeError)."""
    seen: BaseException | None = error
    while seen is not None:
        if isinstance(seen, k8s.ApiException):
            return seen
        seen = seen.__cause__ or seen.__context__
    return None


def _server_message(api_error: k8s.ApiException) -> str:
    try:
        return str(json.loads(api_error.body or "{}").get("message") or api_error.reason)
    except (ValueError, AttributeError):
        return str(api_error.reason)


def explain_api_error(error: BaseException, verb: str, kind: str, namespace: str, name: str) -> ClusterError:
    """A ClusterError saying why `verb kind namespace/name` failed and what to do about it."""
    what = f"cannot {verb} {kind} {namespace}/{name}"
    api_error = _api_exception(error)
    if api_error is None:
        text = str(error)
        if "Max retries exceeded" in text or "Connection refused" in text or "NewConnectionError" in text:
            return ClusterError(f"{what}: the Kubernetes API server is unreachable; check KUBECONFIG / --kubeconfig")
        return ClusterError(f"{what}: {text}")
    detail = _server_message(api_error)
    if "admission webhook" in detail:  # a denial (Katib answers 403), not a missing right
        return ClusterError(f"{what}: the cluster's admission webhook rejected it: {detail}")
    hints = {
        401: "not authenticated; refresh the credentials in your kubeconfig",
        403: f"forbidden by RBAC ({detail}); apply rbac.yaml from `facesim manifests` "
        f"and run as its service account, or ask an admin for {verb} rights on {kind} in {namespace}",
        404: f"not found ({detail}); is the {kind} API installed (see docs/cluster.md) and the namespace right?",
        409: f"a {kind} named {name} already exists; delete it (kubectl -n {namespace} delete {kind.lower()} {name}) "
        "or choose another name",
        422: f"the cluster rejected the resource as invalid: {detail}",
    }
    return ClusterError(f"{what}: {hints.get(api_error.status, f'HTTP {api_error.status}: {detail}')}")


def api_status(error: BaseException) -> int | None:
    """HTTP status of the Kubernetes API error behind `error`, if there is one."""
    api_error = _api_exception(error)
    return api_error.status if api_error is not None else None
