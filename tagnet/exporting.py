"""Exports a trained tagger as a self-contained SavedModel in TensorFlow Serving's layout.

Library of tagnet/export.py:

  python tagnet/export.py --model_dir=runs/vgg19 --export_dir=models/tagger [--version=N]

writes models/tagger/<version>/ (the next integer unless --version is given). The version is
written to a hidden temporary folder, reloaded and checked against the Keras model, and only
then renamed into place, so a server watching the folder never sees half a model.

Signatures (`saved_model_cli show --all --dir models/tagger/1` lists them):
  serving_default  image: tf.string [B] encoded JPEG/PNG/GIF/BMP
                   -> scores: float32 [B, T] (sigmoid, or softmax for single-label models)
                   Decoding, transparency on white, padding to a centred square on white,
                   resizing and the backbone's preprocessing all run in the graph, as in training
                   (tagnet/data.py), so a client sends nothing but the file's bytes.
  predict_raw      images: float32 [B, S, S, 3] RGB in [0, 255] -> scores (batch work)
  labels           no inputs -> tags: string [T], categories: string [T], thresholds: float32 [T]
                   (TensorFlow Serving refuses signatures without inputs; tools/serve.py runs it)
  with_labels      image as serving_default -> scores, tags: string [B, T], categories [B, T],
                   thresholds [B, T] (the vocabulary repeated per image, for clients of TF Serving
                   itself), and the tags each image gets, grouped by category:
                   <category>_tags string [B, K] and <category>_scores [B, K] for each of general,
                   character, copyright, artist, meta, rating (highest first; K = the most any
                   image of the batch got, shorter rows padded with "" and 0). Each tag passes
                   its threshold, rating is one choice (the best rating tag), the export's `mcut`
                   cuts each category at the image's largest score gap instead, and a
                   single-label model always gives its top class (tagnet/selection.py).
The vocabulary, categories and thresholds are also stored as files (assets/tags.txt,
assets/thresholds.json, assets/tagnet.json) and as the loaded object's `tags` / `categories` /
`thresholds` variables. Thresholds are resolved as tagnet/predict.py does (tagnet.thresholds:
saved per-tag, else per-category, else global; `category_thresholds` override; 0.5 when there
are none, 1.01 = "take the top class" for single-label models). Reloading needs only TensorFlow:
`tf.saved_model.load(path)`.
"""
import json
import os
import re
import shutil
import tempfile
from typing import Dict, List, Mapping, Optional

import numpy as np

VERSION_RE = re.compile(r"^[0-9]+$")


class ExportError(ValueError):
    """An export that cannot be done (message is for users)."""


def versions(model_base: str) -> List[int]:
    """Integer version folders under BASE/NAME (hidden temporary folders are not versions)."""
    if not os.path.isdir(model_base):
        return []
    return sorted(int(d) for d in os.listdir(model_base)
                  if VERSION_RE.match(d) and os.path.isdir(os.path.join(model_base, d)))


def next_version(model_base: str) -> int:
    """1 + the newest version under BASE/NAME (1 for a new BASE/NAME)."""
    return max(versions(model_base), default=0) + 1


def decode_image(data, size: int):
    """Encoded image bytes (scalar tf.string) -> float32 [size, size, 3] in [0, 255].

    Same steps as the Tag records: alpha composited on white, padded to a centred square on white,
    resized (tagnet.data.resize_square, the trainer's own in-graph resize).
    """
    import tensorflow as tf
    from tagnet.data import resize_square
    img = tf.io.decode_image(data, channels=0, expand_animations=False)
    img = tf.cast(img, tf.float32)
    c = tf.shape(img)[-1]
    rgb = tf.cond(c >= 3, lambda: img[..., :3], lambda: tf.tile(img[..., :1], [1, 1, 3]))
    alpha = tf.cond(tf.equal(c % 2, 0), lambda: img[..., -1:] / 255.0, lambda: tf.ones_like(img[..., :1]))
    rgb = rgb * alpha + 255.0 * (1.0 - alpha)
    return tf.ensure_shape(resize_square(rgb, size), [size, size, 3])


def build_module(model, cfg: Dict, thresholds: np.ndarray, asset_paths: List[str],
                 mcut: bool = False):
    """A tf.Module holding the Keras model, its vocabulary and the four signatures."""
    import tensorflow as tf

    from tagnet import model_dir, selection
    size = int(cfg["image_size"])
    softmax = cfg["activation"] == "softmax"
    categories = model_dir.categories_of(cfg)

    class TaggerModule(tf.Module):
        def __init__(self):
            super().__init__(name="tagger")
            # Track only the weights (as keras.export.ExportArchive does): tracking the Keras
            # model itself makes saving walk and trace every layer (several times slower).
            self.weights = [v.value for v in model.variables]
            # Variables, not constants: only trackable objects stay attributes of the reload.
            self.tags = tf.Variable(list(cfg["tags"]), trainable=False, dtype=tf.string, name="tags")
            self.categories = tf.Variable(categories, trainable=False, dtype=tf.string,
                                          name="categories")
            self.thresholds = tf.Variable(thresholds, trainable=False, dtype=tf.float32,
                                          name="thresholds")
            self.assets = [tf.saved_model.Asset(p) for p in asset_paths]

        @tf.function(input_signature=[tf.TensorSpec([None, size, size, 3], tf.float32)])
        def _scores(self, images):  # traced once, shared by both image signatures
            logits = tf.cast(model(images, training=False), tf.float32)
            return tf.nn.softmax(logits) if softmax else tf.sigmoid(logits)

        @tf.function(input_signature=[tf.TensorSpec([None], tf.string, name="image")])
        def serve(self, image):
            images = tf.map_fn(lambda b: decode_image(b, size), image,
                               fn_output_signature=tf.TensorSpec([size, size, 3], tf.float32))
            return {"scores": self._scores(images)}

        @tf.function(input_signature=[tf.TensorSpec([None, size, size, 3], tf.float32, name="images")])
        def predict_raw(self, images):
            return {"scores": self._scores(images)}

        @tf.function(input_signature=[])
        def labels(self):
            return {"tags": tf.identity(self.tags.read_value()),
                    "categories": tf.identity(self.categories.read_value()),
                    "thresholds": tf.identity(self.thresholds.read_value())}

        @tf.function(input_signature=[tf.TensorSpec([None], tf.string, name="image")])
        def with_labels(self, image):
            scores = self.serve(image)["scores"]
            rows = tf.stack([tf.shape(scores)[0], 1])
            picked = selection.select(scores, categories, self.thresholds.read_value(), mcut=mcut,
                                      softmax=softmax)
            return {"scores": scores, "tags": tf.tile(self.tags.read_value()[None], rows),
                    "categories": tf.tile(self.categories.read_value()[None], rows),
                    "thresholds": tf.tile(self.thresholds.read_value()[None], rows),
                    **selection.grouped(scores, picked, cfg["tags"], categories)}

    return TaggerModule()


def export(model_path: str, export_dir: str, version: Optional[int] = None, verify: bool = True,
           log=print, *, per_tag: bool = True,
           category_thresholds: Optional[Mapping[str, float]] = None, mcut: bool = False) -> str:
    """Exports the tagger at model_path (a model or training folder) to export_dir/<version>/.
    `per_tag`, `category_thresholds` and `mcut` choose the operating point of `with_labels` as
    tagnet/predict.py's flags of the same names do.

    Returns the version folder. Raises ExportError / ModelDirError with a user-facing message.
    """
    import tensorflow as tf
    from tagnet import model_dir, records, thresholds as thresholds_lib
    if version is None:
        version = next_version(export_dir)
    if version < 1:
        raise ExportError(f"--version must be a positive integer (got {version})")
    final = os.path.join(export_dir, str(version))
    if os.path.exists(final):
        raise ExportError(f"{final} already exists; pick another --version or leave it out "
                          f"(next free: {next_version(export_dir)})")
    model, cfg = model_dir.load(model_path)
    src = cfg["model_dir"]
    categories = model_dir.categories_of(cfg)
    thresholds, how = thresholds_lib.resolve(
        cfg["tags"], categories, thresholds_lib.load(src), per_tag=per_tag,
        category_thresholds=category_thresholds, softmax=cfg["activation"] == "softmax")
    thresholds = thresholds.astype(np.float32)
    log(f"thresholds: {how}" + ("; MCut per image" if mcut else ""))
    os.makedirs(export_dir, exist_ok=True)
    tmp = tempfile.mkdtemp(prefix=f".tmp-{version}-", dir=export_dir)
    try:
        staging = os.path.join(tmp, "staging")  # asset sources, copied into the SavedModel
        os.makedirs(staging)
        asset_paths = [os.path.join(staging, n) for n in (records.TAGS_TXT, model_dir.CONFIG,
                                                          model_dir.THRESHOLDS)]
        with open(asset_paths[0], "w", encoding="utf-8") as f:
            f.write("".join(t + "\n" for t in cfg["tags"]))
        shutil.copyfile(os.path.join(src, model_dir.CONFIG), asset_paths[1])
        with open(asset_paths[2], "w", encoding="utf-8") as f:
            json.dump({"per_tag": {t: float(v) for t, v in zip(cfg["tags"], thresholds)},
                       "categories": dict(zip(cfg["tags"], categories)), "mcut": bool(mcut),
                       "source": how}, f, indent=1)
        module = build_module(model, cfg, thresholds, asset_paths, mcut=mcut)
        out = os.path.join(tmp, "model")
        tf.saved_model.save(module, out, signatures={
            "serving_default": module.serve, "predict_raw": module.predict_raw,
            "labels": module.labels, "with_labels": module.with_labels})
        if verify:
            diff = check(out, model, cfg)
            log(f"checked: reloaded SavedModel matches the Keras model (max |diff| {diff:.2e})")
        try:
            os.rename(out, final)
        except OSError as e:
            raise ExportError(f"could not move the export to {final}: {e}") from None
    finally:
        shutil.rmtree(tmp, ignore_errors=True)
    return final


def check(path: str, model, cfg: Dict, tolerance: float = 1e-3) -> float:
    """Reloads the SavedModel and compares predict_raw with the Keras model on random images."""
    import tensorflow as tf
    size = int(cfg["image_size"])
    x = np.random.default_rng(0).uniform(0, 255, (2, size, size, 3)).astype(np.float32)
    logits = model(x, training=False).numpy().astype(np.float32)
    want = tf.nn.softmax(logits).numpy() if cfg["activation"] == "softmax" else tf.sigmoid(logits).numpy()
    got = tf.saved_model.load(path).signatures["predict_raw"](images=tf.constant(x))["scores"].numpy()
    diff = float(np.max(np.abs(got - want)))
    if not diff <= tolerance:
        raise ExportError(f"the reloaded SavedModel differs from the Keras model by {diff:.3g}")
    return diff

