"""The Flask app: search, compare, gallery and model pages over the predictor's HTTP API.

Every page works without JavaScript; every form carries a CSRF token; every predictor failure
becomes a banner or a message with a proper status code, never a traceback.
"""

from __future__ import annotations

import math
import os
import secrets
from collections.abc import Callable
from dataclasses import dataclass, field
from typing import Any

from flask import Flask, Response, abort, flash, redirect, render_template, request, url_for
from flask_wtf.csrf import CSRFError, CSRFProtect
from werkzeug.datastructures import FileStorage
from werkzeug.exceptions import HTTPException, RequestEntityTooLarge

from facesim.contract.api import MAX_IMAGE_BYTES, IdentityNameError, validate_identity
from facesim.contract.auth import ADMIN_TOKEN_ENV
from facesim.contract.client import PredictorClient, PredictorError, Timeouts
from facesim.contract.display import card_summary, display_name, format_value, metric_rows
from facesim.ui.images import ACCEPTED_EXTENSIONS, CheckedImage, UploadError, annotate_faces, check_upload
from facesim.ui.login import login_required, register_login

GALLERY_PAGE_SIZE = 48
PASSWORD_ENV = "FACESIM_UI_PASSWORD"
SAMPLE_COUNT = 4


@dataclass(frozen=True)
class UiConfig:
    predictor_url: str = "http://127.0.0.1:8080"
    timeout_s: float = 10.0  # longest wait for one predictor answer: a stuck predictor frees threads soon
    connect_timeout_s: float = 2.0
    max_upload_bytes: int = MAX_IMAGE_BYTES  # per request: the predictor's limit for one image
    max_enrol_images: int = 10
    top_k: int = 3
    # Signs the session that holds the CSRF token; set it when running several UI replicas.
    secret_key: str = field(
        default_factory=lambda: os.environ.get("FACESIM_UI_SECRET_KEY") or secrets.token_hex(32), repr=False
    )
    # Held here, never sent to browsers: the UI enrols and removes on its users' behalf.
    admin_token: str | None = field(default_factory=lambda: os.environ.get(ADMIN_TOKEN_ENV) or None, repr=False)
    # When set, enrolling and removing need a login with this password first.
    password: str | None = field(default_factory=lambda: os.environ.get(PASSWORD_ENV) or None, repr=False)


# No inline script or style anywhere: pictures from this site or data: URIs (annotated photos,
# aligned crops), blob: for the upload preview.
CONTENT_SECURITY_POLICY = (
    "default-src 'self'; script-src 'self'; style-src 'self'; img-src 'self' data: blob:; "
    "object-src 'none'; base-uri 'none'; form-action 'self'; frame-ancestors 'none'"
)
SECURITY_HEADERS = {
    "Content-Security-Policy": CONTENT_SECURITY_POLICY,
    "X-Content-Type-Options": "nosniff",
    "X-Frame-Options": "DENY",
    # same-origin, not no-referrer: Flask-WTF checks the Referer of form posts over HTTPS.
    "Referrer-Policy": "same-origin",
    "Cross-Origin-Opener-Policy": "same-origin",
}


def create_app(config: UiConfig | None = None) -> Flask:
    config = config or UiConfig()
    app = Flask(__name__)
    app.config.update(
        SECRET_KEY=config.secret_key,
        MAX_CONTENT_LENGTH=config.max_upload_bytes,
        SESSION_COOKIE_HTTPONLY=True,
        SESSION_COOKIE_SAMESITE="Lax",
        WTF_CSRF_TIME_LIMIT=None,  # a tab left open overnight still submits
    )
    CSRFProtect(app)
    timeouts = Timeouts(connect_s=config.connect_timeout_s, read_s=config.timeout_s)
    predictor = PredictorClient(config.predictor_url, timeouts, admin_token=config.admin_token)
    _register_pages(app, config, predictor)
    register_login(app, config.password)
    _register_errors(app, config)
    app.after_request(_add_security_headers)
    app.jinja_env.globals.update(accepted=",".join(ACCEPTED_EXTENSIONS), predictor_url=config.predictor_url)
    app.jinja_env.filters.update(display_name=display_name, card_value=format_value)
    return app


def _add_security_headers(response: Response) -> Response:
    response.headers.update(SECURITY_HEADERS)
    return response


def _register_pages(app: Flask, config: UiConfig, predictor: PredictorClient) -> None:
    @app.get("/")
    def search_page() -> Any:
        return _render_search(predictor)

    @app.get("/search")
    def search_again() -> Any:
        return redirect(url_for("search_page"))  # a bookmarked or reloaded result page

    @app.post("/search")
    def search() -> Any:
        try:
            image = _search_image(predictor, request.form.get("sample"), request.files.get("image"))
            prediction = first_prediction(predictor.predict(image.data, top_k=config.top_k))
        except UploadError as error:
            return _render_search(predictor, error=str(error)), 400
        except PredictorError as error:
            if error.rejected:
                return _render_search(predictor, error=f"The predictor refused this image: {error}"), 400
            return _render_search(predictor, down=str(error)), 503
        faces = prediction["faces"]
        return _render_search(
            predictor,
            result={
                "filename": image.filename,
                "picture": annotate_faces(image, [face["box"] for face in faces]),
                "faces": faces,
            },
        )

    @app.route("/compare", methods=["GET", "POST"])
    def compare() -> Any:
        if request.method == "GET":
            return render_template("compare.html", down=_down_message(predictor))
        try:
            first = _uploaded_image(request.files.get("first"), "the first photo")
            second = _uploaded_image(request.files.get("second"), "the second photo")
            result = _compare(predictor, first, second)
        except UploadError as error:
            return render_template("compare.html", error=str(error)), 400
        except PredictorError as error:
            if error.rejected:
                return render_template("compare.html", error=f"The predictor refused these photos: {error}"), 400
            return render_template("compare.html", down=str(error)), 503
        return render_template("compare.html", result=result)

    @app.get("/gallery")
    def gallery() -> Any:
        query = request.args.get("q", "").strip()
        try:
            listing = predictor.gallery()
        except PredictorError as error:
            return _gallery_down(error, query=query)
        return render_template("gallery.html", **_gallery_page(listing, query, request.args.get("page", "1")))

    @app.post("/gallery/enrol")
    @login_required
    def enrol() -> Any:
        try:
            identity = _identity_name(request.form.get("identity", ""))
            images = _enrol_images(request.files.getlist("images"), config.max_enrol_images)
            answer = predictor.enrol(identity, [image.data for image in images])
        except UploadError as error:
            return _gallery_error(predictor, str(error), 400)
        except PredictorError as error:
            if error.rejected:
                return _gallery_error(predictor, f"The predictor refused to enrol: {error}", 400)
            return _gallery_down(error)
        added = answer.get("added", len(images))
        flash(f"Enrolled {identity}: {added} image(s) added, {answer.get('count', added)} in the gallery.", "ok")
        return redirect(url_for("gallery", q=identity), code=303)

    @app.post("/gallery/remove")
    @login_required
    def remove() -> Any:
        identity = request.form.get("identity", "")
        try:
            answer = predictor.remove(identity)
        except PredictorError as error:
            if error.rejected:
                status = 404 if error.status == 404 else 400
                return _gallery_error(predictor, f"Could not remove {identity}: {error}", status)
            return _gallery_down(error)
        flash(f"Removed {identity} ({answer.get('removed', 0)} image(s)).", "ok")
        return redirect(url_for("gallery"), code=303)

    @app.get("/gallery/thumbnail")
    def thumbnail() -> Any:
        return _proxy_picture(lambda: predictor.thumbnail(request.args.get("identity", "")), "image/jpeg")

    @app.get("/model")
    def model() -> Any:
        try:
            card = predictor.model_card()
            model_fingerprint = predictor.gallery().get("model_fingerprint")
        except PredictorError as error:
            return render_template("model.html", down=str(error)), 503
        return render_template(
            "model.html",
            card=card,
            summary=card_summary(card, model_fingerprint),
            metrics=metric_rows(card.get("metrics") or {}),
        )

    @app.get("/model/roc.png")
    def roc_curve() -> Any:
        return _proxy_picture(predictor.roc_png, "image/png")

    @app.get("/healthz")
    def healthz() -> Any:
        return {"status": "ok"}


def _register_errors(app: Flask, config: UiConfig) -> None:
    @app.errorhandler(RequestEntityTooLarge)
    def too_large(_: RequestEntityTooLarge) -> Any:
        limit_mib = config.max_upload_bytes / (1024 * 1024)
        message = f"That upload is larger than {limit_mib:g} MiB: choose a smaller photo (or fewer photos)."
        return render_template("error.html", title="Upload too large", message=message), 413

    @app.errorhandler(CSRFError)
    def csrf_failed(_: CSRFError) -> Any:
        message = "This form has expired or did not come from this site: reload the page and try again."
        return render_template("error.html", title="Form expired", message=message), 400

    @app.errorhandler(HTTPException)
    def http_error(error: HTTPException) -> Any:
        return render_template("error.html", title=error.name, message=error.description), error.code or 500

    @app.errorhandler(Exception)
    def unexpected(error: Exception) -> Any:
        app.logger.exception("unexpected error", exc_info=error)
        message = "Something went wrong on our side; the error is logged. Try again, or go back to the search page."
        return render_template("error.html", title="Unexpected error", message=message), 500


def _render_search(
    predictor: PredictorClient, *, result: dict | None = None, error: str | None = None, down: str | None = None
) -> str:
    if down is None:
        down = _down_message(predictor)
    samples = [] if down else _sample_identities(predictor)
    return render_template("search.html", result=result, error=error, down=down, samples=samples)


def _down_message(predictor: PredictorClient) -> str | None:
    return None if predictor.is_ready() else f"the predictor at {predictor.base_url} is not ready or not reachable"


def _sample_identities(predictor: PredictorClient) -> list[str]:
    """A few gallery identities whose thumbnails the search page offers as sample images."""
    try:
        listing = predictor.gallery()
    except PredictorError:
        return []
    return sample_identities(listing, SAMPLE_COUNT)


def sample_identities(listing: dict[str, Any], count: int) -> list[str]:
    """People a visitor knows: the gallery's featured (most photographed) ones first, then those
    with the most images, ties by name."""
    featured = [name for name in listing.get("featured") or [] if isinstance(name, str)]
    by_images = sorted(listing["identities"], key=lambda entry: (-entry["count"], entry["identity"]))
    names = dict.fromkeys([*featured, *(entry["identity"] for entry in by_images)])
    return list(names)[:count]


def _search_image(predictor: PredictorClient, sample: str | None, upload: FileStorage | None) -> CheckedImage:
    if sample and not (upload and upload.filename):
        try:
            return check_upload(predictor.thumbnail(sample), f"{display_name(sample)}.jpg")  # thumbnails are JPEG
        except PredictorError as error:
            if not error.rejected:
                raise
            raise UploadError(f"There is no sample image for {sample} in the gallery ({error}).") from None
    return _uploaded_image(upload, "the photo")


def _uploaded_image(upload: FileStorage | None, label: str) -> CheckedImage:
    if upload is None or not upload.filename:
        raise UploadError(f"Choose {label} to upload (JPEG or PNG).")
    return check_upload(upload.read(), upload.filename)


def _enrol_images(uploads: list[FileStorage], limit: int) -> list[CheckedImage]:
    chosen = [upload for upload in uploads if upload.filename]
    if not chosen:
        raise UploadError("Choose at least one photo of the person to enrol (JPEG or PNG).")
    if len(chosen) > limit:
        raise UploadError(f"{len(chosen)} photos chosen: enrol at most {limit} at a time.")
    return [_uploaded_image(upload, "a photo") for upload in chosen]


def _identity_name(raw: str) -> str:
    """The contract's identity-name rule, checked before anything is sent."""
    name = raw.strip()
    if not name:
        raise UploadError("Give the person a name.")
    try:
        return validate_identity(name)
    except IdentityNameError as error:
        raise UploadError(f"That name cannot be used: {error}.") from None


def _compare(predictor: PredictorClient, first: CheckedImage, second: CheckedImage) -> dict[str, Any]:
    prediction = first_prediction(predictor.predict(first.data, compare=second.data, return_crops=True))
    first_faces = prediction.get("faces") or []
    compare_face = prediction.get("compare_face")
    return {
        "filenames": (first.filename, second.filename),
        "distance": prediction.get("distance"),
        "same": prediction.get("same"),
        "threshold": prediction.get("threshold"),
        "crops": [_crop_uri(first_faces[0] if first_faces else None), _crop_uri(compare_face)],
        "faces_found": (len(first_faces), 1 if compare_face else 0),
    }


def _crop_uri(face: dict[str, Any] | None) -> str | None:
    crop = (face or {}).get("crop")
    if isinstance(crop, dict) and crop.get("b64"):
        return f"data:image/png;base64,{crop['b64']}"
    return None


def _gallery_page(listing: dict[str, Any], query: str, page_text: str) -> dict[str, Any]:
    identities = listing.get("identities") or []
    if query:
        wanted = query.casefold()
        identities = [
            entry
            for entry in identities
            if wanted in entry["identity"].casefold() or wanted in display_name(entry["identity"]).casefold()
        ]
    pages = max(1, math.ceil(len(identities) / GALLERY_PAGE_SIZE))
    page = min(page_number(page_text), pages)
    shown = identities[(page - 1) * GALLERY_PAGE_SIZE : page * GALLERY_PAGE_SIZE]
    return {
        "listing": listing,
        "identities": shown,
        "matching": len(identities),
        "query": query,
        "page": page,
        "pages": pages,
    }


def page_number(text: str) -> int:
    """A `?page=` value: ASCII digits only ("²" is a digit to str.isdigit, not to int), at most 6 of them;
    anything else is page 1."""
    return max(1, int(text)) if text.isascii() and text.isdigit() and len(text) <= 6 else 1


def first_prediction(answer: dict[str, Any]) -> dict[str, Any]:
    """The one prediction of a one-image request, with the model's threshold its `same` verdicts use."""
    return {"threshold": answer["threshold"]} | answer["predictions"][0]


def _gallery_down(error: PredictorError, **page: Any) -> tuple[str, int]:
    """503: the gallery's database is unavailable (predictions still work), or the predictor is."""
    if error.unavailable:
        return render_template("gallery.html", error=f"{str(error)[:1].upper()}{str(error)[1:]}.", **page), 503
    return render_template("gallery.html", down=str(error), **page), 503


def _gallery_error(predictor: PredictorClient, message: str, status: int) -> tuple[str, int]:
    try:
        listing = predictor.gallery()
    except PredictorError as error:
        return render_template("gallery.html", down=str(error), error=message), 503
    return render_template("gallery.html", error=message, **_gallery_page(listing, "", "1")), status


def _proxy_picture(fetch: Callable[[], bytes], mime: str) -> Response:
    try:
        data = fetch()
    except PredictorError as error:
        if error.rejected:
            abort(404)
        abort(503, "The predictor is not reachable, so this picture cannot be shown.")
    return Response(data, mimetype=mime, headers={"Cache-Control": "private, max-age=60"})
