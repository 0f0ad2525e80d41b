"""The CycleGAN image history pool (Shrivastava et al. 2017; junyanz `util/image_pool.py`) as TF
state, so it runs inside a tf.function training step and is saved in checkpoints.

The discriminators see a mix of current fakes and fakes from earlier steps, which damps
oscillation. Per image, as junyanz: while the pool is filling, store it and return it; once
full, with probability 1/2 return a random stored image and store the new one in its place,
else return the new image. Randomness is stateless (seed, draw counter), so a resumed run
continues the same random sequence; the images, fill count and draw counter are variables.

Under a tf.distribute strategy the variables are ON_READ (one pool per replica, like one pool
per GPU process in PyTorch DDP); checkpoints hold the first replica's pool. Such variables
cannot scatter, so there each query rewrites the whole pool (cheap against a step; figures:
translate/README.md, Measured).
"""
from __future__ import annotations

from typing import Sequence

import tensorflow as tf


class HistoryPool(tf.Module):
    """`query(images [B, *shape]) -> [B, *shape]`; size 0 returns the input unchanged."""

    def __init__(self, size: int, image_shape: Sequence[int], seed: int = 0, name: str = "history_pool"):
        super().__init__(name=name)
        if size < 0:
            raise ValueError(f"pool size must be >= 0, got {size}")
        self.size = int(size)
        self.seed = int(seed)
        kw = dict(trainable=False, synchronization=tf.VariableSynchronization.ON_READ,
                  aggregation=tf.VariableAggregation.ONLY_FIRST_REPLICA)
        self.images = tf.Variable(tf.zeros([max(self.size, 1), *image_shape]), name="images", **kw)
        self.count = tf.Variable(tf.constant(0, tf.int64), name="count", **kw)
        self.draws = tf.Variable(tf.constant(0, tf.int64), name="draws", **kw)
        self._scatter = not tf.distribute.has_strategy()  # plain variables outside a strategy scope

    def query(self, images: tf.Tensor) -> tf.Tensor:
        if self.size == 0:
            return images
        images = tf.convert_to_tensor(images)
        n = images.shape[0]
        if n is None:
            raise ValueError("HistoryPool.query needs a static batch size")
        out = []
        for i in range(n):  # sequential, as junyanz: a later image may draw an earlier one
            out.append(self._one(images[i]))
        return tf.stack(out)

    def _one(self, image: tf.Tensor) -> tf.Tensor:
        u = tf.random.stateless_uniform([2], tf.stack([tf.constant(self.seed, tf.int64), self.draws]))
        self.draws.assign_add(1)
        count = self.count.read_value()
        full = count >= self.size
        use_old = tf.logical_and(full, u[0] < 0.5)
        slot = tf.where(full, tf.minimum(tf.cast(u[1] * self.size, tf.int64), self.size - 1), count)
        old = tf.gather(self.images, slot)
        write = tf.logical_or(tf.logical_not(full), use_old)
        new = tf.where(write, image, old)[None]
        if self._scatter:
            self.images.scatter_nd_update(slot[None, None], new)
        else:  # per-replica (ON_READ) variables support assign, not scatter: rewrite the pool
            self.images.assign(tf.tensor_scatter_nd_update(self.images.read_value(), slot[None, None], new))
        self.count.assign(tf.minimum(count + 1, self.size))
        return tf.where(use_old, old, image)
