"""The landmark layer: a one-channel face sketch rendered in-graph from the five stored keypoints.

Rendering (vectorised TensorFlow, no `py_function`, works on one face or a batch; a short
per-pixel chain of elementwise ops, which XLA compiles to one loop with no intermediate images):

* **Background is exactly 0** (in the [-1, 1] scale of the model inputs; 127 as uint8, see
  `to_uint8`). A layer that is mostly -1 drives the weights to explode, so grey is "nothing here".
* **Each point type is a Gaussian blob with its own signed peak**, so the network can tell the
  points apart without extra channels::

      left_eye +1.0   right_eye +0.75   nose +0.5   mouth -0.75   chin -1.0

  "left" is the image's left (smaller x), as in the Face contract; a horizontal flip therefore
  swaps which blob is the left eye (the augmentation swaps the points, and the renderer just draws
  them). Blobs are Gaussians lowered to reach 0 at 3 sigma and cut there, so the background
  stays exactly 0 and the edge is smooth.
* **Thin dark lines (-0.4) join the points like a face sketch**: eye-eye, each eye-nose,
  nose-mouth, mouth-chin and each eye-chin (a coarse jaw outline, which is what the original
  work's face-outline sketch gave the generator). A line is the same truncated Gaussian of the
  distance to its segment (round ends; where lines meet, the nearest one counts, no sums), the
  exact look of the straightforward NumPy renderer in benchmarks/input_pipeline.py. Near a point
  the lines fade out under its blob, so the value at a point is exactly its peak.
* **Missing points are not drawn**, and neither is any line with a missing end.

Coordinates are normalised to [0, 1] over the crop with pixel centres at (i + 0.5) / size (the
convention of `tf.image.resize` and of `records.normalise_points`), so a flip maps x to 1 - x and
a resize needs no half-pixel correction.
"""
from __future__ import annotations

from typing import Dict, Sequence, Tuple

import numpy as np
import tensorflow as tf

from translate.faces.schema import POINT_NAMES

# Signed peak of each point type, in POINT_NAMES order (left_eye, right_eye, nose, mouth, chin).
POINT_VALUES: Tuple[float, ...] = (1.0, 0.75, 0.5, -0.75, -1.0)
LINE_VALUE = -0.4
# Segments of the sketch, as indices into POINT_NAMES.
_I = {n: i for i, n in enumerate(POINT_NAMES)}
SEGMENTS: Tuple[Tuple[int, int], ...] = (
    (_I["left_eye"], _I["right_eye"]),
    (_I["left_eye"], _I["nose"]),
    (_I["right_eye"], _I["nose"]),
    (_I["nose"], _I["mouth"]),
    (_I["mouth"], _I["chin"]),
    (_I["left_eye"], _I["chin"]),
    (_I["right_eye"], _I["chin"]),
)
# Index permutation that swaps left and right eye (used by horizontal flips).
FLIP_POINT_ORDER: Tuple[int, ...] = (1, 0, 2, 3, 4)

POINT_SIGMA = 0.02  # blob sigma as a fraction of the layer size (5 px at 256)
LINE_SIGMA = 0.007  # line half-width sigma as a fraction of the size (1.8 px at 256)
MIN_SIGMA_PX = 0.7  # floor in pixels, so small layers (64 px) still show thin lines
TRUNCATE = 3.0  # blobs and lines are cut at this many sigmas: exact-0 background
_FAR = 1e9  # squared distance (px^2) standing in for "no segment here"
_SEG_ENDS = np.asarray(SEGMENTS, np.int32)  # [7, 2]


def sigmas_px(size: int, point_sigma: float = POINT_SIGMA, line_sigma: float = LINE_SIGMA) -> Tuple[float, float]:
    """(point sigma, line sigma) in pixels for a layer of `size` pixels."""
    return max(point_sigma * size, MIN_SIGMA_PX), max(line_sigma * size, MIN_SIGMA_PX)


def render(points, mask, size: int, point_sigma: float = POINT_SIGMA, line_sigma: float = LINE_SIGMA,
           lines: bool = True) -> tf.Tensor:
    """Renders landmark layers (a graph function: fast eagerly, no XLA compile; the tf.data
    pipelines compile `render_graph` with XLA instead, see translate/datasets/pipelines.py).

    Args:
      points: float [..., 5, 2] normalised (x, y) in POINT_NAMES order.
      mask: [..., 5] presence (bool or 0/1); absent points and their lines are not drawn.
      size: output side in pixels (static).
    Returns:
      float32 [..., size, size, 1] in [-1, 1], background exactly 0.
    """
    points = tf.convert_to_tensor(points, tf.float32)
    mask = tf.cast(tf.convert_to_tensor(mask), tf.float32)
    return _render_fn(points, mask, size, float(point_sigma), float(line_sigma), bool(lines))


def render_graph(points, mask, size: int, point_sigma: float = POINT_SIGMA,
                 line_sigma: float = LINE_SIGMA, lines: bool = True) -> tf.Tensor:
    """`render` as plain TF ops, for callers that fuse it into their own XLA kernel.

    Every pixel's value is a short elementwise chain (5 separable blobs, 7 segment distances), so
    under XLA it is one loop over the pixels with no intermediate images; run op by op (no XLA)
    it would write a dozen [..., S, S] temporaries, several times slower.
    """
    points = tf.convert_to_tensor(points, tf.float32)
    mask = tf.cast(tf.convert_to_tensor(mask), tf.float32)
    sp, sl = sigmas_px(size, point_sigma, line_sigma)
    c = np.arange(size, dtype=np.float32) + 0.5  # pixel centres, in pixels
    p = tf.where(mask[..., None] > 0, points * float(size), 0.0)  # [..., 5, 2]; absent: 0, never NaN
    # Blobs: separable truncated Gaussians, gy[k, y] * gx[k, x] summed over the points.
    g = _gauss2(tf.square(c - p[..., None]), sp)  # [..., 5, 2, S]
    gx = tf.unstack(g[..., 0, None, :], num=5, axis=-3)  # 5 x [..., 1, S(x)]
    gy = tf.unstack((g[..., 1, :] * mask[..., None])[..., None], num=5, axis=-3)  # 5 x [..., S(y), 1]
    blobs, cover = 0.0, 0.0
    for amp, bx, by in zip(POINT_VALUES, gx, gy):
        blob = by * bx  # [..., S(y), S(x)]
        blobs, cover = blobs + amp * blob, cover + blob
    out = blobs
    if lines:
        # Per segment (a, b): start, direction, 1 / squared length, both ends present; each as
        # 7 tensors of shape [..., 1, 1] (one unstack, few graph ops).
        ends = tf.gather(p, _SEG_ENDS, axis=-2)  # [..., 7, 2 (a, b), 2 (x, y)]
        start, v = ends[..., 0, :], ends[..., 1, :] - ends[..., 0, :]
        inv = 1.0 / tf.maximum(tf.reduce_sum(tf.square(v), -1), 1e-6)
        both = tf.reduce_prod(tf.gather(mask, _SEG_ENDS, axis=-1), -1)
        per_seg = tf.stack([start[..., 0], start[..., 1], v[..., 0], v[..., 1], inv, both], -1)
        x, y = c[None, :], c[:, None]
        d2 = None  # squared distance to the nearest segment
        for seg in tf.unstack(per_seg[..., None, None, :], num=len(SEGMENTS), axis=-4):
            ax, ay, vx, vy, iv, present = tf.unstack(seg, num=6, axis=-1)
            dx, dy = x - ax, y - ay
            t = tf.clip_by_value((dx * vx + dy * vy) * iv, 0.0, 1.0)
            e2 = tf.where(present > 0, tf.square(dx - t * vx) + tf.square(dy - t * vy), _FAR)
            d2 = e2 if d2 is None else tf.minimum(d2, e2)
        # Near a point the line fades out under its blob, so the value at a point is its peak.
        out = blobs + LINE_VALUE * _gauss2(d2, sl) * (1.0 - tf.minimum(cover, 1.0))
    return tf.clip_by_value(out, -1.0, 1.0)[..., None]


_render_fn = tf.function(render_graph, reduce_retracing=True)
_E3 = float(np.exp(-0.5 * TRUNCATE ** 2))


def _gauss2(d2, s):
    """Gaussian of the squared distance d2 (pixels^2), sigma s, lowered by its value at TRUNCATE
    sigmas and clipped at 0: peak 1, smooth, and exactly 0 beyond TRUNCATE sigmas (so the
    background is exactly 0)."""
    return tf.nn.relu(tf.exp(d2 * (-0.5 / (s * s))) - _E3) * (1.0 / (1.0 - _E3))


def to_uint8(layer) -> np.ndarray:
    """Maps a layer in [-1, 1] to uint8 with background 127 (value = (u8 - 127) / 127)."""
    arr = np.asarray(layer, dtype=np.float32)
    return np.clip(np.round(127.0 + 127.0 * arr), 0, 254).astype(np.uint8)


def flip_points(points, mask):
    """Horizontal flip of normalised points: x -> 1 - x, and left/right eye swap names."""
    points = tf.convert_to_tensor(points, tf.float32)
    flipped = tf.stack([1.0 - points[..., 0], points[..., 1]], axis=-1)
    order = list(FLIP_POINT_ORDER)
    return tf.gather(flipped, order, axis=-2), tf.gather(mask, order, axis=-1)


def points_from_dict(points: Dict[str, Sequence[float]], size: float) -> Tuple[np.ndarray, np.ndarray]:
    """Crop-pixel points (dict, pixel centres at integers) -> ([5, 2] normalised, [5] mask)."""
    arr = np.zeros((len(POINT_NAMES), 2), np.float32)
    m = np.zeros((len(POINT_NAMES),), np.float32)
    for i, name in enumerate(POINT_NAMES):
        if name in points:
            arr[i] = [(points[name][0] + 0.5) / size, (points[name][1] + 0.5) / size]
            m[i] = 1.0
    return arr, m
