"""Face detectors for both domains, each returning `translate.faces.schema.Face` records.

- Photos: MTCNN (the `mtcnn` package, weights inside the package). It gives eyes, nose and the two
  mouth corners; the mouth point is their midpoint. MTCNN has no chin: it stays missing unless
  `estimate_chin=True`, which places it on the eye-mouth axis (calibrated on 300 photos with
  68-point ground truth: chin = mouth + 0.67 (mouth - eye centre), median error 0.13 of the eye
  distance) and lists it in `face.estimated`.
- Anime: `animeface` (face box, eye boxes and colours, nose, mouth box, chin, hair and skin colour,
  likelihood). It misses many tightly cropped faces, so the image is first framed by a white
  border and rescaled (see `AnimeFaceDetector`); points are mapped back to the original image.
  animeface's "left eye" is the character's left (image right): eyes are re-assigned by x here.
- Colours for both domains come from `translate.faces.colors` (measured around the keypoints), not from
  animeface, whose colours change from call to call for the same image.
"""
from __future__ import annotations

import os
from typing import Dict, List, Optional, Sequence

import numpy as np
from PIL import Image

from translate.faces.colors import estimate_colors
from translate.faces.schema import Face
from translate.faces.panels import is_strip, split_panels

CHIN_FROM_MOUTH = 0.67  # chin = mouth + k * (mouth - eye centre); median over Udacity 68-pt data


def configure_tf_threads(threads: Optional[int]) -> None:
    """Caps TensorFlow's CPU threads; must run before TensorFlow executes its first op."""
    if not threads:
        return
    import tensorflow as tf

    tf.config.threading.set_intra_op_parallelism_threads(threads)
    tf.config.threading.set_inter_op_parallelism_threads(threads)


def _eyes_by_x(points: Dict[str, tuple]) -> None:
    """Makes `left_eye` the eye with the smaller x."""
    if "left_eye" in points and "right_eye" in points and points["left_eye"][0] > points["right_eye"][0]:
        points["left_eye"], points["right_eye"] = points["right_eye"], points["left_eye"]


def estimate_chin(points: Dict[str, tuple]) -> Optional[tuple]:
    """A chin point on the eye-mouth axis, or None without both eyes and a mouth."""
    if not all(k in points for k in ("left_eye", "right_eye", "mouth")):
        return None
    eye_c = (np.asarray(points["left_eye"]) + np.asarray(points["right_eye"])) / 2
    mouth = np.asarray(points["mouth"])
    chin = mouth + CHIN_FROM_MOUTH * (mouth - eye_c)
    return float(chin[0]), float(chin[1])


class MtcnnDetector:
    """MTCNN on real photos; every face in the image, best score first."""

    domain = "photo"

    def __init__(self, min_face_size: int = 20, estimate_chin: bool = False):
        os.environ.setdefault("TF_CPP_MIN_LOG_LEVEL", "2")
        from mtcnn import MTCNN  # imports TensorFlow: only where photos are detected

        self._mtcnn = MTCNN(stages="face_and_landmarks_detection", device="CPU:0")
        self.min_face_size = min_face_size
        self.estimate_chin = estimate_chin

    def detect(self, image: np.ndarray) -> List[Face]:
        results = self._mtcnn.detect_faces(image, min_face_size=self.min_face_size)
        faces = []
        for r in results or []:
            kp = r["keypoints"]
            mouth = ((kp["mouth_left"][0] + kp["mouth_right"][0]) / 2, (kp["mouth_left"][1] + kp["mouth_right"][1]) / 2)
            points = {
                "left_eye": tuple(map(float, kp["left_eye"])),
                "right_eye": tuple(map(float, kp["right_eye"])),
                "nose": tuple(map(float, kp["nose"])),
                "mouth": (float(mouth[0]), float(mouth[1])),
            }
            _eyes_by_x(points)
            estimated = []
            if self.estimate_chin:
                points["chin"] = estimate_chin(points)
                estimated.append("chin")
            faces.append(
                Face(
                    box=tuple(float(v) for v in r["box"]),
                    points=points,
                    colors=estimate_colors(image, points),
                    score=float(r["confidence"]),
                    detector="mtcnn",
                    domain="photo",
                    image_size=(image.shape[1], image.shape[0]),
                    estimated=estimated,
                )
            )
        return sorted(faces, key=lambda f: -f.score)


def _box_center(b) -> tuple:
    return (b.x + b.width / 2.0, b.y + b.height / 2.0)


class AnimeFaceDetector:
    """animeface on anime / webtoon images, with framing, fallback and per-panel detection.

    animeface finds at most one face per call and often misses faces that fill the whole image.
    Each attempt in `attempts` is (border fraction of the longest side, longest side after
    rescaling, 0 = keep); they are tried in order until one finds a face. Tall strips are split
    into panels at blank gutters first, and each panel is detected on its own.
    """

    domain = "anime"
    # Measured on 200 hololive crops: no framing 52.5%, one 25% border 62.5%, this cascade 75.5%
    # (about 260 ms an image); see benchmarks/detect.py and BUILD.md.
    DEFAULT_ATTEMPTS = ((0.25, 256), (0.1, 256), (0.4, 256), (0.0, 0))

    def __init__(self, attempts: Sequence[tuple] = DEFAULT_ATTEMPTS, split_strips: bool = True):
        import animeface  # noqa: F401  (fail early, not in the first image)

        self.attempts = tuple(attempts)
        self.split_strips = split_strips

    def detect(self, image: np.ndarray) -> List[Face]:
        h, w = image.shape[:2]
        panels = split_panels(image) if self.split_strips and is_strip(image) else [(0, h)]
        faces = []
        for top, bottom in panels:
            face = self._detect_one(image[top:bottom])
            if face is not None:
                face = _shift(face, 0, top)
                face.image_size = (w, h)
                faces.append(face)
        return sorted(faces, key=lambda f: -f.score)

    def _detect_one(self, image: np.ndarray) -> Optional[Face]:
        import animeface

        pil = Image.fromarray(image)
        for border, size in self.attempts:
            framed, scale, offset = frame_image(pil, border, size)
            found = animeface.detect(framed)
            if found:
                best = max(found, key=lambda f: f.likelihood)
                face = _from_animeface(best, scale, offset, (pil.width, pil.height))
                face.colors = estimate_colors(image, face.points)
                return face
        return None


def frame_image(image: Image.Image, border: float, size: int):
    """Adds a white border of `border` x longest side, then rescales the longest side to `size`.

    Returns (image, scale, offset): original (x, y) maps to ((x + offset) * scale, (y + offset) * scale).
    """
    offset = int(round(border * max(image.size)))
    if offset:
        framed = Image.new("RGB", (image.width + 2 * offset, image.height + 2 * offset), (255, 255, 255))
        framed.paste(image, (offset, offset))
    else:
        framed = image
    scale = 1.0
    if size:
        scale = size / float(max(framed.size))
        if abs(scale - 1.0) > 1e-6:
            new = (max(1, round(framed.width * scale)), max(1, round(framed.height * scale)))
            framed = framed.resize(new, Image.LANCZOS if scale < 1 else Image.BICUBIC)
    return framed, scale, offset


def _from_animeface(f, scale: float, offset: int, image_size) -> Face:
    def pt(p):
        return (p[0] / scale - offset, p[1] / scale - offset)

    fb = f.face.pos
    x0, y0 = pt((fb.x, fb.y))
    box = (x0, y0, fb.width / scale, fb.height / scale)
    points = {
        # animeface's left_eye is the character's left; _eyes_by_x re-assigns them by image x.
        "left_eye": pt(_box_center(f.left_eye.pos)),
        "right_eye": pt(_box_center(f.right_eye.pos)),
        "nose": pt((f.nose.pos.x, f.nose.pos.y)),
        "mouth": pt(_box_center(f.mouth.pos)),
        "chin": pt((f.chin.pos.x, f.chin.pos.y)),
    }
    _eyes_by_x(points)
    return Face(
        box=box,
        points=points,
        score=float(f.likelihood),
        detector="animeface",
        domain="anime",
        image_size=image_size,
    )


def _shift(face: Face, dx: float, dy: float) -> Face:
    if dx or dy:
        x, y, w, h = face.box
        face.box = (x + dx, y + dy, w, h)
        face.points = {k: (p[0] + dx, p[1] + dy) for k, p in face.points.items()}
    return face


def make_detector(domain: str, **kwargs):
    """The detector for a domain: 'photo' -> MTCNN, 'anime' -> animeface."""
    if domain == "photo":
        return MtcnnDetector(**kwargs)
    if domain == "anime":
        return AnimeFaceDetector(**kwargs)
    raise ValueError(f"unknown domain {domain!r}: expected 'photo' or 'anime'")
