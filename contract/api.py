"""The predictor's HTTP contract, shared by the server (inference), its clients (the CLI, the UI,
the benchmarks) and evaluation, so that each rule is stated once."""

from __future__ import annotations

import unicodedata

MODEL_NAME = "facenet"  # KServe model name: /v1/models/facenet:predict, /v2/models/facenet/infer

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
