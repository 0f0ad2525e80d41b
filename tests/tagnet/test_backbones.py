"""The backbone registry: every entry builds with weights=none at its minimum input and trains
one step; freezing boundaries, preprocessing, weights files and clear errors."""
import numpy as np
import pytest
import tensorflow as tf
import keras

from tagnet import backbones, losses

# Entries whose build + one step costs most on CPU run as slow (still in CI).
_PARAMS = [pytest.param(n, marks=pytest.mark.slow) if backbones.REGISTRY[n].heavy else n
           for n in backbones.names()]


@pytest.mark.parametrize("name", _PARAMS)
def test_every_entry_builds_and_trains_one_step(name):
    spec = backbones.get(name)
    size = spec.min_size
    keras.backend.clear_session()
    model = backbones.build_model(name, 3, size, weights="none")
    assert model.input_shape == (None, size, size, 3) and model.output_shape == (None, 3)
    # The registry's freezing boundary exists and splits the backbone in two.
    n_trainable = backbones.set_trainable(model, name, trainable_from="last_block")
    net = backbones.backbone_of(model)
    frozen = [l for l in net.layers if l.weights and not l.trainable]
    assert frozen and n_trainable > 0, "last_block must split the backbone"
    # One from-scratch train step through the whole network: every variable gets a gradient.
    backbones.set_trainable(model, name)
    before = [v.numpy().copy() for v in model.trainable_variables]
    x = np.random.default_rng(0).uniform(0, 255, (4, size, size, 3)).astype("float32")
    y = np.array([[1, 0, 1], [0, 1, 0], [1, 1, 0], [0, 0, 1]], "float32")
    opt = keras.optimizers.SGD(0.1)
    with tf.GradientTape() as tape:
        loss = tf.reduce_mean(losses.bce(y, model(x, training=True)))
    grads = tape.gradient(loss, model.trainable_variables)
    assert all(g is not None for g in grads)
    opt.apply(grads, model.trainable_variables)
    assert np.isfinite(float(loss))
    changed = sum(not np.array_equal(v.numpy(), b) for v, b in zip(model.trainable_variables, before))
    assert changed >= len(before) // 2, f"only {changed}/{len(before)} trainable variables moved"
    keras.backend.clear_session()


def test_unknown_and_unavailable_names():
    with pytest.raises(backbones.BackboneError, match="no keras.applications counterpart.*inception_v3"):
        backbones.get("inception_v4")
    with pytest.raises(backbones.BackboneError, match="nasnet_large"):
        backbones.get("pnasnet_large")
    with pytest.raises(backbones.BackboneError, match="Did you mean: resnet_v1_50"):
        backbones.get("resnet_v1_5O")
    assert backbones.get("mobilenet_v3").name == "mobilenet_v3_large"
    assert backbones.get("mobilenet_v2_1.4").kwargs == (("alpha", 1.4),)
    wanted = {"vgg_16", "vgg_19", "inception_v3", "inception_resnet_v2", "resnet_v1_50", "resnet_v1_101",
              "resnet_v1_152", "resnet_v2_50", "resnet_v2_101", "resnet_v2_152", "mobilenet_v1",
              "mobilenet_v2", "mobilenet_v2_140", "mobilenet_v3_large", "mobilenet_v3_small",
              "nasnet_mobile", "nasnet_large", "efficientnet_b0", "efficientnet_v2_s", "convnext_tiny"}
    assert wanted <= set(backbones.names())


def test_too_small_input_and_bad_weights(tmp_path):
    with pytest.raises(backbones.BackboneError, match="at least 75px"):
        backbones.build_model("inception_v3", 2, 64, weights="none")
    with pytest.raises(backbones.BackboneError, match="no such file"):
        backbones.build_model("mobilenet_v1_025", 2, 32, weights=str(tmp_path / "nope.h5"))


@pytest.mark.parametrize("mode,fn", [
    ("caffe", keras.applications.vgg16.preprocess_input),
    ("tf", keras.applications.inception_v3.preprocess_input),
    ("torch", keras.applications.densenet.preprocess_input),
])
def test_preprocessing_matches_keras_applications(mode, fn):
    x = np.random.default_rng(1).uniform(0, 255, (2, 8, 8, 3)).astype("float32")
    want = fn(x.copy())
    np.testing.assert_allclose(backbones.Preprocess(mode)(x).numpy(), want, rtol=1e-5, atol=1e-4)
    np.testing.assert_allclose(backbones.preprocess_numpy(x, mode), want, rtol=1e-5, atol=1e-4)


def test_weights_file_round_trip(tmp_path):
    keras.backend.clear_session()
    a = backbones.build_model("mobilenet_v1_025", 4, 32, weights="none")
    path = str(tmp_path / "notop.weights.h5")
    backbones.backbone_of(a).save_weights(path)
    b = backbones.build_model("mobilenet_v1_025", 4, 32, weights=path)
    for va, vb in zip(backbones.backbone_of(a).weights, backbones.backbone_of(b).weights):
        np.testing.assert_array_equal(va.numpy(), vb.numpy())
    with pytest.raises(backbones.BackboneError, match="could not load"):
        backbones.build_model("mobilenet_v1_050", 4, 32, weights=path)


def test_freeze_backbone_and_trainable_from_errors():
    keras.backend.clear_session()
    m = backbones.build_model("mobilenet_v1_025", 2, 32, weights="none")
    assert backbones.set_trainable(m, "mobilenet_v1_025", freeze_backbone=True) == 0
    assert [v.path for v in m.trainable_variables] == ["tags/kernel", "tags/bias"]
    backbones.set_trainable(m, "mobilenet_v1_025", trainable_from="conv_pw_13")
    names = {v.path.split("/")[0] for v in m.trainable_variables}
    assert "conv_pw_13" in names and "conv1" not in names
    with pytest.raises(backbones.BackboneError, match="has no layer 'conv_pw_99'.*close"):
        backbones.set_trainable(m, "mobilenet_v1_025", trainable_from="conv_pw_99")
    # Frozen batch norm stays in inference mode: its moving statistics do not move.
    backbones.set_trainable(m, "mobilenet_v1_025", freeze_backbone=True)
    bn = backbones.backbone_of(m).get_layer("conv1_bn")
    before = bn.moving_mean.numpy().copy()
    m(np.full((2, 32, 32, 3), 200.0, "float32"), training=True)
    np.testing.assert_array_equal(bn.moving_mean.numpy(), before)
    assert backbones.set_batch_norm_decay(m, 0.9) > 10 and bn.momentum == 0.9


def test_grouped_conv_rewrite_computes_the_same_function():
    keras.backend.clear_session()
    inp = keras.Input((9, 9, 6))
    x = keras.layers.Conv2D(6, 3, padding="same", groups=6, name="dw")(inp)
    x = keras.layers.Conv2D(4, 1, name="pw")(x)
    m = keras.Model(inp, x)
    for v in m.weights:
        v.assign(np.random.default_rng(2).normal(size=v.shape))
    new = backbones.depthwise_for_grouped(m)
    assert isinstance(new.get_layer("dw"), keras.layers.DepthwiseConv2D)
    x = np.random.default_rng(3).normal(size=(2, 9, 9, 6)).astype("float32")
    np.testing.assert_allclose(new(x).numpy(), m(x).numpy(), rtol=1e-5, atol=1e-5)


def test_activation_estimate_scales():
    keras.backend.clear_session()
    m = backbones.build_model("vgg_16", 2, 32, weights="none")
    one = backbones.activation_bytes(m, 1)
    assert backbones.activation_bytes(m, 8) == 8 * one
    # VGG-16 at 32px keeps at least its first conv outputs: 2 x 32x32x64 floats.
    assert one > 2 * 32 * 32 * 64 * 4
    m2 = backbones.build_model("vgg_16", 2, 64, weights="none")
    assert 3.5 * one < backbones.activation_bytes(m2, 1) < 4.5 * one
