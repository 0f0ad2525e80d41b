"""Prediction library: load a trained tagger, read images, return tags with scores."""
from __future__ import annotations

import os
from typing import Dict, Iterator, List, Optional

import numpy as np

from tagnet import model_dir
from tagnet.build import IMAGE_EXTENSIONS, square_image
from tagnet.cli import TagnetError


def list_images(root: str) -> List[str]:
    """Image files below `root` (recursive), as sorted paths relative to `root` (the twin of
    translate.faces.images.list_images)."""
    found = []
    for dirpath, dirnames, filenames in os.walk(root):
        dirnames.sort()
        for name in filenames:
            if name.lower().endswith(IMAGE_EXTENSIONS) and not name.startswith("."):
                found.append(os.path.relpath(os.path.join(dirpath, name), root))
    return sorted(found)


def input_files(path: str) -> List[str]:
    """An image file, or the images below a folder (paths joined to it); TagnetError if none."""
    if os.path.isfile(path):
        return [path]
    if not os.path.isdir(path):
        raise TagnetError(f"--input {path!r} does not exist")
    out = [os.path.join(path, rel) for rel in list_images(path)]
    if not out:
        raise TagnetError(f"no images ({', '.join(IMAGE_EXTENSIONS)}) under {path}")
    return out


class Tagger:
    def __init__(self, path: str, threshold: Optional[float] = None, per_tag: bool = True,
                 top_k: int = 0):
        try:
            self.model, self.cfg = model_dir.load(path)
        except model_dir.ModelDirError as e:
            raise TagnetError(str(e)) from None
        self.tags = self.cfg["tags"]
        self.size = int(self.cfg["image_size"])
        self.softmax = self.cfg["activation"] == "softmax"
        self.top_k = top_k or (1 if self.softmax else 0)
        saved = model_dir.load_thresholds(self.cfg["model_dir"], self.tags)
        if threshold is not None:
            self.thresholds, self.source = np.full(len(self.tags), float(threshold)), f"threshold {threshold}"
        elif saved is not None and per_tag:
            self.thresholds, self.source = saved["per_tag"], f"per-tag thresholds ({saved['source']})"
        elif saved is not None:
            self.thresholds = np.full(len(self.tags), saved["global"])
            self.source = f"global threshold {saved['global']:.3f} ({saved['source']})"
        else:
            t = 1.01 if self.softmax else 0.5
            self.thresholds, self.source = np.full(len(self.tags), t), "no saved thresholds: 0.5"
        import tensorflow as tf
        act = tf.nn.softmax if self.softmax else tf.sigmoid
        self._run = tf.function(lambda x: act(tf.cast(self.model(x, training=False), tf.float32)),
                                reduce_retracing=True)

    def describe_threshold(self) -> str:
        return f"{self.cfg['backbone']} with {len(self.tags)} tags, {self.source}" + (
            f", top {self.top_k}" if self.top_k else "")

    def load_image(self, path: str) -> np.ndarray:
        from PIL import Image
        with Image.open(path) as img:
            img.draft("RGB", (self.size, self.size))
            return np.asarray(square_image(img, self.size), np.float32)

    def scores(self, images: np.ndarray) -> np.ndarray:
        return self._run(np.asarray(images, np.float32)).numpy()

    def tags_for(self, scores: np.ndarray) -> Dict[str, float]:
        keep = set(np.flatnonzero(scores >= self.thresholds).tolist())
        if self.top_k:
            keep |= set(np.argsort(-scores)[: self.top_k].tolist())
        order = sorted(keep, key=lambda j: -scores[j])
        return {self.tags[j]: round(float(scores[j]), 4) for j in order}

    def tag_files(self, files: List[str], batch_size: int = 16, progress: bool = False) -> Iterator[Dict]:
        from tqdm import tqdm
        bar = tqdm(total=len(files), unit="img", desc="predict", disable=not progress)
        for i in range(0, len(files), batch_size):
            chunk, images, bad = files[i:i + batch_size], [], {}
            for f in chunk:
                try:
                    images.append(self.load_image(f))
                except (OSError, ValueError) as e:
                    bad[f] = f"{type(e).__name__}: {e}"
            scores = iter(self.scores(np.stack(images))) if images else iter(())
            for f in chunk:
                if f in bad:
                    yield {"file": f, "error": bad[f]}
                else:
                    yield {"file": f, "tags": self.tags_for(next(scores))}
            bar.update(len(chunk))
        bar.close()
