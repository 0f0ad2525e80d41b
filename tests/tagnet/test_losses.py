"""tagnet.losses: the focal and asymmetric losses reduce to BCE where they should, and the
softmax loss matches Keras."""
import keras
import numpy as np
import pytest
import tensorflow as tf

from tagnet import losses


def _data(seed=0):
    rng = np.random.default_rng(seed)
    y = (rng.random((6, 5)) < 0.4).astype("float32")
    logits = rng.normal(0, 2, (6, 5)).astype("float32")
    return tf.constant(y), tf.constant(logits)


def test_bce_matches_keras_with_and_without_smoothing():
    y, z = _data()
    for ls in (0.0, 0.2):
        want = keras.losses.BinaryCrossentropy(from_logits=True, label_smoothing=ls,
                                               reduction=None)(y, z)
        np.testing.assert_allclose(losses.bce(y, z, ls).numpy(), want.numpy(), rtol=1e-5)


def test_focal_and_asl_reduce_to_bce():
    y, z = _data(1)
    np.testing.assert_allclose(losses.focal(y, z, gamma=0.0).numpy(), losses.bce(y, z).numpy(), rtol=1e-5)
    np.testing.assert_allclose(losses.asl(y, z, gamma_pos=0.0, gamma_neg=0.0, clip=0.0).numpy(),
                               losses.bce(y, z).numpy(), rtol=1e-4)


def test_focal_and_asl_down_weight_easy_negatives():
    y = tf.zeros((1, 2))
    z = tf.constant([[-4.0, 2.0]])  # an easy and a hard negative
    for fn in (losses.focal, losses.asl):
        easy_ratio = float(fn(y[:, :1], z[:, :1])[0] / losses.bce(y[:, :1], z[:, :1])[0])
        hard_ratio = float(fn(y[:, 1:], z[:, 1:])[0] / losses.bce(y[:, 1:], z[:, 1:])[0])
        assert easy_ratio < 0.05 * hard_ratio
    # Below the ASL clip an easy negative costs nothing at all.
    assert float(losses.asl(tf.zeros((1, 1)), tf.constant([[-5.0]]))[0]) == pytest.approx(0.0, abs=1e-9)


def test_softmax_matches_keras():
    rng = np.random.default_rng(2)
    labels = tf.constant(rng.integers(0, 4, 8))
    z = tf.constant(rng.normal(size=(8, 4)).astype("float32"))
    for ls in (0.0, 0.1):
        want = keras.losses.CategoricalCrossentropy(from_logits=True, label_smoothing=ls,
                                                    reduction=None)(tf.one_hot(labels, 4), z)
        np.testing.assert_allclose(losses.softmax(labels, z, ls).numpy(), want.numpy(), rtol=1e-5)
    with pytest.raises(ValueError, match="unknown loss"):
        losses.get("hinge")
