"""The KServe custom predictor `facenet`: decode -> detect + align (faces/) -> embed -> gallery search.

preprocess decodes the request (protocol.py: V1 or V2, checked) and finds every face of every
image; predict makes one batched embedding call for all of them and searches the gallery;
postprocess answers in the protocol the request came in (protocol.py again).
"""

from __future__ import annotations

import asyncio
import contextlib
import os
import threading
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import cv2
import kserve
import numpy as np
from kserve.errors import InvalidInput
from kserve.logging import logger
from kserve.protocol.infer_type import InferRequest, InferResponse

from facesim.contract.api import MODEL_NAME
from facesim.faces.image import ImageError, declared_pixels, decode_reduced, thumbnail_jpeg
from facesim.faces.preprocess import AlignedFace
from facesim.gallery.api import EnrolResult, Gallery, GalleryError, GalleryUnavailable, WriteRequest
from facesim.gallery.backends import wait_for_gallery
from facesim.gallery.calibrate import gallery_threshold
from facesim.gallery.index import (
    DEFAULT_APPROXIMATE_THRESHOLD,
    DEFAULT_POLL_S,
    GalleryFollower,
    LiveGalleryIndex,
)
from facesim.gallery.store import GalleryStore
from facesim.inference.batching import EmbeddingBatcher
from facesim.inference.protocol import (
    AnalysedImage,
    AnswerContext,
    DecodedRequest,
    FaceBatch,
    RequestLimits,
    decode_request,
    encode_response,
)
from facesim.inference.routes import install_routes
from facesim.storage.model_artifact import Embedder, ModelInfo, preprocessor_for, read_model_info
from facesim.storage.paths import registered_version


@dataclass(frozen=True)
class ServingConfig:
    model_dir: Path
    gallery_dir: Path | str  # a gallery directory, or a postgresql:// DSN (a gallery shared by replicas)
    limits: RequestLimits = field(default_factory=RequestLimits)
    approximate_threshold: int = DEFAULT_APPROXIMATE_THRESHOLD
    # Where the FAISS index is saved and loaded at start (default: `index/` in a gallery directory;
    # none for PostgreSQL unless given: each replica then builds its own at start).
    index_dir: Path | None = None
    poll_s: float = DEFAULT_POLL_S  # shared galleries: read the version at least this often
    listen: bool = True  # shared galleries: LISTEN for commits (polling alone when off)
    gallery_wait_s: float = 120.0  # shared galleries: how long a start waits for the database
    yunet_path: str | None = None
    runtime: str = "onnx"  # onnx (model.onnx, ONNX Runtime) | tensorflow (the SavedModel)
    # One intra-op thread: a single face embeds in 6 ms instead of 13.6 ms with 2 threads on the
    # 2-core dev box (MobileFaceNet), and the other cores decode/detect concurrent requests.
    threads: int = 1
    # Images are decoded at no more than about twice this (detection runs at <= 960 px anyway).
    decode_max_side: int = 1920
    admin_token: str | None = field(default=None, repr=False)  # gallery writes; None: refused
    verbose: bool = False  # KServe's own INFO logs (start-up, per-request timings)


class FaceNetPredictor(kserve.Model):
    def __init__(self, config: ServingConfig, name: str = MODEL_NAME):
        super().__init__(name)
        self.config = config
        self.limits = config.limits
        self.model_info: ModelInfo  # set by load(), with the gallery, the index and the rest
        self.gallery_version: str | None = None

    def __getstate__(self) -> dict[str, Any]:
        # `--workers N`: KServe pickles the model into N spawned worker processes. Send the config
        # only; each worker loads its own model and serves the extra routes from its own app.
        return {"name": self.name, "config": self.config, "enable_latency_logging": self.enable_latency_logging}

    def __setstate__(self, state: dict[str, Any]) -> None:
        FaceNetPredictor.__init__(self, state["config"], state["name"])
        self.enable_latency_logging = state["enable_latency_logging"]
        install_routes(self)
        # Load in the background: KServe's parent kills a worker that doesn't answer its ping
        # within 5 s, and the ping thread only starts after unpickling. Until loaded, the worker
        # reports not ready (503).
        threading.Thread(target=self._load_logging_errors, name="load-facenet", daemon=True).start()

    def _load_logging_errors(self) -> None:
        from facesim.inference.server import quiet_logs, use_orjson_without_deprecation

        # A spawned worker has its own modules and logging; done here, not while unpickling,
        # which must finish before the parent's 5 s ping deadline.
        use_orjson_without_deprecation()
        quiet_logs(self.config.verbose)
        try:
            self.load()
        except Exception:  # noqa: BLE001 - a worker thread: log why this worker never becomes ready
            logger.exception("facenet worker %d could not load the model or gallery", os.getpid())

    def load(self) -> bool:
        # OpenCV's own threads (colour conversion, resizing, warping) cost more than they gain here: a
        # 1080p request took 58.5 instead of 82.5 ms of CPU and 68 instead of 96 ms at p50 with one
        # (docs/results.md); concurrent requests use the other cores.
        cv2.setNumThreads(1)
        self.model_info = read_model_info(self.config.model_dir)
        self.preprocessor = preprocessor_for(self.model_info, self.config.yunet_path)
        detector = self.preprocessor.detector  # created now, not on the first request
        self.embedder = Embedder(self.model_info, self.config.threads, self.config.runtime)
        self.batcher = EmbeddingBatcher(self.embedder.embed)
        self.embedder.embed(np.zeros((1, self.model_info.image_size, self.model_info.image_size, 3), np.uint8))
        # The model first: a replica started before its database is ready soon after it is.
        self.gallery = wait_for_gallery(self.config.gallery_dir, self.config.gallery_wait_s)
        self.gallery_version = registered_version(self.config.gallery_dir)  # v1, v2, ... or None
        check_gallery_matches(self.gallery, self.model_info)
        calibrated = gallery_threshold(self.gallery, self.model_info.fingerprints)
        # The gallery's own calibration (its photos) beats the model's (LFW) when there is one.
        self.threshold = calibrated if calibrated is not None else self.model_info.threshold
        self.threshold_source = "gallery" if calibrated is not None else "model"
        self.index = LiveGalleryIndex(self.gallery, self.config.approximate_threshold, self._index_dir())
        self.index.refresh()  # load it now
        self.index.save()  # after a full build, the next start loads it instead
        self.follower = self._follow()
        logger.info(
            "facenet ready: model %s, detector %s, gallery %s (index from %s)",
            self.model_info.version,
            detector.name,
            self.gallery.location,
            self.index.loaded_from,
        )
        self.ready = True
        return self.ready

    def _index_dir(self) -> Path | None:
        if self.config.index_dir is not None:
            return self.config.index_dir
        return self.gallery.directory / "index" if isinstance(self.gallery, GalleryStore) else None

    def _follow(self) -> GalleryFollower | None:
        """A gallery that other replicas write is followed in the background; a directory is checked per search."""
        listener = self.gallery.listen()
        if listener is None:
            return None
        wait = listener.wait if self.config.listen else None
        return GalleryFollower(self.index, wait, self.config.poll_s).start()

    # --- the KServe handlers ------------------------------------------------------------------

    async def preprocess(self, payload: dict | InferRequest, headers: dict[str, str] | None = None) -> FaceBatch:
        request = decode_request(payload, self.limits)
        # Decoding and detection release the GIL: other requests proceed meanwhile.
        return await asyncio.to_thread(self._analyse_instances, request)

    async def predict(self, batch: FaceBatch, headers: dict[str, str] | None = None) -> FaceBatch:
        batch.embeddings = await self.batcher.embed(batch.crops())
        image_faces = sum(len(image.faces) for image in batch.images)
        top_k = max(instance.top_k for instance in batch.instances)
        batch.image_matches, batch.gallery_edits = await asyncio.to_thread(
            self.index.search, batch.embeddings[:image_faces], top_k, self.follower is None
        )
        return batch

    async def postprocess(
        self, batch: FaceBatch, headers: dict[str, str] | None = None, response_headers: dict | None = None
    ) -> dict | InferResponse:
        return encode_response(batch, self._answer_context())

    def _answer_context(self) -> AnswerContext:
        return AnswerContext(
            model_name=self.name,
            model_fingerprint=self.model_info.version,
            embedding_dim=self.model_info.embedding_dim,
            gallery_version=self.gallery_version,
            threshold=self.threshold,
            threshold_source=self.threshold_source,
        )

    # --- analysis shared with enrolment -------------------------------------------------------

    def analyse(self, data: bytes, where: str, thumbnail: bool = False) -> AnalysedImage:
        try:
            rgb, scale = decode_reduced(data, self.limits.image_limits, self.config.decode_max_side)
        except ImageError as error:
            raise InvalidInput(f"{where}: {error}") from None
        faces = self.preprocessor.all_faces(rgb)[: self.limits.max_faces_per_image]
        jpeg = thumbnail_jpeg(rgb, faces[0].face) if thumbnail and faces else None
        if scale != 1.0:
            faces = [AlignedFace(face.face.scaled(scale), face.crop, face.detected) for face in faces]
        return AnalysedImage(faces=faces, thumbnail=jpeg)

    def check_pixel_budget(self, images: list[bytes]) -> None:
        """Every image's size from its header, before any is decoded: one request can't ask for
        more than `max_request_pixels` in all, however its images are split."""
        total = 0
        for i, data in enumerate(images):
            try:
                total += declared_pixels(data, self.limits.image_limits)
            except ImageError as error:
                raise InvalidInput(f"image {i}: {error}") from None
        if total > self.limits.max_request_pixels:
            raise InvalidInput(
                f"the images hold {total:,} pixels in all, over the limit of "
                f"{self.limits.max_request_pixels:,} per request: send fewer or smaller images"
            )

    def _analyse_instances(self, request: DecodedRequest) -> FaceBatch:
        instances = request.instances
        self.check_pixel_budget([data for i in instances for data in (i.image, i.compare) if data is not None])
        images = [self.analyse(instance.image, f"image {i}") for i, instance in enumerate(instances)]
        compares = [
            None if instance.compare is None else self.analyse(instance.compare, f"compare image {i}")
            for i, instance in enumerate(instances)
        ]
        return FaceBatch(request=request, images=images, compares=compares)

    @property
    def admin_token(self) -> str | None:
        return self.config.admin_token

    @property
    def gallery_writable(self) -> bool:
        """Whether the gallery's database answered its last call (a shared one is polled every poll_s)."""
        return self.ready and self.gallery.writable

    def enrol(self, identity: str, images: list[bytes], request: WriteRequest | None = None) -> EnrolResult:
        """Embed the largest face of each image and add them to the gallery in one transaction."""
        self.check_pixel_budget(images)
        analysed = [self.analyse(data, f"images[{i}]", thumbnail=i == 0) for i, data in enumerate(images)]
        faceless = [str(i) for i, image in enumerate(analysed) if not image.faces]
        if faceless:
            raise InvalidInput(f"no face found in images[{', '.join(faceless)}]: use photos showing the face")
        vectors = self.embedder.embed(np.stack([image.faces[0].crop for image in analysed]))
        result = self.gallery.add(
            identity, vectors, thumbnail=analysed[0].thumbnail, sources=["enrolment"] * len(vectors), request=request
        )
        self._refresh_after_write()  # searchable here at once (other replicas follow within their poll interval)
        return result

    def remove(self, identity: str, request: WriteRequest | None = None) -> int:
        removed = self.gallery.remove(identity, request)
        self._refresh_after_write()
        self.index.save()  # a saved index holding the removed identity is rewritten (erasure)
        return removed

    def _refresh_after_write(self) -> None:
        # Committed, but the database may have gone away since: the follower catches up when it is back.
        with contextlib.suppress(GalleryUnavailable):
            self.index.refresh()


def check_gallery_matches(gallery: Gallery, model: ModelInfo) -> None:
    """Embeddings from another model live in another space: searching them would be meaningless."""
    if gallery.info.embedding_dim != model.embedding_dim:
        raise GalleryError(
            f"gallery {gallery.location} holds {gallery.info.embedding_dim}-d embeddings but the model makes "
            f"{model.embedding_dim}-d ones: rebuild it with `facesim gallery build --model {model.directory}`"
        )
    if not model.made(gallery.info.model_version):
        raise GalleryError(
            f"gallery {gallery.location} was built with model {gallery.info.model_version}, not this model "
            f"({model.version}): rebuild it with `facesim gallery build --model {model.directory}`"
        )
