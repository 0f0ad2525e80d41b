"""What tests share besides fixtures (those are in conftest.py): the checkout's path, a layer
comparison, and tiny face crops + JSONL for the records / data tests. No test functions here.

Each crop is a smooth random colour field (distinct perceptual hashes) with small coloured squares
drawn at the keypoints, so tests can find where the pixels of each point went.
"""
from __future__ import annotations

import io
import os
import pathlib
from typing import Dict, List, Optional, Sequence

import numpy as np
from PIL import Image

from translate.faces.schema import Crop, Face

ROOT = os.path.dirname(os.path.dirname(os.path.abspath(__file__)))  # the checkout
ROOT_PATH = pathlib.Path(ROOT)

MARK_COLORS = {  # squares painted at the points (RGB)
    "left_eye": (255, 0, 0),
    "right_eye": (0, 255, 0),
    "nose": (0, 0, 255),
    "mouth": (255, 255, 0),
    "chin": (0, 255, 255),
}
BASE_POINTS = {"left_eye": (0.34, 0.42), "right_eye": (0.66, 0.42), "nose": (0.5, 0.56),
               "mouth": (0.5, 0.68), "chin": (0.5, 0.84)}


def smooth_field(rng: np.random.Generator, size: int) -> np.ndarray:
    small = Image.fromarray(rng.integers(40, 216, (6, 6, 3), dtype=np.uint8))
    return np.asarray(small.resize((size, size), Image.BICUBIC)).copy()


def face_image(rng, size, points: Dict[str, Sequence[float]], marks: bool = True) -> np.ndarray:
    img = smooth_field(rng, size)
    if marks:
        r = max(1, size // 32)
        for name, (x, y) in points.items():
            xi, yi = int(round(x)), int(round(y))
            img[max(0, yi - r):yi + r + 1, max(0, xi - r):xi + r + 1] = MARK_COLORS[name]
    return img


def make_faces(folder: str, n: int, domain: str = "anime", size: int = 64, seed: int = 0,
               jsonl: str = "faces.jsonl", drop_points: Sequence[str] = (), fmt: str = "png",
               prefix: str = "img", sources: Optional[List[str]] = None) -> str:
    """Writes n crops + a JSONL (paths relative to the JSONL folder); returns the JSONL path."""
    rng = np.random.default_rng(seed)
    os.makedirs(os.path.join(folder, "crops"), exist_ok=True)
    faces = []
    for i in range(n):
        pts = {k: (float(x * size + rng.uniform(-1, 1)), float(y * size + rng.uniform(-1, 1)))
               for k, (x, y) in BASE_POINTS.items() if k not in drop_points}
        img = face_image(rng, size, pts)
        rel = f"crops/{prefix}{i:03d}.{fmt}"
        Image.fromarray(img).save(os.path.join(folder, rel), quality=92) if fmt == "jpg" else \
            Image.fromarray(img).save(os.path.join(folder, rel))
        src = sources[i] if sources else f"{prefix}{i:03d}.jpg"
        colors = {"hair": tuple(int(v) for v in rng.integers(0, 256, 3)),
                  "skin": (240, 200, 180), "left_eye": (10, 20, 200), "right_eye": (200, 20, 10)}
        faces.append(Face(box=(0, 0, size, size), points=dict(pts), colors=colors,
                          detector="synthetic" if domain == "anime" else "mtcnn", source=src,
                          domain=domain, crop=Crop(path=rel, size=size, points=dict(pts),
                                                   matrix=[[1, 0, 0], [0, 1, 0]])))
    path = os.path.join(folder, jsonl)
    with open(path, "a", encoding="utf-8") as f:
        for face in faces:
            f.write(face.to_line())
    return path


def reencode_jpeg(src: str, dst: str, quality: int = 75) -> None:
    buf = io.BytesIO()
    Image.open(src).convert("RGB").save(buf, format="JPEG", quality=quality)
    with open(dst, "wb") as f:
        f.write(buf.getvalue())


def assert_layers_agree(ref, fast, x, atol: float = 1e-5):
    """`fast` (built like `ref`, given ref's weights here) computes ref's output and gradients
    (input and weights) of a nonlinear loss; float32 sums in another order: error ~ scale."""
    import numpy as np
    import tensorflow as tf

    for layer in (ref, fast):
        if not layer.built:
            layer.build(x.shape)
    fast.set_weights(ref.get_weights())

    @tf.function
    def grads(layer):
        with tf.GradientTape() as tape:
            tape.watch(x)
            y = layer(x)
            loss = tf.reduce_sum(y * tf.cos(3.0 * y))
        return [y] + tape.gradient(loss, [x] + layer.trainable_variables)

    for want, got in zip(grads(ref), grads(fast)):
        want = want.numpy()
        assert got.shape == want.shape
        np.testing.assert_allclose(got.numpy(), want, rtol=1e-4, atol=atol * max(1.0, np.abs(want).max()))


def bomb_png(path, width: int = 30000, height: int = 30000) -> str:
    """A tiny PNG whose header claims width x height RGB pixels (a decompression bomb that costs
    nothing to make: readers must refuse it from the header, before decoding)."""
    import struct
    import zlib

    def chunk(kind: bytes, data: bytes) -> bytes:
        return struct.pack(">I", len(data)) + kind + data + struct.pack(">I", zlib.crc32(kind + data))

    ihdr = struct.pack(">IIBBBBB", width, height, 8, 2, 0, 0, 0)
    data = (b"\x89PNG\r\n\x1a\n" + chunk(b"IHDR", ihdr) + chunk(b"IDAT", zlib.compress(b"\0" * 1024))
            + chunk(b"IEND", b""))
    with open(path, "wb") as f:
        f.write(data)
    return str(path)
