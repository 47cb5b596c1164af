"""The predictor's HTTP contract, shared by the server (inference), its clients (the CLI, the UI,
the benchmarks) and evaluation, so that each rule is stated once."""

from __future__ import annotations

import unicodedata
from typing import Any, TypeAlias

Distance: TypeAlias = Any  # float, or a numpy array of them
Decision: TypeAlias = Any  # bool, or a numpy array of them

MODEL_NAME = "facenet"  # KServe model name: /v1/models/facenet:predict, /v2/models/facenet/infer

MAX_IDENTITY_LENGTH = 128
MAX_IMAGE_BYTES = 20 * 1024 * 1024  # one image, as sent (the predictor's default; configurable)
MAX_REQUEST_BYTES = 64 * 1024 * 1024  # one request body


class IdentityNameError(ValueError):
    """An identity name the gallery refuses; the message is fit for a user."""


def validate_identity(name: object) -> str:
    """An identity name: any text of 1-128 characters without control characters."""
    if not isinstance(name, str):
        raise IdentityNameError("identity must be a string")
    if not name.strip():
        raise IdentityNameError("identity must not be empty")
    if len(name) > MAX_IDENTITY_LENGTH:
        raise IdentityNameError(f"identity is longer than {MAX_IDENTITY_LENGTH} characters")
    if any(unicodedata.category(ch) == "Cc" for ch in name):
        raise IdentityNameError("identity must not contain control characters")
    return name


def same_person(distance: Distance, threshold: Distance) -> Decision:
    """The one decision rule: a squared-L2 distance at or under the threshold is the same person.
    Evaluation calibrates with it and serving decides with it; numpy arrays work elementwise."""
    return distance <= threshold
