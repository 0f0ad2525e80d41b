"""Evaluation of an unpaired run on one split of a face-record dataset. For a run whose
networks are:

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

import math
from typing import Callable, Optional, Tuple

import numpy as np

from translate.datasets import landmarks
from translate.evaluation.common import (Detector, EvalConfig, batch_ranges, fidelity_with_reference,
    mean, progress_bar, read_examples, run_network, to_uint8)


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
        for b, (lo, hi) in enumerate(progress_bar(batch_ranges(n, cfg.batch_size),
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
        return fakes, np.concatenate(recs), mean(l1), mean(layer_l1), mean(layer_cyc)

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
        metrics["landmark_fidelity"], _ = fidelity_with_reference(
            fb_u8, photo, anime, "reference_real_anime", detector, cfg.progress)
    else:
        skipped["landmark_fidelity"] = "no anime face detector"

    if features is not None:
        kw = dict(num_subsets=cfg.kid_subsets, subset_size=cfg.kid_subset_size, seed=cfg.seed)
        from translate.evaluation import fid
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
