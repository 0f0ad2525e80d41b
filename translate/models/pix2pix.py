"""pix2pix networks and losses: U-Net generator, 70x70 PatchGAN conditional discriminator.

Follows the paper / junyanz `unet_256` + `basic` D, with two deliberate choices:

* No norm on the outermost down conv (keeps the input's values) and none at the innermost 1x1
  bottleneck: normalising a 1x1 map over its (single) position outputs exactly the offset in
  training, so the innermost block would carry no information (junyanz issue #60; both TF
  tutorials have this bug).
* Instance norm by default (GroupNormalization(groups=-1)): at pix2pix's batch size 1 it is what
  batch norm computes in training mode, it stays per example under any batch / strategy (so the
  discriminator can score real and fake in one batch), and there are no moving statistics
  to disagree with training at test time. `norm="batch"` is available for comparison.

Depth follows the image size: log2(size) stride-2 levels down to 1x1 (8 at 256). Dropout 0.5 in
the first three decoder blocks stays on at inference, as in pix2pix (its only noise source).
"""
from __future__ import annotations

import math
from typing import Dict, Tuple

import keras
import tensorflow as tf

from translate.models import layers

LAMBDA_L1 = 100.0
DROPOUT_BLOCKS = 3


def unet_levels(image_size: int) -> int:
    """Stride-2 levels that take image_size down to 1x1; image_size must be a power of 2 >= 4."""
    levels = int(round(math.log2(image_size))) if image_size > 0 else 0
    if image_size < 4 or 2 ** levels != image_size:
        raise ValueError(f"the U-Net needs a power-of-2 image size >= 4, got {image_size}")
    return levels


def unet_generator(image_size: int, in_channels: int, out_channels: int = 3, ngf: int = 64,
                   norm: str = "instance", dropout: float = 0.5, dropout_at_inference: bool = True,
                   fast_conv: bool = True, name: str = "generator") -> keras.Model:
    """[B, S, S, in_channels] in [-1, 1] -> [B, S, S, out_channels] in [-1, 1] (tanh).

    The innermost activation layer is named "bottleneck" (1x1, for tests and inspection).
    fast_conv: convs and transposed convs at <= 16 px as matmuls (layers.LowResConv2D /
    LowResConv2DTranspose: same weights and names; the inner levels' large kernels made TF's
    conv kernels slower than streaming them once: translate/README.md, Measured) and instance norm with its closed-form
    gradient (layers.InstanceNormalization).
    """
    conv = layers.LowResConv2D if fast_conv else keras.layers.Conv2D
    conv_t = layers.LowResConv2DTranspose if fast_conv else keras.layers.Conv2DTranspose
    levels = unet_levels(image_size)
    filters = [ngf * min(2 ** i, 8) for i in range(levels)]
    init = layers.conv_init()
    x = keras.Input((image_size, image_size, in_channels), name="condition")
    h, skips = x, []
    for i, f in enumerate(filters):
        innermost = i == levels - 1
        use_norm = 0 < i < levels - 1
        h = conv(f, 4, 2, "same", use_bias=not use_norm, kernel_initializer=init,
                 name=f"down{i}_conv")(h)
        if use_norm:
            h = layers.norm_layer(norm, f"down{i}_norm", fast_conv)(h)
        h = keras.layers.LeakyReLU(0.2, name="bottleneck" if innermost else f"down{i}_act")(h)
        skips.append(h)
    drop = layers.InferenceDropout if dropout_at_inference else keras.layers.Dropout
    for j, (f, skip) in enumerate(zip(filters[-2::-1], skips[-2::-1])):
        h = conv_t(f, 4, 2, "same", use_bias=False, kernel_initializer=init, name=f"up{j}_conv")(h)
        h = layers.norm_layer(norm, f"up{j}_norm", fast_conv)(h)
        if j < DROPOUT_BLOCKS and dropout > 0:
            h = drop(dropout, name=f"up{j}_dropout")(h)
        h = keras.layers.ReLU(name=f"up{j}_act")(h)
        h = keras.layers.Concatenate(name=f"up{j}_skip")([h, skip])
    y = conv_t(out_channels, 4, 2, "same", kernel_initializer=init, activation="tanh",
               name="output")(h)
    return keras.Model(x, y, name=name)


def patch_discriminator(image_size: int, in_channels: int, target_channels: int = 3, ndf: int = 64,
                        n_layers: int = 3, norm: str = "instance", fast_conv: bool = True,
                        name: str = "discriminator") -> keras.Model:
    """(condition, image) -> patch logits; 70x70 receptive field with n_layers=3 (30x30 at 256).

    Conditional: the condition and the (real or generated) image are concatenated on channels.
    Padding as junyanz (1 on each side): 'same' for the stride-2 convs, explicit for stride 1.
    fast_conv: the two stride-1 convs as layers.FastConv2D (same weights and names; their
    gradients as forward convolutions; the logits conv's filter gradient was a visible share of
    a training step in TF's Conv2DBackpropFilter).
    """
    init = layers.conv_init()
    stride1 = layers.FastConv2D if fast_conv else keras.layers.Conv2D
    cond = keras.Input((image_size, image_size, in_channels), name="condition")
    img = keras.Input((image_size, image_size, target_channels), name="image")
    h = keras.layers.Concatenate(name="pair")([cond, img])
    h = keras.layers.Conv2D(ndf, 4, 2, "same", kernel_initializer=init, name="conv0")(h)
    h = keras.layers.LeakyReLU(0.2, name="act0")(h)
    for n in range(1, n_layers + 1):
        f = ndf * min(2 ** n, 8)
        if n < n_layers:
            h = keras.layers.Conv2D(f, 4, 2, "same", use_bias=False, kernel_initializer=init,
                                    name=f"conv{n}")(h)
        else:
            h = keras.layers.ZeroPadding2D(1, name=f"pad{n}")(h)
            h = stride1(f, 4, use_bias=False, kernel_initializer=init, name=f"conv{n}")(h)
        h = layers.norm_layer(norm, f"norm{n}", fast_conv)(h)
        h = keras.layers.LeakyReLU(0.2, name=f"act{n}")(h)
    h = keras.layers.ZeroPadding2D(1, name="pad_out")(h)
    logits = stride1(1, 4, kernel_initializer=init, name="logits")(h)
    return keras.Model([cond, img], logits, name=name)


def _bce_per_example(logits: tf.Tensor, label: float) -> tf.Tensor:
    """Mean sigmoid cross-entropy over each example's patches -> [B]."""
    xent = tf.nn.sigmoid_cross_entropy_with_logits(labels=tf.fill(tf.shape(logits), label),
                                                   logits=logits)
    return tf.reduce_mean(xent, axis=[1, 2, 3])


def generator_losses(fake_logits: tf.Tensor, fake: tf.Tensor, target: tf.Tensor,
                     lambda_l1: float = LAMBDA_L1) -> Tuple[tf.Tensor, tf.Tensor, tf.Tensor]:
    """Per-example (total, gan, l1) [B]: total = BCE(D(fake) vs real) + lambda_l1 * L1."""
    gan = _bce_per_example(fake_logits, 1.0)
    l1 = tf.reduce_mean(tf.abs(target - fake), axis=[1, 2, 3])
    return gan + lambda_l1 * l1, gan, l1


def discriminator_losses(real_logits: tf.Tensor, fake_logits: tf.Tensor) -> Tuple[tf.Tensor, tf.Tensor, tf.Tensor]:
    """Per-example (total, real, fake) [B]; total = (real + fake) / 2 as junyanz (slows D a little)."""
    real = _bce_per_example(real_logits, 1.0)
    fake = _bce_per_example(fake_logits, 0.0)
    return 0.5 * (real + fake), real, fake


# ---------------------------------------------------------------------------------- loading
def build_inference(flags: Dict) -> Dict[str, keras.Model]:
    """The generator of a pix2pix run (flags.json)."""
    from translate.datasets.pipelines import CONDITION_CHANNELS
    return {"generator": unet_generator(flags["image_size"], CONDITION_CHANNELS[flags["condition"]],
                                        ngf=flags["ngf"], norm=flags["norm"])}
