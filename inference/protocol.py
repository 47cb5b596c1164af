"""The predictor's wire format, V1 and V2 (Open Inference Protocol), in both directions.

The HTTP body is parsed once: JSON by the HTTP guard (http_guard.py), a binary-extension V2 body
by `v2_request` with KServe's decoder; gRPC requests arrive as KServe's `InferRequest`.
`decode_request` turns a V1 body or a V2 `InferRequest` into `Instance`s (image bytes, top_k, ...),
checking every field: a problem raises `kserve.errors.InvalidInput` (answered 400 with
`{"error": message}`) naming the field. The model analyses the instances into a `FaceBatch` and
`encode_response` answers it in the protocol the request came in. The model never sees the wire
format.
"""

from __future__ import annotations

import base64
import binascii
import json
import math
import re
from collections.abc import Sequence
from dataclasses import dataclass, field
from typing import Any

import numpy as np
import orjson
from kserve.errors import InferenceError, InvalidInput
from kserve.protocol.infer_type import InferOutput, InferRequest, InferResponse
from kserve.protocol.rest.v2_datamodels import InferenceRequest
from pydantic import ValidationError

from facesim.contract.api import BINARY_V2_HEADER, MAX_REQUEST_BYTES, with_old_names
from facesim.contract.metrics import same_person, squared_l2
from facesim.faces.image import ImageLimits, png_bytes
from facesim.faces.preprocess import AlignedFace
from facesim.gallery.index import Match

DEFAULT_TOP_K = 3


@dataclass(frozen=True)
class RequestLimits:
    """What one request may carry; images beyond these get a 400 before any decoding."""

    max_image_bytes: int = ImageLimits.max_bytes
    max_image_pixels: int = ImageLimits.max_pixels
    max_instances: int = 16
    max_top_k: int = 100
    max_faces_per_image: int = 64  # the largest ones; a crowd photo can't make one request huge
    max_request_bytes: int = MAX_REQUEST_BYTES  # whole body, counted while it streams (chunked too): 413
    # All images and compare images of one request together, counted from their headers before any
    # decoding: bounds the work one request can ask for (two 40-megapixel photos, or 8 of 12 MP).
    max_request_pixels: int = 100_000_000
    max_header_bytes: int = 16 * 1024  # one request header line (431 above)

    @property
    def image_limits(self) -> ImageLimits:
        return ImageLimits(max_bytes=self.max_image_bytes, max_pixels=self.max_image_pixels)


@dataclass(frozen=True)
class Instance:
    """One image to analyse (and optionally a second one to compare it with)."""

    image: bytes
    compare: bytes | None = None
    top_k: int = DEFAULT_TOP_K
    return_crops: bool = False


@dataclass(frozen=True)
class DecodedRequest:
    """A request as the model sees it: its instances, and how to answer (protocol, V2 request id)."""

    instances: list[Instance]
    protocol: str  # "v1" | "v2"
    request_id: str | None = None


def decode_request(payload: Any, limits: RequestLimits) -> DecodedRequest:
    """A V2 `InferRequest` (REST or gRPC) or a V1 body (JSON already parsed, or raw bytes)."""
    if isinstance(payload, InferRequest):
        return DecodedRequest(parse_v2(payload, limits), "v2", payload.id)
    return DecodedRequest(parse_v1(payload, limits), "v1")


def v2_request(body: bytes, parsed: tuple[Any] | None, binary_header: str | None, model_name: str) -> InferRequest:
    """A V2 REST body as an InferRequest: JSON as the guard parsed it (`parsed`; parsed here when the
    request named no JSON content type), or a binary-extension body (a JSON header of
    `binary_header` bytes, then raw tensor bytes) with KServe's own decoder, which does not check it."""
    if binary_header is not None:
        json_size = binary_json_size(binary_header, len(body))
        try:
            return InferRequest.from_bytes(body, json_size, model_name)
        except Exception as error:  # noqa: BLE001 - whatever the decoder trips on, the body caused it
            if isinstance(error, InferenceError) and "UTF-8" in str(error):
                # KServe 0.21 turns binary BYTES into text: raw image bytes can't pass that way.
                raise InvalidInput(
                    'binary-extension BYTES must be UTF-8 text here: send input "image" base64-encoded'
                ) from None
            reason = f"{type(error).__name__}: {error}"[:200]
            raise InvalidInput(f"malformed binary-extension request ({BINARY_V2_HEADER}): {reason}") from None
    document = parsed[0] if parsed is not None else load_json(body, "the request body is not JSON")
    try:
        return InferRequest.from_inference_request(InferenceRequest.model_validate(document), model_name)
    except ValidationError as error:
        raise InvalidInput(f"invalid request: {validation_problems(error.errors())}") from None


def binary_json_size(header: str, body_size: int) -> int:
    """The JSON part's length that `Inference-Header-Content-Length` gives, checked against the body."""
    if not re.fullmatch(r"[0-9]{1,12}", header.strip()):  # ASCII digits only: "²" is a digit to str.isdigit
        raise InvalidInput(f"{BINARY_V2_HEADER} must be the JSON header's length in bytes, not {header[:40]!r}")
    size = int(header)
    if size > body_size:
        raise InvalidInput(
            f"{BINARY_V2_HEADER} says the JSON header is {size:,} bytes but the body has {body_size:,}: "
            "send the header's length, then the JSON, then the tensor bytes"
        )
    return size


def validation_problems(errors: Sequence[Any]) -> str:
    """Pydantic's errors as one line: `where: what` for each, `body` when it is the whole body."""
    return "; ".join(
        f"{'.'.join(str(part) for part in problem['loc'] if part != 'body') or 'body'}: {problem['msg']}"
        for problem in errors
    )


def parse_v1(body: Any, limits: RequestLimits) -> list[Instance]:
    """`{"instances": [{"image": {"b64": ...}, "top_k": 3, "compare": {"b64": ...}}]}`."""
    if isinstance(body, (bytes, str)):  # KServe hands over the raw body when the content type isn't JSON
        body = load_json(body, "the request body is not JSON")
    if not isinstance(body, dict):
        raise InvalidInput('the request body must be a JSON object like {"instances": [...]}')
    instances = body.get("instances")
    if instances is None:
        raise InvalidInput('the request has no "instances" field')
    if not isinstance(instances, list) or not instances:
        raise InvalidInput('"instances" must be a non-empty list')
    _check_count(len(instances), "instances", limits)
    return [_parse_v1_instance(item, f"instances[{i}]", limits) for i, item in enumerate(instances)]


def _parse_v1_instance(item: Any, where: str, limits: RequestLimits) -> Instance:
    if not isinstance(item, dict):
        raise InvalidInput(f'{where} must be an object like {{"image": {{"b64": "..."}}}}')
    if "image" not in item:
        raise InvalidInput(f'{where} has no "image" field')
    compare = item.get("compare")
    return Instance(
        image=_b64_field(item["image"], f"{where}.image", limits),
        compare=None if compare is None else _b64_field(compare, f"{where}.compare", limits),
        top_k=_top_k(item.get("top_k", DEFAULT_TOP_K), f"{where}.top_k", limits),
        return_crops=_flag(item.get("return_crops", False), f"{where}.return_crops"),
    )


def parse_v2(request: InferRequest, limits: RequestLimits) -> list[Instance]:
    """A BYTES input named `image`, one base64 text element per image (in JSON or in a binary-extension
    body); request parameter `top_k`."""
    inputs = {item.name: item for item in request.inputs}
    if "image" not in inputs:
        names = ", ".join(repr(name) for name in inputs) or "none"
        raise InvalidInput(f'the request has no input named "image" (inputs given: {names})')
    image_input = inputs["image"]
    if image_input.datatype != "BYTES":
        raise InvalidInput(f'input "image" must have datatype BYTES, not {image_input.datatype}')
    elements = _flatten(image_input.data, len(image_input.shape or []))
    if not elements:
        raise InvalidInput('input "image" has no data')
    _check_shape(image_input.shape, len(elements))
    _check_count(len(elements), 'elements in input "image"', limits)
    parameters = request.parameters or {}
    top_k = _top_k(_parameter_value(parameters.get("top_k", DEFAULT_TOP_K)), "parameters.top_k", limits)
    return [
        Instance(image=_v2_element(element, f"image[{i}]", limits), top_k=top_k) for i, element in enumerate(elements)
    ]


def load_json(body: bytes | str, problem: str) -> Any:
    """orjson's parser: it refuses lone surrogates (which no response or database could hold) and
    nesting deeper than 1,024 levels, where the standard library would recurse until it fails."""
    try:
        return orjson.loads(body)
    except orjson.JSONDecodeError as error:
        raise InvalidInput(f"{problem} ({error.msg})") from None


def decode_b64(text: Any, where: str, limits: RequestLimits) -> bytes:
    """Strict base64 (a `data:image/...;base64,` prefix is allowed) with the byte limit checked first."""
    if not isinstance(text, str):
        raise InvalidInput(f"{where} must be a base64 string")
    if text.startswith("data:") and "," in text:
        text = text.split(",", 1)[1]
    text = "".join(text.split())  # line-wrapped base64 is still base64
    if len(text) * 3 // 4 > limits.max_image_bytes + 2:
        raise InvalidInput(f"{where}: the image is too large (limit {limits.max_image_bytes:,} bytes)")
    try:
        data = base64.b64decode(text, validate=True)
    except (binascii.Error, ValueError):
        raise InvalidInput(f"{where} is not valid base64") from None
    if not data:
        raise InvalidInput(f"{where} is empty")
    return data


def _b64_field(value: Any, where: str, limits: RequestLimits) -> bytes:
    if not isinstance(value, dict) or "b64" not in value:
        raise InvalidInput(f'{where} must be an object like {{"b64": "<base64 JPEG or PNG>"}}')
    return decode_b64(value["b64"], f"{where}.b64", limits)


def _v2_element(element: Any, where: str, limits: RequestLimits) -> bytes:
    if isinstance(element, bytes):  # gRPC hands BYTES over undecoded: the file itself, or base64 text
        if not element.isascii():  # JPEG/PNG/... files start with non-ASCII magic bytes
            if len(element) > limits.max_image_bytes:
                raise InvalidInput(f"{where}: the image is too large (limit {limits.max_image_bytes:,} bytes)")
            return element
        element = element.decode("ascii")
    return decode_b64(element, where, limits)


def _flatten(data: Any, depth: int) -> list[Any]:
    """The elements of a tensor's data, flat or nested as its shape (at most `depth` levels; a loop,
    not recursion, so hostile nesting is a 400)."""
    if data is None:
        return []
    if hasattr(data, "tolist"):  # numpy array from a binary body
        data = data.tolist()
    level = data if isinstance(data, list) else [data]
    for _ in range(max(depth, 1) - 1):
        if not any(isinstance(item, list) for item in level):
            break
        level = [leaf for item in level for leaf in (item if isinstance(item, list) else [item])]
    if any(isinstance(item, list) for item in level):
        raise InvalidInput('input "image" data is nested deeper than its shape')
    return level


def _check_shape(shape: Any, count: int) -> None:
    if not isinstance(shape, list) or not all(isinstance(n, int) and n >= 0 for n in shape):
        raise InvalidInput('input "image" shape must be a list of sizes, like [2]')
    if math.prod(shape) != count:
        raise InvalidInput(f'input "image" has shape {shape} but {count} data element(s): they must agree')


def _parameter_value(value: Any) -> Any:
    # gRPC-style parameters arrive wrapped ({"int64_param": 3}); REST ones are plain.
    if isinstance(value, dict) and len(value) == 1:
        return next(iter(value.values()))
    return value


def _top_k(value: Any, where: str, limits: RequestLimits) -> int:
    if isinstance(value, bool) or not isinstance(value, int):
        raise InvalidInput(f"{where} must be an integer")
    if not 0 <= value <= limits.max_top_k:
        raise InvalidInput(f"{where} must be between 0 and {limits.max_top_k}")
    return value


def _flag(value: Any, where: str) -> bool:
    if not isinstance(value, bool):
        raise InvalidInput(f"{where} must be true or false")
    return value


def _check_count(count: int, what: str, limits: RequestLimits) -> None:
    if count > limits.max_instances:
        raise InvalidInput(f"too many {what}: {count} (limit {limits.max_instances} per request)")


@dataclass
class AnalysedImage:
    """What a request keeps of an image: its faces (boxes in the original's pixels, aligned crops),
    never the decoded pixels, which are released as soon as the crops are made."""

    faces: list[AlignedFace]
    thumbnail: bytes | None = None


@dataclass
class FaceBatch:
    """A request in flight: its instances, the faces found, then their embeddings."""

    request: DecodedRequest
    images: list[AnalysedImage]
    compares: list[AnalysedImage | None]
    embeddings: np.ndarray | None = None
    gallery_edits: int = 0  # the gallery's change counter when it was searched
    image_matches: list[list[Match]] = field(default_factory=list)

    @property
    def instances(self) -> list[Instance]:
        return self.request.instances

    def crops(self) -> np.ndarray:
        crops = [face.crop for image in self.images for face in image.faces]
        crops += [image.faces[0].crop for image in self.compares if image is not None and image.faces]
        if not crops:
            return np.zeros((0, 1, 1, 3), dtype=np.uint8)
        return np.stack(crops)


@dataclass(frozen=True)
class AnswerContext:
    """What every answer says beside the faces: which model, gallery and threshold decided."""

    model_name: str
    model_fingerprint: str
    embedding_dim: int
    gallery_version: str | None  # the registered version (v1, v2, ...) or None
    threshold: float
    threshold_source: str  # "gallery" (its own calibration) | "model"


def encode_response(batch: FaceBatch, context: AnswerContext) -> dict | InferResponse:
    """The answer in the protocol the request came in."""
    return _v2_response(batch, context) if batch.request.protocol == "v2" else _v1_response(batch, context)


def _v1_response(batch: FaceBatch, context: AnswerContext) -> dict:
    assert batch.embeddings is not None  # the model embedded the batch
    # Embedding rows: every face of every image in order, then each compare image's largest face.
    starts = np.cumsum([0] + [len(image.faces) for image in batch.images])
    compare_row = int(starts[-1])
    threshold = context.threshold
    predictions = []
    for i, (instance, image, compare) in enumerate(zip(batch.instances, batch.images, batch.compares, strict=True)):
        rows = range(int(starts[i]), int(starts[i + 1]))
        faces = [
            _face_json(face, batch.embeddings[row], instance, threshold, batch.image_matches[row][: instance.top_k])
            for face, row in zip(image.faces, rows, strict=True)
        ]
        prediction: dict[str, Any] = {"faces": faces}
        if compare is not None:
            compare_embedding = batch.embeddings[compare_row] if compare.faces else None
            compare_row += 1 if compare.faces else 0
            prediction.update(
                _comparison(instance, image, compare, batch.embeddings, rows, compare_embedding, threshold)
            )
        predictions.append(prediction)
    answer = {
        "predictions": predictions,
        "model_fingerprint": context.model_fingerprint,
        "gallery_version": context.gallery_version,
        "gallery_edits": batch.gallery_edits,
        "threshold": threshold,
        "threshold_source": context.threshold_source,
    }
    return with_old_names(answer, "predict")


def _comparison(
    instance: Instance,
    image: AnalysedImage,
    compare: AnalysedImage,
    embeddings: np.ndarray,
    image_rows: range,
    compare_embedding: np.ndarray | None,
    threshold: float,
) -> dict[str, Any]:
    """Largest face of the image vs largest face of the compare image (null when either has none)."""
    if compare_embedding is None:
        return {"compare_face": None, "distance": None, "same": None}
    answer: dict[str, Any] = {"compare_face": _face_json(compare.faces[0], compare_embedding, instance, threshold)}
    if not image.faces:
        return answer | {"distance": None, "same": None}
    distance = float(squared_l2(embeddings[image_rows[0]], compare_embedding))
    return answer | {"distance": round(distance, 6), "same": same_person(distance, threshold)}


def _face_json(
    face: AlignedFace, embedding: np.ndarray, instance: Instance, threshold: float, matches: list[Match] | None = None
) -> dict[str, Any]:
    answer = face.face.to_dict()
    answer["embedding"] = [round(float(v), 6) for v in embedding]
    if matches is not None:
        answer["matches"] = [_match_json(match, threshold) for match in matches]
    if instance.return_crops:
        answer["crop"] = {"b64": base64.b64encode(png_bytes(face.crop)).decode("ascii")}
    return answer


def _match_json(match: Match, threshold: float) -> dict[str, Any]:
    return {
        "identity": match.identity,
        "distance": round(match.distance, 6),
        "same": same_person(match.distance, threshold),
    }


def _v2_response(batch: FaceBatch, context: AnswerContext) -> InferResponse:
    assert batch.embeddings is not None  # the model embedded the batch
    faces = [(i, face) for i, image in enumerate(batch.images) for face in image.faces]
    count, dim = len(faces), context.embedding_dim
    boxes = np.array([face.face.box for _, face in faces], np.float32).reshape(count, 4)
    landmarks = np.array([face.face.landmarks for _, face in faces], np.float32).reshape(count, 5, 2)
    scores = np.array([face.face.score for _, face in faces], np.float32).reshape(count)
    matches = [
        json.dumps([_match_json(m, context.threshold) for m in found[: batch.instances[i].top_k]])
        for (i, _), found in zip(faces, batch.image_matches, strict=True)
    ]
    outputs = [
        _output("boxes", boxes, "FP32"),
        _output("scores", scores, "FP32"),
        _output("landmarks", landmarks, "FP32"),
        _output("embeddings", batch.embeddings[:count].reshape(count, dim), "FP32"),
        _output("image_index", np.array([i for i, _ in faces], np.int32), "INT32"),
        InferOutput(name="matches", shape=[count], datatype="BYTES", data=matches),
    ]
    # V2 parameters take no null: an unregistered gallery has no gallery_version.
    registered = {"gallery_version": context.gallery_version} if context.gallery_version else {}
    parameters = {**registered, "gallery_edits": batch.gallery_edits, "model_fingerprint": context.model_fingerprint}
    return InferResponse(
        response_id=batch.request.request_id or "",
        model_name=context.model_name,
        model_version=context.model_fingerprint,
        infer_outputs=outputs,
        parameters=with_old_names(parameters, "predict"),
    )


def _output(name: str, values: np.ndarray, datatype: str) -> InferOutput:
    return InferOutput(name=name, shape=list(values.shape), datatype=datatype, data=values.flatten().tolist())
