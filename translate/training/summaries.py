"""TensorBoard image grids for translation runs."""
from __future__ import annotations

import tensorflow as tf


def pix2pix_grid(condition: tf.Tensor, output: tf.Tensor, target: tf.Tensor) -> tf.Tensor:
    """One picture [1, B*S, 3*S, 3] in [0, 1]: a row per example, landmark layer | output | target.

    The landmark layer is the condition's first channel (colour planes and noise are not shown).
    """
    layer = tf.tile(condition[..., :1], [1, 1, 1, 3])
    rows = tf.concat([layer, output[..., :3], target[..., :3]], axis=2)  # [B, S, 3S, 3]
    grid = tf.reshape(rows, [1, -1, rows.shape[2], 3])  # stack the rows vertically
    return tf.clip_by_value((grid + 1.0) / 2.0, 0.0, 1.0)
