"""Evaluation of trained translators on one split of a face-record dataset: metrics as a JSON
dict, image grids and one comparison table as an HTML page.

Which evaluation runs follows the run's networks (from `translate.loading`):

* ``generator`` (pix2pix, conditioning input -> anime face):
  - L1, PSNR and SSIM against the targets (PSNR/SSIM on [0, 1]);
  - keypoint fidelity: the anime face detector on the outputs; the share detected and the mean
    distance of the detected points to the input keypoints over the inter-ocular distance (the
    same on the real targets, as the detector's own reference);
  - colour fidelity (colour conditions): `estimate_colors` on the outputs at the input keypoints
    (and at the detected ones) vs the requested colours read back from the input planes, mean
    RGB distance in 0-255 units (the targets' distance is the estimator's floor);
  - memorisation: for each output, the distance (RMS, [0, 1], at <= 64 px) to its own target and
    to the nearest TRAINING target; the share of outputs closer to some training target than to
    their own, and the mean ratio nearest-training / own (~0 for a net that recalls training
    pictures), next to the same numbers for the mean training image as every output (blur, not
    recall, gets a model near that reference);
  - keypoint sensitivity: the input keypoints shifted and scaled, the layer re-rendered, and the
    mean |output change| per unit of keypoint move (normalised coordinates) and relative to the
    layer's own change; with the same dropout masks, a net that ignores keypoints scores exactly
    0. With a detector, whether the detected output eyes follow the shift (1 = they move as far
    as the keypoints, 0 = they stay).
  Dropout stays on at inference (InferenceDropout): masks are seeded per batch from `seed`, so an
  evaluation is repeatable and base and perturbed passes see the same masks.

* ``generator_ab`` + ``generator_ba`` (CycleGAN, UGATIT; A = photo, B = anime):
  - FID / KID of photo->anime outputs vs the split's real anime (and anime->photo vs the photos,
    and photos vs anime as the do-nothing reference) from InceptionV3 features, when Inception
    weights are given (otherwise listed under "skipped");
  - landmark fidelity: the anime face detected in each output vs the source photo's keypoints;
  - cycle reconstruction L1 (A->B->A and B->A->B, [-1, 1] units as in training);
  - for generators that also output the landmark layer: its L1 against the input layer, after one
    pass and after the cycle.
  With a landmark channel, generators get RGB + the source layer; the cycle maps back with the
  layer the generator output (landmark_output) or else the source layer, as training does.
"""
from __future__ import annotations

import dataclasses
import html
import json
import math
import os
from typing import Callable, Dict, List, Optional, Sequence, Tuple

import numpy as np
import tensorflow as tf

from translate import data, landmarks, records
from translate.colors import estimate_colors
from translate.faces import COLOR_NAMES, POINT_NAMES

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
    from translate.detect import AnimeFaceDetector

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


def _progress(it, total: int, desc: str, enabled: bool):
    if not enabled:
        return it
    from tqdm import tqdm
    return tqdm(it, total=total, desc=desc, unit="batch" if "batch" in desc else "img", leave=False)


def read_examples(dataset_dir: str, split: str, domain: str, image_size: int, task: str,
                  max_examples: int = 0) -> Dict[str, np.ndarray]:
    """A split's examples in stored order, without augmentation: image [N, S, S, 3] in [-1, 1],
    points [N, 5, 2] normalised, point_mask [N, 5], colors [N, 4, 3] in [0, 1], color_mask."""
    info = records.read_info(dataset_dir, task=task)
    ds, _ = data._examples(dataset_dir, split, domain, info, image_size, False, 0, False, 1, False,
                           None, True, data.AUTOTUNE)
    if max_examples:
        ds = ds.take(max_examples)
    keys = ("image", "points", "point_mask", "colors", "color_mask")
    out: Dict[str, list] = {k: [] for k in keys}
    for ex in ds.batch(64):
        for k in keys:
            out[k].append(ex[k].numpy())
    return {k: np.concatenate(v) for k, v in out.items()}


def _batches(n: int, size: int):
    return [(i, min(i + size, n)) for i in range(0, n, size)]


def _downsample(images, size: int) -> np.ndarray:
    """[N, S, S, 3] in [-1, 1] -> [N, s*s*3] in [0, 1] at s = min(size, S) (area-averaged)."""
    images = tf.convert_to_tensor(images, tf.float32)
    s = min(size, int(images.shape[1]))
    small = tf.image.resize(images, [s, s], antialias=True) if s != images.shape[1] else images
    return ((tf.reshape(small, [images.shape[0], -1]).numpy() + 1.0) / 2.0).astype(np.float64)


def _rms_distances(a: np.ndarray, b: np.ndarray) -> np.ndarray:
    """RMS distance between rows of a [N, D] and b [M, D] -> [N, M]."""
    d2 = (a * a).sum(1)[:, None] + (b * b).sum(1)[None, :] - 2.0 * a @ b.T
    return np.sqrt(np.clip(d2, 0.0, None) / a.shape[1])


def _mean(values) -> Optional[float]:
    values = [v for v in values if v is not None and np.isfinite(v)]
    return float(np.mean(values)) if values else None


def _scale_points(points, mask, factor):
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
    for img, pts, m in _progress(zip(images_u8, points, mask), len(images_u8), desc, progress):
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
              "mean_error": _mean(per_image),
              "per_point": {k: _mean(v) for k, v in errors.items()}}
    return result, found


def _fidelity_with_reference(outputs_u8, source: dict, real: dict, ref_name: str,
                             detector: Detector, progress: bool):
    """landmark_fidelity of outputs vs the source keypoints, plus the detector's share and error
    on the real images of the output domain (how well it can do there at all)."""
    result, detections = landmark_fidelity(outputs_u8, source["points"], source["point_mask"],
                                           detector, progress, "detect outputs")
    ref, _ = landmark_fidelity(to_uint8(real["image"]), real["points"], real["point_mask"],
                               detector, progress, "detect real")
    result[ref_name] = {k: ref[k] for k in ("detected_share", "mean_error")}
    return result, detections


# ----------------------------------------------------------------------------- pix2pix
def _pix2pix_pairs(cfg: EvalConfig, condition: str, image_size: int):
    """(inputs, targets) numpy batches in stored order, as training built them (same condition
    planes; jitter and noise seeded by cfg.seed)."""
    ds = data.pix2pix_dataset(cfg.dataset_dir, cfg.split, condition, image_size, augment=False,
                              batch_size=1, seed=cfg.seed, shuffle=False)
    if cfg.max_examples:
        ds = ds.take(cfg.max_examples)
    ds = ds.unbatch().batch(cfg.batch_size)
    for inputs, target in ds:
        yield inputs.numpy(), target.numpy()


def evaluate_pix2pix(translator, cfg: EvalConfig, detector: Optional[Detector] = None,
                     keep_images: int = 8) -> Tuple[dict, dict]:
    """(metrics, images for the page) of a pix2pix-style generator on cfg.split."""
    gen = translator.networks["generator"]
    s = translator.image_size
    condition = translator.flags.get("condition", "keypoints")
    raw = read_examples(cfg.dataset_dir, cfg.split, "anime", s, "pix2pix", cfg.max_examples)
    n = len(raw["image"])
    perturb = {"shift": lambda p, m: p + cfg.shift,
               "scale": lambda p, m: _scale_points(p, m, cfg.scale)}
    l1, psnr, ssim = [], [], []
    outputs, requested = [], []
    shifted_out = []
    sens = {k: {"out": [], "layer": [], "move": []} for k in perturb}
    lo = 0
    batches = _progress(_pix2pix_pairs(cfg, condition, s), math.ceil(n / cfg.batch_size),
                        "pix2pix batches", cfg.progress)
    for b, (inputs, target) in enumerate(batches):
        hi = lo + len(inputs)
        if not np.allclose(target, raw["image"][lo:hi], atol=1e-5):
            raise EvalError(f"{cfg.dataset_dir}: examples came back in a different order")
        out = run_network(gen, inputs, cfg.seed, b)[..., :3]
        out01, tgt01 = (out + 1.0) / 2.0, (target + 1.0) / 2.0
        l1.extend(np.abs(out - target).mean((1, 2, 3)))
        psnr.extend(tf.image.psnr(out01, tgt01, 1.0).numpy())
        ssim.extend(tf.image.ssim(tf.constant(out01), tf.constant(tgt01), 1.0).numpy())
        outputs.append(to_uint8(out))
        requested.append((inputs[:, 0, 0, 1:13].reshape(-1, 4, 3) + 1.0) / 2.0
                         if inputs.shape[-1] >= 13 else np.zeros([len(inputs), 4, 3]))
        pts, mask = raw["points"][lo:hi], raw["point_mask"][lo:hi]
        layer0 = inputs[..., :1]
        for name, fn in perturb.items():
            moved = fn(pts, mask).astype(np.float32)
            layer = landmarks.render(moved, mask, s).numpy()
            out2 = run_network(gen, np.concatenate([layer, inputs[..., 1:]], -1), cfg.seed, b)[..., :3]
            move = (np.linalg.norm(moved - pts, axis=-1) * mask).sum(-1) / np.maximum(mask.sum(-1), 1)
            sens[name]["out"].extend(np.abs(out2 - out).mean((1, 2, 3)) / 2.0)  # [0, 1] units
            sens[name]["layer"].extend(np.abs(layer - layer0).mean((1, 2, 3)) / 2.0)
            sens[name]["move"].extend(move)
            if name == "shift":
                shifted_out.append(to_uint8(out2))
        lo = hi
    if lo != n:
        raise EvalError(f"{cfg.dataset_dir}: {lo} conditioning inputs for {n} examples")
    outputs_u8 = np.concatenate(outputs)
    metrics = {"l1": _mean(l1), "psnr": _mean(psnr), "ssim": _mean(ssim), "num_examples": n}
    skipped = {}

    sensitivity = {}
    for name, v in sens.items():
        out_c, layer_c, move = (float(np.mean(v[k])) for k in ("out", "layer", "move"))
        sensitivity[name] = {"output_change": out_c, "layer_change": layer_c, "keypoint_move": move,
                             "output_change_per_unit_move": out_c / move if move else None,
                             "relative_to_layer": out_c / layer_c if layer_c else None}
    sensitivity["output_change_per_unit_move"] = _mean(
        [sensitivity[k]["output_change_per_unit_move"] for k in perturb])
    sensitivity["relative_to_layer"] = _mean([sensitivity[k]["relative_to_layer"] for k in perturb])
    metrics["keypoint_sensitivity"] = sensitivity

    detections = [None] * n
    if detector is not None:
        metrics["keypoint_fidelity"], detections = _fidelity_with_reference(
            outputs_u8, raw, raw, "reference_targets", detector, cfg.progress)
        # eyes follow the shift: detected eye displacement along the shift, over the shift
        _, moved_det = landmark_fidelity(np.concatenate(shifted_out), raw["points"] + cfg.shift,
                                         raw["point_mask"], detector, cfg.progress, "detect shifted")
        shift_px = np.array([cfg.shift, cfg.shift]) * s
        follow = []
        for a, b in zip(detections, moved_det):
            if a is not None and b is not None and all(k in a and k in b for k in ("left_eye", "right_eye")):
                disp = np.mean([np.subtract(b[k], a[k]) for k in ("left_eye", "right_eye")], 0)
                follow.append(float(disp @ shift_px / (shift_px @ shift_px)))
        sensitivity["eye_follow"] = _mean(follow)
        sensitivity["eye_follow_pairs"] = len(follow)
    else:
        skipped["keypoint_fidelity"] = "no anime face detector"
        skipped["eye_follow"] = "no anime face detector"

    if condition in ("keypoints_colors", "keypoints_colors_noise"):
        metrics["color_fidelity"] = _color_fidelity(outputs_u8, to_uint8(raw["image"]), raw,
                                                    np.concatenate(requested), detections)
    else:
        skipped["color_fidelity"] = f"condition {condition!r} has no colours"

    memo, nearest = _memorisation(outputs_u8, raw["image"], cfg, s)
    if memo is None:
        skipped["memorisation"] = nearest
        nearest = None
    else:
        metrics["memorisation"] = memo
    metrics["skipped"] = skipped

    k = min(keep_images, n)
    layers = landmarks.render(raw["points"][:k], raw["point_mask"][:k], s).numpy()
    columns = [("landmark layer", np.repeat(landmarks.to_uint8(layers), 3, -1)),
               ("output", outputs_u8[:k]), ("target", to_uint8(raw["image"][:k]))]
    captions = [f"L1 {l1[i]:.3f}" for i in range(k)]
    if nearest is not None:
        columns.append(("nearest training target", nearest["images"][:k]))
        captions = [c + f" · own {memo['distances_own'][i]:.3f} / train {memo['distances_train'][i]:.3f}"
                    for i, c in enumerate(captions)]
        del memo["distances_own"], memo["distances_train"]
    return metrics, {"columns": columns, "captions": captions}


def _color_fidelity(outputs_u8, targets_u8, raw, requested, detections) -> dict:
    """Mean RGB distance (0-255) of estimated output colours to the requested ones."""
    s = outputs_u8.shape[1]

    def distances(images, which):
        per_name = {n: [] for n in COLOR_NAMES}
        for i, img in enumerate(images):
            if which == "input":
                pts = {name: tuple(raw["points"][i, j] * s) for j, name in enumerate(POINT_NAMES)
                       if raw["point_mask"][i, j]}
            else:
                pts = detections[i]
                if pts is None:
                    continue
            got = estimate_colors(img, pts)
            for j, name in enumerate(COLOR_NAMES):
                if raw["color_mask"][i, j] and name in got:
                    want = requested[i, j] * 255.0
                    per_name[name].append(float(np.linalg.norm(np.subtract(got[name], want))))
        return {"mean_rgb_distance": _mean([v for vs in per_name.values() for v in vs]),
                "per_color": {k: _mean(v) for k, v in per_name.items()},
                "count": int(sum(len(v) for v in per_name.values()))}

    result = distances(outputs_u8, "input")
    result["at_detected_keypoints"] = distances(outputs_u8, "detected") if any(
        d is not None for d in detections) else None
    result["reference_targets"] = distances(targets_u8, "input")["mean_rgb_distance"]
    return result


def _memorisation(outputs_u8, targets, cfg: EvalConfig, s: int):
    """(metrics, nearest training targets) or (None, reason).

    Two references put the numbers in context: the test targets' own nearest training target
    (how far the split is from the training set at all), and the MEAN training target used as
    every output (a blurred "average face" is also closer to some training target than to its
    own: a model near that reference is blurry, one far below it recalls training pictures).
    """
    out = _downsample(outputs_u8.astype(np.float32) / 127.5 - 1.0, MEMO_SIZE)
    tgt = _downsample(targets, MEMO_SIZE)
    own = np.sqrt(((out - tgt) ** 2).mean(1))
    try:
        info = records.read_info(cfg.dataset_dir, task="pix2pix")
        records.split_shards(cfg.dataset_dir, info, cfg.train_split, "anime")
    except records.DatasetError as e:
        return None, f"no training targets to compare with ({e})"

    def train_batches(desc):
        ds, count = data._examples(cfg.dataset_dir, cfg.train_split, "anime", info, s, False, 0,
                                   False, 1, False, None, False, data.AUTOTUNE)
        batches = ds.map(lambda ex: ex["image"]).batch(64)
        for imgs in _progress(batches, math.ceil(count / 64), desc, cfg.progress):
            imgs = imgs.numpy()
            yield imgs, _downsample(imgs, MEMO_SIZE)

    rows = np.arange(len(out))
    best, tgt_best = np.full(len(out), np.inf), np.full(len(out), np.inf)
    best_img = np.zeros([len(out), s, s, 3], np.uint8)
    total, count = 0.0, 0
    for imgs, small in train_batches("memorisation batches"):
        d = _rms_distances(out, small)
        j = d.argmin(1)
        better = d[rows, j] < best
        best = np.where(better, d[rows, j], best)
        best_img[better] = to_uint8(imgs[j[better]])
        tgt_best = np.minimum(tgt_best, _rms_distances(tgt, small).min(1))
        total, count = total + small.sum(0), count + len(small)
    mean_img = (total / count)[None]
    mean_own = np.sqrt(((mean_img - tgt) ** 2).mean(1))
    mean_train = min(_rms_distances(mean_img, small).min() for _, small in
                     train_batches("memorisation reference"))
    ratio = best / np.maximum(own, 1e-12)
    return ({"closer_to_train_share": float(np.mean(best < own)),
             "mean_train_to_own_ratio": float(np.mean(ratio)),
             "mean_distance_own": float(own.mean()), "mean_distance_train": float(best.mean()),
             "num_train": int(count),
             "reference_targets_nearest_train": float(tgt_best.mean()),
             "reference_mean_train_image": {
                 "closer_to_train_share": float(np.mean(mean_train < mean_own)),
                 "mean_train_to_own_ratio": float(np.mean(mean_train / np.maximum(mean_own, 1e-12)))},
             "distances_own": own.tolist(), "distances_train": best.tolist()},
            {"images": best_img})


# ----------------------------------------------------------------------------- unpaired
def _channels(model, which: str) -> Optional[int]:
    try:
        shape = model.inputs[0].shape if which == "in" else model.outputs[0].shape
        return int(shape[-1])
    except (AttributeError, IndexError, TypeError, ValueError):
        return None


def evaluate_unpaired(translator, cfg: EvalConfig, detector: Optional[Detector] = None,
                      features: Optional[Callable[[np.ndarray], np.ndarray]] = None,
                      keep_images: int = 8) -> Tuple[dict, dict]:
    """(metrics, images for the page) of A->B / B->A generators (A = photo, B = anime)."""
    g_ab, g_ba = translator.networks["generator_ab"], translator.networks["generator_ba"]
    s = translator.image_size
    flags = translator.flags
    lc = bool(flags.get("landmark_channel", _channels(g_ab, "in") == 4))
    lo_flag = bool(flags.get("landmark_output", _channels(g_ab, "out") == 4))
    photo = read_examples(cfg.dataset_dir, cfg.split, "photo", s, "cyclegan", cfg.max_examples)
    anime = read_examples(cfg.dataset_dir, cfg.split, "anime", s, "cyclegan", cfg.max_examples)

    def with_layer(rgb, ex, lo, hi):
        if not lc:
            return rgb
        layer = landmarks.render(ex["points"][lo:hi], ex["point_mask"][lo:hi], s).numpy()
        return np.concatenate([rgb[..., :3], layer], -1)

    def cycle(ex, first, second, tag):
        fakes, recs, l1, layer_l1, layer_cyc = [], [], [], [], []
        n = len(ex["image"])
        for b, (lo, hi) in enumerate(_progress(_batches(n, cfg.batch_size),
                                               math.ceil(n / cfg.batch_size), f"{tag} batches",
                                               cfg.progress)):
            x = with_layer(ex["image"][lo:hi], ex, lo, hi)
            fake = run_network(first, x, cfg.seed, b)
            # as in training: back with the layer G carried (landmark_output), else the source's
            back = fake if lo_flag and fake.shape[-1] > 3 else with_layer(fake, ex, lo, hi)
            rec = run_network(second, back, cfg.seed, b)
            l1.extend(np.abs(rec[..., :3] - x[..., :3]).mean((1, 2, 3)))
            if lo_flag and lc and fake.shape[-1] > 3:
                layer_l1.extend(np.abs(fake[..., 3:4] - x[..., 3:4]).mean((1, 2, 3)))
                if rec.shape[-1] > 3:
                    layer_cyc.extend(np.abs(rec[..., 3:4] - x[..., 3:4]).mean((1, 2, 3)))
            fakes.append(fake)
            recs.append(to_uint8(rec[..., :3]))
        fakes = np.concatenate(fakes)
        return fakes, np.concatenate(recs), _mean(l1), _mean(layer_l1), _mean(layer_cyc)

    fake_b, rec_a, cyc_a, layer_ab, layer_aba = cycle(photo, g_ab, g_ba, "photo->anime")
    fake_a, rec_b, cyc_b, layer_ba, layer_bab = cycle(anime, g_ba, g_ab, "anime->photo")
    metrics = {"num_photo": len(photo["image"]), "num_anime": len(anime["image"]),
               "landmark_channel": lc, "landmark_output": lo_flag,
               "cycle": {"l1_photo_anime_photo": cyc_a, "l1_anime_photo_anime": cyc_b}}
    skipped = {}
    if lo_flag:
        metrics["landmark_output"] = {"l1_photo_to_anime": layer_ab, "l1_after_cycle": layer_aba,
                                      "l1_anime_to_photo": layer_ba, "l1_anime_cycle": layer_bab,
                                      "note": "landmark layer L1 in [-1, 1] units vs the input layer"}
    else:
        skipped["landmark_output"] = "the generators do not output the landmark layer"

    fb_u8 = to_uint8(fake_b[..., :3])
    if detector is not None:
        metrics["landmark_fidelity"], _ = _fidelity_with_reference(
            fb_u8, photo, anime, "reference_real_anime", detector, cfg.progress)
    else:
        skipped["landmark_fidelity"] = "no anime face detector"

    if features is not None:
        kw = dict(num_subsets=cfg.kid_subsets, subset_size=cfg.kid_subset_size, seed=cfg.seed)
        from translate import fid
        f_anime, f_photo = features(anime["image"]), features(photo["image"])
        if min(len(f_anime), len(f_photo)) < 2:
            skipped["fid_kid"] = "FID/KID need at least 2 images per domain"
        else:
            metrics["fid_kid"] = {
                "photo_to_anime": fid.fid_kid(features(fake_b[..., :3]), f_anime, **kw),
                "anime_to_photo": fid.fid_kid(features(fake_a[..., :3]), f_photo, **kw),
                "reference_photos_vs_anime": fid.fid_kid(f_photo, f_anime, **kw)}
    else:
        skipped["fid_kid"] = "no --inception_weights given"
    metrics["skipped"] = skipped

    k = min(keep_images, len(photo["image"]))
    columns = [("photo", to_uint8(photo["image"][:k]))]
    if lc:
        columns.append(("landmark layer", np.repeat(landmarks.to_uint8(landmarks.render(
            photo["points"][:k], photo["point_mask"][:k], s).numpy()), 3, -1)))
    columns += [("photo → anime", fb_u8[:k]), ("photo → anime → photo", rec_a[:k])]
    if lo_flag and fake_b.shape[-1] > 3:
        columns.append(("output layer", np.repeat(landmarks.to_uint8(fake_b[:k, ..., 3:4]), 3, -1)))
    kb = min(keep_images, len(anime["image"]))
    second = [("anime", to_uint8(anime["image"][:kb])), ("anime → photo", to_uint8(fake_a[:kb, ..., :3])),
              ("anime → photo → anime", rec_b[:kb])]
    return metrics, {"columns": columns, "captions": [""] * k,
                     "extra": {"columns": second, "captions": [""] * kb}}


# ----------------------------------------------------------------------------- runs and page
def family(translator) -> str:
    names = set(translator.networks)
    if "generator" in names:
        return "paired"
    if {"generator_ab", "generator_ba"} <= names:
        return "unpaired"
    raise EvalError(f"{translator.model}: no evaluation for networks {sorted(names)} "
                    "(need 'generator', or 'generator_ab' and 'generator_ba')")


def evaluate_run(translator, cfg: EvalConfig, detector: Optional[Detector] = None,
                 features=None) -> Tuple[dict, dict]:
    """(report dict, page images) of one loaded run."""
    kind = family(translator)
    if kind == "paired":
        metrics, images = evaluate_pix2pix(translator, cfg, detector, cfg.html_examples)
    else:
        metrics, images = evaluate_unpaired(translator, cfg, detector, features, cfg.html_examples)
    report = {"model": translator.model, "kind": kind, "step": translator.step,
              "checkpoint": translator.checkpoint_path, "image_size": translator.image_size,
              "flags": translator.flags, "dataset_dir": cfg.dataset_dir, "split": cfg.split,
              "seed": cfg.seed, "metrics": metrics}
    return report, images


def run_names(train_dirs: Sequence[str]) -> List[str]:
    """Unique short names: the folder names, the whole path where two collide, then a suffix."""
    base = [os.path.basename(os.path.normpath(d)) or "run" for d in train_dirs]
    names = [os.path.normpath(d).replace(os.sep, "_").strip("_") if base.count(b) > 1 else b
             for d, b in zip(train_dirs, base)]
    return [f"{n}_{i}" if names.count(n) > 1 else n for i, n in enumerate(names)]


# (column label, path in the report, format) for the comparison table
TABLE = (
    ("model", ("model",), "{}"),
    ("condition", ("flags", "condition"), "{}"),
    ("landmark ch.", ("flags", "landmark_channel"), "{}"),
    ("layer out", ("flags", "landmark_output"), "{}"),
    ("kp attention", ("flags", "keypoint_attention"), "{}"),
    ("light", ("flags", "light"), "{}"),
    ("step", ("step",), "{}"),
    ("L1", ("metrics", "l1"), "{:.4f}"),
    ("PSNR", ("metrics", "psnr"), "{:.2f}"),
    ("SSIM", ("metrics", "ssim"), "{:.3f}"),
    ("kp detected", ("metrics", "keypoint_fidelity", "detected_share"), "{:.0%}"),
    ("kp error (IOD)", ("metrics", "keypoint_fidelity", "mean_error"), "{:.3f}"),
    ("colour dist.", ("metrics", "color_fidelity", "mean_rgb_distance"), "{:.1f}"),
    ("closer to train", ("metrics", "memorisation", "closer_to_train_share"), "{:.0%}"),
    ("train/own dist.", ("metrics", "memorisation", "mean_train_to_own_ratio"), "{:.2f}"),
    ("(mean image)", ("metrics", "memorisation", "reference_mean_train_image",
                      "mean_train_to_own_ratio"), "{:.2f}"),
    ("kp sensitivity", ("metrics", "keypoint_sensitivity", "output_change_per_unit_move"), "{:.3f}"),
    ("vs layer", ("metrics", "keypoint_sensitivity", "relative_to_layer"), "{:.3f}"),
    ("eyes follow", ("metrics", "keypoint_sensitivity", "eye_follow"), "{:.2f}"),
    ("FID p→a", ("metrics", "fid_kid", "photo_to_anime", "fid"), "{:.1f}"),
    ("KID×100 p→a", ("metrics", "fid_kid", "photo_to_anime", "kid"), "{:.2f}", 100.0),
    ("± std", ("metrics", "fid_kid", "photo_to_anime", "kid_std"), "{:.2f}", 100.0),
    ("FID a→p", ("metrics", "fid_kid", "anime_to_photo", "fid"), "{:.1f}"),
    ("FID photos→anime (ref.)", ("metrics", "fid_kid", "reference_photos_vs_anime", "fid"), "{:.1f}"),
    ("landmarks detected", ("metrics", "landmark_fidelity", "detected_share"), "{:.0%}"),
    ("landmark error (IOD)", ("metrics", "landmark_fidelity", "mean_error"), "{:.3f}"),
    ("cycle L1 p→a→p", ("metrics", "cycle", "l1_photo_anime_photo"), "{:.4f}"),
    ("cycle L1 a→p→a", ("metrics", "cycle", "l1_anime_photo_anime"), "{:.4f}"),
    ("layer L1", ("metrics", "landmark_output", "l1_photo_to_anime"), "{:.4f}"),
)


def _get(report: dict, path):
    v = report
    for k in path:
        if not isinstance(v, dict) or k not in v:
            return None
        v = v[k]
    return v


def comparison_rows(reports: Dict[str, dict]) -> Tuple[List[str], List[List[str]]]:
    """(header, rows) over the columns any run has."""
    cols = [c for c in TABLE if any(_get(r, c[1]) is not None for r in reports.values())]
    header = ["run"] + [c[0] for c in cols]
    rows = []
    for name, r in reports.items():
        row = [name]
        for c in cols:
            v = _get(r, c[1])
            if v is None:
                row.append("–")
                continue
            if len(c) > 3:
                v = v * c[3]
            try:
                row.append(c[2].format(v))
            except (ValueError, TypeError):
                row.append(str(v))
        rows.append(row)
    return header, rows


def write_page(output_dir: str, reports: Dict[str, dict], images: Dict[str, dict]) -> str:
    """index.html: the comparison table, then per run an image grid (PNG files under images/)."""
    parts = ["<!doctype html><meta charset=utf-8><title>Translation evaluation</title>",
             "<style>body{font-family:sans-serif;margin:1em}table{border-collapse:collapse}"
             "td,th{border:1px solid #bbb;padding:2px 6px;font-size:12px;text-align:right}"
             "img{width:128px;image-rendering:pixelated}figure{display:inline-block;margin:2px;"
             "font-size:11px;vertical-align:top}.row{white-space:nowrap}</style>",
             "<h1>Translation evaluation</h1>"]
    header, rows = comparison_rows(reports)
    parts.append("<table><tr>" + "".join(f"<th>{html.escape(h)}</th>" for h in header) + "</tr>")
    for row in rows:
        parts.append("<tr>" + "".join(f"<td>{html.escape(v)}</td>" for v in row) + "</tr>")
    parts.append("</table>")
    from PIL import Image
    for name, imgs in images.items():
        r = reports[name]
        parts.append(f"<h2>{html.escape(name)}</h2><p>{html.escape(r['model'])} · step {r['step']} · "
                     f"{html.escape(r['split'])} split · skipped: "
                     f"{html.escape(json.dumps(r['metrics'].get('skipped', {})))}</p>")
        for part, grid in (("a", imgs), ("b", imgs.get("extra"))):
            if not grid:
                continue
            cols = grid["columns"]
            for i in range(len(cols[0][1])):
                cells = []
                for j, (label, arr) in enumerate(cols):
                    rel = os.path.join("images", name, f"{part}{i:03d}_{j}.png")
                    os.makedirs(os.path.join(output_dir, os.path.dirname(rel)), exist_ok=True)
                    Image.fromarray(np.asarray(arr[i], np.uint8)).save(os.path.join(output_dir, rel))
                    cells.append(f'<figure><img src="{html.escape(rel)}" alt="{html.escape(label)}">'
                                 f"<figcaption>{html.escape(label)}</figcaption></figure>")
                cap = grid["captions"][i] if i < len(grid["captions"]) else ""
                parts.append(f'<div class="row">{"".join(cells)} <small>{html.escape(cap)}</small></div>')
    path = os.path.join(output_dir, "index.html")
    with open(path, "w", encoding="utf-8") as f:
        f.write("\n".join(parts))
    return path


def write_reports(output_dir: str, reports: Dict[str, dict], images: Dict[str, dict]) -> dict:
    """Writes <run>/metrics.json per run, evaluation.json (all runs + the table) and index.html."""
    os.makedirs(output_dir, exist_ok=True)
    for name, r in reports.items():
        os.makedirs(os.path.join(output_dir, name), exist_ok=True)
        _dump(os.path.join(output_dir, name, "metrics.json"), r)
    header, rows = comparison_rows(reports)
    summary = {"runs": reports, "table": {"header": header, "rows": rows}}
    _dump(os.path.join(output_dir, "evaluation.json"), summary)
    page = write_page(output_dir, reports, images)
    return {"json": os.path.join(output_dir, "evaluation.json"), "html": page}


def _dump(path: str, obj) -> None:
    def default(o):
        if isinstance(o, np.generic):
            return o.item()
        if isinstance(o, np.ndarray):
            return o.tolist()
        return str(o)

    tmp = path + ".tmp"
    with open(tmp, "w", encoding="utf-8") as f:
        json.dump(obj, f, indent=1, default=default)
        f.write("\n")
    os.replace(tmp, path)
