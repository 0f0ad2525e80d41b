"""The landmark layer: a one-channel face sketch rendered in-graph from the five stored keypoints.

Rendering (vectorised TensorFlow, no `py_function`, works on one face or a batch):

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
  work's face-outline sketch gave the generator). Near a point the lines fade out under its blob,
  so the value at a point is exactly its peak.
* **Missing points are not drawn**, and neither is any line with a missing end.

Coordinates are normalised to [0, 1] over the crop with pixel centres at (i + 0.5) / size (the
convention of `tf.image.resize` and of `records.normalise_points`), so a flip maps x to 1 - x and
a resize needs no half-pixel correction.
"""
from __future__ import annotations

import functools
from typing import Dict, Optional, Sequence, Tuple

import numpy as np
import tensorflow as tf

from translate.faces import POINT_NAMES

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
LINES_HALF_RES_FROM = 256  # layers at least this big draw their lines at half resolution
MIN_SIGMA_PX = 0.7  # floor in pixels, so small layers (64 px) still show thin lines
TRUNCATE = 3.0  # blobs and lines are cut at this many sigmas: exact-0 background


def _samples(size: int, sl: float) -> int:
    """Samples per sketch segment: spacing stays under 1.5 line sigmas (ripple < 0.1 %) for
    segments up to 0.8 of the layer size, and under 2 sigmas (ripple ~1 %) up to 1.07."""
    return max(8, int(np.ceil(0.8 * size / (1.5 * sl))) + 1)


def sigmas_px(size: int, point_sigma: float = POINT_SIGMA, line_sigma: float = LINE_SIGMA) -> Tuple[float, float]:
    """(point sigma, line sigma) in pixels for a layer of `size` pixels."""
    return max(point_sigma * size, MIN_SIGMA_PX), max(line_sigma * size, MIN_SIGMA_PX)


def render(points, mask, size: int, point_sigma: float = POINT_SIGMA, line_sigma: float = LINE_SIGMA,
           lines: bool = True, half_res_lines: Optional[bool] = None) -> tf.Tensor:
    """Renders landmark layers.

    Args:
      points: float [..., 5, 2] normalised (x, y) in POINT_NAMES order.
      mask: [..., 5] presence (bool or 0/1); absent points and their lines are not drawn.
      size: output side in pixels (static).
      half_res_lines: draw the lines at half resolution and upsample them; default: for layers
        of LINES_HALF_RES_FROM pixels or more.
    Returns:
      float32 [..., size, size, 1] in [-1, 1], background exactly 0.
    """
    points = tf.convert_to_tensor(points, tf.float32)
    mask = tf.cast(tf.convert_to_tensor(mask), tf.float32)
    sp, sl = sigmas_px(size, point_sigma, line_sigma)
    c = np.arange(size, dtype=np.float32) + 0.5  # pixel centres, in pixels

    # Blobs: separable truncated Gaussians; the sum over points of gy[k, y] * gx[k, x] * amp[k]
    # is a matmul [S, 5] x [5, S], so no [5, S, S] tensor is ever built. (Few, larger ops: in a
    # tf.data map the per-op overhead is a large part of the cost.)
    g = _gauss(c - points[..., None] * float(size), sp)  # [..., 5, 2, S]
    gx, gy = g[..., 0, :], g[..., 1, :] * mask[..., None]
    blobs = tf.matmul(gy * _AMP, gx, transpose_a=True)  # [..., S(y), S(x)]
    out = blobs
    if lines:
        cover = tf.minimum(tf.matmul(gy, gx, transpose_a=True), 1.0)
        # Large layers draw the lines at half resolution and upsample them (bilinear): 8x less
        # work for the same look (small max difference at 256 px, see tests).
        half = size >= LINES_HALF_RES_FROM if half_res_lines is None else half_res_lines
        ls = size // 2 if half else size
        line = _render_lines(points, mask, ls, sl / 2.0 if half else sl)
        if half:
            line = tf.image.resize(line[..., None], [size, size])[..., 0]
        out = blobs + line * ((cover - 1.0) * -LINE_VALUE)
    return tf.clip_by_value(out, -1.0, 1.0)[..., None]


_E3 = float(np.exp(-0.5 * TRUNCATE ** 2))
_AMP = np.asarray(POINT_VALUES, np.float32)[:, None]


def _gauss(d, s):
    """Gaussian of d (pixels), sigma s, lowered by its value at TRUNCATE sigmas and clipped at 0:
    peak 1, smooth, and exactly 0 beyond TRUNCATE sigmas (so the background is exactly 0)."""
    return tf.nn.relu(tf.exp(tf.square(d) * (-0.5 / (s * s))) - _E3) * (1.0 / (1.0 - _E3))


@functools.lru_cache(maxsize=None)
def _line_matrices(n: int):
    """Constant matrices for n samples per segment: interpolation [L*n, 5] (samples = W @ points),
    differences [L, 5] (segment vectors), presence [5, L] and repetition [L, L*n]."""
    nl = len(SEGMENTS)
    t = np.linspace(0.0, 1.0, n, dtype=np.float32)
    interp = np.zeros((nl * n, 5), np.float32)
    diff = np.zeros((nl, 5), np.float32)
    both = np.zeros((5, nl), np.float32)
    rep = np.zeros((nl, nl * n), np.float32)
    for k, (a, b) in enumerate(SEGMENTS):
        interp[k * n:(k + 1) * n, a] += 1.0 - t
        interp[k * n:(k + 1) * n, b] += t
        diff[k, a], diff[k, b] = -1.0, 1.0
        both[a, k] += 1.0
        both[b, k] += 1.0
        rep[k, k * n:(k + 1) * n] = 1.0
    return interp, diff, both, rep


def _render_lines(points, mask, size: int, sl: float) -> tf.Tensor:
    """Sketch lines, [..., size, size] in [0, 1]; `sl` is the line sigma in pixels of `size`.

    Each segment is a row of n small truncated Gaussians spaced <= 1.5 sigma apart, weighted so
    that their sum has a cross profile of peak 1. The sum over all samples of gy[n, y] * gx[n, x]
    is one matmul, [S, N] x [N, S]: far cheaper than a distance field per segment.
    """
    n = _samples(size, sl)
    interp, diff, both, rep = _line_matrices(n)
    c = np.arange(size, dtype=np.float32) + 0.5
    p = points * float(size)  # [..., 5, 2]
    q = tf.matmul(interp, p)  # [..., L*n, 2] sample positions
    seg_len = tf.norm(tf.matmul(diff, p), axis=-1)  # [..., L]
    present = tf.nn.relu(tf.matmul(mask[..., None, :], both) - 1.0)[..., 0, :]  # 1 iff both ends
    weight = tf.matmul((present * seg_len)[..., None, :], rep)[..., 0, :]  # [..., L*n]
    g = _gauss(c - q[..., None], sl)  # [..., L*n, 2, S]
    lx = g[..., 0, :] * (weight[..., None] * (1.0 / ((n - 1) * sl * float(np.sqrt(2.0 * np.pi)))))
    return tf.minimum(tf.matmul(g[..., 1, :], lx, transpose_a=True), 1.0)  # [..., S(y), S(x)]


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
