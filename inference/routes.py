"""The predictor's extra HTTP routes: the gallery ("image database") and the model card.

KServe 0.21 serves the FastAPI app `kserve.model_server.app`; routes added to it before
`ModelServer.start` are served beside KServe's own (docs/architecture.md "Predictor HTTP API").
Errors are `{"error": ...}` with a 4xx, as on the inference endpoints.
"""

from __future__ import annotations

import asyncio
import hashlib
import logging
from pathlib import PurePosixPath, PureWindowsPath
from typing import TYPE_CHECKING, Any

from fastapi import APIRouter, Depends, FastAPI, Request
from fastapi.exceptions import RequestValidationError
from fastapi.responses import FileResponse, JSONResponse, Response
from kserve.errors import InferenceError, InvalidInput, ModelNotFound
from kserve.protocol.infer_type import InferRequest
from starlette.exceptions import HTTPException as StarletteHTTPException

from facesim.contract.api import GALLERY_UNAVAILABLE, IDEMPOTENCY_HEADER, MAX_IDEMPOTENCY_KEY_LENGTH
from facesim.contract.auth import authorization_problem
from facesim.gallery.store import (
    GalleryError,
    GalleryUnavailable,
    IdempotencyConflict,
    UnknownIdentity,
    WriteRequest,
    validate_identity,
)
from facesim.inference.http_guard import GuardLimits, RequestGuard
from facesim.inference.payload import decode_b64, load_json

if TYPE_CHECKING:
    from facesim.inference.predictor import FaceNetPredictor

MAX_ENROL_IMAGES = 32
V2_BINARY_HEADER = "inference-header-content-length"
# While the gallery's database is down: when a client should try again (a database restart takes seconds).
RETRY_AFTER_S = 2


def _error(status: int, message: str) -> JSONResponse:
    return JSONResponse(status_code=status, content={"error": message})


def _unavailable() -> JSONResponse:
    """The gallery's database cannot be reached: 503, naming nothing of it (the log has the details)."""
    return JSONResponse(
        status_code=503, content={"error": GALLERY_UNAVAILABLE}, headers={"Retry-After": str(RETRY_AFTER_S)}
    )


def write_request(request: Request, *parts: bytes) -> WriteRequest | None:
    """The write's Idempotency-Key (None without one) and a fingerprint of what the request asks."""
    key = request.headers.get(IDEMPOTENCY_HEADER)
    if key is None:
        return None
    if not key or len(key) > MAX_IDEMPOTENCY_KEY_LENGTH or not key.isprintable():
        raise InvalidInput(
            f"{IDEMPOTENCY_HEADER} must be 1-{MAX_IDEMPOTENCY_KEY_LENGTH} printable characters (e.g. a UUID)"
        )
    fingerprint = hashlib.sha256(b"\n".join([request.method.encode(), *parts])).hexdigest()
    return WriteRequest(key, fingerprint)


async def request_validation_error(_: Request, error: RequestValidationError) -> JSONResponse:
    """FastAPI's schema errors (a malformed V2 body) as our 400 `{"error": ...}` instead of a 422."""
    problems = "; ".join(
        f"{'.'.join(str(part) for part in problem['loc'][1:]) or 'body'}: {problem['msg']}"
        for problem in error.errors()
    )
    return _error(400, f"invalid request: {problems}")


async def http_error(_: Request, error: StarletteHTTPException) -> JSONResponse:
    """Framework errors (unparsable body, unknown route) in the same `{"error": ...}` shape."""
    return JSONResponse(status_code=error.status_code, content={"error": str(error.detail)}, headers=error.headers)


async def reject_malformed_binary_v2(request: Request, call_next) -> Response:
    """KServe decodes binary-extension V2 bodies without checking them, so a malformed one would
    be a 500. Decode it once here with KServe's own decoder and answer 400 when that fails."""
    header = request.headers.get(V2_BINARY_HEADER)
    if header is not None and request.method == "POST" and request.url.path.endswith("/infer"):
        try:
            InferRequest.from_bytes(await request.body(), int(header), "check")
        except Exception as error:  # noqa: BLE001 - whatever the decoder trips on, the body caused it
            if isinstance(error, InferenceError) and "UTF-8" in str(error):
                # KServe 0.21 turns binary BYTES into text: raw image bytes can't pass that way.
                return _error(400, 'binary-extension BYTES must be UTF-8 text here: send input "image" base64-encoded')
            reason = f"{type(error).__name__}: {error}"[:200]
            return _error(400, f"malformed binary-extension request ({V2_BINARY_HEADER}): {reason}")
    return await call_next(request)


def readiness_router(predictor: FaceNetPredictor) -> APIRouter:
    """`/v2/health/ready` true only once this process has loaded the model. KServe's own answer is
    always true, which with `--workers N` (each worker loads in the background) would let a
    readiness probe send traffic to workers still loading. Registered first, it takes precedence."""
    router = APIRouter()

    @router.get("/v2/health/ready")
    async def ready() -> Response:
        if not predictor.ready:
            return _error(503, "the model is still loading")
        return JSONResponse({"ready": True})

    @router.get(f"/v1/models/{predictor.name}")
    async def model_metadata() -> Response:
        """KServe's V1 model metadata, plus whether gallery writes can succeed now (predicts go on either way)."""
        return JSONResponse(
            {"name": predictor.name, "ready": predictor.ready, "gallery_writable": predictor.gallery_writable}
        )

    return router


def gallery_router(predictor: FaceNetPredictor) -> APIRouter:
    async def require_ready() -> None:
        if not predictor.ready:
            raise StarletteHTTPException(503, "the model is still loading; retry in a few seconds")

    async def require_admin(request: Request) -> None:
        """Gallery writes: the admin token first (401/403), then a JSON body (415)."""
        problem = authorization_problem(predictor.config.admin_token, request.headers.get("authorization"))
        if problem is not None:
            raise StarletteHTTPException(
                *problem, headers={"WWW-Authenticate": "Bearer"} if problem[0] == 401 else None
            )
        content_type = request.headers.get("content-type", "").split(";")[0].strip().lower()
        if request.method == "POST" and content_type != "application/json":
            raise StarletteHTTPException(415, "gallery writes take `Content-Type: application/json` bodies")

    router = APIRouter(prefix=f"/v1/models/{predictor.name}", dependencies=[Depends(require_ready)])

    @router.get("/gallery")
    async def list_gallery() -> Response:
        try:
            identities = await asyncio.to_thread(predictor.gallery.identities)
            version, _ = await asyncio.to_thread(predictor.gallery.counters)
        except GalleryUnavailable:
            return _unavailable()
        return JSONResponse(
            {
                "version": predictor.gallery_version,
                "edits": version,
                "model_version": predictor.gallery.info.model_version,
                "size": sum(count for _, count in identities),
                "identities": [{"identity": name, "count": count} for name, count in identities],
                "featured": featured_identities(predictor.gallery.info.source, identities),
                "index": predictor.index.describe(),
            }
        )

    @router.get("/gallery/thumbnail")
    async def thumbnail(identity: str = "") -> Response:
        try:
            jpeg = await asyncio.to_thread(predictor.gallery.thumbnail, validate_identity(identity))
        except UnknownIdentity as error:
            return _error(404, str(error))
        except GalleryError as error:
            return _error(400, str(error))
        except GalleryUnavailable:
            return _unavailable()
        if jpeg is None:
            return _error(404, "this identity has no thumbnail")
        return Response(content=jpeg, media_type="image/jpeg")

    @router.post("/gallery", dependencies=[Depends(require_admin)])
    async def enrol(request: Request) -> Response:
        try:
            body = await request.body()
            write = write_request(request, body)
            identity, images = _parse_enrolment(body, predictor)
            result = await asyncio.to_thread(predictor.enrol, identity, images, write)
        except IdempotencyConflict as error:
            return _error(422, str(error))
        except (InvalidInput, GalleryError) as error:
            return _error(400, str(error))
        except GalleryUnavailable:
            return _unavailable()
        return JSONResponse(
            {"identity": result.identity, "added": result.added, "count": result.count, "edits": result.version}
        )

    @router.delete("/gallery", dependencies=[Depends(require_admin)])
    async def remove(request: Request, identity: str = "") -> Response:
        try:
            identity = validate_identity(identity)
            write = write_request(request, identity.encode())
            removed = await asyncio.to_thread(predictor.remove, identity, write)
        except UnknownIdentity as error:
            return _error(404, str(error))
        except IdempotencyConflict as error:
            return _error(422, str(error))
        except (InvalidInput, GalleryError) as error:
            return _error(400, str(error))
        except GalleryUnavailable:
            return _unavailable()
        return JSONResponse({"identity": identity, "removed": removed})

    @router.get("/card")
    async def card() -> dict[str, Any]:
        return public_card(predictor.model_info.card.to_dict())

    @router.get("/card/roc.png")
    async def roc() -> Response:
        path = predictor.model_info.directory / "roc.png"
        if not path.is_file():
            return _error(404, "this model artifact has no roc.png")
        return FileResponse(path, media_type="image/png")

    return router


def featured_identities(source: dict[str, Any], identities: list[tuple[str, int]]) -> list[str]:
    """The people the gallery was built around (`facesim gallery build` records its most
    photographed), those still enrolled, most photographed first."""
    present = {name for name, _ in identities}
    return [name for name in source.get("featured") or [] if name in present]


def public_card(value: Any) -> Any:
    """The model card as the public sees it: file paths (training data, crop cache, detector weights)
    become their last component (the dataset or file name), so answers never reveal the server's
    file layout."""
    if isinstance(value, dict):
        return {key: public_card(item) for key, item in value.items()}
    if isinstance(value, list):
        return [public_card(item) for item in value]
    if isinstance(value, str) and _is_path(value):
        return PurePosixPath(value.removeprefix("file://")).name or PureWindowsPath(value).name
    return value


def _is_path(text: str) -> bool:
    return text.startswith(("/", "./", "../", "~", "file://")) or PureWindowsPath(text).drive != ""


def _parse_enrolment(body: bytes, predictor: FaceNetPredictor) -> tuple[str, list[bytes]]:
    payload = load_json(body, 'the body must be JSON like {"identity": "NAME", "images": [{"b64": "..."}]}')
    if not isinstance(payload, dict):
        raise InvalidInput('the body must be a JSON object like {"identity": "NAME", "images": [...]}')
    if "identity" not in payload:
        raise InvalidInput('the request has no "identity" field')
    try:
        identity = validate_identity(payload["identity"])
    except GalleryError as error:
        raise InvalidInput(str(error)) from None
    images = payload.get("images")
    if not isinstance(images, list) or not images:
        raise InvalidInput('"images" must be a non-empty list of {"b64": "..."} objects')
    if len(images) > MAX_ENROL_IMAGES:
        raise InvalidInput(f"too many images: {len(images)} (limit {MAX_ENROL_IMAGES} per enrolment)")
    decoded = []
    for i, image in enumerate(images):
        if not isinstance(image, dict) or "b64" not in image:
            raise InvalidInput(f'images[{i}] must be an object like {{"b64": "..."}}')
        decoded.append(decode_b64(image["b64"], f"images[{i}].b64", predictor.limits))
    return identity, decoded


def install_routes(predictor: FaceNetPredictor, app: FastAPI | None = None) -> None:
    """Add our routes, error handlers and guards to `app`: by default the app KServe serves (in this process)."""
    if app is None:
        from kserve.model_server import app
    app.include_router(readiness_router(predictor))
    app.include_router(gallery_router(predictor))
    app.add_exception_handler(RequestValidationError, request_validation_error)
    app.add_exception_handler(StarletteHTTPException, http_error)
    app.middleware("http")(reject_malformed_binary_v2)
    # Outermost: nothing reads a body before the guard has bounded it.
    app.add_middleware(
        RequestGuard, limits=GuardLimits(predictor.limits.max_request_bytes, predictor.limits.max_header_bytes)
    )
    quiet_client_errors()


class _ClientErrorFilter(logging.Filter):
    """KServe logs every client error (InvalidInput: 400, ModelNotFound: 404) with a full traceback;
    the access log already has the request's one line, and the client has the reason. Server
    errors (5xx) keep their tracebacks."""

    def filter(self, record: logging.LogRecord) -> bool:
        error = record.exc_info[1] if record.exc_info else None
        return not isinstance(error, (InvalidInput, ModelNotFound, StarletteHTTPException, RequestValidationError))


def quiet_client_errors() -> None:
    kserve_logger = logging.getLogger("kserve")
    if not any(isinstance(f, _ClientErrorFilter) for f in kserve_logger.filters):
        kserve_logger.addFilter(_ClientErrorFilter())
