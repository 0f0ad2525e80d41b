"""Which tags an image gets, in TensorFlow (tagnet.predicting and the export's `with_labels` run
this same code): each tag passes its threshold, except that rating is one choice (the best rating
tag, whatever its score), MCut replaces the thresholds per image, and a single-label model always
gives its top class. `grouped` turns the choice into per-category outputs.

MCut (as WD taggers do): within a category, sort the image's scores, find the largest gap between
neighbours and cut in its middle. Categories with fewer than two tags keep their thresholds.
"""
from __future__ import annotations

from typing import Dict, Sequence

import numpy as np
import tensorflow as tf

from tagnet.contract import CATEGORIES, RATING


def members(categories: Sequence[str]) -> Dict[str, np.ndarray]:
    """Tag indices of each of CATEGORIES (possibly empty)."""
    cats = np.asarray(list(categories))
    return {c: np.flatnonzero(cats == c).astype(np.int32) for c in CATEGORIES}


def mcut_threshold(scores: tf.Tensor) -> tf.Tensor:
    """[B, n] (n >= 2) -> [B]: the middle of the largest gap between neighbouring sorted scores."""
    s = tf.sort(scores, axis=1, direction="DESCENDING")
    gaps = s[:, :-1] - s[:, 1:]
    i = tf.argmax(gaps, axis=1, output_type=tf.int32)
    hi = tf.gather(s, i, batch_dims=1)
    lo = tf.gather(s, i + 1, batch_dims=1)
    return 0.5 * (hi + lo)


def _top_one(scores: tf.Tensor) -> tf.Tensor:
    return tf.cast(tf.one_hot(tf.argmax(scores, axis=1), tf.shape(scores)[1]), tf.bool)


def select(scores: tf.Tensor, categories: Sequence[str], thresholds, *, mcut: bool = False,
           softmax: bool = False) -> tf.Tensor:
    """scores [B, T], one category and threshold per tag -> bool [B, T] (tags the image gets)."""
    scores = tf.convert_to_tensor(scores, tf.float32)
    thresholds = tf.cast(thresholds, tf.float32)
    groups = members(categories)
    order = np.concatenate([groups[c] for c in CATEGORIES])
    pieces = []
    for c in CATEGORIES:
        idx = groups[c]
        if not len(idx):
            continue
        s = tf.gather(scores, idx, axis=1)
        if c == RATING:
            pieces.append(_top_one(s))
        elif mcut and len(idx) >= 2:
            pieces.append(s >= mcut_threshold(s)[:, None])
        else:
            pieces.append(s >= tf.gather(thresholds, idx)[None])
    picked = tf.gather(tf.concat(pieces, axis=1), np.argsort(order), axis=1)
    if softmax:
        picked = picked | _top_one(scores)
    return picked


def grouped(scores: tf.Tensor, picked: tf.Tensor, tags: Sequence[str],
            categories: Sequence[str]) -> Dict[str, tf.Tensor]:
    """Per category: `<category>_tags` string [B, K] and `<category>_scores` float32 [B, K], the
    picked tags highest first; K is the most any image of the batch got in that category, shorter
    rows are padded with "" and 0."""
    scores = tf.convert_to_tensor(scores, tf.float32)
    batch = tf.shape(scores)[0]
    tags = np.asarray(list(tags), dtype=object)
    out = {}
    for c, idx in members(categories).items():
        if not len(idx):
            out[f"{c}_tags"] = tf.fill(tf.stack([batch, 0]), "")
            out[f"{c}_scores"] = tf.zeros(tf.stack([batch, 0]), tf.float32)
            continue
        s = tf.gather(scores, idx, axis=1)
        p = tf.gather(picked, idx, axis=1)
        values, where = tf.math.top_k(tf.where(p, s, -1.0), k=len(idx))
        width = tf.reduce_max(tf.concat([tf.reduce_sum(tf.cast(p, tf.int32), axis=1), [0]], 0))
        values, where = values[:, :width], where[:, :width]
        keep = values >= 0.0
        names = tf.gather(tf.constant(tags[idx].astype(str).tolist(), tf.string), where)
        out[f"{c}_tags"] = tf.where(keep, names, "")
        out[f"{c}_scores"] = tf.where(keep, values, 0.0)
    return out
