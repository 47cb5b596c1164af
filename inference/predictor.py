"""The KServe custom predictor `facenet`: decode -> detect + align (faces/) -> embed -> gallery search.

preprocess parses and validates the request and finds every face of every image; predict makes
one batched embedding call for all of them; postprocess ranks gallery identities and answers in
the protocol the request came in (V1 JSON or V2 Open Inference Protocol).
"""

from __future__ import annotations

import asyncio
import base64
import json
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
from kserve.protocol.infer_type import InferOutput, InferRequest, InferResponse

from facesim.contract.api import MODEL_NAME, same_person
from facesim.faces.image import ImageError, declared_pixels, decode_reduced
from facesim.faces.preprocess import AlignedFace
from facesim.gallery.calibrate import gallery_threshold
from facesim.gallery.index import (
    DEFAULT_APPROXIMATE_THRESHOLD,
    DEFAULT_POLL_S,
    GalleryFollower,
    LiveGalleryIndex,
    Match,
)
from facesim.gallery.store import (
    EnrolResult,
    Gallery,
    GalleryError,
    GalleryStore,
    GalleryUnavailable,
    WriteRequest,
    wait_for_gallery,
)
from facesim.inference.batching import EmbeddingBatcher
from facesim.inference.payload import Instance, RequestLimits, parse_v1, parse_v2
from facesim.storage.embedder import (
    Embedder,
    ModelInfo,
    png_bytes,
    preprocessor_for,
    read_model_info,
    thumbnail_jpeg,
)
from facesim.storage.paths import registered_version


@dataclass
class AnalysedImage:
    """What a request keeps of an image: its faces (boxes in the original's pixels, aligned crops),
    never the decoded pixels, which are released as soon as the crops are made."""

    faces: list[AlignedFace]
    thumbnail: bytes | None = None


@dataclass
class FaceBatch:
    """A request in flight: its instances, the faces found, then their embeddings."""

    instances: list[Instance]
    images: list[AnalysedImage]
    compares: list[AnalysedImage | None]
    protocol: str  # "v1" | "v2"
    request_id: str | None = None
    embeddings: np.ndarray | None = None
    gallery_edits: int = 0  # the gallery's change counter when it was searched
    image_matches: list[list[Match]] = field(default_factory=list)

    def crops(self) -> np.ndarray:
        crops = [face.crop for image in self.images for face in image.faces]
        crops += [image.faces[0].crop for image in self.compares if image is not None and image.faces]
        if not crops:
            return np.zeros((0, 1, 1, 3), dtype=np.uint8)
        return np.stack(crops)


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
        self.model_info: ModelInfo | None = None
        self.gallery_version: str | None = None

    def __getstate__(self) -> dict[str, Any]:
        # `--workers N`: KServe pickles the model into N spawned worker processes. Send the config
        # only; each worker loads its own model and serves the extra routes from its own app.
        return {"name": self.name, "config": self.config, "enable_latency_logging": self.enable_latency_logging}

    def __setstate__(self, state: dict[str, Any]) -> None:
        from facesim.inference.routes import install_routes

        self.__init__(state["config"], state["name"])
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
        calibrated = gallery_threshold(self.gallery, self.model_info.version)
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
        if isinstance(self.gallery, GalleryStore):
            return None
        wait = self.gallery.listen().wait if self.config.listen else None
        return GalleryFollower(self.index, wait, self.config.poll_s).start()

    # --- the KServe handlers ------------------------------------------------------------------

    async def preprocess(self, payload: dict | InferRequest, headers: dict[str, str] | None = None) -> FaceBatch:
        if isinstance(payload, InferRequest):
            instances, protocol, request_id = parse_v2(payload, self.limits), "v2", payload.id
        else:
            instances, protocol, request_id = parse_v1(payload, self.limits), "v1", None
        # Decoding and detection release the GIL: other requests proceed meanwhile.
        return await asyncio.to_thread(self._analyse_instances, instances, protocol, request_id)

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
        return self._v2_response(batch) if batch.protocol == "v2" else self._v1_response(batch)

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

    def _analyse_instances(self, instances: list[Instance], protocol: str, request_id: str | None) -> FaceBatch:
        self.check_pixel_budget([data for i in instances for data in (i.image, i.compare) if data is not None])
        images = [self.analyse(instance.image, f"image {i}") for i, instance in enumerate(instances)]
        compares = [
            None if instance.compare is None else self.analyse(instance.compare, f"compare image {i}")
            for i, instance in enumerate(instances)
        ]
        return FaceBatch(
            instances=instances, images=images, compares=compares, protocol=protocol, request_id=request_id
        )

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
        try:
            self.index.refresh()
        except GalleryUnavailable:
            pass  # committed, but the database went away since: the follower catches up when it is back

    # --- answers --------------------------------------------------------------------------------

    def _v1_response(self, batch: FaceBatch) -> dict:
        # Embedding rows: every face of every image in order, then each compare image's largest face.
        starts = np.cumsum([0] + [len(image.faces) for image in batch.images])
        compare_row = int(starts[-1])
        predictions = []
        for i, (instance, image, compare) in enumerate(zip(batch.instances, batch.images, batch.compares)):
            rows = range(int(starts[i]), int(starts[i + 1]))
            faces = [
                self._face_json(
                    face, batch.embeddings[row], batch.image_matches[row][: instance.top_k], instance.return_crops
                )
                for face, row in zip(image.faces, rows)
            ]
            prediction: dict[str, Any] = {"faces": faces}
            if compare is not None:
                compare_embedding = batch.embeddings[compare_row] if compare.faces else None
                compare_row += 1 if compare.faces else 0
                prediction.update(self._comparison(instance, image, compare, batch.embeddings, rows, compare_embedding))
            predictions.append(prediction)
        return {
            "predictions": predictions,
            "model_version": self.model_info.version,
            "gallery_version": self.gallery_version,
            "gallery_edits": batch.gallery_edits,
            "threshold": self.threshold,
            "threshold_source": self.threshold_source,
        }

    def _comparison(
        self,
        instance: Instance,
        image: AnalysedImage,
        compare: AnalysedImage,
        embeddings: np.ndarray,
        image_rows: range,
        compare_embedding: np.ndarray | None,
    ) -> dict[str, Any]:
        """Largest face of the image vs largest face of the compare image (null when either has none)."""
        if compare_embedding is None:
            return {"compare_face": None, "distance": None, "same": None}
        answer: dict[str, Any] = {
            "compare_face": self._face_json(compare.faces[0], compare_embedding, None, instance.return_crops)
        }
        if not image.faces:
            return answer | {"distance": None, "same": None}
        distance = float(np.sum((embeddings[image_rows[0]] - compare_embedding) ** 2))
        return answer | {"distance": round(distance, 6), "same": same_person(distance, self.threshold)}

    def _face_json(
        self, face: AlignedFace, embedding: np.ndarray, matches: list[Match] | None, with_crop: bool
    ) -> dict[str, Any]:
        answer = face.face.to_dict()
        answer["embedding"] = [round(float(v), 6) for v in embedding]
        if matches is not None:
            answer["matches"] = [self._match_json(match) for match in matches]
        if with_crop:
            answer["crop"] = {"b64": base64.b64encode(png_bytes(face.crop)).decode("ascii")}
        return answer

    def _match_json(self, match: Match) -> dict[str, Any]:
        return {
            "identity": match.identity,
            "distance": round(match.distance, 6),
            "same": same_person(match.distance, self.threshold),
        }

    def _v2_response(self, batch: FaceBatch) -> InferResponse:
        faces = [(i, face) for i, image in enumerate(batch.images) for face in image.faces]
        count, dim = len(faces), self.model_info.embedding_dim
        boxes = np.array([face.face.box for _, face in faces], np.float32).reshape(count, 4)
        landmarks = np.array([face.face.landmarks for _, face in faces], np.float32).reshape(count, 5, 2)
        scores = np.array([face.face.score for _, face in faces], np.float32).reshape(count)
        matches = [
            json.dumps([self._match_json(m) for m in found[: batch.instances[i].top_k]])
            for (i, _), found in zip(faces, batch.image_matches)
        ]
        outputs = [
            _output("boxes", boxes, "FP32"),
            _output("scores", scores, "FP32"),
            _output("landmarks", landmarks, "FP32"),
            _output("embeddings", batch.embeddings[:count].reshape(count, dim), "FP32"),
            _output("image_index", np.array([i for i, _ in faces], np.int32), "INT32"),
            InferOutput(name="matches", shape=[count], datatype="BYTES", data=matches),
        ]
        return InferResponse(
            response_id=batch.request_id or "",
            model_name=self.name,
            model_version=self.model_info.version,
            infer_outputs=outputs,
            parameters={
                # V2 parameters take no null: an unregistered gallery has no gallery_version.
                **({"gallery_version": self.gallery_version} if self.gallery_version else {}),
                "gallery_edits": batch.gallery_edits,
                "model_version": self.model_info.version,
            },
        )


def _output(name: str, values: np.ndarray, datatype: str) -> InferOutput:
    return InferOutput(name=name, shape=list(values.shape), datatype=datatype, data=values.flatten().tolist())


def check_gallery_matches(gallery: Gallery, model: ModelInfo) -> None:
    """Embeddings from another model live in another space: searching them would be meaningless."""
    if gallery.info.embedding_dim != model.embedding_dim:
        raise GalleryError(
            f"gallery {gallery.location} holds {gallery.info.embedding_dim}-d embeddings but the model makes "
            f"{model.embedding_dim}-d ones: rebuild it with `facesim gallery build --model {model.directory}`"
        )
    if gallery.info.model_version != model.version:
        raise GalleryError(
            f"gallery {gallery.location} was built with model {gallery.info.model_version}, not this model "
            f"({model.version}): rebuild it with `facesim gallery build --model {model.directory}`"
        )
