"""Prediction library: load a trained tagger, read images, return tags with scores, grouped by
category (thresholds: tagnet.thresholds; which tags an image gets: tagnet.selection)."""
from __future__ import annotations

import os
import json
from typing import Dict, Iterable, Iterator, List, Mapping, Optional

import numpy as np

from tagnet import model_dir, thresholds as thresholds_lib
from tagnet.build import IMAGE_EXTENSIONS, MAX_IMAGE_PIXELS, open_image, square_image
from tagnet.cli import TagnetError
from tagnet.contract import CATEGORIES


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
    """A trained tagger and how it picks tags: thresholds per tag resolved by
    tagnet.thresholds.resolve (`threshold`, `category_thresholds`, `per_tag`: see there), rating
    as one choice, `mcut` per image (tagnet.selection), plus the `top_k` best tags."""

    def __init__(self, path: str, threshold: Optional[float] = None, per_tag: bool = True,
                 top_k: int = 0, category_thresholds: Optional[Mapping[str, float]] = None,
                 mcut: bool = False, max_pixels: int = MAX_IMAGE_PIXELS):
        self.max_pixels = max_pixels
        try:
            self.model, self.cfg = model_dir.load(path)
        except model_dir.ModelDirError as e:
            raise TagnetError(str(e)) from None
        self.tags = self.cfg["tags"]
        self.categories = model_dir.categories_of(self.cfg)
        self.size = int(self.cfg["image_size"])
        self.softmax = self.cfg["activation"] == "softmax"
        self.top_k = top_k
        self.mcut = mcut
        saved = thresholds_lib.load(self.cfg["model_dir"])
        self.thresholds, self.source = thresholds_lib.resolve(
            self.tags, self.categories, saved, threshold=threshold,
            category_thresholds=category_thresholds, per_tag=per_tag, softmax=self.softmax)
        import tensorflow as tf

        from tagnet import selection
        act = tf.nn.softmax if self.softmax else tf.sigmoid

        def run(x):
            scores = act(tf.cast(self.model(x, training=False), tf.float32))
            return scores, selection.select(scores, self.categories, self.thresholds, mcut=mcut,
                                            softmax=self.softmax)
        self._run = tf.function(run, reduce_retracing=True)

    def describe_threshold(self) -> str:
        cats = {c: self.categories.count(c) for c in CATEGORIES if c in self.categories}
        return (f"{self.cfg['backbone']} with {len(self.tags)} tags ("
                + ", ".join(f"{n} {c}" for c, n in cats.items()) + f"), thresholds: {self.source}"
                + (", MCut per image" if self.mcut else "")
                + (", top class always" if self.softmax else "")
                + (f", top {self.top_k}" if self.top_k else ""))

    def load_image(self, path: str) -> np.ndarray:
        """Pixels for the model; ValueError / OSError for an unusable file (one over
        `max_pixels` raises build.ImageTooLarge before decoding)."""
        with open_image(path, self.max_pixels) as img:
            img.draft("RGB", (self.size, self.size))
            return np.asarray(square_image(img, self.size), np.float32)

    def scores(self, images: np.ndarray) -> np.ndarray:
        return self.predict(images)[0]

    def predict(self, images: np.ndarray):
        """-> (scores [B, T], picked bool [B, T])."""
        scores, picked = self._run(np.asarray(images, np.float32))
        return scores.numpy(), picked.numpy()

    def tags_for(self, scores: np.ndarray, picked: Optional[np.ndarray] = None) -> Dict:
        """{"tags": {tag: score} highest first, "by_category": {category: {tag: score}}} (every
        category of the vocabulary, possibly empty)."""
        if picked is None:
            import tensorflow as tf

            from tagnet import selection
            picked = selection.select(tf.constant(scores[None], tf.float32), self.categories,
                                      self.thresholds, mcut=self.mcut, softmax=self.softmax)[0].numpy()
        keep = set(np.flatnonzero(picked).tolist())
        if self.top_k:
            keep |= set(np.argsort(-scores)[: self.top_k].tolist())
        order = sorted(keep, key=lambda j: -scores[j])
        flat = {self.tags[j]: round(float(scores[j]), 4) for j in order}
        by_category: Dict[str, Dict[str, float]] = {c: {} for c in CATEGORIES if c in self.categories}
        for j in order:
            by_category[self.categories[j]][self.tags[j]] = flat[self.tags[j]]
        return {"tags": flat, "by_category": by_category}

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
            rows = zip(*self.predict(np.stack(images))) if images else iter(())
            for f in chunk:
                if f in bad:
                    yield {"file": f, "error": bad[f]}
                else:
                    yield {"file": f, **self.tags_for(*next(rows))}
            bar.update(len(chunk))
        bar.close()


def partial_path(output: str) -> str:
    """Where write_jsonl keeps the lines written so far."""
    return output + ".partial"


def write_jsonl(records: Iterable[Dict], output: str) -> int:
    """Writes `records` as JSON lines to partial_path(output), each line flushed as it comes, and
    renames it to `output` once all are written; -> the number of lines. On an error or interrupt
    the finished lines stay in the partial file and an existing `output` is left untouched."""
    os.makedirs(os.path.dirname(os.path.abspath(output)), exist_ok=True)
    tmp, n = partial_path(output), 0
    with open(tmp, "w", encoding="utf-8") as f:
        for rec in records:
            f.write(json.dumps(rec) + "\n")
            f.flush()
            n += 1
    os.replace(tmp, output)
    return n
