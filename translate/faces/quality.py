"""The usability filter: which detected faces are worth keeping.

The original work kept only faces with both eyes visible. Here a face is usable when it has both
eyes, a detector score above the domain's threshold, an eye distance that is sane for its box,
a moderate roll, its points inside (a margin around) its box, and eyes above nose above mouth
above chin measured along the face's own vertical axis (so a tilted head is fine). `check` returns
the first failed rule's name, so rejections can be counted by reason.
"""
from __future__ import annotations

import dataclasses
import math
from typing import Optional

import numpy as np

from translate.faces.schema import Face

REASONS = (
    "low_score",
    "missing_eye",
    "small_face",
    "eye_distance",
    "tilted",
    "point_outside_box",
    "point_order",
)


@dataclasses.dataclass(frozen=True)
class QualityConfig:
    min_score_photo: float = 0.90
    min_score_anime: float = 0.50
    min_eye_distance: float = 8.0  # pixels: below this the crop is mostly upscaling blur
    min_eye_fraction: float = 0.15  # eye distance / box width
    max_eye_fraction: float = 0.85
    max_roll_degrees: float = 40.0
    box_margin: float = 0.15  # points may lie this fraction of the box size outside the box

    def min_score(self, domain: str) -> float:
        return self.min_score_photo if domain == "photo" else self.min_score_anime


def roll_degrees(face: Face) -> float:
    """Angle of the eye line against the horizontal (positive: right eye lower)."""
    (x0, y0), (x1, y1) = face.points["left_eye"], face.points["right_eye"]
    return math.degrees(math.atan2(y1 - y0, x1 - x0))


def check(face: Face, config: QualityConfig = QualityConfig()) -> Optional[str]:
    """None when the face is usable, else the name of the first rule it fails (see REASONS)."""
    if face.score < config.min_score(face.domain):
        return "low_score"
    if "left_eye" not in face.points or "right_eye" not in face.points:
        return "missing_eye"
    iod = face.eye_distance
    if iod < config.min_eye_distance:
        return "small_face"
    bw = max(face.box[2], 1e-6)
    if not config.min_eye_fraction <= iod / bw <= config.max_eye_fraction:
        return "eye_distance"
    if abs(roll_degrees(face)) > config.max_roll_degrees:
        return "tilted"
    x, y, w, h = face.box
    mx, my = config.box_margin * w, config.box_margin * h
    for px, py in face.points.values():
        if not (x - mx <= px <= x + w + mx and y - my <= py <= y + h + my):
            return "point_outside_box"
    if not _ordered_top_to_bottom(face):
        return "point_order"
    return None


def _ordered_top_to_bottom(face: Face) -> bool:
    """Eyes above nose above mouth above chin, along the axis perpendicular to the eye line."""
    le, re = np.asarray(face.points["left_eye"]), np.asarray(face.points["right_eye"])
    along = (re - le) / max(np.linalg.norm(re - le), 1e-6)
    down = np.array([-along[1], along[0]])  # eye line rotated +90 degrees: image "down" when level
    eye_level = float(np.dot((le + re) / 2, down))
    last = eye_level
    for name in ("nose", "mouth", "chin"):
        if name in face.points:
            depth = float(np.dot(np.asarray(face.points[name]), down))
            if depth <= last:
                return False
            last = depth
    return True
