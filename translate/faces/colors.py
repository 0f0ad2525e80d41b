"""Hair, skin and eye colours measured from the pixels around a face's keypoints.

animeface reports colours too, but they are not reproducible: the same image detected twice in a
row can come back with a different hair or eye colour (its internal clustering keeps state between
calls). Colours are conditioning inputs and evaluation targets, so they must be a function of the
image; this module samples them from regions placed in the face's own frame (eye line = x axis,
eye distance = unit), which works for photos and drawings alike:

- eye: the more saturated half of the pixels within 0.12 of each eye point (the iris, not the
  pupil, lashes, sclera or highlights);
- skin: two cheek patches between each eye and the mouth level;
- hair: a band above the eyes (bangs or hairline), and beside the temples when that band is skin.

Each colour is the per-channel median of its region, so a few stray pixels do not move it.
"""
from __future__ import annotations

from typing import Dict, Optional, Tuple

import numpy as np

Color = Tuple[int, int, int]


def _frame(points):
    le, re = np.asarray(points["left_eye"], float), np.asarray(points["right_eye"], float)
    unit = max(np.linalg.norm(re - le), 1e-6)
    along = (re - le) / unit
    down = np.array([-along[1], along[0]])
    return (le + re) / 2, along * unit, down * unit


def _sample(image: np.ndarray, center, along, down, half_u: float, half_v: float, step: int = 9) -> np.ndarray:
    """Pixels of a rectangle in face coordinates (half-sizes in eye-distance units)."""
    u, v = np.meshgrid(np.linspace(-half_u, half_u, step), np.linspace(-half_v, half_v, step))
    pts = center[None, :] + u.reshape(-1, 1) * along[None, :] + v.reshape(-1, 1) * down[None, :]
    x, y = np.round(pts[:, 0]).astype(int), np.round(pts[:, 1]).astype(int)
    h, w = image.shape[:2]
    ok = (x >= 0) & (x < w) & (y >= 0) & (y < h)
    return image[y[ok], x[ok]].reshape(-1, 3)


def _median(pixels: np.ndarray) -> Optional[Color]:
    if len(pixels) < 4:
        return None
    return tuple(int(v) for v in np.median(pixels, axis=0))


def _most_colourful(pixels: np.ndarray) -> np.ndarray:
    """The more saturated half of the pixels: the iris, not pupil, lashes, sclera or highlights."""
    if len(pixels) < 8:
        return pixels
    p = pixels.astype(float)
    chroma = p.max(axis=1) - p.min(axis=1)
    return pixels[chroma >= np.median(chroma)]


def _distance(a: Color, b: Color) -> float:
    return float(np.linalg.norm(np.subtract(a, b, dtype=float)))


def estimate_colors(image: np.ndarray, points: Dict[str, tuple]) -> Dict[str, Color]:
    """{hair, skin, left_eye, right_eye} colours; a colour whose region is off the image is missing."""
    if "left_eye" not in points or "right_eye" not in points:
        return {}
    center, along, down = _frame(points)
    colors: Dict[str, Color] = {}
    for name in ("left_eye", "right_eye"):
        c = _median(_most_colourful(_sample(image, np.asarray(points[name], float), along, down, 0.12, 0.12)))
        if c is not None:
            colors[name] = c
    cheeks = np.concatenate([
        _sample(image, center + side * 0.5 * along + 0.55 * down, along, down, 0.1, 0.1)
        for side in (-1.0, 1.0)
    ])
    skin = _median(cheeks)
    if skin is not None:
        colors["skin"] = skin
    hair = _median(_sample(image, center - 0.75 * down, along, down, 0.35, 0.08))
    if hair is not None and skin is not None and _distance(hair, skin) < 40:
        # High forehead, no bangs: take the hair beside the temples instead.
        temples = np.concatenate([
            _sample(image, center + side * 1.05 * along - 0.35 * down, along, down, 0.08, 0.2)
            for side in (-1.0, 1.0)
        ])
        hair = _median(temples) or hair
    if hair is not None:
        colors["hair"] = hair
    return colors
