"""The one HTTP client of the predictor API, used by `facesim predict`, the UI and the benchmarks.

Every answer is checked against the API (docs/api.md, "Predictor HTTP API") before a
caller reads it: a server that is not a facesim predictor (an HTML page, `[]`, wrong types), a
timeout or a refusal all become one `PredictorError` whose message is a single line for a user.
Gallery writes carry an `Idempotency-Key` and are retried on a lost connection and on 503 (the
gallery's database unavailable): a retry of a write the server already did returns its first answer.
"""

from __future__ import annotations

import base64
import json
import time
import uuid
from collections.abc import Callable
from dataclasses import dataclass, field
from typing import Any

import requests

from facesim.contract.api import GALLERY_UNAVAILABLE, IDEMPOTENCY_HEADER, MODEL_NAME, READY_PATH, with_new_names

GALLERY_PATH = f"/v1/models/{MODEL_NAME}/gallery"
CARD_PATH = f"/v1/models/{MODEL_NAME}/card"
MAX_MESSAGE_CHARS = 200


class PredictorError(Exception):
    """One line saying what went wrong. `status` is the HTTP status of a refusal (4xx: the request
    was wrong) or of an unavailable gallery (503); None when the predictor was unreachable, timed
    out, failed or broke the API. `retry_after_s`: how long a 503 asked the client to wait."""

    def __init__(self, message: str, status: int | None = None, retry_after_s: float | None = None) -> None:
        super().__init__(" ".join(message.split()))
        self.status = status
        self.retry_after_s = retry_after_s

    @property
    def rejected(self) -> bool:
        return self.status is not None and 400 <= self.status < 500

    @property
    def unavailable(self) -> bool:
        """The gallery cannot be used now (503); a retry later may succeed."""
        return self.status == 503

    @property
    def retryable(self) -> bool:
        """Worth sending a write again (with the same idempotency key): unavailable, or not refused."""
        return self.status is None or self.unavailable


@dataclass(frozen=True)
class Timeouts:
    connect_s: float = 3.0
    read_s: float = 60.0  # one request's analysis; a gallery listing or card answers far sooner


@dataclass(frozen=True)
class WriteRetries:
    """Gallery writes: how often and how long to retry on a lost connection or a 503 (same key each time)."""

    attempts: int = 6
    first_wait_s: float = 0.5  # doubling per attempt, or the server's Retry-After when it gives one
    max_wait_s: float = 10.0


def predict_url(base_url: str) -> str:
    """The V1 predict endpoint of a predictor base URL (a full predict URL is kept as given)."""
    base_url = base_url.rstrip("/")
    return base_url if base_url.endswith(":predict") else f"{base_url}/v1/models/{MODEL_NAME}:predict"


def base_url_of(url: str) -> str:
    url = url.rstrip("/")
    return url.split("/v1/models/")[0] if url.endswith(":predict") else url


def b64_image(data: bytes) -> dict[str, str]:
    return {"b64": base64.b64encode(data).decode("ascii")}


def v1_request(image: bytes, compare: bytes | None = None, top_k: int = 3, return_crops: bool = False) -> dict:
    instance: dict[str, Any] = {"image": b64_image(image), "top_k": top_k}
    if compare is not None:
        instance["compare"] = b64_image(compare)
    if return_crops:
        instance["return_crops"] = True
    return {"instances": [instance]}


@dataclass
class PredictorClient:
    """Calls to one predictor. `admin_token` authorises gallery writes (enrol, remove); reads need none."""

    base_url: str
    timeouts: Timeouts = Timeouts()
    admin_token: str | None = field(default=None, repr=False)
    session: requests.Session | None = field(default=None, repr=False)  # one per thread when given
    retries: WriteRetries = WriteRetries()

    def __post_init__(self) -> None:
        self.base_url = base_url_of(self.base_url)

    # --- reads -------------------------------------------------------------------------------

    def is_ready(self) -> bool:
        try:
            self._send("GET", READY_PATH, read_s=min(self.timeouts.read_s, 2.0))
        except PredictorError:
            return False
        return True

    def predict(self, image: bytes, compare: bytes | None = None, top_k: int = 3, return_crops: bool = False) -> dict:
        """The whole V1 answer for one image (and a second one to compare): `predictions[0]`, `threshold`, ..."""
        body = json.dumps(v1_request(image, compare, top_k, return_crops)).encode()
        return self.predict_body(body, compare is not None)

    def predict_body(self, body: bytes, with_compare: bool = False) -> dict:
        """POST an encoded V1 body (benchmarks reuse one); the answer is checked like `predict`'s."""
        answer = self._json("POST", predict_url(self.base_url), data=body, headers={"Content-Type": "application/json"})
        answer = with_new_names(answer, "predict")
        return self._checked(answer, lambda: check_v1_answer(answer, with_compare))

    def gallery(self) -> dict:
        answer = with_new_names(self._json("GET", GALLERY_PATH), "gallery")
        if isinstance(answer, dict):
            answer["index"] = with_new_names(answer.get("index"), "index")
        return self._checked(answer, lambda: check_gallery_listing(answer))

    def thumbnail(self, identity: str) -> bytes:
        return self._picture(f"{GALLERY_PATH}/thumbnail", b"\xff\xd8", params={"identity": identity})

    def model_card(self) -> dict:
        answer = self._json("GET", CARD_PATH)
        return self._checked(answer, lambda: _expect(answer, dict, "the model card"))

    def roc_png(self) -> bytes:
        return self._picture(f"{CARD_PATH}/roc.png", b"\x89PNG")

    # --- writes (need the admin token) --------------------------------------------------------

    def enrol(self, identity: str, images: list[bytes], idempotency_key: str | None = None) -> dict:
        """Enrol (retried with one idempotency key, a new one unless given: never enrolled twice)."""
        body = json.dumps({"identity": identity, "images": [b64_image(image) for image in images]}).encode()
        headers = self._write_headers(idempotency_key, json_body=True)
        answer = with_new_names(
            self._write(lambda: self._json("POST", GALLERY_PATH, data=body, headers=headers)), "enrol"
        )
        return self._checked(
            answer, lambda: _fields(answer, {"identity": str, "added": int, "count": int, "gallery_edits": int})
        )

    def remove(self, identity: str, idempotency_key: str | None = None) -> dict:
        headers = self._write_headers(idempotency_key)
        answer = self._write(lambda: self._json("DELETE", GALLERY_PATH, params={"identity": identity}, headers=headers))
        return self._checked(answer, lambda: _fields(answer, {"identity": str, "removed": int}))

    # --- plumbing -----------------------------------------------------------------------------

    def _write_headers(self, idempotency_key: str | None, json_body: bool = False) -> dict[str, str]:
        headers = {"Content-Type": "application/json"} if json_body else {}
        headers[IDEMPOTENCY_HEADER] = idempotency_key or str(uuid.uuid4())
        if self.admin_token:
            headers["Authorization"] = f"Bearer {self.admin_token}"
        return headers

    def _write(self, send: Callable[[], Any]) -> Any:
        """Send a write until it is answered, refused (4xx) or out of attempts."""
        wait_s = self.retries.first_wait_s
        for attempt in range(1, self.retries.attempts + 1):
            try:
                return send()
            except PredictorError as error:
                if not error.retryable or attempt == self.retries.attempts:
                    raise
                time.sleep(min(error.retry_after_s or wait_s, self.retries.max_wait_s))
                wait_s = min(2 * wait_s, self.retries.max_wait_s)
        raise AssertionError("unreachable: the last attempt returns or raises")

    def _send(self, method: str, path: str, read_s: float | None = None, **kwargs: Any) -> requests.Response:
        url = path if path.startswith("http") else f"{self.base_url}{path}"
        timeout = (self.timeouts.connect_s, self.timeouts.read_s if read_s is None else read_s)
        try:
            response = (self.session or requests).request(method, url, timeout=timeout, **kwargs)
        except requests.Timeout:
            raise PredictorError(f"the predictor at {self.base_url} did not answer within {timeout[1]:g} s") from None
        except requests.RequestException as error:
            raise PredictorError(
                f"cannot reach the predictor at {self.base_url} ({type(error).__name__}): check that `facesim serve` runs there"
            ) from None
        if response.status_code == 503 and _error_text(response) == GALLERY_UNAVAILABLE:
            raise PredictorError(GALLERY_UNAVAILABLE, 503, _retry_after_s(response))
        if response.status_code >= 400:
            raise PredictorError(self._refusal(response), response.status_code if response.status_code < 500 else None)
        return response

    def _json(self, method: str, path: str, **kwargs: Any) -> Any:
        response = self._send(method, path, **kwargs)
        try:
            return response.json()
        except ValueError:
            raise PredictorError(self._not_api(f"a {_kind(response)} page instead of JSON")) from None

    def _picture(self, path: str, magic: bytes, **kwargs: Any) -> bytes:
        data = self._send("GET", path, **kwargs).content
        if not data.startswith(magic):
            raise PredictorError(self._not_api("something that is not the expected picture"))
        return data

    def _checked(self, answer: Any, check: Callable[[], None]) -> Any:
        try:
            check()
        except AnswerError as error:
            raise PredictorError(self._not_api(str(error))) from None
        return answer

    def _not_api(self, what: str) -> str:
        return f"the server at {self.base_url} is not a facesim predictor, or a different version: it answered {what}"

    def _refusal(self, response: requests.Response) -> str:
        try:
            body = response.json()
        except ValueError:
            body = None
        if isinstance(body, dict) and isinstance(body.get("error"), str):
            status = "refused the request" if response.status_code < 500 else "failed"
            return f"the predictor {status} (HTTP {response.status_code}): {body['error'][:MAX_MESSAGE_CHARS]}"
        return self._not_api(f"HTTP {response.status_code} with a {_kind(response)} page")


def _error_text(response: requests.Response) -> str | None:
    try:
        body = response.json()
    except ValueError:
        return None
    return body.get("error") if isinstance(body, dict) else None


def _retry_after_s(response: requests.Response) -> float | None:
    try:
        return max(0.0, float(response.headers.get("Retry-After", "")))
    except ValueError:
        return None  # absent, or an HTTP date: the client's own backoff applies


class AnswerError(ValueError):
    """An answer that does not follow the API; the message names the field."""


def _kind(response: requests.Response) -> str:
    return (response.headers.get("content-type") or "untyped").split(";")[0].strip() or "untyped"


def _expect(value: Any, kind: type | tuple[type, ...], where: str) -> Any:
    if isinstance(value, bool) and kind in (int, float, (int, float)):
        raise AnswerError(f"{where} is not a number")
    if not isinstance(value, kind):
        raise AnswerError(f"{where} is not {_names(kind)}")
    return value


def _names(kind: type | tuple[type, ...]) -> str:
    kinds = kind if isinstance(kind, tuple) else (kind,)
    words = {dict: "an object", list: "a list", str: "text", int: "an integer", float: "a number", bool: "true/false"}
    return " or ".join(words.get(k, k.__name__) for k in kinds)


def _fields(answer: Any, fields: dict[str, type | tuple[type, ...]], where: str = "the answer") -> None:
    _expect(answer, dict, where)
    for name, kind in fields.items():
        _expect(answer.get(name), kind, f"{where}'s {name!s}")


NUMBER = (int, float)


def check_v1_answer(answer: Any, with_compare: bool = False) -> None:
    # gallery_version: the registered version (v1, v2, ...), null outside the registry
    _fields(
        answer,
        {"predictions": list, "threshold": NUMBER, "model_fingerprint": str, "gallery_version": (str, type(None))},
    )
    _fields(answer, {"gallery_edits": int})
    if len(answer["predictions"]) != 1:
        raise AnswerError(f"{len(answer['predictions'])} predictions for one image")
    prediction = answer["predictions"][0]
    _fields(prediction, {"faces": list}, "the prediction")
    for i, face in enumerate(prediction["faces"]):
        _check_face(face, f"face {i}", with_matches=True)
    if with_compare:
        _check_comparison(prediction)


def _check_face(face: Any, where: str, with_matches: bool) -> None:
    _fields(face, {"box": list, "score": NUMBER, "embedding": list}, where)
    if len(face["box"]) != 4 or not all(isinstance(v, NUMBER) and not isinstance(v, bool) for v in face["box"]):
        raise AnswerError(f"{where}'s box is not four numbers")
    if with_matches:
        for j, match in enumerate(_expect(face.get("matches"), list, f"{where}'s matches")):
            _fields(match, {"identity": str, "distance": NUMBER, "same": bool}, f"{where}'s match {j}")


def _check_comparison(prediction: dict) -> None:
    compare_face = prediction.get("compare_face")
    if compare_face is not None:
        _check_face(compare_face, "the compared face", with_matches=False)
    if prediction.get("distance") is not None:
        _fields(prediction, {"distance": NUMBER, "same": bool}, "the comparison")


def check_gallery_listing(answer: Any) -> None:
    _fields(answer, {"identities": list}, "the gallery listing")
    for i, entry in enumerate(answer["identities"]):
        _fields(entry, {"identity": str, "count": int}, f"gallery entry {i}")
