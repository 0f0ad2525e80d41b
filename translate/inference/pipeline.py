"""Photo -> anime, in process: find the faces of a photo, prepare them for a translator, run it.

Used by the CLI (`translate/translate.py`) and the HTTP pipeline endpoint (`tools/serve.py`):

* `prepare_faces(rgb, image_size)` -> [PreparedFace]: MTCNN detection (with an estimated chin:
  the anime faces pix2pix learns from all have one), the usability filter
  (`translate.faces.quality`), alignment (`translate.faces.align`, photo crop geometry), keypoints
  normalised over the crop and colours measured on the photo (`translate.faces.colors`, as the
  detection CLI records them) unless overridden.
* `serving_inputs(faces, names)` -> the numpy batch of an exported translator's signature
  (`translate.export`'s contract).
* `Runner(translator)`: the same graph as the export (`export.TranslatorModule.predict_raw`) on a
  loaded `translate.inference.loading.Translator`, returning uint8 faces.
"""
from __future__ import annotations

import collections
import os
import sys
import dataclasses
import io
import re
from typing import Dict, List, Mapping, Optional, Sequence, Tuple

import numpy as np

from translate.faces import quality
from translate.faces.schema import COLOR_NAMES, Face

# TensorFlow-backed modules (export, landmarks, records) and OpenCV (align) are imported where
# used, so a CLI can check its flags with this module before paying for TensorFlow.

Color = Tuple[int, int, int]


@dataclasses.dataclass
class PreparedFace:
    """One usable face of a photo, ready for a translator."""
    aligned: np.ndarray  # uint8 [S, S, 3] aligned crop
    keypoints: np.ndarray  # float32 [5, 2] in [0, 1] over the crop, POINT_NAMES order
    point_mask: np.ndarray  # float32 [5]
    colors: np.ndarray  # float32 [4, 3] in [0, 1], COLOR_NAMES order
    color_mask: np.ndarray  # float32 [4]
    box: Tuple[float, float, float, float]  # x, y, w, h in photo pixels
    score: float
    face: Optional[Face] = None  # the detection (photo coordinates)


def parse_color(text: str) -> Color:
    """'#rrggbb' (or 'rrggbb') -> (r, g, b); ValueError otherwise."""
    m = re.fullmatch(r"#?([0-9a-fA-F]{6})", (text or "").strip())
    if not m:
        raise ValueError(f"not a colour {text!r}: expected #rrggbb")
    h = m.group(1)
    return int(h[0:2], 16), int(h[2:4], 16), int(h[4:6], 16)


def color_overrides(hair=None, skin=None, eye=None, left_eye=None, right_eye=None) -> Dict[str, Color]:
    """Colour overrides by COLOR_NAMES name from '#rrggbb' strings or RGB tuples; `eye` sets both
    eyes (left_eye / right_eye win over it)."""
    out = {}
    for name, value in (("hair", hair), ("skin", skin), ("left_eye", eye), ("right_eye", eye),
                        ("left_eye", left_eye), ("right_eye", right_eye)):
        if value is not None:
            out[name] = parse_color(value) if isinstance(value, str) else tuple(int(v) for v in value)
    return out


def default_detector(domain: str = "photo"):
    """MTCNN with the estimated chin for photos; animeface for anime."""
    from translate.faces.detect import make_detector

    return make_detector(domain, estimate_chin=True) if domain == "photo" else make_detector(domain)


def usable_faces(rgb: np.ndarray, detector, config: quality.QualityConfig = quality.QualityConfig(),
                 rejected: Optional[collections.Counter] = None) -> List[Face]:
    """Detected faces that pass the usability filter, best score first; `rejected` (if given)
    counts the others by reason ("no_face" when nothing was detected)."""
    found = detector.detect(rgb)
    rejected = rejected if rejected is not None else collections.Counter()
    if not found:
        rejected["no_face"] += 1
    kept = []
    for face in found:
        reason = quality.check(face, config)
        if reason:
            rejected[reason] += 1
        else:
            kept.append(face)
    return sorted(kept, key=lambda f: -f.score)


def prepare_face(rgb: np.ndarray, face: Face, image_size: int,
                 colors: Optional[Mapping[str, Sequence[int]]] = None) -> PreparedFace:
    """Aligns one detected face and builds its keypoints and colours."""
    from translate.faces.align import GEOMETRY, align_face
    from translate.datasets.landmarks import points_from_dict
    from translate.datasets.records import normalise_colors

    crop, meta = align_face(rgb, face, image_size, GEOMETRY[face.domain])
    keypoints, point_mask = points_from_dict(meta.points, image_size)
    merged = {**face.colors, **(colors or {})}
    flat, cmask = normalise_colors(merged)
    return PreparedFace(
        aligned=crop, keypoints=keypoints, point_mask=point_mask,
        colors=np.asarray(flat, np.float32).reshape(len(COLOR_NAMES), 3),
        color_mask=np.asarray(cmask, np.float32), box=tuple(face.box), score=float(face.score),
        face=face)


def prepare_faces(rgb: np.ndarray, image_size: int, detector=None,
                  colors: Optional[Mapping[str, Sequence[int]]] = None,
                  max_faces: Optional[int] = None,
                  config: quality.QualityConfig = quality.QualityConfig(),
                  rejected: Optional[collections.Counter] = None) -> List[PreparedFace]:
    """The usable faces of an RGB uint8 photo [H, W, 3], best first, aligned at image_size.

    colors: RGB 0-255 overrides by name (hair, skin, left_eye, right_eye; see
    `color_overrides`); the others are measured on the photo. An empty list means no usable
    face; `rejected` (a Counter, if given) then says why.
    """
    rgb = np.ascontiguousarray(rgb[..., :3], dtype=np.uint8)
    detector = detector or default_detector("photo")
    faces = usable_faces(rgb, detector, config, rejected)
    if max_faces is not None:
        faces = faces[:max_faces]
    return [prepare_face(rgb, f, image_size, colors) for f in faces]


def encode_png(rgb: np.ndarray) -> bytes:
    from PIL import Image

    buf = io.BytesIO()
    Image.fromarray(np.asarray(rgb, np.uint8)).save(buf, format="PNG")
    return buf.getvalue()


def face_seeds(n: int, seed: Optional[int] = None) -> np.ndarray:
    """int64 [n] seeds for the noise condition: seed, seed + 1, ... or random without a seed."""
    if seed is None:
        return np.random.default_rng().integers(0, 2 ** 62, size=n, dtype=np.int64)
    return np.arange(seed, seed + n, dtype=np.int64)


def model_keypoints(face: PreparedFace, input_names: Sequence[str], anime_proportions: bool = True) -> np.ndarray:
    """The keypoints to give a translator. One that takes the photo too (CycleGAN with the landmark
    channel) gets them where they are in the photo crop. One that draws the face from keypoints
    alone (pix2pix, trained on anime crops) gets them in anime proportions
    (`align.photo_to_anime_points`), unless `anime_proportions` is False."""
    from translate.inference import export
    from translate.faces.align import photo_to_anime_points
    from translate.faces.schema import POINT_NAMES

    if export.IMAGE in input_names or not anime_proportions or face.face.domain != "photo":
        return face.keypoints
    return photo_to_anime_points(face.keypoints, POINT_NAMES)


def serving_inputs(faces: Sequence[PreparedFace], input_names: Sequence[str], seed: Optional[int] = None,
                   raw: bool = False, anime_proportions: bool = True) -> Dict[str, np.ndarray]:
    """The batch for an exported translator's signature, only the inputs it names.

    `image` is PNG bytes of the aligned crops (object array) for serving_default, or with `raw`
    float32 [B, S, S, 3] in [-1, 1] for predict_raw. Keypoints: see `model_keypoints`.
    """
    from translate.inference import export

    out = {}
    for name in input_names:
        if name == export.IMAGE:
            if raw:
                out[name] = np.stack([f.aligned for f in faces]).astype(np.float32) / 127.5 - 1.0
            else:
                out[name] = np.array([encode_png(f.aligned) for f in faces], dtype=object)
        elif name == export.KEYPOINTS:
            out[name] = np.stack([model_keypoints(f, input_names, anime_proportions)
                                  for f in faces]).astype(np.float32)
        elif name == export.POINT_MASK:
            out[name] = np.stack([f.point_mask for f in faces]).astype(np.float32)
        elif name == export.COLORS:
            out[name] = np.stack([f.colors for f in faces]).astype(np.float32)
        elif name == export.COLOR_MASK:
            out[name] = np.stack([f.color_mask for f in faces]).astype(np.float32)
        elif name == export.SEED:
            out[name] = face_seeds(len(faces), seed)
        else:
            raise ValueError(f"unknown translator input {name!r}")
    return out


def to_uint8(images) -> np.ndarray:
    """[..., 3] in [-1, 1] -> uint8."""
    return np.clip(np.round((np.asarray(images, np.float32) + 1.0) * 127.5), 0, 255).astype(np.uint8)


class Runner:
    """Runs a loaded translator (`translate.inference.loading.load`) on prepared faces, in process, through
    the export's serving graph (`predict_raw`)."""

    def __init__(self, translator, direction: str = "photo2anime", inference_dropout: bool = True,
                 anime_proportions: bool = True):
        from translate.inference import export

        self.translator = translator
        self.module = export.build_module(translator, direction, inference_dropout)
        self.output_key = export.OUTPUT_RAW
        self.input_names = list(self.module.input_names)
        self.image_size = self.module.image_size
        self.domain = "photo" if direction == "photo2anime" else "anime"
        self.anime_proportions = anime_proportions

    def translate(self, faces: Sequence[PreparedFace], seed: Optional[int] = None) -> np.ndarray:
        """uint8 [B, S, S, 3] translated faces (an empty batch for no faces)."""
        s = self.image_size
        if not faces:
            return np.zeros([0, s, s, 3], np.uint8)
        inputs = serving_inputs(faces, self.input_names, seed, raw=True,
                                anime_proportions=self.anime_proportions)
        out = self.module.predict_raw(*[inputs[n] for n in self.input_names])[self.output_key]
        return to_uint8(out.numpy())

    def layer(self, face: PreparedFace) -> np.ndarray:
        """The face's landmark layer as uint8 RGB [S, S, 3] (for side-by-side pictures)."""
        from translate.datasets import landmarks

        points = model_keypoints(face, self.input_names, self.anime_proportions)
        lay = landmarks.render(points, face.point_mask, self.image_size).numpy()[..., 0]
        return np.repeat(landmarks.to_uint8(lay)[..., None], 3, axis=-1)


# ----------------------------------------------------------------------------- folders
def save_png(rgb, path: str) -> None:
    """Writes whole or not at all (temporary name, then rename)."""
    from PIL import Image

    os.makedirs(os.path.dirname(path) or ".", exist_ok=True)
    tmp = f"{path}.tmp-{os.getpid()}.png"
    try:
        Image.fromarray(rgb).save(tmp)
        os.replace(tmp, path)
    except BaseException:
        if os.path.exists(tmp):
            os.remove(tmp)
        raise


def translate_all(runner, detector, root, sources, output_dir, colors, seed=None, side_by_side=False,
                  max_faces=None, config=None, progress=True, log=print, max_pixels=None):
    """Translates every photo; returns the summary dict. Never raises on one bad photo (nor on
    one over `max_pixels`, width x height; default translate.faces.images.MAX_PIXELS)."""
    import numpy as np
    from tqdm import tqdm

    from translate.faces import images as imageio

    config = config or quality.QualityConfig()
    summary = collections.Counter()
    rejected_total = collections.Counter()
    written = []
    bar = tqdm(sources, unit="photo", desc="translate", disable=not progress)
    for k, rel in enumerate(bar):
        summary["photos"] += 1
        try:
            rgb = imageio.load_rgb(os.path.join(root, rel), max_pixels or imageio.MAX_PIXELS)
        except imageio.ImageReadError as e:
            summary["unreadable"] += 1
            tqdm.write(f"skipped {rel}: {e}", file=sys.stderr)
            continue
        rejected = collections.Counter()
        try:
            faces = prepare_faces(rgb, runner.image_size, detector, colors, max_faces,
                                              config, rejected)
        except Exception as e:  # a detector crash on one odd photo must not end the run
            summary["failed"] += 1
            tqdm.write(f"skipped {rel}: detection failed: {type(e).__name__}: {e}", file=sys.stderr)
            continue
        if not faces:
            summary["no_face"] += 1
            rejected_total.update(rejected)
            why = ", ".join(f"{r} {n}" for r, n in sorted(rejected.items()))
            tqdm.write(f"skipped {rel}: no usable face ({why})", file=sys.stderr)
            continue
        face_seed = None if seed is None else seed + 1000 * k
        out = runner.translate(faces, seed=face_seed)
        stem = os.path.splitext(rel)[0]
        for i, (face, anime) in enumerate(zip(faces, out)):
            path = os.path.join(output_dir, f"{stem}_face{i}.png")
            save_png(anime, path)
            written.append(path)
            if side_by_side:
                save_png(np.concatenate([face.aligned, runner.layer(face), anime], axis=1),
                          os.path.join(output_dir, f"{stem}_face{i}_side.png"))
        summary["photos_translated"] += 1
        summary["faces"] += len(faces)
    return {**{k: summary.get(k, 0) for k in ("photos", "photos_translated", "faces", "no_face",
                                               "unreadable", "failed")},
            "rejected": dict(sorted(rejected_total.items())), "written": written}
