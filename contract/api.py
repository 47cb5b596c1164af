"""The predictor's HTTP contract, shared by the server (inference), its clients (the CLI, the UI,
the benchmarks) and evaluation, so that each rule is stated once."""

from __future__ import annotations

import unicodedata
from typing import Any

MODEL_NAME = "facenet"  # KServe model name: /v1/models/facenet:predict, /v2/models/facenet/infer
READY_PATH = "/v2/health/ready"  # 200 once the model and gallery are loaded (Open Inference Protocol)
# KServe's binary extension of V2: the length of the JSON header that precedes the raw tensor bytes.
BINARY_V2_HEADER = "inference-header-content-length"

MAX_IDENTITY_LENGTH = 128
MAX_IMAGE_BYTES = 20 * 1024 * 1024  # one image, as sent (the predictor's default; configurable)
MAX_REQUEST_BYTES = 64 * 1024 * 1024  # one request body
# What a 503 from a gallery endpoint says while the gallery's database cannot be reached, and what
# facesim's clients show: it names nothing of the server's internals.
GALLERY_UNAVAILABLE = "the gallery is unavailable, retry later"
IDEMPOTENCY_HEADER = "Idempotency-Key"  # gallery writes (IETF draft "The Idempotency-Key HTTP Header Field")
MAX_IDEMPOTENCY_KEY_LENGTH = 255
# `facesim serve`'s default gallery when set: the InferenceService takes it from a Secret
# (`facesim manifests --gallery-backend postgresql`), so no password sits in its arguments.
GALLERY_DSN_ENV = "FACESIM_GALLERY_DSN"


# One word per concept: `model_fingerprint` (the weights' fingerprint), `gallery_version` (the registered
# version, v1, v2, ... or null), `gallery_edits` (the gallery's change counter). The names they replace,
# per answer (old -> new), are served beside them in 0.1.x and go in 0.2.0 (docs/protocol.md).
DEPRECATED_NAMES: dict[str, dict[str, str]] = {
    "predict": {"model_version": "model_fingerprint"},  # V1 answer, V2 parameters
    "gallery": {"version": "gallery_version", "edits": "gallery_edits", "model_version": "model_fingerprint"},
    "index": {"version": "gallery_edits"},  # the listing's "index"
    "enrol": {"edits": "gallery_edits"},
}


def with_old_names(answer: dict[str, Any], kind: str) -> dict[str, Any]:
    """A server's answer with the deprecated names beside the new ones (while they are served)."""
    return answer | {old: answer[new] for old, new in DEPRECATED_NAMES[kind].items() if new in answer}


def with_new_names(answer: Any, kind: str) -> Any:
    """A client's view of an answer: the new names, taken from the old ones when an older server sent only those."""
    if not isinstance(answer, dict):
        return answer
    return answer | {
        new: answer[old] for old, new in DEPRECATED_NAMES[kind].items() if new not in answer and old in answer
    }


class IdentityNameError(ValueError):
    """An identity name the gallery refuses; the message is fit for a user."""


# Characters a name may not hold: they are invisible, break lines, or cannot be stored at all.
REFUSED_CATEGORIES = {
    "Cc": "control characters (such as line breaks)",
    "Cf": "invisible format characters (such as zero-width joiners)",
    "Cs": "lone surrogates (broken UTF-16)",
    "Zl": "line separators",
    "Zp": "paragraph separators",
}


def validate_identity(name: object) -> str:
    """An identity name as stored: NFC-normalised and trimmed, 1-128 characters, none of them
    control, format, surrogate or line/paragraph separators (so "Ada" and "Ada" + a zero-width
    joiner, or a composed and a decomposed "é", are never two people)."""
    if not isinstance(name, str):
        raise IdentityNameError("identity must be a string")
    refused = sorted({unicodedata.category(ch) for ch in name} & REFUSED_CATEGORIES.keys())
    if refused:
        raise IdentityNameError(f"identity must not contain {' or '.join(REFUSED_CATEGORIES[c] for c in refused)}")
    name = unicodedata.normalize("NFC", name).strip()
    if not name:
        raise IdentityNameError("identity must not be empty")
    if len(name) > MAX_IDENTITY_LENGTH:
        raise IdentityNameError(f"identity is longer than {MAX_IDENTITY_LENGTH} characters")
    return name
