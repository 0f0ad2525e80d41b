"""Exports a trained translator as a TensorFlow Serving SavedModel; library of the CLI

  python translate/export.py --train_dir=runs/p2p --export_dir=models/p2p [--direction=photo2anime]

writes models/p2p/<version>/ (TF Serving's layout; version = the next integer; the SavedModel is
written to a hidden temporary folder beside it and renamed, so a watcher never sees half a model).

The translator serving contract (tools/serve.py and clients rely on exactly these names; all
inputs batch-first, a model takes only the inputs it needs, see `input_names`):

* ``serving_default`` inputs:
    - ``image``: tf.string [B], an encoded JPEG/PNG aligned face crop (CycleGAN / UGATIT; aligned
      like the training photos, `translate.faces.align.GEOMETRY`); decoded, resized to the model's size
      and scaled to [-1, 1] in the graph;
    - ``keypoints``: float32 [B, 5, 2], (x, y) in [0, 1] over the crop (pixel centres at
      (i + 0.5) / size), `translate.faces.schema.POINT_NAMES` order; ``point_mask``: float32 [B, 5]
      (pix2pix, and CycleGAN / UGATIT runs with the landmark channel); the landmark layer is
      rendered in the graph;
    - ``colors``: float32 [B, 4, 3] in [0, 1], hair / skin / left_eye / right_eye;
      ``color_mask``: float32 [B, 4] (pix2pix colour conditions);
    - ``seed``: int64 [B] (pix2pix ``keypoints_colors_noise`` only): draws that condition's
      colour jitter and noise plane (stateless seed (seed, 0) into
      `translate.datasets.pipelines.pix2pix_condition`), so the same seed gives the same condition.
  outputs: ``image_bytes``: tf.string [B] PNG bytes of the translated face (TF Serving's REST API
  base64-encodes outputs whose name ends in ``_bytes``); ``image_size``: int32 [B]
  (the side of the output, repeated per example so every output is batch-first).
* ``predict_raw``: the same inputs, but ``image`` float32 [B, S, S, 3] in [-1, 1]; output
  ``output``: float32 [B, S, S, 3] in [-1, 1].

Randomness: pix2pix keeps dropout on at inference (the paper's only noise source), so by default
the exported generator is stochastic like the trained one; ``--noinference_dropout`` exports the
deterministic generator (dropout off), which is what the tests compare with the Keras model.
"""
from __future__ import annotations

import json
import os
import re
import shutil
from typing import Dict, List, Optional

import keras
import tensorflow as tf

from translate.datasets import pipelines as data, landmarks, records

# ----------------------------------------------------------------------------- the contract
SERVING_SIGNATURE = "serving_default"
RAW_SIGNATURE = "predict_raw"
IMAGE = "image"
KEYPOINTS = "keypoints"
POINT_MASK = "point_mask"
COLORS = "colors"
COLOR_MASK = "color_mask"
SEED = "seed"
OUTPUT_IMAGE = "image_bytes"  # TF Serving base64-encodes outputs named *_bytes
OUTPUT_IMAGE_SIZE = "image_size"
OUTPUT_RAW = "output"
INPUT_ORDER = (IMAGE, KEYPOINTS, POINT_MASK, COLORS, COLOR_MASK, SEED)

DIRECTIONS = ("photo2anime", "anime2photo")
# Inference network of each (family, direction), by checkpoint name (translate.inference.loading).
PIX2PIX_GENERATOR = "generator"
UNPAIRED_GENERATORS = {"photo2anime": "generator_ab", "anime2photo": "generator_ba"}
METADATA_FILE = os.path.join("assets.extra", "translator.json")


class ExportError(ValueError):
    """The run cannot be exported as asked (unknown direction, missing network...)."""


def input_names(flags: dict) -> List[str]:
    """The serving inputs a run needs, in INPUT_ORDER (see the module docstring)."""
    if flags.get("model") == "pix2pix":
        condition = flags.get("condition", "keypoints")
        names = [KEYPOINTS, POINT_MASK]
        if condition != "keypoints":
            names += [COLORS, COLOR_MASK]
        if condition == "keypoints_colors_noise":
            names.append(SEED)
        return names
    names = [IMAGE]
    if flags.get("landmark_channel"):
        names += [KEYPOINTS, POINT_MASK]
    return names


def input_spec(name: str, image_size: int, raw: bool) -> tf.TensorSpec:
    """The TensorSpec of one contract input (batch-first)."""
    n_points, n_colors = records.NUM_POINTS, records.NUM_COLORS
    shapes = {
        IMAGE: ([None, image_size, image_size, 3], tf.float32) if raw else ([None], tf.string),
        KEYPOINTS: ([None, n_points, 2], tf.float32),
        POINT_MASK: ([None, n_points], tf.float32),
        COLORS: ([None, n_colors, 3], tf.float32),
        COLOR_MASK: ([None, n_colors], tf.float32),
        SEED: ([None], tf.int64),
    }
    shape, dtype = shapes[name]
    return tf.TensorSpec(shape, dtype, name=name)


def generator_name(model: str, direction: str) -> str:
    if direction not in DIRECTIONS:
        raise ExportError(f"direction must be one of {DIRECTIONS}, not {direction!r}")
    if model == "pix2pix":
        if direction != "photo2anime":
            raise ExportError("pix2pix translates photo2anime only (keypoints -> anime face)")
        return PIX2PIX_GENERATOR
    return UNPAIRED_GENERATORS[direction]


def disable_dropout(model: keras.Model) -> int:
    """Sets every Dropout layer's rate to 0 (pix2pix's InferenceDropout included): the
    deterministic generator. Mutates the model; returns how many layers were changed."""
    n = 0
    for layer in model._flatten_layers(include_self=False, recursive=True):
        if isinstance(layer, keras.layers.Dropout) and layer.rate > 0:
            layer.rate = 0.0
            n += 1
    return n


def seed_states(model: keras.Model) -> list:
    """The tf.Variables behind the model's Keras seed generators (dropout randomness)."""
    states = []
    for layer in model._flatten_layers(include_self=True, recursive=True):
        gens = list(getattr(layer, "_seed_generators", None) or [])
        if getattr(layer, "seed_generator", None) is not None:
            gens.append(layer.seed_generator)
        for g in gens:
            v = getattr(g.state, "value", g.state)
            if isinstance(v, tf.Variable) and not any(v is u for u in states):
                states.append(v)
    return states


# ----------------------------------------------------------------------------- the graph
class TranslatorModule(tf.Module):
    """The serving graph of one translator: inputs by contract name -> generator -> image.

    Also the in-process path of the photo -> anime CLI (`translate.inference.pipeline.Runner` calls
    `predict_raw`), so the CLI, the server and the SavedModel run the same graph.
    """

    def __init__(self, generator: keras.Model, flags: dict, direction: str = "photo2anime"):
        super().__init__(name="translator")
        self.generator = generator
        # Keras seed generators (dropout) hold their state in variables the Keras model does
        # not expose to tf.saved_model: track them here, or saving a dropout generator fails.
        self.rng_states = seed_states(generator)
        self.model = flags["model"]
        self.direction = direction
        self.image_size = int(flags["image_size"])
        self.condition = flags.get("condition", "keypoints")
        self.color_jitter = float(flags.get("color_jitter", 0.1))
        self.input_names = input_names(flags)
        s = self.image_size

        def make(impl, raw):
            names = list(self.input_names)

            @tf.function(input_signature=[input_spec(n, s, raw) for n in names])
            def fn(*args):
                return impl(dict(zip(names, args)))
            return fn

        self.predict_raw = make(self._raw, raw=True)
        self.serve = make(self._serve, raw=False)

    # -- pieces -------------------------------------------------------------------------------
    def model_inputs(self, inputs: Dict[str, tf.Tensor]) -> tf.Tensor:
        """Contract inputs (image already float [B, S, S, 3] in [-1, 1]) -> generator input."""
        s = self.image_size
        if self.model == "pix2pix":
            kp, pm = inputs[KEYPOINTS], inputs[POINT_MASK]
            batch = tf.shape(kp)[0]
            colors = inputs.get(COLORS, tf.zeros([batch, records.NUM_COLORS, 3]))
            cmask = inputs.get(COLOR_MASK, tf.zeros([batch, records.NUM_COLORS]))
            seed = inputs.get(SEED, tf.zeros([batch], tf.int64))
            seeds = tf.stack([seed, tf.zeros_like(seed)], axis=-1)  # [B, 2] stateless seeds
            channels = data.CONDITION_CHANNELS[self.condition]
            return tf.map_fn(
                lambda e: data.pix2pix_condition(e[0], e[1], e[2], e[3], s, self.condition,
                                                 e[4], self.color_jitter),
                (kp, pm, colors, cmask, seeds),
                fn_output_signature=tf.TensorSpec([s, s, channels], tf.float32))
        x = inputs[IMAGE]
        if KEYPOINTS in inputs:
            x = tf.concat([x, landmarks.render(inputs[KEYPOINTS], inputs[POINT_MASK], s)], -1)
        return x

    def decode(self, encoded: tf.Tensor) -> tf.Tensor:
        """[B] JPEG/PNG bytes -> [B, S, S, 3] in [-1, 1] (the training pipeline's decode/resize)."""
        s = self.image_size

        def one(b):
            img = data.resize_image(data.decode_image(b), s)
            return tf.clip_by_value(img / 127.5 - 1.0, -1.0, 1.0)
        return tf.map_fn(one, encoded, fn_output_signature=tf.TensorSpec([s, s, 3], tf.float32))

    def _raw(self, inputs):
        y = self.generator(self.model_inputs(inputs), training=False)
        return {OUTPUT_RAW: tf.cast(y[..., :3], tf.float32)}

    def _serve(self, inputs):
        inputs = dict(inputs)
        if IMAGE in inputs:
            inputs[IMAGE] = self.decode(inputs[IMAGE])
        y = self._raw(inputs)[OUTPUT_RAW]
        pixels = tf.cast(tf.clip_by_value(tf.round((y + 1.0) * 127.5), 0.0, 255.0), tf.uint8)
        png = tf.map_fn(tf.io.encode_png, pixels, fn_output_signature=tf.TensorSpec([], tf.string))
        return {OUTPUT_IMAGE: png,
                OUTPUT_IMAGE_SIZE: tf.fill(tf.shape(png), tf.constant(self.image_size, tf.int32))}

    def signatures(self) -> dict:
        return {SERVING_SIGNATURE: self.serve.get_concrete_function(),
                RAW_SIGNATURE: self.predict_raw.get_concrete_function()}


def build_module(translator, direction: str = "photo2anime",
                 inference_dropout: bool = True) -> TranslatorModule:
    """The serving module of a `translate.inference.loading.Translator`. Without `inference_dropout` the
    generator's dropout layers are switched off (mutates the loaded generator)."""
    name = generator_name(translator.model, direction)
    if name not in translator.networks:
        raise ExportError(f"{translator.checkpoint_path}: the {translator.model} run has no "
                          f"network {name!r} (has {sorted(translator.networks)})")
    generator = translator.networks[name]
    if not inference_dropout:
        disable_dropout(generator)
    return TranslatorModule(generator, translator.flags, direction)


# ----------------------------------------------------------------------------- writing
def versions(model_base: str) -> List[int]:
    """Integer version folders under BASE/NAME (hidden temporary folders are not versions)."""
    if not os.path.isdir(model_base):
        return []
    return sorted(int(d) for d in os.listdir(model_base)
                  if re.fullmatch(r"\d+", d) and os.path.isdir(os.path.join(model_base, d)))


def next_version(model_base: str) -> int:
    """1 + the newest version under BASE/NAME (1 for a new BASE/NAME)."""
    return max(versions(model_base), default=0) + 1


def write_saved_model(module: TranslatorModule, export_base: str, metadata: Optional[dict] = None) -> str:
    """Saves `module` as export_base/<next version>/ via a temporary folder and a rename."""
    os.makedirs(export_base, exist_ok=True)
    version = next_version(export_base)
    tmp = os.path.join(export_base, f".tmp-{version}-{os.getpid()}")
    shutil.rmtree(tmp, ignore_errors=True)
    try:
        tf.saved_model.save(module, tmp, signatures=module.signatures())
        meta = {"model": module.model, "direction": module.direction,
                "image_size": module.image_size, "inputs": module.input_names,
                "signatures": [SERVING_SIGNATURE, RAW_SIGNATURE], **(metadata or {})}
        os.makedirs(os.path.join(tmp, os.path.dirname(METADATA_FILE)), exist_ok=True)
        with open(os.path.join(tmp, METADATA_FILE), "w", encoding="utf-8") as f:
            json.dump(meta, f, indent=1)
        final = os.path.join(export_base, str(version))
        while os.path.exists(final):  # another exporter took this version meanwhile
            version += 1
            final = os.path.join(export_base, str(version))
        os.rename(tmp, final)
    except BaseException:
        shutil.rmtree(tmp, ignore_errors=True)
        raise
    return final


def export(train_dir: str, export_base: str, direction: str = "photo2anime",
           inference_dropout: bool = True, checkpoint_path: Optional[str] = None) -> str:
    """Loads the run in train_dir and writes its SavedModel; returns the version folder."""
    from translate.inference import loading

    translator = loading.load(train_dir, checkpoint_path)
    module = build_module(translator, direction, inference_dropout)
    return write_saved_model(module, export_base, {
        "train_dir": os.path.abspath(train_dir), "checkpoint": translator.checkpoint_path,
        "step": translator.step, "inference_dropout": inference_dropout,
        "flags": translator.flags})

