"""Face detection: YuNet (on ONNX Runtime, or OpenCV's `cv2.FaceDetectorYN`) with five landmarks, or a Haar
cascade fallback.

Landmark order (YuNet's): right eye, left eye, nose tip, right mouth corner, left mouth corner,
"right" being the subject's right, i.e. the image's left.
"""

from __future__ import annotations

import argparse
import os
import sys
import threading
from collections.abc import Iterable
from dataclasses import dataclass
from pathlib import Path
from typing import Protocol

import cv2
import cv2.data  # the Haar cascades' folder; cv2's stubs do not declare it otherwise
import numpy as np

from facesim.faces.download import DownloadError, download
from facesim.faces.home import facesim_home

YUNET_ENV = "FACESIM_YUNET_MODEL"
# The OpenCV Zoo's published YuNet (Git LFS; size 232,589 bytes). `FACESIM_YUNET_URL` (with
# `FACESIM_YUNET_SHA256`) points elsewhere, e.g. an internal mirror.
YUNET_URL = (
    "https://github.com/opencv/opencv_zoo/raw/main/models/face_detection_yunet/face_detection_yunet_2023mar.onnx"
)
YUNET_SHA256 = "8f2383e4dd3cfbb4553ea8718107fc0423210dc964f9f4280604804ed2552fa4"
DETECTOR_KINDS = ("auto", "yunet", "haar")
# A development convenience: a clone of the repo with `shared/` beside it (as CI lays it out)
# finds the YuNet weights there, offline, with no flag or environment variable.
_REPO = Path(__file__).resolve().parents[1]
DEVELOPMENT_MODELS = _REPO.parent / "shared" / "models" if (_REPO / "pyproject.toml").is_file() else None


def _box(values: Iterable[float]) -> tuple[float, float, float, float]:
    x, y, w, h = (float(v) for v in values)
    return x, y, w, h


@dataclass(frozen=True)
class Face:
    box: tuple[float, float, float, float]  # x, y, w, h in pixels
    score: float
    landmarks: np.ndarray  # (5, 2) float32, order in the module docstring

    @property
    def area(self) -> float:
        return self.box[2] * self.box[3]

    def scaled(self, factor: float) -> Face:
        """The same face in an image `factor` times larger (results on a reduced decode, mapped back)."""
        return Face(_box(v * factor for v in self.box), self.score, (self.landmarks * factor).astype(np.float32))

    def to_dict(self) -> dict:
        return {
            "box": [round(float(v), 2) for v in self.box],
            "score": round(float(self.score), 4),
            "landmarks": [[round(float(x), 2), round(float(y), 2)] for x, y in self.landmarks],
        }


class FaceDetector(Protocol):
    name: str

    def detect(self, rgb: np.ndarray) -> list[Face]:
        """Faces in an RGB uint8 image, largest first."""
        ...


def _shrink_to(image: np.ndarray, max_side: int) -> tuple[np.ndarray, float]:
    """Detection runs on a copy whose longer side is at most `max_side` (large photos cost time,
    not accuracy); returns it and the scale, for mapping results back."""
    height, width = image.shape[:2]
    scale = min(1.0, max_side / max(height, width))
    if scale == 1.0:
        return image, scale
    return cv2.resize(image, (round(width * scale), round(height * scale)), interpolation=cv2.INTER_AREA), scale


# YuNet's coarsest feature map has stride 32: on a thinner input OpenCV reads memory it never
# wrote and returns boxes of +-1e37 and inf. Thin copies are padded (right and bottom, so
# coordinates stay put) and any box that does not lie in the image is dropped.
YUNET_MIN_SIDE = 64


def _pad_to(image: np.ndarray, min_side: int) -> np.ndarray:
    """`image` padded with black on the right and bottom so each side is at least `min_side`."""
    bottom, right = max(0, min_side - image.shape[0]), max(0, min_side - image.shape[1])
    if bottom == right == 0:
        return image
    return cv2.copyMakeBorder(image, 0, bottom, 0, right, cv2.BORDER_CONSTANT, value=(0, 0, 0))


def _inside(rows: np.ndarray, width: int, height: int) -> np.ndarray:
    """Which YuNet rows are finite boxes whose centre lies inside the `width` x `height` image."""
    finite = np.isfinite(rows[:, :15]).all(axis=1)
    rows = np.where(finite[:, None], rows, 0)
    centre_x, centre_y = rows[:, 0] + rows[:, 2] / 2, rows[:, 1] + rows[:, 3] / 2
    positive = (rows[:, 2] > 0) & (rows[:, 3] > 0)
    return finite & positive & (centre_x >= 0) & (centre_x < width) & (centre_y >= 0) & (centre_y < height)


class OpenCvYuNet:
    """YuNet run by OpenCV's `cv2.FaceDetectorYN`: rows of 15 (box, five landmarks, score)."""

    def __init__(self, model_path: Path, min_score: float, nms_threshold: float, top_k: int) -> None:
        try:
            self._net = cv2.FaceDetectorYN.create(str(model_path), "", (320, 320), min_score, nms_threshold, top_k)
        except cv2.error as error:
            raise ValueError(f"{model_path} is not a YuNet ONNX model OpenCV can load: {error.err}") from None
        # setInputSize + detect mutate the net: one request at a time per detector.
        self._lock = threading.Lock()

    def rows(self, bgr: np.ndarray) -> np.ndarray:
        with self._lock:
            self._net.setInputSize((bgr.shape[1], bgr.shape[0]))
            _, rows = self._net.detect(bgr)
        return np.zeros((0, 15), np.float32) if rows is None else rows


YUNET_STRIDES = (8, 16, 32)


class OnnxYuNet:
    """YuNet run by ONNX Runtime (1.7-1.9x faster than cv2.dnn on one core, docs/results.md), with OpenCV's
    post-processing written out: the same rows as `OpenCvYuNet` (tests/faces/test_detect.py checks).
    Thread-safe (no lock: ONNX Runtime sessions may run concurrently)."""

    def __init__(self, model_path: Path, min_score: float, nms_threshold: float, top_k: int) -> None:
        import onnxruntime

        options = onnxruntime.SessionOptions()
        # One thread: other requests' work has the other cores (two spinning threads were slower here).
        options.intra_op_num_threads = 1
        options.inter_op_num_threads = 1
        try:
            self._session = onnxruntime.InferenceSession(str(model_path), options, providers=["CPUExecutionProvider"])
        except Exception as error:  # noqa: BLE001 - onnxruntime raises its own untyped errors for a bad file
            raise ValueError(f"{model_path} is not a YuNet ONNX model ONNX Runtime can load: {error}") from None
        self._input = self._session.get_inputs()[0].name
        self._outputs = [f"{kind}_{stride}" for kind in ("cls", "obj", "bbox", "kps") for stride in YUNET_STRIDES]
        missing = set(self._outputs) - {output.name for output in self._session.get_outputs()}
        if missing:
            raise ValueError(f"{model_path} is not a YuNet ONNX model: it has no output {sorted(missing)[0]}")
        self.min_score, self.nms_threshold, self.top_k = min_score, nms_threshold, top_k

    def rows(self, bgr: np.ndarray) -> np.ndarray:
        # As cv2.FaceDetectorYN: zero-padded right and bottom to multiples of 32, BGR float, no scaling.
        height, width = bgr.shape[:2]
        padded_h, padded_w = -(-height // 32) * 32, -(-width // 32) * 32
        blob = np.zeros((1, 3, padded_h, padded_w), np.float32)
        blob[0, :, :height, :width] = bgr.transpose(2, 0, 1)
        outputs = self._session.run(self._outputs, {self._input: blob})
        count = len(YUNET_STRIDES)
        rows = np.concatenate(
            [
                _decode_stride(
                    outputs[i][0],  # cls, obj, bbox, kps: one output of each kind per stride
                    outputs[i + count][0],
                    outputs[i + 2 * count][0],
                    outputs[i + 3 * count][0],
                    stride,
                    padded_w // stride,
                    self.min_score,
                )
                for i, stride in enumerate(YUNET_STRIDES)
            ]
        )
        return rows[_nms(rows, self.min_score, self.nms_threshold, self.top_k)] if len(rows) > 1 else rows


def _decode_stride(
    cls: np.ndarray, obj: np.ndarray, bbox: np.ndarray, kps: np.ndarray, stride: int, columns: int, min_score: float
) -> np.ndarray:
    """One feature map's anchors (one per cell, row-major) whose score reaches `min_score`, as rows of 15."""
    score = np.sqrt(np.clip(cls[:, 0], 0, 1) * np.clip(obj[:, 0], 0, 1))
    cells = np.flatnonzero(score >= min_score)
    column = (cells % columns).astype(np.float32)[:, None]
    row = (cells // columns).astype(np.float32)[:, None]
    stride_f = np.float32(stride)
    box, points = bbox[cells], kps[cells]
    size = np.exp(box[:, 2:4]) * stride_f
    centre = (np.concatenate([column, row], axis=1) + box[:, :2]) * stride_f
    landmarks = (points.reshape(-1, 5, 2) + np.concatenate([column, row], axis=1)[:, None, :]) * stride_f
    return np.concatenate(
        [centre - size / 2, size, landmarks.reshape(-1, 10), score[cells, None]], axis=1, dtype=np.float32
    )


def _nms(rows: np.ndarray, min_score: float, threshold: float, top_k: int) -> list[int]:
    """As FaceDetectorYN: `cv2.dnn.NMSBoxes` on the boxes truncated to integers (its `Rect`s)."""
    boxes = rows[:, :4].astype(np.int32).tolist()
    return [int(i) for i in cv2.dnn.NMSBoxes(boxes, rows[:, 14].tolist(), min_score, threshold, top_k=top_k)]


YUNET_BACKENDS = ("auto", "onnxruntime", "opencv")


def _yunet_backend(
    model_path: Path, backend: str, min_score: float, nms_threshold: float, top_k: int
) -> OnnxYuNet | OpenCvYuNet:
    """`auto`: ONNX Runtime where it is installed (the predictor, training), else OpenCV."""
    if backend not in YUNET_BACKENDS:
        raise ValueError(f"unknown YuNet backend {backend!r}: choose one of {', '.join(YUNET_BACKENDS)}")
    if backend == "auto":
        try:
            import onnxruntime  # noqa: F401
        except ImportError:
            backend = "opencv"
    if backend == "opencv":
        return OpenCvYuNet(model_path, min_score, nms_threshold, top_k)
    return OnnxYuNet(model_path, min_score, nms_threshold, top_k)


class YuNetDetector:
    """YuNet at the image's own size, or on a copy downscaled to `max_side` for large images."""

    name = "yunet"

    def __init__(
        self, model_path: str | Path, min_score: float = 0.6, max_side: int = 960, backend: str = "auto"
    ) -> None:
        model_path = Path(model_path)
        if not model_path.is_file():
            raise FileNotFoundError(f"YuNet weights not found at {model_path}: give an existing .onnx file")
        self.model_path = model_path
        self.min_score = min_score
        self.max_side = max_side
        self._net = _yunet_backend(model_path, backend, min_score, nms_threshold=0.3, top_k=5000)

    def detect(self, rgb: np.ndarray) -> list[Face]:
        height, width = rgb.shape[:2]
        bgr, _ = _shrink_to(cv2.cvtColor(rgb, cv2.COLOR_RGB2BGR), self.max_side)
        rows = self._net.rows(_pad_to(bgr, YUNET_MIN_SIDE))
        rows = rows[_inside(rows, bgr.shape[1], bgr.shape[0])]
        # Map back to the full-resolution image (the resize maps pixel edges, hence the 0.5 shifts).
        factor_x, factor_y = width / bgr.shape[1], height / bgr.shape[0]
        faces = []
        for row in rows:
            box = (row[0] * factor_x, row[1] * factor_y, row[2] * factor_x, row[3] * factor_y)
            points = row[4:14].reshape(5, 2).astype(np.float32)
            points = (points + 0.5) * np.array([factor_x, factor_y], np.float32) - 0.5
            faces.append(Face(_box(box), float(row[14]), points))
        return sorted(faces, key=lambda face: face.area, reverse=True)


# Where the five landmarks fall inside a Haar frontal-face box, as fractions of its width and
# height: the median YuNet landmarks relative to the Haar box, measured on 296 LFW images.
HAAR_LANDMARKS_IN_BOX = np.array(
    [[0.317, 0.393], [0.697, 0.389], [0.514, 0.604], [0.356, 0.769], [0.676, 0.766]], np.float32
)


class HaarDetector:
    """OpenCV's frontal-face Haar cascade; landmarks are estimated from the box, not found."""

    name = "haar"

    def __init__(self, max_side: int = 960, min_neighbors: int = 5) -> None:
        path = Path(cv2.data.haarcascades) / "haarcascade_frontalface_default.xml"
        self._cascade = cv2.CascadeClassifier(str(path))
        if self._cascade.empty():
            raise RuntimeError(f"OpenCV's Haar cascade is missing ({path}): install opencv-python-headless 4.x")
        self.max_side = max_side
        self.min_neighbors = min_neighbors

    def detect(self, rgb: np.ndarray) -> list[Face]:
        gray, scale = _shrink_to(cv2.cvtColor(rgb, cv2.COLOR_RGB2GRAY), self.max_side)
        gray = cv2.equalizeHist(gray)
        min_size = max(20, min(gray.shape) // 20)
        boxes, _, weights = self._cascade.detectMultiScale3(
            gray, 1.1, self.min_neighbors, minSize=(min_size, min_size), outputRejectLevels=True
        )
        faces = []
        for (x, y, w, h), weight in zip(np.reshape(boxes, (-1, 4)), np.ravel(weights), strict=True):
            box = np.array([x, y, w, h], np.float32) / scale
            points = box[:2] + HAAR_LANDMARKS_IN_BOX * box[2:]
            faces.append(Face(_box(box), float(weight), points.astype(np.float32)))
        return sorted(faces, key=lambda face: face.area, reverse=True)


def yunet_cache_path() -> Path:
    return facesim_home() / "models" / "face_detection_yunet.onnx"


def find_yunet_weights(yunet_path: str | Path | None = None, allow_download: bool = True) -> Path | None:
    """The one place every command finds the YuNet weights: the argument (`--yunet`), then
    `$FACESIM_YUNET_MODEL`, then `../shared/models` beside a clone of the repo, then the download
    cache, then a download."""
    for candidate in (yunet_path, os.environ.get(YUNET_ENV)):
        if candidate:
            if not Path(candidate).is_file():
                raise FileNotFoundError(f"YuNet weights not found at {candidate}: fix the path or unset {YUNET_ENV}")
            return Path(candidate)
    if beside := _development_weights():
        return beside
    cached = yunet_cache_path()
    if cached.is_file():
        return cached
    if not allow_download:
        return None
    url = os.environ.get("FACESIM_YUNET_URL", YUNET_URL)
    sha256 = os.environ.get("FACESIM_YUNET_SHA256", YUNET_SHA256 if url == YUNET_URL else None)
    try:
        return download(url, cached, f"sha256:{sha256}" if sha256 else None, timeout_s=15.0)
    except DownloadError as error:
        print(f"facesim: no YuNet weights ({error}); set {YUNET_ENV} to use YuNet", file=sys.stderr)
        return None


# Earlier spellings of --yunet (data prepare had one, train and evaluate the other): still parsed.
OLD_YUNET_OPTIONS = ("--yunet-model", "--yunet-path")


def add_yunet_argument(parser: argparse.ArgumentParser | argparse._ArgumentGroup) -> None:
    """`--yunet PATH` into `yunet_path`: one name on every command that finds faces; the older
    spellings still parse but are not listed."""
    parser.add_argument(
        "--yunet",
        dest="yunet_path",
        metavar="ONNX",
        help=f"YuNet weights (default: ${YUNET_ENV}, ../shared/models beside a clone of the repo, the download "
        "cache, a download)",
    )
    for name in OLD_YUNET_OPTIONS:
        parser.add_argument(name, dest="yunet_path", help=argparse.SUPPRESS)


def _development_weights() -> Path | None:
    if DEVELOPMENT_MODELS is None or not DEVELOPMENT_MODELS.is_dir():
        return None
    found = sorted(DEVELOPMENT_MODELS.glob("face_detection_yunet_*.onnx"))
    return found[-1] if found else None  # the last by name: the newest year


def make_detector(
    kind: str = "auto",
    yunet_path: str | Path | None = None,
    min_score: float = 0.6,
    max_side: int = 960,
    allow_download: bool = True,
) -> FaceDetector:
    """A detector of the asked kind; "auto" is YuNet when weights can be found, else Haar."""
    if kind not in DETECTOR_KINDS:
        raise ValueError(f"unknown detector {kind!r}: choose one of {', '.join(DETECTOR_KINDS)}")
    if kind == "haar":
        return HaarDetector(max_side=max_side)
    weights = find_yunet_weights(yunet_path, allow_download)
    if weights is not None:
        return YuNetDetector(weights, min_score=min_score, max_side=max_side)
    if kind == "yunet":
        raise FileNotFoundError(
            f"no YuNet weights: give --yunet FILE, set {YUNET_ENV}, or allow the download from the OpenCV Zoo"
        )
    print("facesim: YuNet weights unavailable, using the Haar cascade detector (landmarks estimated)", file=sys.stderr)
    return HaarDetector(max_side=max_side)
