"""Submit the compiled pipeline to Kubeflow Pipelines (kfp.Client): one run, optionally after
uploading the package to the pipeline registry."""

from __future__ import annotations

import json
import warnings
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any


@dataclass
class Submission:
    host: str
    package: Path
    arguments: dict[str, Any] = field(default_factory=dict)
    experiment: str = "facesim"
    run_name: str | None = None
    namespace: str | None = None  # multi-user Kubeflow: the profile namespace
    service_account: str | None = None  # needs RBAC on tfjobs, experiments, inferenceservices
    token: str | None = None
    upload_as: str | None = None  # also upload the package under this pipeline name


@dataclass(frozen=True)
class Submitted:
    run_id: str
    run_url: str
    pipeline_id: str | None


class NotKubeflowPipelines(RuntimeError):
    """The host does not answer as the Kubeflow Pipelines API."""


HEALTHZ = "/apis/v2beta1/healthz"


def check_host(host: str, token: str | None) -> None:
    """One quick look at the API's health endpoint: the kfp client would retry a wrong host for
    half a minute before saying so."""
    import requests

    headers = {"Authorization": f"Bearer {token}"} if token else {}
    url = host.rstrip("/") + HEALTHZ
    try:
        answer = requests.get(url, headers=headers, timeout=15)
    except requests.RequestException as error:
        raise NotKubeflowPipelines(f"cannot reach {url}: {type(error).__name__}") from None
    if not answer.ok:
        raise NotKubeflowPipelines(
            f"GET {url} answered {answer.status_code}: is this the Kubeflow Pipelines API "
            "(e.g. `kubectl -n kubeflow port-forward svc/ml-pipeline-ui 8888:80`, then --host http://localhost:8888)?"
        )


def submit(submission: Submission) -> Submitted:
    """Create the run (and the uploaded pipeline); errors from the server come back as they are."""
    import kfp

    check_host(submission.host, submission.token)

    with warnings.catch_warnings():  # its notice that it needs KFP 2.x: facesim targets KFP 2.x
        warnings.simplefilter("ignore", FutureWarning)
        client = kfp.Client(
            host=submission.host, existing_token=submission.token, namespace=submission.namespace or "kubeflow"
        )
    pipeline_id = None
    if submission.upload_as:
        uploaded = client.upload_pipeline(str(submission.package), pipeline_name=submission.upload_as)
        pipeline_id = uploaded.pipeline_id
    result = client.create_run_from_pipeline_package(
        str(submission.package),
        arguments=submission.arguments,
        run_name=submission.run_name,
        experiment_name=submission.experiment,
        namespace=submission.namespace,
        service_account=submission.service_account,
    )
    return Submitted(result.run_id, f"{submission.host.rstrip('/')}/#/runs/details/{result.run_id}", pipeline_id)


def describe_error(error: Exception) -> str:
    """One line for the user: the API's status and message, or the error's first line."""
    if isinstance(error, NotKubeflowPipelines):
        return str(error)
    status = getattr(error, "status", None)
    if status:
        body = getattr(error, "body", None) or ""
        try:
            details = json.loads(body)
            message = details.get("error") or details.get("message") or body
        except (ValueError, AttributeError):
            message = body
        return f"HTTP {status} {getattr(error, 'reason', '') or ''}: {str(message).strip()}"
    lines = str(error).strip().splitlines()
    return f"{type(error).__name__}: {lines[0] if lines else ''}"
