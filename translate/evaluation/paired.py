"""Evaluation of a paired run (pix2pix: conditioning input -> anime face) on one split of a
face-record dataset. For a run whose networks are:

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
"""
from __future__ import annotations

import math
from typing import Optional, Tuple

import numpy as np
import tensorflow as tf

from translate.datasets import pipelines as data, landmarks, records
from translate.faces.colors import estimate_colors
from translate.faces.schema import COLOR_NAMES, POINT_NAMES
from translate.evaluation.common import (Detector, EvalConfig, EvalError, MEMO_SIZE,
    downsample, fidelity_with_reference, landmark_fidelity, mean, progress_bar, read_examples,
    rms_distances, run_network, scale_points, to_uint8)


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
               "scale": lambda p, m: scale_points(p, m, cfg.scale)}
    l1, psnr, ssim = [], [], []
    outputs, requested = [], []
    shifted_out = []
    sens = {k: {"out": [], "layer": [], "move": []} for k in perturb}
    lo = 0
    batches = progress_bar(_pix2pix_pairs(cfg, condition, s), math.ceil(n / cfg.batch_size),
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
    metrics = {"l1": mean(l1), "psnr": mean(psnr), "ssim": mean(ssim), "num_examples": n}
    skipped = {}

    sensitivity = {}
    for name, v in sens.items():
        out_c, layer_c, move = (float(np.mean(v[k])) for k in ("out", "layer", "move"))
        sensitivity[name] = {"output_change": out_c, "layer_change": layer_c, "keypoint_move": move,
                             "output_change_per_unit_move": out_c / move if move else None,
                             "relative_to_layer": out_c / layer_c if layer_c else None}
    sensitivity["output_change_per_unit_move"] = mean(
        [sensitivity[k]["output_change_per_unit_move"] for k in perturb])
    sensitivity["relative_to_layer"] = mean([sensitivity[k]["relative_to_layer"] for k in perturb])
    metrics["keypoint_sensitivity"] = sensitivity

    detections = [None] * n
    if detector is not None:
        metrics["keypoint_fidelity"], detections = fidelity_with_reference(
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
        sensitivity["eye_follow"] = mean(follow)
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
        return {"mean_rgb_distance": mean([v for vs in per_name.values() for v in vs]),
                "per_color": {k: mean(v) for k, v in per_name.items()},
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
    out = downsample(outputs_u8.astype(np.float32) / 127.5 - 1.0, MEMO_SIZE)
    tgt = downsample(targets, MEMO_SIZE)
    own = np.sqrt(((out - tgt) ** 2).mean(1))
    try:
        info = records.read_info(cfg.dataset_dir, task="pix2pix")
        records.split_shards(cfg.dataset_dir, info, cfg.train_split, "anime")
    except records.DatasetError as e:
        return None, f"no training targets to compare with ({e})"

    def train_batches(desc):
        ds, count = data.examples(cfg.dataset_dir, cfg.train_split, "anime", info=info,
                                  image_size=s, shuffle_buffer=1, verify=False)
        batches = ds.map(lambda ex: ex["image"]).batch(64)
        for imgs in progress_bar(batches, math.ceil(count / 64), desc, cfg.progress):
            imgs = imgs.numpy()
            yield imgs, downsample(imgs, MEMO_SIZE)

    rows = np.arange(len(out))
    best, tgt_best = np.full(len(out), np.inf), np.full(len(out), np.inf)
    best_img = np.zeros([len(out), s, s, 3], np.uint8)
    total, count = 0.0, 0
    for imgs, small in train_batches("memorisation batches"):
        d = rms_distances(out, small)
        j = d.argmin(1)
        better = d[rows, j] < best
        best = np.where(better, d[rows, j], best)
        best_img[better] = to_uint8(imgs[j[better]])
        tgt_best = np.minimum(tgt_best, rms_distances(tgt, small).min(1))
        total, count = total + small.sum(0), count + len(small)
    mean_img = (total / count)[None]
    mean_own = np.sqrt(((mean_img - tgt) ** 2).mean(1))
    mean_train = min(rms_distances(mean_img, small).min() for _, small in
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
