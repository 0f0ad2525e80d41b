"""The CycleGAN history pool as TF state: junyanz's semantics (checked against a plain-Python
pool fed the same random draws), use inside tf.function, and checkpoint/resume."""
import numpy as np
import pytest

tf = pytest.importorskip("tensorflow")

from translate.training.history_pool import HistoryPool  # noqa: E402


def _draws(seed, k):
    return tf.random.stateless_uniform([2], tf.constant([seed, k], tf.int64)).numpy()


def _reference(size, seed, values):
    """junyanz util/image_pool.py, with the pool's (seed, counter) uniform draws."""
    pool, out = [], []
    for k, v in enumerate(values):
        u = _draws(seed, k)
        if len(pool) < size:
            pool.append(v)
            out.append(v)
        elif u[0] < 0.5:
            i = min(int(u[1] * size), size - 1)
            out.append(pool[i])
            pool[i] = v
        else:
            out.append(v)
    return out, pool


def _image(v):
    return tf.fill([1, 2, 2, 1], float(v))


def test_zero_size_is_identity():
    pool = HistoryPool(0, [2, 2, 1])
    x = tf.random.normal([2, 2, 2, 1])
    np.testing.assert_array_equal(pool.query(x).numpy(), x.numpy())


def test_matches_reference_pool_inside_tf_function():
    size, seed, n = 4, 7, 40
    pool = HistoryPool(size, [2, 2, 1], seed=seed)
    query = tf.function(pool.query)
    got = [float(query(_image(v))[0, 0, 0, 0]) for v in range(n)]
    want, contents = _reference(size, seed, list(range(n)))
    assert got == want
    assert got[:size] == list(range(size))  # filling: the input comes back
    old = sum(g != v for v, g in enumerate(got))
    assert 8 <= old <= 30, old  # about half of the 36 full-pool queries return a stored image
    assert sorted(pool.images.numpy()[:, 0, 0, 0].tolist()) == sorted(contents)
    assert int(pool.count.numpy()) == size and int(pool.draws.numpy()) == n


def test_batch_is_processed_image_by_image():
    pool = HistoryPool(3, [2, 2, 1], seed=1)
    x = tf.concat([_image(v) for v in range(8)], 0)
    got = pool.query(x).numpy()[:, 0, 0, 0].tolist()
    want, _ = _reference(3, 1, list(range(8)))
    assert got == want


def test_checkpoint_resume_continues_the_same_sequence(tmp_path):
    a = HistoryPool(3, [2, 2, 1], seed=5)
    for v in range(6):
        a.query(_image(v))
    path = tf.train.Checkpoint(pool=a).save(str(tmp_path / "ckpt"))
    rest_a = [float(a.query(_image(v))[0, 0, 0, 0]) for v in range(6, 20)]
    b = HistoryPool(3, [2, 2, 1], seed=5)
    tf.train.Checkpoint(pool=b).restore(path).assert_consumed()
    assert int(b.count.numpy()) == 3 and int(b.draws.numpy()) == 6
    rest_b = [float(b.query(_image(v))[0, 0, 0, 0]) for v in range(6, 20)]
    assert rest_a == rest_b
    assert rest_a == _reference(3, 5, list(range(20)))[0][6:]


def test_works_under_a_mirrored_strategy():
    strategy = tf.distribute.MirroredStrategy(["/cpu:0"])
    with strategy.scope():
        pool = HistoryPool(3, [2, 2, 1], seed=2)
    step = tf.function(lambda x: strategy.run(pool.query, args=(x,)))
    got = [float(step(_image(v))[0, 0, 0, 0]) for v in range(10)]
    assert got == _reference(3, 2, list(range(10)))[0]
