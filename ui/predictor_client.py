"""HTTP client for the facesim predictor (docs/architecture.md, "Predictor HTTP API").

The UI's only link to the model: every call has a bounded timeout, and every failure becomes one
of two exceptions the pages turn into a banner or a friendly message, never a traceback.
"""

from __future__ import annotations

import base64
from dataclasses import dataclass
from typing import Any

import requests

from facesim.contract.api import MODEL_NAME


class PredictorUnavailable(Exception):
    """The predictor could not be reached, timed out, or failed on its side (5xx)."""


class PredictorRejected(Exception):
    """The predictor refused the request (4xx); the message says why, fit for a user."""

    def __init__(self, message: str, status: int) -> None:
        super().__init__(message)
        self.status = status


@dataclass(frozen=True)
class PredictorClient:
    base_url: str
    timeout_s: float = 30.0
    connect_timeout_s: float = 3.0

    def _url(self, path: str) -> str:
        return f"{self.base_url.rstrip('/')}{path}"

    def _request(self, method: str, path: str, *, timeout_s: float | None = None, **kwargs: Any) -> requests.Response:
        read_timeout = self.timeout_s if timeout_s is None else timeout_s
        try:
            response = requests.request(
                method, self._url(path), timeout=(self.connect_timeout_s, read_timeout), **kwargs
            )
        except requests.Timeout as error:
            raise PredictorUnavailable(
                f"the predictor at {self.base_url} did not answer within {read_timeout:g} s"
            ) from error
        except requests.RequestException as error:
            raise PredictorUnavailable(f"the predictor at {self.base_url} is not reachable") from error
        if response.status_code >= 500:
            raise PredictorUnavailable(
                f"the predictor at {self.base_url} failed (HTTP {response.status_code}): {_error_text(response)}"
            )
        if response.status_code >= 400:
            raise PredictorRejected(_error_text(response), response.status_code)
        return response

    def _json(self, method: str, path: str, **kwargs: Any) -> dict[str, Any]:
        response = self._request(method, path, **kwargs)
        try:
            return response.json()
        except ValueError as error:
            raise PredictorUnavailable(f"the predictor at {self.base_url} answered with something not JSON") from error

    def is_ready(self) -> bool:
        try:
            self._request("GET", "/v2/health/ready", timeout_s=min(self.timeout_s, 2.0))
        except (PredictorUnavailable, PredictorRejected):
            return False
        return True

    def predict(self, image: bytes, *, top_k: int = 3, return_crops: bool = False) -> dict[str, Any]:
        """The V1 prediction for one image: `faces`, each with `box`, `score`, `matches` (and `crop`)."""
        instance = {"image": _b64(image), "top_k": top_k, "return_crops": return_crops}
        return self._first_prediction(instance)

    def compare(self, first: bytes, second: bytes) -> dict[str, Any]:
        """The V1 prediction for `first` compared with `second`: `distance`, `same`, `faces` and
        `compare_face` with their crops, and the `threshold` when the predictor sends it."""
        instance = {"image": _b64(first), "compare": _b64(second), "return_crops": True}
        return self._first_prediction(instance)

    def _first_prediction(self, instance: dict[str, Any]) -> dict[str, Any]:
        body = self._json("POST", f"/v1/models/{MODEL_NAME}:predict", json={"instances": [instance]})
        predictions = body.get("predictions")
        if not isinstance(predictions, list) or not predictions:
            raise PredictorUnavailable(f"the predictor at {self.base_url} answered without predictions")
        # The response-level threshold (the model's) belongs with each answer's `same` verdicts.
        return {"threshold": body.get("threshold")} | predictions[0]

    def gallery(self) -> dict[str, Any]:
        return self._json("GET", f"/v1/models/{MODEL_NAME}/gallery")

    def thumbnail(self, identity: str) -> bytes:
        return self._request("GET", f"/v1/models/{MODEL_NAME}/gallery/thumbnail", params={"identity": identity}).content

    def enrol(self, identity: str, images: list[bytes]) -> dict[str, Any]:
        payload = {"identity": identity, "images": [_b64(image) for image in images]}
        return self._json("POST", f"/v1/models/{MODEL_NAME}/gallery", json=payload)

    def remove(self, identity: str) -> dict[str, Any]:
        return self._json("DELETE", f"/v1/models/{MODEL_NAME}/gallery", params={"identity": identity})

    def model_card(self) -> dict[str, Any]:
        return self._json("GET", f"/v1/models/{MODEL_NAME}/card")

    def roc_png(self) -> bytes:
        return self._request("GET", f"/v1/models/{MODEL_NAME}/card/roc.png").content


def _b64(data: bytes) -> dict[str, str]:
    return {"b64": base64.b64encode(data).decode("ascii")}


def _error_text(response: requests.Response) -> str:
    """The predictor's `{"error": ...}` message, or the start of whatever it sent."""
    try:
        body = response.json()
    except ValueError:
        return response.text[:300] or response.reason or "no details"
    if isinstance(body, dict):
        for key in ("error", "detail", "message"):
            if body.get(key):
                return str(body[key])
    return str(body)[:300]
