"""Loads a trained translator from its --train_dir: the networks rebuilt from flags.json and the
latest checkpoint's weights, for evaluation, the photo -> anime CLI, export and serving.

Each model family registers a builder: flags dict -> {network name: keras.Model} for the
inference networks, with the names the training checkpoint uses (tf.train.Checkpoint attribute
names). Optimizers and discriminators in the checkpoint are simply not restored
(`expect_partial`).
"""
from __future__ import annotations

import dataclasses
import os
from typing import Callable, Dict, Optional

import keras
import tensorflow as tf

from translate import data, run_config

BUILDERS: Dict[str, Callable[[dict], Dict[str, keras.Model]]] = {}


class LoadError(ValueError):
    """The train_dir has no usable run (no flags.json, no checkpoint, unknown model)."""


def register(model: str):
    """Decorator: `@register("cyclegan") def build(flags) -> {"generator_ab": ..., ...}`."""
    def deco(fn):
        BUILDERS[model] = fn
        return fn
    return deco


@register("pix2pix")
def _build_pix2pix(flags: dict) -> Dict[str, keras.Model]:
    from translate.models import pix2pix
    channels = data.CONDITION_CHANNELS[flags["condition"]]
    return {"generator": pix2pix.unet_generator(flags["image_size"], channels, ngf=flags["ngf"],
                                                norm=flags["norm"])}


@dataclasses.dataclass
class Translator:
    """A trained run: its flags (flags.json), networks by checkpoint name, and the checkpoint."""
    model: str
    flags: dict
    networks: Dict[str, keras.Model]
    checkpoint_path: str
    step: Optional[int]

    @property
    def image_size(self) -> int:
        return int(self.flags["image_size"])


def latest_checkpoint(train_dir: str) -> str:
    path = tf.train.latest_checkpoint(train_dir)
    if not path:
        raise LoadError(f"{train_dir}: no checkpoint (train first, or point at a --train_dir)")
    return path


def load(train_dir: str, checkpoint_path: Optional[str] = None) -> Translator:
    """Rebuilds the inference networks of the run in train_dir and restores their weights."""
    if not os.path.isdir(train_dir):
        raise LoadError(f"{train_dir}: no such folder")
    flags = run_config.load(train_dir)
    if flags is None:
        raise LoadError(f"{train_dir}: no {run_config.FILENAME}; not a training folder of ours")
    model = flags.get("model")
    if model not in BUILDERS:
        _import_family(model)
    if model not in BUILDERS:
        raise LoadError(f"{train_dir}: unknown model {model!r} (known: {sorted(BUILDERS)})")
    path = checkpoint_path or latest_checkpoint(train_dir)
    networks = BUILDERS[model](flags)
    status = tf.train.Checkpoint(**networks).restore(path)
    try:
        status.expect_partial().assert_existing_objects_matched()
    except AssertionError as e:
        raise LoadError(f"{path}: checkpoint does not fit the {model} networks: {e}") from None
    step = None
    try:
        reader = tf.train.load_checkpoint(path)
        for key in reader.get_variable_to_shape_map():
            if key.endswith("iterations/.ATTRIBUTES/VARIABLE_VALUE"):
                step = int(reader.get_tensor(key))
                break
    except (tf.errors.OpError, ValueError):
        pass
    return Translator(model, flags, networks, path, step)


def _import_family(model) -> None:
    """Model families other than pix2pix register themselves when their module is imported."""
    import importlib
    for mod in (f"translate.models.{model}",):
        try:
            importlib.import_module(mod)
        except ImportError:
            pass
