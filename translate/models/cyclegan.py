"""CycleGAN networks and losses: ResNet generator, unconditional 70x70 PatchGAN, LSGAN.

As published (junyanz `resnet_9blocks` + `basic` D, `--norm instance`): c7s1-ngf, d2ngf,
d4ngf, N residual blocks, u2ngf, ungf, c7s1-3 + tanh; reflection padding; instance norm
without affine parameters (PyTorch's InstanceNorm2d default, eps 1e-5) after convs that keep
their bias, so the parameter counts are junyanz's: 11,378,179 for ResNet-9 at ngf 64 and
2,764,737 for the PatchGAN at ndf 64 (tests/test_cyclegan.py). N defaults to 9 blocks at 256 px
and above, 6 below. Up-sampling is the published stride-2 transposed conv; `upsample="resize"`
(nearest x2 + reflection pad + 3x3 conv) is the usual fix for checkerboard artefacts.

Landmark variants (the layer is the input's last channel, translate.datasets.pipelines.cyclegan_dataset):

* ``landmark_channel``: G takes RGB + layer (4 channels) and outputs RGB; the cycle maps back
  with the source's layer. The discriminators see RGB only. A D shown the layer would be
  shown the *source* domain's geometry next to a fake (photo proportions under an anime
  picture) and the target domain's geometry next to a real one, and could tell them apart from
  the layer alone, a cue the generator cannot change: its gradient would say nothing about the
  picture. (A "landmark-matched" D, as in Landmark Assisted CycleGAN, needs landmarks predicted
  from the output by a regressor, which we do not have.)
* ``landmark_output``: G also outputs the layer (a 4th tanh channel); a reconstruction loss
  pulls it to the input layer. The cycle then maps back with the layer G carried, so the
  loss measures whether the layer survives the trip as an identity mapping.
* ``keypoint_attention``: the layer also drives a spatial attention map inside G (residual
  attention, Wang et al. 2017): m = sigmoid(conv(conv(avgpool4(layer)))) at the residual
  resolution, and every residual block computes x + (1 + m_k) * F(x), with a learned per-block
  strength m_k = a_k * m (a_k starts at 0, so training starts from the plain 4-channel model).
  (1 + m) never switches a block off away from the landmarks (the style must change everywhere);
  it lets the blocks act harder around eyes, nose and mouth, where plain CycleGAN distorted faces.
"""
from __future__ import annotations

from typing import Dict, Optional, Tuple

import keras
import tensorflow as tf

from translate.models import layers

LAMBDA_CYCLE = 10.0
LAMBDA_IDENTITY = 0.5  # times lambda_cycle, as junyanz's --lambda_identity
UPSAMPLE = ("transpose", "resize")


def default_blocks(image_size: int) -> int:
    return 9 if image_size >= 256 else 6


def _norm(name: str, fast: bool = True) -> keras.layers.Layer:
    return layers.instance_norm(name, affine=False, fast=fast)


def _conv(filters, kernel, stride=1, padding="valid", name=None, fast=True, **kw):
    """Conv2D; stride-1 'valid' ones as layers.FastConv2D (same weights, faster gradients) if fast."""
    if fast and stride == 1 and padding == "valid":
        return layers.FastConv2D(filters, kernel, kernel_initializer=layers.conv_init(), name=name, **kw)
    return keras.layers.Conv2D(filters, kernel, stride, padding, kernel_initializer=layers.conv_init(),
                               name=name, **kw)


@keras.saving.register_keras_serializable(package="translate")
class Scale(keras.layers.Layer):
    """x * a with one learned scalar a (starts at `init`)."""

    def __init__(self, init: float = 0.0, **kwargs):
        super().__init__(**kwargs)
        self.init = float(init)

    def build(self, shape):
        self.a = self.add_weight(shape=(), initializer=keras.initializers.Constant(self.init), name="a")

    def call(self, x):
        return x * self.a

    def get_config(self):
        return {**super().get_config(), "init": self.init}


def _attention_map(layer: tf.Tensor, name: str = "attention", fast: bool = True) -> tf.Tensor:
    """Landmark layer [B, S, S, 1] -> attention [B, S/4, S/4, 1] in (0, 1)."""
    h = keras.layers.AveragePooling2D(4, name=f"{name}_pool")(layer)
    h = layers.ReflectionPad2D(1, name=f"{name}_pad0")(h)
    h = _conv(16, 3, activation="relu", name=f"{name}_conv0", fast=fast)(h)
    h = layers.ReflectionPad2D(1, name=f"{name}_pad1")(h)
    return _conv(1, 3, activation="sigmoid", name=f"{name}_map", fast=fast)(h)


def resnet_generator(image_size: int, in_channels: int = 3, out_channels: int = 3, ngf: int = 64,
                     n_blocks: Optional[int] = None, upsample: str = "transpose",
                     keypoint_attention: bool = False, fast_conv: bool = True,
                     name: str = "generator") -> keras.Model:
    """[B, S, S, in_channels] in [-1, 1] -> [B, S, S, out_channels] (tanh); S a multiple of 4.

    With keypoint_attention the input's last channel is the landmark layer (see module doc).
    fast_conv: stride-1 convs as layers.FastConv2D (same weights; a faster backward on CPU: translate/README.md, Measured)
    and instance norm with its closed-form gradient (layers.InstanceNormalization).
    """
    if image_size % 4:
        raise ValueError(f"the ResNet generator needs an image size divisible by 4, got {image_size}")
    if upsample not in UPSAMPLE:
        raise ValueError(f"upsample must be one of {UPSAMPLE}, not {upsample!r}")
    if keypoint_attention and in_channels < 4:
        raise ValueError("keypoint_attention needs the landmark layer as an input channel")
    n_blocks = default_blocks(image_size) if n_blocks is None else n_blocks
    x = keras.Input((image_size, image_size, in_channels), name="image")
    conv = lambda *a, **kw: _conv(*a, fast=fast_conv, **kw)  # noqa: E731
    h = layers.ReflectionPad2D(3, name="in_pad")(x)
    h = conv(ngf, 7, name="in_conv")(h)
    h = keras.layers.ReLU(name="in_act")(_norm("in_norm", fast_conv)(h))
    for i, f in enumerate((ngf * 2, ngf * 4)):
        h = conv(f, 3, 2, "same", name=f"down{i}_conv")(h)
        h = keras.layers.ReLU(name=f"down{i}_act")(_norm(f"down{i}_norm", fast_conv)(h))
    att = _attention_map(x[..., -1:], fast=fast_conv) if keypoint_attention else None
    for b in range(n_blocks):
        r = layers.ReflectionPad2D(1, name=f"res{b}_pad0")(h)
        r = keras.layers.ReLU(name=f"res{b}_act")(_norm(f"res{b}_norm0", fast_conv)(conv(ngf * 4, 3, name=f"res{b}_conv0")(r)))
        r = layers.ReflectionPad2D(1, name=f"res{b}_pad1")(r)
        r = _norm(f"res{b}_norm1", fast_conv)(conv(ngf * 4, 3, name=f"res{b}_conv1")(r))
        if att is not None:
            gain = Scale(0.0, name=f"res{b}_att_gain")(att)  # a_b * m, [B, S/4, S/4, 1]
            r = keras.layers.Add(name=f"res{b}_att")([r, keras.layers.Multiply(name=f"res{b}_att_mul")([r, gain])])
        h = keras.layers.Add(name=f"res{b}_add")([h, r])
    for i, f in enumerate((ngf * 2, ngf)):
        if upsample == "transpose":
            h = keras.layers.Conv2DTranspose(f, 3, 2, "same", kernel_initializer=layers.conv_init(),
                                             name=f"up{i}_conv")(h)
        else:
            h = keras.layers.UpSampling2D(2, interpolation="nearest", name=f"up{i}_resize")(h)
            h = conv(f, 3, name=f"up{i}_conv")(layers.ReflectionPad2D(1, name=f"up{i}_pad")(h))
        h = keras.layers.ReLU(name=f"up{i}_act")(_norm(f"up{i}_norm", fast_conv)(h))
    h = layers.ReflectionPad2D(3, name="out_pad")(h)
    y = conv(out_channels, 7, activation="tanh", name="output")(h)
    return keras.Model(x, y, name=name)


def patch_discriminator(image_size: int, in_channels: int = 3, ndf: int = 64, n_layers: int = 3,
                        fast_conv: bool = True, name: str = "discriminator") -> keras.Model:
    """Image -> patch scores (LSGAN, no sigmoid); 70x70 receptive field with n_layers=3.

    Unconditional (pix2pix's D scores a (condition, image) pair). Bias everywhere and non-affine
    instance norm, as junyanz with --norm instance; 30x30 scores at 256 px.
    """
    img = keras.Input((image_size, image_size, in_channels), name="image")
    h = keras.layers.LeakyReLU(0.2, name="act0")(_conv(ndf, 4, 2, "same", name="conv0")(img))
    for n in range(1, n_layers + 1):
        f = ndf * min(2 ** n, 8)
        if n < n_layers:
            h = _conv(f, 4, 2, "same", name=f"conv{n}")(h)
        else:
            h = _conv(f, 4, 1, name=f"conv{n}", fast=fast_conv)(keras.layers.ZeroPadding2D(1, name=f"pad{n}")(h))
        h = keras.layers.LeakyReLU(0.2, name=f"act{n}")(_norm(f"norm{n}", fast_conv)(h))
    h = keras.layers.ZeroPadding2D(1, name="pad_out")(h)
    return keras.Model(img, _conv(1, 4, name="scores", fast=fast_conv)(h), name=name)


# ---------------------------------------------------------------------------------- losses
def _mean_per_example(x: tf.Tensor) -> tf.Tensor:
    return tf.reduce_mean(x, axis=list(range(1, x.shape.rank)))


def lsgan_generator_loss(fake_scores: tf.Tensor) -> tf.Tensor:
    """Per-example mean (D(G(x)) - 1)^2 -> [B]."""
    return _mean_per_example(tf.square(fake_scores - 1.0))


def lsgan_discriminator_loss(real_scores: tf.Tensor, fake_scores: tf.Tensor) -> Tuple[tf.Tensor, tf.Tensor]:
    """Per-example ((D(real) - 1)^2, D(fake)^2) -> [B] each; junyanz's D loss is half their sum."""
    return _mean_per_example(tf.square(real_scores - 1.0)), _mean_per_example(tf.square(fake_scores))


def l1(a: tf.Tensor, b: tf.Tensor) -> tf.Tensor:
    """Per-example mean absolute difference -> [B]."""
    return _mean_per_example(tf.abs(a - b))


# ---------------------------------------------------------------------------------- loading
def generator_args(flags: Dict) -> Dict:
    """resnet_generator keyword arguments of a run (flags.json), for both directions."""
    landmark = bool(flags.get("landmark_channel"))
    return dict(image_size=int(flags["image_size"]), in_channels=4 if landmark else 3,
                out_channels=4 if flags.get("landmark_output") else 3, ngf=int(flags.get("ngf", 64)),
                n_blocks=flags.get("n_blocks"), upsample=flags.get("upsample", "transpose"),
                keypoint_attention=bool(flags.get("keypoint_attention")))


def build_inference(flags: Dict) -> Dict[str, keras.Model]:
    """generator_ab (photo -> anime) and generator_ba (anime -> photo) of a CycleGAN run."""
    args = generator_args(flags)
    return {"generator_ab": resnet_generator(**args, name="generator_ab"),
            "generator_ba": resnet_generator(**args, name="generator_ba")}
