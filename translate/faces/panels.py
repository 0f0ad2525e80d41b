"""Splitting tall webtoon strips into panels at blank horizontal gutters.

The anime detector returns at most one face per image, so a strip with ten panels would give one
face; detecting per panel finds them all. A gutter is a run of rows whose pixels are all close to
one flat colour (usually white or black).
"""
from __future__ import annotations

from typing import List, Tuple

import numpy as np


def is_strip(image: np.ndarray, min_aspect: float = 2.0) -> bool:
    """A strip is much taller than wide (webtoon episodes are often 800 x 10000+)."""
    h, w = image.shape[:2]
    return h >= min_aspect * w


def split_panels(
    image: np.ndarray,
    min_gutter: int = 12,
    min_panel: int = 64,
    tolerance: float = 8.0,
) -> List[Tuple[int, int]]:
    """Row ranges [(top, bottom), ...] of the panels between flat gutters of >= `min_gutter` rows.

    A row is blank when the spread of its pixel values (max - min over the row, all channels) is at
    most 2 * tolerance. Panels shorter than `min_panel` rows are dropped (lettering bands, borders).
    With no gutter found, the whole image is one panel.
    """
    h = image.shape[0]
    rows = image.reshape(h, -1).astype(np.int16)
    blank = (rows.max(axis=1) - rows.min(axis=1)) <= 2 * tolerance
    panels, start, run = [], None, 0
    for y in range(h + 1):
        is_blank = y == h or blank[y]
        if is_blank:
            run += 1
            if start is not None and (run >= min_gutter or y == h):
                end = y - run + 1
                if end - start >= min_panel:
                    panels.append((start, end))
                start = None
        else:
            if start is None:
                start = y
            run = 0
    return panels or [(0, h)]
