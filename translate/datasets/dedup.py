"""Near-duplicate detection for face crops: perceptual hashes and clustering by Hamming distance.

`phash` is the 64-bit DCT perceptual hash of `imagehash` (8x8 from a 32x32 grey thumbnail). It is
stable under re-encoding, small resizes and mild colour changes: a JPEG re-encode of the same
crop is typically 0-2 bits away, while unrelated faces are ~32 bits apart (see the builder's
report for the distances seen on real data).

Aligned face crops share their layout, so a 64-bit phash alone is not discriminative enough:
distinct synthetic faces come within 4 bits of each other, and single-link clusters at 10 bits
chain hundreds of different faces together. A pair therefore also has to agree on a colour
thumbnail (16x16 RGB): its correlation (mean removed; invariant to brightness and contrast) is
>= 0.999 for re-encoded copies, below 0.94 for different synthetic faces and below 0.89 on the
shared anime and photo sets. Correlation is dominated by the light/dark layout, so two different
faces with the same layout can still reach 0.97; the same picture must also match the colours
themselves (mean absolute thumbnail difference, a few levels for a JPEG re-encode).

Mirror images count as copies (training flips faces, so a mirrored copy in the test split is a
leak): the builder also compares each crop with the others' left-right mirrors.

Two criteria are used by the builder:

* same picture: phash distance <= `dup_distance`, correlation >= `dup_min_corr` and colour
  difference <= `dup_max_color_diff`; each cluster collapses to one kept crop (the largest, then
  the first in input order).
* near-duplicate: phash distance <= `group_distance` and correlation >= `group_min_corr` (a
  redraw, a different crop or edit of one artwork): both stay, but share one split group, so
  they can never sit on both sides of the train/test split.
"""
from __future__ import annotations

import io
from typing import List, Optional, Sequence, Union

import numpy as np

PathOrBytes = Union[str, bytes]


def phash(image: PathOrBytes, hash_size: int = 8) -> int:
    """64-bit perceptual hash (as a Python int) of an image file path, encoded bytes or PIL image."""
    import imagehash
    from PIL import Image

    if isinstance(image, (bytes, bytearray)):
        img = Image.open(io.BytesIO(image))
    elif isinstance(image, str):
        img = Image.open(image)
    else:
        img = image
    h = imagehash.phash(img.convert("RGB"), hash_size=hash_size)
    bits = np.asarray(h.hash, dtype=np.uint8).reshape(-1)
    return int("".join("1" if b else "0" for b in bits), 2)


def thumbnail(image: PathOrBytes, size: int = 16) -> np.ndarray:
    """RGB thumbnail, float32 [size * size * 3] in 0-255 (box filter)."""
    from PIL import Image

    if isinstance(image, (bytes, bytearray)):
        image = Image.open(io.BytesIO(image))
    elif isinstance(image, str):
        image = Image.open(image)
    return np.asarray(image.convert("RGB").resize((size, size), Image.BOX), np.float32).reshape(-1)


def _normalised(thumbs: np.ndarray) -> np.ndarray:
    """Mean-removed, unit-norm rows: dot products are correlations."""
    t = thumbs - thumbs.mean(axis=-1, keepdims=True)
    return t / np.maximum(np.linalg.norm(t, axis=-1, keepdims=True), 1e-6)


def hamming(a: int, b: int) -> int:
    return int(bin(int(a) ^ int(b)).count("1"))


def distance_matrix(hashes: Sequence[int]) -> np.ndarray:
    """[n, n] Hamming distances between 64-bit hashes (uint8)."""
    h = np.asarray([int(x) for x in hashes], dtype=np.uint64)
    return np.bitwise_count(h[:, None] ^ h[None, :]).astype(np.uint8)


def mirrored(image):
    """The PIL image flipped left-right (mirror copies are duplicates too: training flips)."""
    from PIL import Image
    return image.transpose(Image.Transpose.FLIP_LEFT_RIGHT)


def cluster(hashes: Sequence[int], max_distance: int, thumbs: Optional[np.ndarray] = None,
            min_corr: float = -1.0, block: int = 1024,
            mirror_hashes: Optional[Sequence[int]] = None,
            mirror_thumbs: Optional[np.ndarray] = None,
            max_color_diff: Optional[float] = None) -> List[int]:
    """Single-link clusters of hashes within `max_distance` bits (and, with `thumbs` [n, k] from
    `thumbnail`, thumbnail correlation >= `min_corr` and, if given, mean absolute thumbnail
    difference <= `max_color_diff` levels); returns a label per item.

    With `mirror_hashes` (and `mirror_thumbs`) of the left-right flipped images, an item also
    matches the mirror image of another. Labels are the index of the cluster's first member, so
    they are deterministic for a given input order. Memory is O(block * n).
    """
    n = len(hashes)
    h = np.asarray([int(x) for x in hashes], dtype=np.uint64)
    parent = list(range(n))
    raw = None if thumbs is None else np.asarray(thumbs, np.float32)
    norm = None if raw is None else _normalised(raw)
    variants = [(h, raw, norm)]
    if mirror_hashes is not None:
        m_raw = raw if mirror_thumbs is None else np.asarray(mirror_thumbs, np.float32)
        variants.append((np.asarray([int(x) for x in mirror_hashes], dtype=np.uint64), m_raw,
                         None if m_raw is None else _normalised(m_raw)))

    def find(i: int) -> int:
        while parent[i] != i:
            parent[i] = parent[parent[i]]
            i = parent[i]
        return i

    for start in range(0, n, block):
        for other_h, other_raw, other_norm in variants:
            d = np.bitwise_count(h[start:start + block, None] ^ other_h[None, :])
            rows, cols = np.nonzero(d <= max_distance)
            for r, j in zip(rows.tolist(), cols.tolist()):
                i = start + r
                if j == i:
                    continue
                if raw is not None:
                    if float(norm[i] @ other_norm[j]) < min_corr:
                        continue
                    if max_color_diff is not None and \
                            float(np.abs(raw[i] - other_raw[j]).mean()) > max_color_diff:
                        continue
                ri, rj = find(i), find(j)
                if ri != rj:
                    parent[max(ri, rj)] = min(ri, rj)
    return [find(i) for i in range(n)]


def nearest_distances(hashes: Sequence[int]) -> np.ndarray:
    """Distance from each hash to its nearest other hash (64 when alone)."""
    if len(hashes) < 2:
        return np.full((len(hashes),), 64, np.uint8)
    d = distance_matrix(hashes).astype(np.int32)
    np.fill_diagonal(d, 64)
    return d.min(axis=1)
