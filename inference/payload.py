"""Request parsing and validation for the predictor's V1 and V2 (Open Inference Protocol) bodies.

Every problem with a client's request raises `kserve.errors.InvalidInput` (KServe answers 400
with `{"error": message}`), with a message that names the field that was wrong.
"""

from __future__ import annotations

import base64
import binascii
import math
from dataclasses import dataclass
from typing import Any

import orjson
from kserve.errors import InvalidInput
from kserve.protocol.infer_type import InferRequest

from facesim.contract.api import MAX_REQUEST_BYTES
from facesim.faces.image import ImageLimits

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
