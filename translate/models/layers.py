"""Layers shared by the translation networks (pix2pix now; CycleGAN / UGATIT later).

No tensorflow-addons: instance norm is GroupNormalization with one group per channel, and
reflection padding is a thin layer over tf.pad. Weights start from N(0, 0.02) as in pix2pix /
CycleGAN (junyanz `--init_type normal --init_gain 0.02`); norm scales from N(1, 0.02).
"""
from __future__ import annotations

import keras
import tensorflow as tf

INIT_GAIN = 0.02


def conv_init(gain: float = INIT_GAIN) -> keras.initializers.Initializer:
    return keras.initializers.RandomNormal(0.0, gain)


def instance_norm(name=None, epsilon: float = 1e-5, affine: bool = True) -> keras.layers.Layer:
    """Per-example, per-channel norm. epsilon 1e-5 as PyTorch, not Keras' 1e-3 default.

    affine=False drops the learned scale and offset (PyTorch InstanceNorm2d's default, which
    junyanz's CycleGAN uses)."""
    return keras.layers.GroupNormalization(
        groups=-1, epsilon=epsilon, center=affine, scale=affine,
        gamma_initializer=keras.initializers.RandomNormal(1.0, INIT_GAIN), name=name)


def norm_layer(kind: str, name=None) -> keras.layers.Layer:
    """'instance' (default everywhere: per example, so exact under any batching or strategy) or
    'batch' (the pix2pix paper's choice; equals instance norm at batch 1 in training mode)."""
    if kind == "instance":
        return instance_norm(name)
    if kind == "batch":
        return keras.layers.BatchNormalization(
            epsilon=1e-5, momentum=0.9,
            gamma_initializer=keras.initializers.RandomNormal(1.0, INIT_GAIN), name=name)
    raise ValueError(f"norm must be 'instance' or 'batch', not {kind!r}")


@keras.saving.register_keras_serializable(package="translate")
class ReflectionPad2D(keras.layers.Layer):
    """Reflection padding of the two spatial axes (NHWC): no zero border for convs to learn."""

    def __init__(self, padding: int = 1, **kwargs):
        super().__init__(**kwargs)
        self.padding = int(padding)

    def call(self, x):
        p = self.padding
        return tf.pad(x, [[0, 0], [p, p], [p, p], [0, 0]], mode="REFLECT")

    def compute_output_shape(self, shape):
        grow = lambda d: None if d is None else d + 2 * self.padding  # noqa: E731
        return (shape[0], grow(shape[1]), grow(shape[2]), shape[3])

    def get_config(self):
        return {**super().get_config(), "padding": self.padding}


@keras.saving.register_keras_serializable(package="translate")
class InferenceDropout(keras.layers.Dropout):
    """Dropout that stays on at inference: pix2pix's only source of randomness (the paper runs
    the generator with dropout at test time too)."""

    def call(self, inputs, training=None):
        return super().call(inputs, training=True)
