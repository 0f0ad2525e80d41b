"""Generated tag data whose tags are visible: coloured shapes on a plain background.

Each image holds 1-2 shapes (circle, square, triangle, bar), each in one colour (red, green, blue,
yellow); its tags are the shapes and the colours present. Used by the learnability test, the
benchmark and demos: ground truth no real set has, and no download.
"""
from __future__ import annotations

import csv
import os
from typing import List, Tuple

import numpy as np
from PIL import Image, ImageDraw

SHAPES = ("circle", "square", "triangle", "bar")
COLOURS = {"red": (220, 30, 30), "green": (30, 180, 40), "blue": (30, 60, 220), "yellow": (235, 210, 20)}


def draw(rng: np.random.Generator, size: int) -> Tuple[Image.Image, List[str]]:
    bg = tuple(int(v) for v in rng.integers(150, 256, 3)) if rng.random() < 0.5 else (255, 255, 255)
    img = Image.new("RGB", (size, size), bg)
    d = ImageDraw.Draw(img)
    tags = set()
    n = int(rng.integers(1, 3))
    for shape in rng.choice(len(SHAPES), n, replace=False):
        name = SHAPES[int(shape)]
        colour = list(COLOURS)[int(rng.integers(len(COLOURS)))]
        r = int(rng.integers(size // 6, size // 3))
        cx, cy = (int(v) for v in rng.integers(r, size - r, 2))
        fill = COLOURS[colour]
        if name == "circle":
            d.ellipse([cx - r, cy - r, cx + r, cy + r], fill=fill)
        elif name == "square":
            d.rectangle([cx - r, cy - r, cx + r, cy + r], fill=fill)
        elif name == "triangle":
            d.polygon([(cx, cy - r), (cx - r, cy + r), (cx + r, cy + r)], fill=fill)
        else:
            d.rectangle([cx - r, cy - max(1, r // 4), cx + r, cy + max(1, r // 4)], fill=fill)
        tags.update((name, colour))
    return img, sorted(tags)


def write_csv_set(out_dir: str, n: int, size: int = 48, seed: int = 0) -> str:
    """PNG images + labels.csv (file, space-separated tags) in out_dir; returns the CSV path."""
    os.makedirs(out_dir, exist_ok=True)
    rng = np.random.default_rng(seed)
    path = os.path.join(out_dir, "labels.csv")
    with open(path, "w", newline="") as f:
        w = csv.writer(f)
        w.writerow(["file", "tags"])
        for i in range(n):
            img, tags = draw(rng, size)
            name = f"img{i:05d}.png"
            img.save(os.path.join(out_dir, name))
            w.writerow([name, " ".join(tags)])
    return path


def arrays(n: int, size: int = 48, seed: int = 0) -> Tuple[np.ndarray, np.ndarray, List[str]]:
    """In-memory images uint8 [n, size, size, 3], multi-hot [n, T], tag names."""
    rng = np.random.default_rng(seed)
    names = list(SHAPES) + list(COLOURS)
    x = np.zeros((n, size, size, 3), np.uint8)
    y = np.zeros((n, len(names)), np.float32)
    for i in range(n):
        img, tags = draw(rng, size)
        x[i] = np.asarray(img)
        y[i, [names.index(t) for t in tags]] = 1
    return x, y, names
