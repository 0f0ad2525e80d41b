"""UGATIT networks and losses (Kim et al., ICLR 2020; taki0112/UGATIT TF, znxlwm/UGATIT-pytorch).

Generator: reflection-padded 7x7 conv, two stride-2 convs, `n_res` instance-norm residual blocks
(the encoder); CAM attention (a bias-free per-channel logit from global average and from global
max pooling: the two "CAM logits" the auxiliary classifier is trained on, and the same weights
re-weight the feature map, then 1x1 conv + ReLU; the heatmap is the channel sum); an MLP gives
AdaLIN's gamma/beta (full: from the flattened map, ~268 M weights at 256 px; `light`: from the
globally pooled map); `n_res` AdaLIN residual blocks; nearest up-sampling + reflection pad + conv
+ LIN twice; 7x7 conv, tanh. Discriminators: global (n_layers 7, 5 stride-2 convs) and local
(n_layers 5, 3 stride-2 convs), spectral norm on every conv and CAM logit, LeakyReLU 0.2, the
same CAM branch; each returns (patch logits, CAM logits, heatmap).

Deviations from the published code, all deliberate:

* Spectral norm is our own `SNConv2D` (Miyato / torch.nn.utils.spectral_norm: W / sigma(W),
  one power iteration per training call, gradient through sigma). keras.layers.SpectralNormalization
  does run in a tf.function under a (one-device) MirroredStrategy, but it *overwrites* the
  trainable kernel with W / sigma inside every training forward pass (the tensorflow-addons
  scheme): no gradient through sigma, Adam's moments then refer to a kernel that is rescaled
  behind their back, and each of a step's D calls renormalises again.
  The D's CAM logit weights (a 1 x C matrix, sigma = its norm) are normalised exactly; the CAM
  re-weighting uses the normalised weights (PyTorch re-weights with the raw `weight_orig`).
* The CAM's "re-weight by the GAP weights, re-weight by the GMP weights, concat, 1x1 conv" is
  computed as ONE 1x1 conv whose kernel folds in the two weight vectors
  (K' = w_gap * K[:C] + w_gmp * K[C:]): the same function and the same parameters (the 1x1 conv
  keeps its 2C inputs, so checkpoints match the published layout), half the 1x1 conv work, and
  no two full-size re-weighted copies + concat.
* AdaLIN / LIN use the biased variance (tf.nn.moments, as the TF original and the paper's
  equations; PyTorch's torch.var is unbiased), and their instance and layer statistics come from
  one pass (layer moments from the per-channel moments), applied as one per-channel affine map.
  rho starts at 0.9 (AdaLIN, PyTorch; TF used 1.0) and 0.0 (LIN) and is clipped to [0, 1] after
  every update by a variable constraint (Keras optimizers apply constraints after each update).
* Stride-1 convolutions are layers.FastConv2D / layers.conv2d_valid (Conv2D's function and
  weights, faster gradients on CPU).
* Encoder instance norm is affine (layers.instance_norm, eps 1e-5) as the TF original; weights
  start from N(0, 0.02) as the TF original (PyTorch: its default init).
* Inputs may have extra channels (the landmark layer): generators take `in_channels` and always
  output RGB (`out_channels`=3).
"""
from __future__ import annotations

from typing import Dict, Tuple

import keras
import tensorflow as tf

from translate.models import layers

ADV_WEIGHT = 1.0
CYCLE_WEIGHT = 10.0
IDENTITY_WEIGHT = 10.0
CAM_WEIGHT = 1000.0
LEARNING_RATE = 1e-4
WEIGHT_DECAY = 1e-4
BETA1, BETA2 = 0.5, 0.999
CH, N_RES, N_DIS = 64, 4, 6
EPS = 1e-5
N_DOWN = 2  # stride-2 convs in the generator's encoder
# Stride-1 'valid' convs (most of the work): layers.FastConv2D computes Conv2D's function with
# the same weights, its gradients as forward convolutions (much faster on our CPU).
STRIDE1_CONV = layers.FastConv2D


# ---------------------------------------------------------------------------------- building blocks
@keras.saving.register_keras_serializable(package="translate")
class ClipValue(keras.constraints.Constraint):
    """Element-wise clip (rho in [0, 1]); Keras optimizers apply it after every update."""

    def __init__(self, low: float = 0.0, high: float = 1.0):
        self.low, self.high = float(low), float(high)

    def __call__(self, w):
        return tf.clip_by_value(w, self.low, self.high)

    def get_config(self):
        return {"low": self.low, "high": self.high}


def _lin_affine(x, rho, eps):
    """Per (example, channel) scale a and shift b with rho*IN(x) + (1-rho)*LN(x) == x*a + b.

    Layer moments come from the instance moments (mean of means; mean of var + mean^2 minus the
    squared mean), so x is read once for the statistics and once for the affine map.
    """
    in_mean, in_var = tf.nn.moments(x, axes=[1, 2], keepdims=True)  # [B,1,1,C]
    ln_mean = tf.reduce_mean(in_mean, axis=-1, keepdims=True)  # [B,1,1,1]
    ln_var = tf.maximum(tf.reduce_mean(in_var + tf.square(in_mean), axis=-1, keepdims=True)
                        - tf.square(ln_mean), 0.0)
    in_inv, ln_inv = tf.math.rsqrt(in_var + eps), tf.math.rsqrt(ln_var + eps)
    a = rho * in_inv + (1.0 - rho) * ln_inv
    b = -(rho * in_mean * in_inv + (1.0 - rho) * ln_mean * ln_inv)
    return a, b


@keras.saving.register_keras_serializable(package="translate")
class AdaLIN(keras.layers.Layer):
    """Adaptive layer-instance norm: (rho*IN(x) + (1-rho)*LN(x)) * gamma + beta, with gamma and
    beta [B, C] from the generator's MLP; call on [x, gamma, beta]."""

    def __init__(self, epsilon: float = EPS, rho_init: float = 0.9, **kwargs):
        super().__init__(**kwargs)
        self.epsilon, self.rho_init = float(epsilon), float(rho_init)

    def build(self, input_shape):
        c = input_shape[0][-1]
        self.rho = self.add_weight(shape=(c,), initializer=keras.initializers.Constant(self.rho_init),
                                   constraint=ClipValue(0.0, 1.0), name="rho")

    def call(self, inputs):
        x, gamma, beta = inputs
        a, b = _lin_affine(x, self.rho, self.epsilon)
        g, bt = gamma[:, None, None, :], beta[:, None, None, :]
        return x * (a * g) + (b * g + bt)

    def compute_output_shape(self, input_shape):
        return input_shape[0]

    def get_config(self):
        return {**super().get_config(), "epsilon": self.epsilon, "rho_init": self.rho_init}


@keras.saving.register_keras_serializable(package="translate")
class LIN(keras.layers.Layer):
    """Layer-instance norm of the up-sampling decoder: learned per-channel rho, gamma, beta."""

    def __init__(self, epsilon: float = EPS, **kwargs):
        super().__init__(**kwargs)
        self.epsilon = float(epsilon)

    def build(self, input_shape):
        c = input_shape[-1]
        self.rho = self.add_weight(shape=(c,), initializer="zeros", constraint=ClipValue(0.0, 1.0),
                                   name="rho")
        self.gamma = self.add_weight(shape=(c,), initializer="ones", name="gamma")
        self.beta = self.add_weight(shape=(c,), initializer="zeros", name="beta")

    def call(self, x):
        a, b = _lin_affine(x, self.rho, self.epsilon)
        return x * (a * self.gamma) + (b * self.gamma + self.beta)

    def get_config(self):
        return {**super().get_config(), "epsilon": self.epsilon}


def _l2_normalize(v):
    return v * tf.math.rsqrt(tf.reduce_sum(tf.square(v)) + 1e-12)


@keras.saving.register_keras_serializable(package="translate")
class SNConv2D(keras.layers.Layer):
    """'valid' Conv2D with a spectrally normalised kernel (Miyato et al.; torch spectral_norm).

    sigma is estimated by one power iteration per training call from the stored u (updated in
    place, a non-trainable variable, first replica's value under a strategy) with u and v held
    constant for the gradient, as PyTorch. conv(x, K / sigma) is computed as conv(x, K) / sigma
    when the output is smaller than the kernel (the big global-D layers), else the kernel is scaled.
    """

    def __init__(self, filters: int, kernel_size: int, strides: int = 1, use_bias: bool = True,
                 **kwargs):
        super().__init__(**kwargs)
        self.filters, self.kernel_size = int(filters), int(kernel_size)
        self.strides, self.use_bias = int(strides), bool(use_bias)

    def build(self, input_shape):
        k, c = self.kernel_size, input_shape[-1]
        self.kernel = self.add_weight(shape=(k, k, c, self.filters), initializer=layers.conv_init(),
                                      name="kernel")
        self.bias = (self.add_weight(shape=(self.filters,), initializer="zeros", name="bias")
                     if self.use_bias else None)
        self.u = self.add_weight(shape=(self.filters,), initializer=keras.initializers.RandomNormal(0.0, 1.0),
                                 trainable=False, aggregation="only_first_replica", name="sn_u")

    def sigma(self, training):
        w = tf.reshape(self.kernel, [-1, self.filters])  # [k*k*c, out] = torch's W^T
        u = self.u.value if isinstance(self.u, keras.Variable) else self.u
        v = _l2_normalize(tf.linalg.matvec(w, u))
        u_new = _l2_normalize(tf.linalg.matvec(w, v, transpose_a=True))
        v, u_new = tf.stop_gradient(v), tf.stop_gradient(u_new)
        if training:
            self.u.assign(u_new)
        return tf.tensordot(u_new, tf.linalg.matvec(w, v, transpose_a=True), 1)

    def call(self, x, training=False):
        inv_sigma = 1.0 / self.sigma(bool(training))
        out_shape = self.compute_output_shape(x.shape)
        out_size = None if None in out_shape[1:] else out_shape[1] * out_shape[2] * out_shape[3]
        scale_output = out_size is not None and out_size < self.kernel.shape.num_elements()
        kernel = self.kernel if scale_output else self.kernel * inv_sigma
        if self.strides == 1:
            y = layers.conv2d_valid(x, tf.convert_to_tensor(kernel))
        else:
            y = tf.nn.conv2d(x, kernel, self.strides, "VALID")
        if scale_output:
            y = y * inv_sigma
        return y + self.bias if self.use_bias else y

    def compute_output_shape(self, shape):
        out = lambda d: None if d is None else (d - self.kernel_size) // self.strides + 1  # noqa: E731
        return (shape[0], out(shape[1]), out(shape[2]), self.filters)

    def get_config(self):
        return {**super().get_config(), "filters": self.filters, "kernel_size": self.kernel_size,
                "strides": self.strides, "use_bias": self.use_bias}


@keras.saving.register_keras_serializable(package="translate")
class CAM(keras.layers.Layer):
    """Class activation map attention: x [B,H,W,C] -> (features, cam_logits [B, 2], heatmap [B,H,W,1]).

    cam_logits = (GAP(x) . w_gap, GMP(x) . w_gmp); features = act(conv1x1(concat(x*w_gap, x*w_gmp)))
    computed as one C->C 1x1 conv with the weights folded into its kernel (module docstring).
    `spectral`: the two logit weight vectors are normalised to unit norm (spectral norm of a 1 x C
    matrix), as in the discriminators.
    """

    def __init__(self, leaky: float = 0.0, spectral: bool = False, **kwargs):
        super().__init__(**kwargs)
        self.leaky, self.spectral = float(leaky), bool(spectral)

    def build(self, input_shape):
        c = input_shape[-1]
        init = layers.conv_init()
        self.w_gap = self.add_weight(shape=(c,), initializer=init, name="gap_weight")
        self.w_gmp = self.add_weight(shape=(c,), initializer=init, name="gmp_weight")
        self.kernel = self.add_weight(shape=(2 * c, c), initializer=init, name="conv1x1_kernel")
        self.bias = self.add_weight(shape=(c,), initializer="zeros", name="conv1x1_bias")

    def call(self, x):
        c = x.shape[-1]
        w_gap, w_gmp = self.w_gap, self.w_gmp
        if self.spectral:
            w_gap, w_gmp = _l2_normalize(w_gap), _l2_normalize(w_gmp)
        gap_logit = tf.linalg.matvec(tf.reduce_mean(x, axis=[1, 2]), w_gap)
        gmp_logit = tf.linalg.matvec(tf.reduce_max(x, axis=[1, 2]), w_gmp)
        cam_logits = tf.stack([gap_logit, gmp_logit], axis=-1)
        folded = w_gap[:, None] * self.kernel[:c] + w_gmp[:, None] * self.kernel[c:]
        h = tf.nn.conv2d(x, folded[None, None], 1, "VALID") + self.bias
        h = tf.nn.leaky_relu(h, self.leaky) if self.leaky else tf.nn.relu(h)
        heatmap = tf.reduce_sum(h, axis=-1, keepdims=True)
        return h, cam_logits, heatmap

    def compute_output_shape(self, shape):
        return shape, (shape[0], 2), (*shape[:3], 1)

    def get_config(self):
        return {**super().get_config(), "leaky": self.leaky, "spectral": self.spectral}


# ---------------------------------------------------------------------------------- networks
def check_sizes(image_size: int, n_dis: int = N_DIS) -> None:
    """Raises ValueError unless the generator and both discriminators fit image_size."""
    if image_size < 16 or image_size % 4:
        raise ValueError(f"UGATIT needs an image size that is a multiple of 4 and >= 16, got {image_size}")
    if n_dis < 3:
        raise ValueError(f"n_dis must be >= 3 (global D n_dis+1 layers, local n_dis-1), got {n_dis}")
    strides = n_dis + 1 - 2  # stride-2 convs of the global discriminator
    if image_size // 2 ** strides < 4 or image_size % 2 ** strides:
        raise ValueError(f"image size {image_size} is too small for n_dis={n_dis}: the global "
                         f"discriminator halves it {strides} times and needs >= 4 px left "
                         f"(use a smaller --n_dis or a larger size)")


def generator(image_size: int, in_channels: int = 3, out_channels: int = 3, ch: int = CH,
              n_res: int = N_RES, light: bool = False, name: str = "generator") -> keras.Model:
    """[B,S,S,in_channels] in [-1, 1] -> (image [B,S,S,out_channels] tanh, cam_logits [B,2],
    heatmap [B,S/4,S/4,1])."""
    if image_size % 4:
        raise ValueError(f"the UGATIT generator needs an image size that is a multiple of 4, got {image_size}")
    init = layers.conv_init()

    def conv(f, k, s, n):
        if s == 1:
            return STRIDE1_CONV(f, k, use_bias=False, kernel_initializer=init, name=n)
        return keras.layers.Conv2D(f, k, s, "valid", use_bias=False, kernel_initializer=init, name=n)
    x = keras.Input((image_size, image_size, in_channels), name="image")
    h = layers.ReflectionPad2D(3, name="enc_pad")(x)
    h = conv(ch, 7, 1, "enc_conv")(h)
    h = keras.layers.ReLU(name="enc_act")(layers.instance_norm("enc_norm")(h))
    for i in range(N_DOWN):
        h = layers.ReflectionPad2D(1, name=f"down{i}_pad")(h)
        h = conv(ch * 2 ** (i + 1), 3, 2, f"down{i}_conv")(h)
        h = keras.layers.ReLU(name=f"down{i}_act")(layers.instance_norm(f"down{i}_norm")(h))
    c = ch * 2 ** N_DOWN
    for i in range(n_res):
        r = layers.ReflectionPad2D(1, name=f"res{i}_pad1")(h)
        r = conv(c, 3, 1, f"res{i}_conv1")(r)
        r = keras.layers.ReLU(name=f"res{i}_act")(layers.instance_norm(f"res{i}_norm1")(r))
        r = layers.ReflectionPad2D(1, name=f"res{i}_pad2")(r)
        r = layers.instance_norm(f"res{i}_norm2")(conv(c, 3, 1, f"res{i}_conv2")(r))
        h = keras.layers.Add(name=f"res{i}_add")([h, r])
    h, cam_logits, heatmap = CAM(name="cam")(h)
    if light:
        z = keras.layers.GlobalAveragePooling2D(name="mlp_pool")(h)
    else:
        z = keras.layers.Flatten(name="mlp_flatten")(h)
    for i in range(2):
        z = keras.layers.Dense(c, "relu", use_bias=False, kernel_initializer=init, name=f"mlp{i}")(z)
    gamma = keras.layers.Dense(c, use_bias=False, kernel_initializer=init, name="gamma")(z)
    beta = keras.layers.Dense(c, use_bias=False, kernel_initializer=init, name="beta")(z)
    for i in range(n_res):
        r = layers.ReflectionPad2D(1, name=f"ada{i}_pad1")(h)
        r = AdaLIN(name=f"ada{i}_norm1")([conv(c, 3, 1, f"ada{i}_conv1")(r), gamma, beta])
        r = layers.ReflectionPad2D(1, name=f"ada{i}_pad2")(keras.layers.ReLU(name=f"ada{i}_act")(r))
        r = AdaLIN(name=f"ada{i}_norm2")([conv(c, 3, 1, f"ada{i}_conv2")(r), gamma, beta])
        h = keras.layers.Add(name=f"ada{i}_add")([h, r])
    for i in range(N_DOWN):
        f = c // 2 ** (i + 1)
        h = keras.layers.UpSampling2D(2, interpolation="nearest", name=f"up{i}_resize")(h)
        h = conv(f, 3, 1, f"up{i}_conv")(layers.ReflectionPad2D(1, name=f"up{i}_pad")(h))
        h = keras.layers.ReLU(name=f"up{i}_act")(LIN(name=f"up{i}_norm")(h))
    h = layers.ReflectionPad2D(3, name="out_pad")(h)
    y = keras.layers.Activation("tanh", name="output")(conv(out_channels, 7, 1, "out_conv")(h))
    return keras.Model(x, [y, cam_logits, heatmap], name=name)


def discriminator(image_size: int, in_channels: int = 3, ch: int = CH, n_layers: int = 7,
                  name: str = "discriminator") -> keras.Model:
    """Global (n_layers=7) or local (n_layers=5) D: image -> (patch logits, cam_logits [B,2], heatmap).

    n_layers - 2 stride-2 4x4 convs (reflection pad 1), a stride-1 4x4 conv, the CAM branch
    (LeakyReLU 0.2), a stride-1 4x4 conv to one channel; spectral norm on all but the 1x1 conv.
    """
    if n_layers < 3:
        raise ValueError(f"a UGATIT discriminator needs n_layers >= 3, got {n_layers}")
    x = keras.Input((image_size, image_size, in_channels), name="image")
    h, f = x, ch
    for i in range(n_layers - 2):
        f = ch * 2 ** i
        h = SNConv2D(f, 4, 2, name=f"conv{i}")(layers.ReflectionPad2D(1, name=f"pad{i}")(h))
        h = keras.layers.LeakyReLU(0.2, name=f"act{i}")(h)
    f *= 2
    h = SNConv2D(f, 4, 1, name="conv_s1")(layers.ReflectionPad2D(1, name="pad_s1")(h))
    h = keras.layers.LeakyReLU(0.2, name="act_s1")(h)
    h, cam_logits, heatmap = CAM(leaky=0.2, spectral=True, name="cam")(h)
    h = layers.ReflectionPad2D(1, name="pad_out")(h)
    logits = SNConv2D(1, 4, 1, use_bias=False, name="logits")(h)
    return keras.Model(x, [logits, cam_logits, heatmap], name=name)


def build_networks(image_size: int, in_channels: int = 3, ch: int = CH, n_res: int = N_RES,
                   n_dis: int = N_DIS, light: bool = False, d_channels: int = 3) -> Dict[str, keras.Model]:
    """The six UGATIT networks by checkpoint name: generator_ab (photo -> anime), generator_ba,
    and global/local discriminators per domain (disc_a_global scores photos...)."""
    check_sizes(image_size, n_dis)
    nets = {"generator_ab": generator(image_size, in_channels, 3, ch, n_res, light, "generator_ab"),
            "generator_ba": generator(image_size, in_channels, 3, ch, n_res, light, "generator_ba")}
    for dom in ("a", "b"):
        nets[f"disc_{dom}_global"] = discriminator(image_size, d_channels, ch, n_dis + 1, f"disc_{dom}_global")
        nets[f"disc_{dom}_local"] = discriminator(image_size, d_channels, ch, n_dis - 1, f"disc_{dom}_local")
    return nets


def rho_variables(model: keras.Model):
    """The AdaLIN / LIN rho variables (clipped to [0, 1] after every update)."""
    return [w for layer in model.layers if isinstance(layer, (AdaLIN, LIN)) for w in [layer.rho]]


def clip_rho(models) -> None:
    """Clips every rho to [0, 1] (the optimizers already do it through the constraint; for
    updates made outside an optimizer)."""
    for m in models:
        for rho in rho_variables(m):
            rho.assign(tf.clip_by_value(rho, 0.0, 1.0))


# ---------------------------------------------------------------------------------- losses
def lsgan(logits: tf.Tensor, target: float) -> tf.Tensor:
    """Per-example mean squared error to the target label -> [B] (least-squares GAN)."""
    axes = list(range(1, logits.shape.rank))
    return tf.reduce_mean(tf.square(logits - target), axis=axes)


def cam_bce(cam_logits: tf.Tensor, target: float) -> tf.Tensor:
    """Per-example sigmoid cross-entropy of the generator's CAM logits -> [B]."""
    xent = tf.nn.sigmoid_cross_entropy_with_logits(labels=tf.fill(tf.shape(cam_logits), target),
                                                   logits=cam_logits)
    return tf.reduce_mean(xent, axis=-1)


def l1(a: tf.Tensor, b: tf.Tensor) -> tf.Tensor:
    return tf.reduce_mean(tf.abs(a - b), axis=[1, 2, 3])


def d_adversarial(real_out: Tuple, fake_out: Tuple) -> tf.Tensor:
    """One discriminator's LSGAN loss on its patch logits and CAM logits, per example [B]."""
    (rl, rc, _), (fl, fc, _) = real_out, fake_out
    return lsgan(rl, 1.0) + lsgan(fl, 0.0) + lsgan(rc, 1.0) + lsgan(fc, 0.0)


def g_adversarial(fake_out: Tuple) -> tf.Tensor:
    fl, fc, _ = fake_out
    return lsgan(fl, 1.0) + lsgan(fc, 1.0)


# ---------------------------------------------------------------------------------- loading
def generator_args(flags: Dict) -> Dict:
    """generator() keyword arguments from a run's flags (flags.json or the family options)."""
    return dict(image_size=int(flags["image_size"]), in_channels=4 if flags.get("landmark_channel") else 3,
                out_channels=3, ch=int(flags.get("ch", CH)), n_res=int(flags.get("n_res", N_RES)),
                light=bool(flags.get("light", False)))


def image_only(gen: keras.Model) -> keras.Model:
    """The generator with its image output only (same layers and weights, and the same checkpoint
    layout: every layer lies on the image path), for the translate / export / serving code."""
    return keras.Model(gen.input, gen.outputs[0], name=gen.name)


def build_inference(flags: Dict) -> Dict[str, keras.Model]:
    """generator_ab (photo -> anime) and generator_ba of a UGATIT run, image output only."""
    return {name: image_only(generator(**generator_args(flags), name=name))
            for name in ("generator_ab", "generator_ba")}
