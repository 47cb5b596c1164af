"""Five-point similarity alignment to a named template (ArcFace's, or dlib's chip), and a centre-crop fallback."""

from __future__ import annotations

import cv2
import numpy as np

# The widely used 112 x 112 ArcFace (insightface) template, in the YuNet landmark order:
# right eye, left eye, nose tip, right mouth corner, left mouth corner. Scaled for other sizes.
ARCFACE_TEMPLATE_112 = np.array(
    [[38.2946, 51.6963], [73.5318, 51.5014], [56.0252, 71.7366], [41.5493, 92.3655], [70.7299, 92.2041]],
    np.float32,
)


# Where YuNet's five points fall in dlib's 150 px face chip (`get_face_chip(size=150, padding=0.25)`,
# the chip dlib's face ResNet was trained on): the median over 1,543 LFW images of YuNet's points
# (found on the whole image) mapped through dlib's own image-to-chip transform. See docs/results.md.
DLIB_TEMPLATE_150 = np.array(
    [[46.53, 44.42], [102.97, 45.39], [75.22, 77.07], [50.60, 101.06], [99.01, 101.76]],
    np.float32,
)
# name -> (points, the crop side they are given for); other crop sizes scale them.
TEMPLATES: dict[str, tuple[np.ndarray, int]] = {
    "arcface-5pt": (ARCFACE_TEMPLATE_112, 112),
    "dlib-chip-5pt": (DLIB_TEMPLATE_150, 150),
}


def template(size: int, name: str = "arcface-5pt") -> np.ndarray:
    if name not in TEMPLATES:
        raise ValueError(f"unknown alignment template {name!r}: choose one of {', '.join(TEMPLATES)}")
    points, native = TEMPLATES[name]
    return points * (size / native)


def similarity_transform(landmarks: np.ndarray, size: int, template_name: str = "arcface-5pt") -> np.ndarray:
    """The 2 x 3 rotation + uniform scale + translation mapping landmarks onto the template (least squares)."""
    matrix, _ = cv2.estimateAffinePartial2D(
        np.asarray(landmarks, np.float32).reshape(5, 2), template(size, template_name), method=cv2.LMEDS
    )
    if matrix is None:
        raise ValueError("the landmarks are degenerate: no similarity transform maps them to the template")
    return matrix


def align_face(
    rgb: np.ndarray, landmarks: np.ndarray, size: int = 112, template_name: str = "arcface-5pt"
) -> np.ndarray:
    """Warp the face to a (size, size, 3) uint8 crop.

    Only the region that lands in the crop is touched, and when the face is much larger than the
    crop that region is first shrunk with area averaging, so crops from a 1080p photo match crops
    from a small one instead of aliasing.
    """
    matrix = similarity_transform(landmarks, size, template_name)
    region, matrix = _source_region(rgb, matrix, size)
    scale = float(np.hypot(matrix[0, 0], matrix[0, 1]))
    if scale < 0.5:
        shrunk_size = (max(1, round(region.shape[1] * scale)), max(1, round(region.shape[0] * scale)))
        factors = np.array([shrunk_size[0] / region.shape[1], shrunk_size[1] / region.shape[0]])
        region = cv2.resize(region, shrunk_size, interpolation=cv2.INTER_AREA)
        # Pixel centres map as p' = (p + 0.5) * f - 0.5; fold the inverse into the transform.
        linear = matrix[:, :2] / factors
        matrix = np.hstack([linear, (matrix[:, 2] + linear @ (0.5 - 0.5 * factors))[:, None]])
    return cv2.warpAffine(region, matrix, (size, size), flags=cv2.INTER_LINEAR, borderMode=cv2.BORDER_CONSTANT)


def _source_region(rgb: np.ndarray, matrix: np.ndarray, size: int) -> tuple[np.ndarray, np.ndarray]:
    """The part of the image the crop samples (plus a margin) and the transform shifted onto it."""
    inverse = cv2.invertAffineTransform(matrix)
    corners = np.array([[0, 0, 1], [size, 0, 1], [0, size, 1], [size, size, 1]], np.float64) @ inverse.T
    height, width = rgb.shape[:2]
    x0, y0 = np.clip(np.floor(corners.min(axis=0)) - 2, 0, [width, height]).astype(int)
    x1, y1 = np.clip(np.ceil(corners.max(axis=0)) + 2, 0, [width, height]).astype(int)
    if x1 <= x0 or y1 <= y0:  # the crop lies wholly outside the image
        x0, y0, x1, y1 = 0, 0, width, height
    shifted = matrix.copy()
    shifted[:, 2] += matrix[:, :2] @ np.array([x0, y0], np.float64)
    return rgb[y0:y1, x0:x1], shifted


# Deep-funneled LFW images (250 x 250) hold one roughly centred face; these are the mean YuNet
# landmarks (median over 300 LFW images, as fractions of the image side), used when none is detected.
LFW_TYPICAL_LANDMARKS = np.array(
    [[0.415, 0.449], [0.592, 0.448], [0.505, 0.547], [0.431, 0.624], [0.581, 0.621]], np.float32
)


def center_landmarks(shape: tuple[int, ...]) -> np.ndarray:
    """Where a centred face's landmarks are expected, for an image of this shape."""
    height, width = shape[:2]
    side = min(height, width)
    offset = np.array([(width - side) / 2, (height - side) / 2], np.float32)
    return offset + LFW_TYPICAL_LANDMARKS * side


def center_crop(rgb: np.ndarray, size: int = 112, template_name: str = "arcface-5pt") -> np.ndarray:
    """The crop alignment would give if the face sat where faces usually sit in LFW images."""
    return align_face(rgb, center_landmarks(rgb.shape), size, template_name)
