"""CycleGAN networks: published parameter counts, shapes of every variant, instance norm and the
fast convolution against references, keypoint attention, LSGAN losses, the registry's inference builder."""
import numpy as np
import pytest

tf = pytest.importorskip("tensorflow")
keras = pytest.importorskip("keras")

from tests.helpers import assert_layers_agree  # noqa: E402
from translate.models import cyclegan, layers, registry  # noqa: E402

S = 32


def test_parameter_counts_match_the_published_model():
    # junyanz resnet_9blocks / basic D with --norm instance (bias convs, non-affine norm)
    assert cyclegan.resnet_generator(256).count_params() == 11_378_179
    d = cyclegan.patch_discriminator(256)
    assert d.count_params() == 2_764_737
    assert d.output_shape == (None, 30, 30, 1)
    assert cyclegan.default_blocks(256) == 9 and cyclegan.default_blocks(128) == 6


@pytest.mark.parametrize("kw,in_ch,out_ch", [
    ({}, 3, 3),
    ({"upsample": "resize"}, 3, 3),
    ({"n_blocks": 2}, 4, 3),                             # landmark_channel
    ({}, 4, 4),                                          # landmark_output
    ({"keypoint_attention": True}, 4, 3),
    ({"keypoint_attention": True, "fast_conv": False}, 4, 4),
])
def test_generator_variants_shapes(kw, in_ch, out_ch):
    g = cyclegan.resnet_generator(S, in_ch, out_ch, ngf=4, **{"n_blocks": 1, **kw})
    y = g(tf.random.uniform([2, S, S, in_ch], -1, 1), training=True)
    assert y.shape == (2, S, S, out_ch)
    assert float(tf.reduce_max(tf.abs(y))) <= 1.0


def test_bad_generator_arguments():
    with pytest.raises(ValueError, match="divisible by 4"):
        cyclegan.resnet_generator(30)
    with pytest.raises(ValueError, match="landmark layer"):
        cyclegan.resnet_generator(S, 3, keypoint_attention=True)


@pytest.mark.parametrize("affine", [False, True])
def test_instance_norm_matches_numpy(affine):
    x = np.random.default_rng(0).normal(2.0, 3.0, (2, 5, 6, 4)).astype("float32")
    norm = layers.instance_norm(affine=affine)
    y = norm(x, training=True).numpy()
    mean, var = x.mean(axis=(1, 2), keepdims=True), x.var(axis=(1, 2), keepdims=True)
    want = (x - mean) / np.sqrt(var + 1e-5)
    if affine:
        gamma, beta = (w.numpy() for w in norm.weights)
        want = want * gamma + beta
    np.testing.assert_allclose(y, want, rtol=1e-4, atol=1e-4)
    assert len(norm.weights) == (2 if affine else 0)


@pytest.mark.parametrize("hw,ci,co,k,b", [(9, 5, 6, 3, 2), (12, 16, 3, 7, 1), (10, 3, 16, 7, 2), (8, 16, 1, 4, 1)])
def test_fast_conv_matches_keras_conv_and_its_gradients(hw, ci, co, k, b):
    x = tf.random.normal([b, hw, hw, ci], seed=1)
    assert_layers_agree(keras.layers.Conv2D(co, k, activation="tanh"),
                        layers.FastConv2D(co, k, activation="tanh"), x)
    with pytest.raises(ValueError, match="strides"):
        layers.FastConv2D(4, 3, strides=2)


def test_keypoint_attention_starts_off_and_follows_the_layer():
    g = cyclegan.resnet_generator(S, 4, ngf=4, n_blocks=2, keypoint_attention=True)
    gains = [lay for lay in g.layers if isinstance(lay, cyclegan.Scale)]
    assert len(gains) == 2 and all(float(lay.a.numpy()) == 0.0 for lay in gains)
    x = tf.random.uniform([1, S, S, 4], -1, 1, seed=3)
    other = tf.concat([x[..., :3], -x[..., 3:]], -1)  # same picture, another layer

    def run(inp):
        return g(inp, training=True).numpy()
    base, base_other = run(x), run(other)
    for lay in gains:
        lay.a.assign(2.0)
    gated, gated_other = run(x), run(other)
    assert np.abs(gated - base).max() > 1e-3  # the attention path acts once its gain is on
    # ... and what it adds depends on the landmark layer
    assert np.abs((gated - base) - (gated_other - base_other)).max() > 1e-4


def test_lsgan_and_l1_losses():
    real, fake = tf.fill([2, 3, 3, 1], 0.5), tf.fill([2, 3, 3, 1], 0.25)
    np.testing.assert_allclose(cyclegan.lsgan_generator_loss(fake).numpy(), [0.5625] * 2)
    r, f = cyclegan.lsgan_discriminator_loss(real, fake)
    np.testing.assert_allclose(r.numpy(), [0.25] * 2)
    np.testing.assert_allclose(f.numpy(), [0.0625] * 2)
    np.testing.assert_allclose(cyclegan.l1(real, fake).numpy(), [0.25] * 2)


def test_loading_builder_variants():
    flags = {"model": "cyclegan", "image_size": S, "landmark_channel": True, "landmark_output": True,
             "ngf": 4, "n_blocks": 1, "keypoint_attention": True}
    nets = registry.build_inference(flags)
    assert set(nets) == {"generator_ab", "generator_ba"}
    assert nets["generator_ab"].input_shape == (None, S, S, 4)
    assert nets["generator_ba"].output_shape == (None, S, S, 4)
    plain = registry.build_inference({"model": "cyclegan", "image_size": S, "ngf": 4, "n_blocks": 1})
    assert plain["generator_ab"].output_shape == (None, S, S, 3)
