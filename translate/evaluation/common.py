"""What the evaluations of translate/evaluation/ share: the configuration, reading a split,
running a generator with seeded dropout, and keypoint fidelity through the anime face
detector. The evaluations themselves: paired.py (pix2pix), unpaired.py (CycleGAN, UGATIT);
the runs, table and HTML page: report.py.
"""
from __future__ import annotations

import dataclasses
from typing import Callable, Dict, Optional, Tuple

import numpy as np
import tensorflow as tf

from translate.datasets import pipelines as data, records
from translate.faces.schema import POINT_NAMES

Detector = Callable[[np.ndarray], Optional[Dict[str, Tuple[float, float]]]]
EYES = (POINT_NAMES.index("left_eye"), POINT_NAMES.index("right_eye"))
MEMO_SIZE = 64  # memorisation distances are computed at most at this size (cheap, pose-level)


class EvalError(ValueError):
    """A run or dataset that cannot be evaluated (clear message, no traceback in the CLI)."""


@dataclasses.dataclass
class EvalConfig:
    dataset_dir: str
    split: str = "test"
    train_split: str = "train"  # the memorisation reference
    max_examples: int = 0  # 0 = the whole split
    batch_size: int = 8
    seed: int = 0
    shift: float = 0.05  # keypoint sensitivity: shift of every point, normalised units (x and y)
    scale: float = 1.1  # keypoint sensitivity: scale about the points' centre
    kid_subsets: int = 100
    kid_subset_size: int = 1000
    html_examples: int = 8
    progress: bool = True


# ----------------------------------------------------------------------------- helpers
def anime_detector() -> Detector:
    """animeface (framed cascade) as a Detector: uint8 image -> the best face's points or None."""
    from translate.faces.detect import AnimeFaceDetector

    det = AnimeFaceDetector()

    def detect(image: np.ndarray):
        faces = det.detect(np.ascontiguousarray(image))
        return dict(faces[0].points) if faces else None

    return detect


def to_uint8(x) -> np.ndarray:
    """[-1, 1] float -> uint8 0-255."""
    return np.clip(np.round((np.asarray(x, np.float32) + 1.0) * 127.5), 0, 255).astype(np.uint8)


def seed_dropout(model, seed: int, counter: int = 0) -> None:
    """Sets every random layer's seed state to (seed + layer index, counter): the same
    (seed, counter) gives the same dropout masks for the same input shape."""
    layers = [model] + list(model._flatten_layers(include_self=False, recursive=True))
    for i, layer in enumerate(layers):
        gen = getattr(layer, "seed_generator", None)
        if gen is not None and hasattr(gen, "state"):
            gen.state.assign(tf.constant([seed * 1009 + i, counter], dtype=gen.state.dtype))


def run_network(model, x, seed: int, counter: int) -> np.ndarray:
    """One inference call with seeded dropout; the first output when a network returns several
    (UGATIT returns CAM logits and heatmaps next to the image)."""
    seed_dropout(model, seed, counter)
    out = model(tf.convert_to_tensor(x, tf.float32), training=False)
    if isinstance(out, dict):
        out = out.get("image", next(iter(out.values())))
    if isinstance(out, (list, tuple)):
        out = out[0]
    return np.asarray(out)


def memoised(features: Callable[[np.ndarray], np.ndarray]) -> Callable[[np.ndarray], np.ndarray]:
    """`features` remembered by image content: the real sets' Inception features are computed
    once, not once per evaluated run."""
    import hashlib
    cache: Dict[str, np.ndarray] = {}

    def call(images):
        images = np.ascontiguousarray(images, np.float32)
        key = hashlib.sha1(images.tobytes()).hexdigest() + str(images.shape)
        if key not in cache:
            cache[key] = features(images)
        return cache[key]

    return call


def progress_bar(it, total: int, desc: str, enabled: bool):
    if not enabled:
        return it
    from tqdm import tqdm
    return tqdm(it, total=total, desc=desc, unit="batch" if "batch" in desc else "img", leave=False)


def read_examples(dataset_dir: str, split: str, domain: str, image_size: int, task: str,
                  max_examples: int = 0) -> Dict[str, np.ndarray]:
    """A split's examples in stored order, without augmentation: image [N, S, S, 3] in [-1, 1],
    points [N, 5, 2] normalised, point_mask [N, 5], colors [N, 4, 3] in [0, 1], color_mask."""
    info = records.read_info(dataset_dir, task=task)
    ds, _ = data.examples(dataset_dir, split, domain, info=info, image_size=image_size,
                          shuffle_buffer=1)
    if max_examples:
        ds = ds.take(max_examples)
    keys = ("image", "points", "point_mask", "colors", "color_mask")
    out: Dict[str, list] = {k: [] for k in keys}
    for ex in ds.batch(64):
        for k in keys:
            out[k].append(ex[k].numpy())
    return {k: np.concatenate(v) for k, v in out.items()}


def batch_ranges(n: int, size: int):
    return [(i, min(i + size, n)) for i in range(0, n, size)]


def downsample(images, size: int) -> np.ndarray:
    """[N, S, S, 3] in [-1, 1] -> [N, s*s*3] in [0, 1] at s = min(size, S) (area-averaged)."""
    images = tf.convert_to_tensor(images, tf.float32)
    s = min(size, int(images.shape[1]))
    small = tf.image.resize(images, [s, s], antialias=True) if s != images.shape[1] else images
    return ((tf.reshape(small, [images.shape[0], -1]).numpy() + 1.0) / 2.0).astype(np.float64)


def rms_distances(a: np.ndarray, b: np.ndarray) -> np.ndarray:
    """RMS distance between rows of a [N, D] and b [M, D] -> [N, M]."""
    d2 = (a * a).sum(1)[:, None] + (b * b).sum(1)[None, :] - 2.0 * a @ b.T
    return np.sqrt(np.clip(d2, 0.0, None) / a.shape[1])


def mean(values) -> Optional[float]:
    values = [v for v in values if v is not None and np.isfinite(v)]
    return float(np.mean(values)) if values else None


def scale_points(points, mask, factor):
    centre = (points * mask[..., None]).sum(-2, keepdims=True) / np.maximum(mask.sum(-1)[..., None, None], 1)
    return centre + (points - centre) * factor


def keypoint_errors(detected: Dict[str, Tuple[float, float]], points_px: np.ndarray,
                    mask: np.ndarray) -> Dict[str, float]:
    """Per point name: distance detected - expected over the expected inter-ocular distance."""
    iod = float(np.linalg.norm(points_px[EYES[0]] - points_px[EYES[1]]))
    if iod <= 0 or not (mask[EYES[0]] and mask[EYES[1]]):
        return {}
    return {name: float(np.linalg.norm(np.asarray(detected[name], float) - points_px[i]) / iod)
            for i, name in enumerate(POINT_NAMES) if mask[i] and name in detected}


def landmark_fidelity(images_u8: np.ndarray, points: np.ndarray, mask: np.ndarray,
                      detector: Detector, progress: bool = False, desc: str = "detect"):
    """({detected_share, mean_error, per_point}, detections) for images vs expected points."""
    size = images_u8.shape[1]
    found, errors = [], {n: [] for n in POINT_NAMES}
    per_image = []
    for img, pts, m in progress_bar(zip(images_u8, points, mask), len(images_u8), desc, progress):
        det = detector(img)
        found.append(det)
        if det is None:
            continue
        err = keypoint_errors(det, pts * size, m)
        for k, v in err.items():
            errors[k].append(v)
        if err:
            per_image.append(float(np.mean(list(err.values()))))
    result = {"detected_share": float(np.mean([d is not None for d in found])) if found else None,
              "detected": int(sum(d is not None for d in found)), "count": len(found),
              "mean_error": mean(per_image),
              "per_point": {k: mean(v) for k, v in errors.items()}}
    return result, found


def fidelity_with_reference(outputs_u8, source: dict, real: dict, ref_name: str,
                             detector: Detector, progress: bool):
    """landmark_fidelity of outputs vs the source keypoints, plus the detector's share and error
    on the real images of the output domain (how well it can do there at all)."""
    result, detections = landmark_fidelity(outputs_u8, source["points"], source["point_mask"],
                                           detector, progress, "detect outputs")
    ref, _ = landmark_fidelity(to_uint8(real["image"]), real["points"], real["point_mask"],
                               detector, progress, "detect real")
    result[ref_name] = {k: ref[k] for k in ("detected_share", "mean_error")}
    return result, detections
