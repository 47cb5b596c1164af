"""Detect + align in one object configured by one dataclass, identical in training and serving.

`FacePreprocessor.describe()` goes into model.json; `PreprocessConfig.from_dict` rebuilds the same
preprocessing from it when the model is served.
"""

from __future__ import annotations

from dataclasses import asdict, dataclass, fields
from typing import Any

import numpy as np

from facesim.faces.align import TEMPLATES, align_face, center_landmarks, template
from facesim.faces.detect import DETECTOR_KINDS, Face, FaceDetector, make_detector

FALLBACKS = ("none", "center")
# Which detected face an image is about: the largest (a photo of someone), or the one nearest the
# image centre (LFW and other sets cropped around their subject, where a bigger face beside it is
# somebody else: 9 of the 1,549 images of LFW folds 9-10, docs/results.md).
SUBJECTS = ("largest", "central")


@dataclass
class PreprocessConfig:
    image_size: int = 112
    detector: str = "auto"  # auto | yunet | haar
    yunet_path: str | None = None
    min_score: float = 0.6  # YuNet's score threshold
    max_detect_side: int = 960  # larger images are detected on a downscaled copy
    fallback: str = "none"  # "center": no face found -> centre crop (for pre-cropped sets like LFW)
    template: str = "arcface-5pt"  # where the five points go in the crop (faces.align.TEMPLATES)
    subject: str = "largest"  # which face `subject_face` returns (SUBJECTS)

    def __post_init__(self) -> None:
        if self.detector not in DETECTOR_KINDS:
            raise ValueError(f"unknown detector {self.detector!r}: choose one of {', '.join(DETECTOR_KINDS)}")
        if self.fallback not in FALLBACKS:
            raise ValueError(f"unknown fallback {self.fallback!r}: choose one of {', '.join(FALLBACKS)}")
        if self.template not in TEMPLATES:
            raise ValueError(f"unknown template {self.template!r}: choose one of {', '.join(TEMPLATES)}")
        if self.subject not in SUBJECTS:
            raise ValueError(f"unknown subject {self.subject!r}: choose one of {', '.join(SUBJECTS)}")
        if not 32 <= self.image_size <= 512:
            raise ValueError(f"image_size {self.image_size} is out of range: use 32..512 (112 or 160 are usual)")

    @classmethod
    def from_dict(cls, data: dict[str, Any]) -> PreprocessConfig:
        """Rebuild from `describe()` output (or model.json's `preprocessing`); unknown keys are ignored."""
        known = {f.name for f in fields(cls)}
        return cls(**{key: value for key, value in data.items() if key in known})


@dataclass(frozen=True)
class AlignedFace:
    face: Face
    crop: np.ndarray  # (size, size, 3) uint8 RGB
    detected: bool = True  # False for a centre-crop fallback


class FacePreprocessor:
    """Finds faces and aligns them; the detector is created on first use (cheap to pickle)."""

    def __init__(self, config: PreprocessConfig | None = None, detector: FaceDetector | None = None) -> None:
        self.config = config or PreprocessConfig()
        self._detector = detector

    @property
    def detector(self) -> FaceDetector:
        if self._detector is None:
            self._detector = make_detector(
                self.config.detector, self.config.yunet_path, self.config.min_score, self.config.max_detect_side
            )
        return self._detector

    def all_faces(self, rgb: np.ndarray) -> list[AlignedFace]:
        """Every face found, largest first; empty when none (no fallback here)."""
        return [AlignedFace(face, self._align(rgb, face.landmarks)) for face in self.detector.detect(rgb)]

    def subject_face(self, rgb: np.ndarray) -> AlignedFace | None:
        """The face the image is about (the largest, or the central one: `subject`), or the centre-crop
        fallback when configured, else None."""
        faces = self.detector.detect(rgb)
        if faces:
            face = faces[0] if self.config.subject == "largest" else central_face(faces, rgb.shape)
            return AlignedFace(face, self._align(rgb, face.landmarks))
        if self.config.fallback == "center":
            landmarks = center_landmarks(rgb.shape)
            height, width = rgb.shape[:2]
            centre = Face((0.0, 0.0, float(width), float(height)), 0.0, landmarks)
            return AlignedFace(centre, self._align(rgb, landmarks), detected=False)
        return None

    def _align(self, rgb: np.ndarray, landmarks: np.ndarray) -> np.ndarray:
        return align_face(rgb, landmarks, self.config.image_size, self.config.template)

    def describe(self) -> dict[str, Any]:
        """The config plus what actually ran (detector name, template), for model.json."""
        description = asdict(self.config)
        description["detector_used"] = self.detector.name
        description["template_points"] = template(self.config.image_size, self.config.template).round(4).tolist()
        description["crop_format"] = "uint8 RGB"
        return description


def central_face(faces: list[Face], shape: tuple[int, ...]) -> Face:
    """The face whose box centre is nearest the image centre."""
    height, width = shape[:2]

    def offset(face: Face) -> float:
        x, y, w, h = face.box
        return float(np.hypot(x + w / 2 - width / 2, y + h / 2 - height / 2))

    return min(faces, key=offset)
