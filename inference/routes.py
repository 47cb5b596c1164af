"""The predictor's HTTP routes: inference (V1, V2), readiness, the gallery ("image database") and the model card.

KServe 0.21 serves the FastAPI app `kserve.model_server.app`; routes added to it before
`ModelServer.start` take precedence over KServe's own (docs/api.md "Predictor HTTP API").
The V1 and V2 inference routes are ours so that a body is parsed once: they take the JSON the HTTP
guard parsed (or decode a binary V2 body once, protocol.py) and call the model as KServe's data
plane would. Errors are `{"error": ...}` with a 4xx, as KServe answers them.
"""

from __future__ import annotations

import asyncio
import hashlib
import logging
from collections.abc import Awaitable, Callable
from pathlib import PurePosixPath, PureWindowsPath
from typing import Any, Protocol

from fastapi import APIRouter, Depends, FastAPI, Request
from fastapi.encoders import jsonable_encoder
from fastapi.exceptions import RequestValidationError
from fastapi.responses import FileResponse, JSONResponse, Response
from kserve.errors import InvalidInput, ModelNotFound, invalid_input_handler
from kserve.protocol.rest.v2_datamodels import InferenceResponse
from starlette.exceptions import HTTPException as StarletteHTTPException

from facesim.contract.api import (
    BINARY_V2_HEADER,
    GALLERY_UNAVAILABLE,
    IDEMPOTENCY_HEADER,
    MAX_IDEMPOTENCY_KEY_LENGTH,
    READY_PATH,
    with_old_names,
)
from facesim.contract.auth import authorization_problem
from facesim.gallery.api import (
    EnrolResult,
    Gallery,
    GalleryError,
    GalleryUnavailable,
    IdempotencyConflict,
    UnknownIdentity,
    WriteRequest,
    validate_identity,
)
from facesim.gallery.index import LiveGalleryIndex
from facesim.inference.http_guard import GuardLimits, RequestGuard, parsed_json
from facesim.inference.protocol import RequestLimits, decode_b64, load_json, v2_request, validation_problems
from facesim.inference.server import OrjsonResponse
from facesim.storage.model_artifact import ModelInfo

MAX_ENROL_IMAGES = 32
# While the gallery's database is down: when a client should try again (a database restart takes seconds).
RETRY_AFTER_S = 2


class ServedModel(Protocol):
    """What the routes use of the model they serve (inference/predictor.py's FaceNetPredictor)."""

    name: str
    ready: bool
    limits: RequestLimits
    gallery: Gallery
    gallery_version: str | None  # the registered version (v1, v2, ...) or None
    index: LiveGalleryIndex
    model_info: ModelInfo

    async def __call__(self, body: Any, headers: dict[str, str] | None = None) -> tuple[Any, dict[str, str]]: ...
    @property
    def admin_token(self) -> str | None: ...  # gallery writes; None: refused
    @property
    def gallery_writable(self) -> bool: ...
    def enrol(self, identity: str, images: list[bytes], request: WriteRequest | None = None) -> EnrolResult: ...
    def remove(self, identity: str, request: WriteRequest | None = None) -> int: ...


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
    """FastAPI's schema errors (a malformed request) as our 400 `{"error": ...}` instead of a 422."""
    return _error(400, f"invalid request: {validation_problems(error.errors())}")


async def http_error(_: Request, error: StarletteHTTPException) -> JSONResponse:
    """Framework errors (unparsable body, unknown route) in the same `{"error": ...}` shape."""
    return JSONResponse(status_code=error.status_code, content={"error": str(error.detail)}, headers=error.headers)


def readiness_router(predictor: ServedModel) -> APIRouter:
    """`/v2/health/ready` true only once this process has loaded the model. KServe's own answer is
    always true, which with `--workers N` (each worker loads in the background) would let a
    readiness probe send traffic to workers still loading. Registered first, it takes precedence."""
    router = APIRouter()

    @router.get(READY_PATH)
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


def inference_router(predictor: ServedModel) -> APIRouter:
    """`POST /v1/models/NAME:predict` and `POST /v2/models/NAME/infer`, each body parsed once."""
    router = APIRouter(dependencies=[Depends(_ready_dependency(predictor))])

    @router.post(f"/v1/models/{predictor.name}:predict")
    async def predict_v1(request: Request) -> Response:
        parsed = parsed_json(request.scope)
        payload = parsed[0] if parsed is not None else await request.body()  # (parse_v1 reads raw JSON)
        answer, headers = await predictor(payload, dict(request.headers))
        return OrjsonResponse(answer, headers=headers)

    @router.post(f"/v2/models/{predictor.name}/infer", response_model=None)
    async def infer_v2(request: Request) -> Response:
        body = await request.body()
        infer_request = v2_request(
            body, parsed_json(request.scope), request.headers.get(BINARY_V2_HEADER), predictor.name
        )
        response, headers = await predictor(infer_request, dict(request.headers))
        rest, json_size = response.to_rest()
        if isinstance(rest, bytes):  # binary outputs were asked for
            headers = {**headers, BINARY_V2_HEADER: str(json_size)}
            return Response(rest, headers=headers, media_type="application/octet-stream")
        return OrjsonResponse(jsonable_encoder(InferenceResponse.model_validate(rest)), headers=headers)

    return router


def _ready_dependency(predictor: ServedModel) -> Callable[[], Awaitable[None]]:
    async def require_ready() -> None:
        if not predictor.ready:
            raise StarletteHTTPException(503, "the model is still loading; retry in a few seconds")

    return require_ready


def gallery_router(predictor: ServedModel) -> APIRouter:
    require_ready = _ready_dependency(predictor)

    async def require_admin(request: Request) -> None:
        """Gallery writes: the admin token first (401/403), then a JSON body (415)."""
        problem = authorization_problem(predictor.admin_token, request.headers.get("authorization"))
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
            edits, _ = await asyncio.to_thread(predictor.gallery.counters)
        except GalleryUnavailable:
            return _unavailable()
        listing = {
            "gallery_version": predictor.gallery_version,
            "gallery_edits": edits,
            "model_fingerprint": predictor.gallery.info.model_version,
            "size": sum(count for _, count in identities),
            "identities": [{"identity": name, "count": count} for name, count in identities],
            "featured": featured_identities(predictor.gallery.info.source, identities),
            "index": with_old_names(predictor.index.describe(), "index"),
        }
        return JSONResponse(with_old_names(listing, "gallery"))

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
            identity, images = _parse_enrolment(body, parsed_json(request.scope), predictor.limits)
            result = await asyncio.to_thread(predictor.enrol, identity, images, write)
        except IdempotencyConflict as error:
            return _error(422, str(error))
        except (InvalidInput, GalleryError) as error:
            return _error(400, str(error))
        except GalleryUnavailable:
            return _unavailable()
        answer = {
            "identity": result.identity,
            "added": result.added,
            "count": result.count,
            "gallery_edits": result.version,
        }
        return JSONResponse(with_old_names(answer, "enrol"))

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


def _parse_enrolment(body: bytes, parsed: tuple[Any] | None, limits: RequestLimits) -> tuple[str, list[bytes]]:
    """(identity, images) of an enrolment: JSON as the guard parsed it (an empty body never is)."""
    problem = 'the body must be JSON like {"identity": "NAME", "images": [{"b64": "..."}]}'
    payload = parsed[0] if parsed is not None else load_json(body, problem)
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
        decoded.append(decode_b64(image["b64"], f"images[{i}].b64", limits))
    return identity, decoded


def install_routes(predictor: ServedModel, app: FastAPI | None = None) -> None:
    """Add our routes, error handlers and guards to `app`: by default the app KServe serves (in this process)."""
    if app is None:
        from kserve.model_server import app as kserve_app

        app = kserve_app
    app.include_router(readiness_router(predictor))
    app.include_router(inference_router(predictor))
    app.include_router(gallery_router(predictor))
    app.add_exception_handler(InvalidInput, invalid_input_handler)  # (KServe adds it too, when it serves the app)
    # Starlette types a handler as taking any Exception; it calls each only with the class it is registered for.
    app.add_exception_handler(RequestValidationError, request_validation_error)  # type: ignore[arg-type]
    app.add_exception_handler(StarletteHTTPException, http_error)  # type: ignore[arg-type]
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
