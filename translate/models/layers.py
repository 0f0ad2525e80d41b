"""Layers shared by the translation networks (pix2pix, CycleGAN, UGATIT).

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


def instance_norm(name=None, epsilon: float = 1e-5, affine: bool = True,
                  fast: bool = True) -> keras.layers.Layer:
    """Per-example, per-channel norm. epsilon 1e-5 as PyTorch, not Keras' 1e-3 default.

    affine=False drops the learned scale and offset (PyTorch InstanceNorm2d's default, which
    junyanz's CycleGAN uses). fast: `InstanceNormalization` (closed-form gradient), else keras'
    GroupNormalization itself; same weights either way."""
    return (InstanceNormalization if fast else keras.layers.GroupNormalization)(
        groups=-1, epsilon=epsilon, center=affine, scale=affine,
        gamma_initializer=keras.initializers.RandomNormal(1.0, INIT_GAIN), name=name)


def normalize_per_channel(x: tf.Tensor, epsilon: float) -> tf.Tensor:
    """(x - mean) / sqrt(var + epsilon) over the spatial axes of NHWC x, with the closed-form
    gradient rstd * (g - mean(g) - xhat * mean(g * xhat)): a third fewer passes over the
    activations than autodiff through the moments."""
    @tf.custom_gradient
    def norm(x):
        xc = x - tf.reduce_mean(x, [1, 2], keepdims=True)
        rstd = tf.math.rsqrt(tf.reduce_mean(tf.square(xc), [1, 2], keepdims=True) + epsilon)
        xhat = xc * rstd

        def grad(g):
            return rstd * (g - tf.reduce_mean(g, [1, 2], keepdims=True)
                           - xhat * tf.reduce_mean(g * xhat, [1, 2], keepdims=True))
        return xhat, grad
    return norm(x)


@keras.saving.register_keras_serializable(package="translate")
class InstanceNormalization(keras.layers.GroupNormalization):
    """GroupNormalization with one group per channel (same weights, names and config) computed
    by `normalize_per_channel` for NHWC images."""

    def call(self, inputs):
        if inputs.shape.rank != 4 or self.groups != inputs.shape[-1] or self.axis not in (-1, 3):
            return super().call(inputs)
        y = normalize_per_channel(tf.cast(inputs, tf.float32), self.epsilon)
        if self.scale:
            y = y * tf.cast(self.gamma, y.dtype)
        if self.center:
            y = y + tf.cast(self.beta, y.dtype)
        return tf.cast(y, self.compute_dtype)


def norm_layer(kind: str, name=None, fast: bool = True) -> keras.layers.Layer:
    """'instance' (default everywhere: per example, so exact under any batching or strategy) or
    'batch' (the pix2pix paper's choice; equals instance norm at batch 1 in training mode)."""
    if kind == "instance":
        return instance_norm(name, fast=fast)
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


# ------------------------------------------------------------------ fast stride-1 convolutions
FEW_CHANNELS = 8  # below this many output channels TF's CPU Conv2D kernel is slow


def conv2d_valid_forward(x: tf.Tensor, w: tf.Tensor) -> tf.Tensor:
    """'valid', stride-1 correlation of x [B, H, W, Ci] with w [K, K, Ci, Co].

    With few output channels (an RGB output layer, a 1-channel score) TF's Conv2D kernel is
    ~20x slower per FLOP on CPU; the same result is then computed as the adjoint (backprop input)
    of the mirrored convolution, which TF runs fast, on a grid K-1 larger each side, cropped.
    """
    k, co = w.shape[0], w.shape[3]
    if co >= FEW_CHANNELS or w.shape[2] < FEW_CHANNELS:
        return tf.nn.conv2d(x, w, 1, "VALID")
    f = tf.transpose(tf.reverse(w, [0, 1]), [0, 1, 3, 2])  # [K, K, Co, Ci]
    h, wd = x.shape[1] - k + 1, x.shape[2] - k + 1
    sizes = tf.stack([tf.shape(x)[0], x.shape[1] + k - 1, x.shape[2] + k - 1, co])
    full = tf.raw_ops.Conv2DBackpropInput(input_sizes=sizes, filter=f, out_backprop=x,
                                          strides=[1, 1, 1, 1], padding="VALID")
    return full[:, k - 1:k - 1 + h, k - 1:k - 1 + wd]


def _batch_to_in_channels(t: tf.Tensor) -> tf.Tensor:
    """[B, H, W, C] -> [H, W, B, C]; at batch 1 (the GANs' default) a free reshape, where TF's
    Transpose copied the whole tensor."""
    if t.shape[0] == 1:
        return tf.reshape(t, [t.shape[1], t.shape[2], 1, t.shape[3]])
    return tf.transpose(t, [1, 2, 0, 3])


@tf.custom_gradient
def conv2d_valid(x: tf.Tensor, w: tf.Tensor):
    """conv2d_valid_forward whose gradients are also forward convolutions.

    TF's CPU Conv2DBackpropFilter / Conv2DBackpropInput kernels are several times slower than the
    forward convolution (figures: translate/README.md, Measured). The same gradients as plain convolutions:
      dx = conv(pad(dy, K-1), mirrored w with Ci and Co swapped)
      dw = conv(x with batch and channels swapped, dy as the kernel), batch and channels swapped back.
    """
    y = conv2d_valid_forward(x, w)

    def grad(dy):
        k = w.shape[0]
        dy_pad = tf.pad(dy, [[0, 0], [k - 1, k - 1], [k - 1, k - 1], [0, 0]])
        dx = conv2d_valid_forward(dy_pad, tf.transpose(tf.reverse(w, [0, 1]), [0, 1, 3, 2]))
        dw = tf.nn.conv2d(tf.transpose(x, [3, 1, 2, 0]), _batch_to_in_channels(dy), 1, "VALID")
        return dx, tf.transpose(dw, [1, 2, 0, 3])
    return y, grad


def _bias_and_activation(layer, y: tf.Tensor) -> tf.Tensor:
    """What keras' conv layers do after the convolution, for the layers here that replace it."""
    if layer.use_bias:
        y = tf.nn.bias_add(y, layer.bias)
    return layer.activation(y) if layer.activation is not None else y


@keras.saving.register_keras_serializable(package="translate")
class FastConv2D(keras.layers.Conv2D):
    """keras Conv2D restricted to stride 1, 'valid' padding (pad with a layer before it), computed
    by `conv2d_valid`: same weights and variable names as Conv2D (checkpoints interchange), faster
    backward pass on CPU."""

    def __init__(self, filters, kernel_size, **kwargs):
        for key, ok in (("strides", (1, (1, 1))), ("padding", ("valid",)), ("dilation_rate", (1, (1, 1)))):
            if kwargs.get(key, ok[0]) not in ok:
                raise ValueError(f"FastConv2D supports only {key}={ok[0]!r}")
            kwargs.pop(key, None)
        super().__init__(filters, kernel_size, **kwargs)

    def call(self, inputs):
        return _bias_and_activation(self, conv2d_valid(inputs, tf.convert_to_tensor(self.kernel)))


# ------------------------------------------------ low-resolution strided convs as matmuls
# At the U-Net's inner levels (a few pixels, 512-1024 channels) a 4x4 conv is one small-M matrix
# product with a 16-32 MB kernel. TF's CPU conv kernels and MatMul with a transposed kernel
# operand took 5-10x the time of streaming the kernel once (e.g. 92 ms vs 10 ms for
# [4, 1024] x [1024, 8192]^T), so these products are written with the orientations that
# stream the big operand, forward and backward.

@tf.custom_gradient
def matmul_wxt(w: tf.Tensor, x: tf.Tensor):
    """w [N, K] @ x[M, K]^T -> [N, M], with small M."""
    def grad(dy):
        dy_t = tf.transpose(dy)  # [M, N]: small; these orientations measured fastest
        return tf.matmul(dy_t, x, transpose_a=True), tf.matmul(dy_t, w)
    return tf.matmul(w, x, transpose_b=True), grad


@tf.custom_gradient
def matmul_w(x: tf.Tensor, w: tf.Tensor):
    """x [M, K] @ w[K, N] with small M."""
    y = tf.matmul(x, w)

    def grad(dy):
        return tf.transpose(tf.matmul(w, dy, transpose_b=True)), tf.matmul(x, dy, transpose_a=True)
    return y, grad


def conv_same_as_matmul(x: tf.Tensor, kernel: tf.Tensor, stride: int) -> tf.Tensor:
    """tf.nn.conv2d(x, kernel [K, K, Ci, Co], stride, 'SAME') as im2col + matmul_w (square x)."""
    k, ci, co = kernel.shape[0], kernel.shape[2], kernel.shape[3]
    n = x.shape[1]
    n_out = -(-n // stride)
    total = max((n_out - 1) * stride + k - n, 0)
    lo = total // 2
    xp = tf.pad(x, [[0, 0], [lo, total - lo], [lo, total - lo], [0, 0]])
    span = stride * (n_out - 1) + 1
    cols = tf.stack([xp[:, a:a + span:stride, b:b + span:stride] for a in range(k) for b in range(k)], 3)
    y = matmul_w(tf.reshape(cols, [-1, k * k * ci]), tf.reshape(kernel, [k * k * ci, co]))
    return tf.reshape(y, [-1, n_out, n_out, co])


def conv_transpose_4x4s2_as_matmul(x: tf.Tensor, kernel: tf.Tensor) -> tf.Tensor:
    """Conv2DTranspose(k=4, stride 2, 'same') of square x with a keras kernel [4, 4, Co, Ci]:
    one matmul_wt gives every input pixel's 4x4 output patch, then the patches are summed into
    place (col2im) phase by phase: output row 2u + p gets kernel rows p and p + 2."""
    co, ci, n = kernel.shape[2], kernel.shape[3], x.shape[1]
    y = matmul_wxt(tf.reshape(kernel, [16 * co, ci]), tf.reshape(x, [-1, ci]))  # [16 Co, B n n]
    if n == 1:  # one patch: the output is its centre (the general path was 5x slower here)
        return tf.reshape(tf.transpose(y), [-1, 4, 4, co])[:, 1:3, 1:3]
    y = tf.reshape(y, [2, 2, 2, 2, co, -1, n, n])  # kernel row 2a + p, column 2b + q
    slabs = tf.unstack(tf.reshape(tf.transpose(y, [0, 2, 5, 6, 7, 1, 3, 4]), [4, -1, n, n, 4 * co]))
    full = tf.add_n([tf.pad(slab, [[0, 0], [a, 1 - a], [b, 1 - b], [0, 0]])
                     for slab, (a, b) in zip(slabs, [(0, 0), (0, 1), (1, 0), (1, 1)])])
    return tf.nn.depth_to_space(full, 2)[:, 1:2 * n + 1, 1:2 * n + 1]


MATMUL_MAX_SIZE = 16  # input sides up to this use the matmul forms (measured faster at 2-16 px)


def _uses_matmul(layer, inputs) -> bool:
    h, w = inputs.shape[1], inputs.shape[2]
    return (h is not None and h == w and h <= MATMUL_MAX_SIZE and layer.padding == "same"
            and tuple(layer.dilation_rate) == (1, 1) and layer.data_format == "channels_last")


@keras.saving.register_keras_serializable(package="translate")
class LowResConv2D(keras.layers.Conv2D):
    """keras Conv2D ('same' padding) that computes as `conv_same_as_matmul` when the input is
    at most MATMUL_MAX_SIZE pixels square; same weights and names as Conv2D."""

    def convolution_op(self, inputs, kernel):
        if _uses_matmul(self, inputs) and self.strides[0] == self.strides[1]:
            return conv_same_as_matmul(inputs, tf.convert_to_tensor(kernel), self.strides[0])
        return super().convolution_op(inputs, kernel)


@keras.saving.register_keras_serializable(package="translate")
class LowResConv2DTranspose(keras.layers.Conv2DTranspose):
    """keras Conv2DTranspose(4, 2, 'same') that computes as `conv_transpose_4x4s2_as_matmul`
    when the input is at most MATMUL_MAX_SIZE pixels square; same weights and names."""

    def call(self, inputs):
        if not (_uses_matmul(self, inputs) and tuple(self.kernel_size) == (4, 4)
                and tuple(self.strides) == (2, 2) and self.output_padding is None):
            return super().call(inputs)
        return _bias_and_activation(
            self, conv_transpose_4x4s2_as_matmul(inputs, tf.convert_to_tensor(self.kernel)))
