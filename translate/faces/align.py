"""Aligned face crops: a similarity transform that puts the eyes at canonical positions.

Rotation, scale and translation only (no shear), so the face keeps its shape. The transform maps
the image's left eye to (0.5 - d/2, y) and the right eye to (0.5 + d/2, y) in crop units, with
d = `eye_distance` and y = `eye_y` as fractions of the crop size. Keypoints go through the same
matrix as the pixels. Faces near the image border are padded: photos by repeating the edge
pixels (reflection would mirror an eye into the margin), anime by white, their usual background.
"""
from __future__ import annotations

import dataclasses
from typing import Dict, Tuple

import cv2
import numpy as np

from translate.faces.schema import Crop, Face


@dataclasses.dataclass(frozen=True)
class CropGeometry:
    eye_y: float
    eye_distance: float
    border: str  # "replicate" | "white"


# Photos: chin lies 1.87 eye distances below the eyes (Udacity 68-pt median) -> about 0.87 of the
# crop. Anime eyes sit wider and lower in the face; both put the whole face and some hair in view.
GEOMETRY = {
    "photo": CropGeometry(eye_y=0.40, eye_distance=0.25, border="replicate"),
    "anime": CropGeometry(eye_y=0.45, eye_distance=0.30, border="white"),
}


# Anime faces are shorter below the eyes than real ones. Median offset below the eye line, in eye
# distances (nose / mouth / chin): 300 Udacity photos (MTCNN, chin estimated) 0.596 / 1.128 / 1.884;
# 450 hololive faces (animeface) 0.381 / 0.701 / 1.019. Their ratios map photo keypoints into
# anime proportions for a net that draws the whole face from keypoints (pix2pix).
ANIME_DROP_RATIO = {"nose": 0.64, "mouth": 0.62, "chin": 0.54}


def photo_to_anime_points(points, names) -> np.ndarray:
    """Normalised keypoints of a photo crop (GEOMETRY["photo"]) -> where an anime face with the
    same pose would have them in an anime crop (GEOMETRY["anime"]): eyes land on the anime eye
    spots, the other points keep their sideways offset (in eye distances) and their drop below
    the eye line is scaled by ANIME_DROP_RATIO. points: [N, 2] in names' order."""
    photo, anime = GEOMETRY["photo"], GEOMETRY["anime"]
    pts = np.asarray(points, np.float64)
    along = (pts[:, 0] - 0.5) / photo.eye_distance
    down = (pts[:, 1] - photo.eye_y) / photo.eye_distance
    down = down * np.asarray([ANIME_DROP_RATIO.get(n, 1.0) for n in names])
    return np.stack([0.5 + along * anime.eye_distance, anime.eye_y + down * anime.eye_distance], -1).astype(np.float32)


def similarity_matrix(left_eye, right_eye, size: int, geometry: CropGeometry) -> np.ndarray:
    """2x3 matrix mapping source (x, y, 1) to crop pixels, eyes to their canonical spots."""
    src = np.asarray([left_eye, right_eye], dtype=np.float64)
    half = geometry.eye_distance / 2.0
    dst = np.asarray([[0.5 - half, geometry.eye_y], [0.5 + half, geometry.eye_y]], dtype=np.float64) * size
    sv, dv = src[1] - src[0], dst[1] - dst[0]
    # Complex-number form of a similarity: dst = a * src + t, with a = dv / sv.
    a = complex(dv[0], dv[1]) / complex(sv[0], sv[1])
    m = np.array([[a.real, -a.imag, 0.0], [a.imag, a.real, 0.0]])
    m[:, 2] = dst[0] - m[:, :2] @ src[0]
    return m


def transform_points(points: Dict[str, Tuple[float, float]], matrix: np.ndarray) -> Dict[str, Tuple[float, float]]:
    out = {}
    for name, (x, y) in points.items():
        px, py = matrix @ np.array([x, y, 1.0])
        out[name] = (float(px), float(py))
    return out


def warp(image: np.ndarray, matrix: np.ndarray, size: int, border: str) -> np.ndarray:
    """Applies `matrix` to produce a size x size crop; shrinks with area averaging first when large."""
    scale = float(np.hypot(matrix[0, 0], matrix[1, 0]))
    if scale < 0.5:  # bilinear warping alone would alias; pre-shrink with area averaging
        f = 1.0 / scale / 1.5
        h, w = image.shape[:2]
        small = cv2.resize(image, (max(1, round(w / f)), max(1, round(h / f))), interpolation=cv2.INTER_AREA)
        fx, fy = small.shape[1] / w, small.shape[0] / h
        image, matrix = small, matrix @ np.array([[1 / fx, 0, 0], [0, 1 / fy, 0], [0, 0, 1.0]])
    if border == "white":
        mode, value = cv2.BORDER_CONSTANT, (255, 255, 255)
    else:
        mode, value = cv2.BORDER_REPLICATE, 0
    return cv2.warpAffine(image, matrix, (size, size), flags=cv2.INTER_LINEAR, borderMode=mode, borderValue=value)


def align_face(image: np.ndarray, face: Face, size: int = 256, geometry: CropGeometry = None):
    """(crop uint8 [size, size, 3], Crop without path) for a face with both eyes."""
    if "left_eye" not in face.points or "right_eye" not in face.points:
        raise ValueError("alignment needs both eyes")
    geometry = geometry or GEOMETRY[face.domain]
    m = similarity_matrix(face.points["left_eye"], face.points["right_eye"], size, geometry)
    crop = warp(image, m, size, geometry.border)
    return crop, Crop(path="", size=size, points=transform_points(face.points, m), matrix=m.tolist())
