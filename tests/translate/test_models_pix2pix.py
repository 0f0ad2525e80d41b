"""pix2pix networks: shapes, sizes, the un-normalised bottleneck, inference dropout, losses."""
import numpy as np
import pytest

tf = pytest.importorskip("tensorflow")
keras = pytest.importorskip("keras")

from tests.helpers import assert_layers_agree  # noqa: E402
from translate.models import layers, pix2pix  # noqa: E402


@pytest.mark.parametrize("channels", [1, 13, 14])
def test_shapes_follow_condition_channels(channels):
    g = pix2pix.unet_generator(32, channels, ngf=8)
    d = pix2pix.patch_discriminator(32, channels, ndf=8)
    x = tf.random.uniform([2, 32, 32, channels], -1, 1)
    y = g(x, training=True)
    assert y.shape == (2, 32, 32, 3)
    assert float(tf.reduce_max(tf.abs(y))) <= 1.0
    assert d([x, y]).shape == (2, 2, 2, 1)  # 32 -> 16 -> 8 -> 4 -> 3 -> 2


def test_depth_follows_image_size():
    assert [pix2pix.unet_levels(s) for s in (4, 32, 64, 256)] == [2, 5, 6, 8]
    for bad in (0, 2, 48, 100):
        with pytest.raises(ValueError, match="power-of-2"):
            pix2pix.unet_levels(bad)
    g = pix2pix.unet_generator(64, 1, ngf=4)
    assert g.get_layer("bottleneck").output.shape == (None, 1, 1, 32)
    assert sum("down" in l.name and l.name.endswith("_conv") for l in g.layers) == 6


def test_full_size_parameter_counts():
    """unet_256 + 70x70 D as published: G 54.4 M, D (3+3 channels) 2.77 M; D output 30x30."""
    g = pix2pix.unet_generator(256, 3)
    d = pix2pix.patch_discriminator(256, 3)
    assert abs(g.count_params() - 54.4e6) < 0.05e6, g.count_params()
    assert abs(d.count_params() - 2.77e6) < 0.01e6, d.count_params()
    assert d.output_shape == (None, 30, 30, 1)
    assert pix2pix.unet_levels(256) == 8
    # norm nowhere on the outermost and innermost down convs
    names = [l.name for l in g.layers]
    assert "down0_norm" not in names and "down7_norm" not in names and "down6_norm" in names


def test_bottleneck_is_not_normalised():
    g = pix2pix.unet_generator(32, 1, ngf=8)
    probe = keras.Model(g.input, g.get_layer("bottleneck").output)
    a = probe(tf.random.stateless_uniform([1, 32, 32, 1], [1, 2], -1, 1), training=True).numpy()
    b = probe(tf.random.stateless_uniform([1, 32, 32, 1], [3, 4], -1, 1), training=True).numpy()
    assert a.shape == (1, 1, 1, 64)
    assert np.abs(a - b).max() > 1e-3, "bottleneck output does not depend on the input"
    # the failure this guards against: an instance norm at 1x1 outputs its offset, whatever the input
    norm = layers.instance_norm()
    na, nb = norm(tf.constant(a), training=True).numpy(), norm(tf.constant(b), training=True).numpy()
    np.testing.assert_allclose(na, nb, atol=1e-6)


def test_dropout_stays_on_at_inference():
    x = tf.random.stateless_uniform([1, 32, 32, 1], [5, 6], -1, 1)
    keras.utils.set_random_seed(0)
    g = pix2pix.unet_generator(32, 1, ngf=8)
    y1, y2 = g(x, training=False).numpy(), g(x, training=False).numpy()
    assert np.abs(y1 - y2).max() > 1e-4
    keras.utils.set_random_seed(0)
    g_det = pix2pix.unet_generator(32, 1, ngf=8, dropout_at_inference=False)
    np.testing.assert_array_equal(g_det(x, training=False).numpy(), g_det(x, training=False).numpy())
    assert [l.name for l in g.layers if "dropout" in l.name] == ["up0_dropout", "up1_dropout", "up2_dropout"]


def test_init_is_normal_002():
    g = pix2pix.unet_generator(32, 1, ngf=16)
    k = g.get_layer("down2_conv").kernel.numpy()
    assert abs(k.mean()) < 0.002 and 0.018 < k.std() < 0.022


def test_discriminator_scores_each_example_alone():
    """Instance norm: scoring real and fake in one batch equals two separate calls (batching
    examples never mixes them, e.g. under a strategy or with a shared D call)."""
    d = pix2pix.patch_discriminator(32, 1, ndf=8)
    c = tf.random.uniform([2, 32, 32, 1], -1, 1)
    a, b = tf.random.uniform([2, 32, 32, 3], -1, 1), tf.random.uniform([2, 32, 32, 3], -1, 1)
    joint = d([tf.concat([c, c], 0), tf.concat([a, b], 0)], training=True).numpy()
    np.testing.assert_allclose(joint[:2], d([c, a], training=True).numpy(), atol=1e-5)
    np.testing.assert_allclose(joint[2:], d([c, b], training=True).numpy(), atol=1e-5)


def test_losses():
    zeros = tf.zeros([2, 3, 3, 1])
    img = tf.zeros([2, 4, 4, 3])
    total, gan, l1 = pix2pix.generator_losses(zeros, img + 0.5, img, lambda_l1=100.0)
    np.testing.assert_allclose(gan.numpy(), [np.log(2)] * 2, rtol=1e-6)
    np.testing.assert_allclose(l1.numpy(), [0.5, 0.5], rtol=1e-6)
    np.testing.assert_allclose(total.numpy(), [np.log(2) + 50] * 2, rtol=1e-6)
    d_total, real, fake = pix2pix.discriminator_losses(zeros + 20.0, zeros - 20.0)
    assert d_total.shape == (2,) and float(tf.reduce_max(d_total)) < 1e-6
    d_total, _, _ = pix2pix.discriminator_losses(zeros, zeros)
    np.testing.assert_allclose(d_total.numpy(), [np.log(2)] * 2, rtol=1e-6)


def test_reflection_pad():
    x = tf.reshape(tf.range(9, dtype=tf.float32), [1, 3, 3, 1])
    y = layers.ReflectionPad2D(1)(x)
    assert y.shape == (1, 5, 5, 1)
    assert y[0, 0, 0, 0] == x[0, 1, 1, 0] and y[0, 2, 0, 0] == x[0, 1, 1, 0]


@pytest.mark.parametrize("transposed", [False, True])
@pytest.mark.parametrize("hw,b", [(1, 2), (2, 1), (4, 2), (8, 1), (32, 1)])
def test_low_res_convs_match_keras_convs_and_their_gradients(transposed, hw, b):
    """LowResConv2D / LowResConv2DTranspose (matmul forms up to 16 px, keras' own above) give
    keras' values and gradients, batch > 1 included, with the same weights."""
    if not transposed and hw == 1:
        hw = 2  # a stride-2 conv of a 1x1 input is not in the U-Net
    x = tf.random.normal([b, hw, hw, 6], seed=2)
    if transposed:
        ref = keras.layers.Conv2DTranspose(5, 4, 2, "same", activation="tanh")
        fast = layers.LowResConv2DTranspose(5, 4, 2, "same", activation="tanh")
    else:
        ref = keras.layers.Conv2D(5, 4, 2, "same", activation="tanh")
        fast = layers.LowResConv2D(5, 4, 2, "same", activation="tanh")
    ref.build(x.shape)
    ref.set_weights([w + 0.1 * np.random.default_rng(0).normal(size=w.shape) for w in ref.get_weights()])
    assert_layers_agree(ref, fast, x)
    assert [w.path.split("/")[-1] for w in fast.weights] == [w.path.split("/")[-1] for w in ref.weights]


@pytest.mark.parametrize("affine", [False, True])
def test_instance_normalization_matches_group_normalization(affine):
    """The closed-form-gradient instance norm gives keras GroupNormalization(groups=-1)'s values
    and gradients (input and, when affine, gamma / beta) with the same weights."""
    x = tf.random.normal([2, 6, 5, 4], seed=4) * 3.0 + 1.0
    ref = keras.layers.GroupNormalization(groups=-1, epsilon=1e-5, center=affine, scale=affine)
    fast = layers.instance_norm(affine=affine)
    assert isinstance(fast, layers.InstanceNormalization)
    ref.build(x.shape)
    fast.build(x.shape)
    fast.set_weights([w + 0.3 * np.random.default_rng(1).normal(size=w.shape) for w in fast.get_weights()])
    ref.set_weights(fast.get_weights())

    def grads(layer):
        with tf.GradientTape() as tape:
            tape.watch(x)
            y = layer(x)
            loss = tf.reduce_sum(tf.sin(2.0 * y) * x)
        return [y] + tape.gradient(loss, [x] + layer.trainable_variables)

    for want, got in zip(grads(ref), grads(fast)):
        np.testing.assert_allclose(got.numpy(), want.numpy(), rtol=1e-4, atol=1e-4)
