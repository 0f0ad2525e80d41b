"""Learning-rate schedules that are pure functions of the optimizer's step, so a resumed run
(which restores `optimizer.iterations`) continues on the same curve."""
from __future__ import annotations

import keras
import tensorflow as tf


@keras.saving.register_keras_serializable(package="translate")
class LinearDecay(keras.optimizers.schedules.LearningRateSchedule):
    """Constant `initial` until `decay_start`, then linear to 0 at `total_steps` (pix2pix's
    `--lr_policy linear` over the second half, per step rather than per epoch)."""

    def __init__(self, initial: float, total_steps: int, decay_start: int | None = None):
        self.initial = float(initial)
        self.total_steps = int(total_steps)
        self.decay_start = int(total_steps // 2 if decay_start is None else decay_start)
        if not 0 <= self.decay_start <= self.total_steps:
            raise ValueError(f"need 0 <= decay_start <= total_steps, got {self.decay_start}, {self.total_steps}")

    def __call__(self, step):
        step = tf.cast(step, tf.float32)
        span = float(max(self.total_steps - self.decay_start, 1))
        frac = tf.clip_by_value((float(self.total_steps) - step) / span, 0.0, 1.0)
        return self.initial * frac

    def get_config(self):
        return {"initial": self.initial, "total_steps": self.total_steps, "decay_start": self.decay_start}
