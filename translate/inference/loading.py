"""Loads a trained translator from its --train_dir: the networks rebuilt from flags.json and the
latest checkpoint's weights, for evaluation, the photo -> anime CLI, export and serving.

The networks come from the family's builder in translate.models.registry (flags dict ->
{network name: keras.Model}, with the names the training checkpoint uses: tf.train.Checkpoint
attribute names). Optimizers and discriminators in the checkpoint are simply not restored
(`expect_partial`).
"""
from __future__ import annotations

import dataclasses
import os
from typing import Dict, Optional

import keras
import tensorflow as tf

from translate import run_config
from translate.models import registry


class LoadError(ValueError):
    """The train_dir has no usable run (no flags.json, no checkpoint, unknown model)."""


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
    try:
        registry.get(model)
    except registry.UnknownModelError as e:
        raise LoadError(f"{train_dir}: {e}") from None
    path = checkpoint_path or latest_checkpoint(train_dir)
    networks = registry.build_inference(flags)
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

