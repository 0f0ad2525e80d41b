"""Shared fixtures. Tests that need ../shared/data skip with a reason when it is absent."""
import os
import pathlib

import pytest

ROOT = pathlib.Path(__file__).resolve().parent.parent
SHARED_DATA = pathlib.Path(os.environ.get("SHARED_DATA", ROOT.parent / "shared" / "data"))

# Keep TensorFlow quiet and single-process friendly in tests.
os.environ.setdefault("TF_CPP_MIN_LOG_LEVEL", "2")


@pytest.fixture(scope="session")
def shared_data() -> pathlib.Path:
    if not SHARED_DATA.is_dir():
        pytest.skip(f"real-data test: {SHARED_DATA} is absent")
    return SHARED_DATA


def assert_layers_agree(ref, fast, x, atol: float = 1e-5):
    """`fast` (built like `ref`, given ref's weights here) computes ref's output and gradients
    (input and weights) of a nonlinear loss; float32 sums in another order: error ~ scale."""
    import numpy as np
    import tensorflow as tf

    for layer in (ref, fast):
        if not layer.built:
            layer.build(x.shape)
    fast.set_weights(ref.get_weights())

    @tf.function
    def grads(layer):
        with tf.GradientTape() as tape:
            tape.watch(x)
            y = layer(x)
            loss = tf.reduce_sum(y * tf.cos(3.0 * y))
        return [y] + tape.gradient(loss, [x] + layer.trainable_variables)

    for want, got in zip(grads(ref), grads(fast)):
        want = want.numpy()
        assert got.shape == want.shape
        np.testing.assert_allclose(got.numpy(), want, rtol=1e-4, atol=atol * max(1.0, np.abs(want).max()))
