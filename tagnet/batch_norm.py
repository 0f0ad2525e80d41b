"""Batch-norm statistics that match the weights a tagger is saved with.

Moving averages of batch statistics lag behind weights that change fast (from-scratch runs, high
learning rates, momentum 0.99-0.999): a model can fit its training batches in training mode and
predict a constant in inference mode. Before validating and saving, the trainer re-estimates
every trainable BatchNormalization layer's mean and variance as the plain average of its batch
statistics over training batches run with the final weights (what PyTorch's
``swa_utils.update_bn`` does), then checks that both modes agree on a training batch.
"""
from __future__ import annotations

from typing import Iterable, List, Tuple

import keras
import numpy as np

# Inference-mode top-1 this far below training mode on the same batch means the saved model will
# not behave as it trained.
DISAGREEMENT = 0.15


def trainable_layers(model: keras.Model) -> List[keras.layers.BatchNormalization]:
    """BatchNormalization layers that update their statistics (frozen ones keep theirs)."""
    return [l for l in model._flatten_layers(include_self=False, recursive=True)
            if isinstance(l, keras.layers.BatchNormalization) and l.trainable]


def recalibrate(model: keras.Model, batches: Iterable, max_batches: int,
                run_eagerly: bool = False) -> int:
    """Sets each trainable batch-norm layer's moving mean / variance to the example-weighted
    average of its batch statistics over up to ``max_batches`` image batches. Returns the number
    of images used (0: nothing to do). Trainable weights are untouched."""
    import tensorflow as tf
    layers = trainable_layers(model)
    if not layers or max_batches <= 0:
        return 0
    momenta = [l.momentum for l in layers]
    sums = [[np.zeros(l.moving_mean.shape, np.float64), np.zeros(l.moving_variance.shape, np.float64)]
            for l in layers]
    n = 0
    try:
        # With momentum 0 a training-mode call leaves the batch's own statistics in the moving
        # variables (the layer reads momentum when traced, hence a fresh function per call).
        for l in layers:
            l.momentum = 0.0

        def forward(images):
            model(images, training=True)

        if not run_eagerly:
            forward = tf.function(forward)
        for i, images in enumerate(batches):
            if i >= max_batches:
                break
            forward(images)
            w = int(images.shape[0])
            for acc, l in zip(sums, layers):
                acc[0] += w * np.asarray(l.moving_mean.numpy(), np.float64)
                acc[1] += w * np.asarray(l.moving_variance.numpy(), np.float64)
            n += w
    finally:
        for l, m in zip(layers, momenta):
            l.momentum = m
    if n:
        for (mean, var), l in zip(sums, layers):
            l.moving_mean.assign((mean / n).astype(np.float32))
            l.moving_variance.assign((var / n).astype(np.float32))
    return n


def top1_by_mode(model: keras.Model, images, labels: np.ndarray) -> Tuple[float, float]:
    """(training-mode, inference-mode) share of images whose top-scoring tag is one of theirs.
    ``labels`` is multi-hot [B, tags]. The training-mode call leaves no trace in the statistics."""
    layers = trainable_layers(model)
    saved = [(l.moving_mean.numpy(), l.moving_variance.numpy()) for l in layers]
    try:
        train_logits = keras.ops.convert_to_numpy(model(images, training=True))
    finally:
        for l, (mean, var) in zip(layers, saved):
            l.moving_mean.assign(mean)
            l.moving_variance.assign(var)
    infer_logits = keras.ops.convert_to_numpy(model(images, training=False))
    rows = np.arange(len(labels))

    def top1(logits):
        return float(np.mean(labels[rows, np.argmax(logits, axis=1)] > 0))

    return top1(train_logits), top1(infer_logits)


def disagreement_warning(train_top1: float, infer_top1: float) -> str:
    """One line when inference mode falls behind training mode on training images, else ''."""
    if train_top1 - infer_top1 <= DISAGREEMENT:
        return ""
    return (f"WARNING: on a training batch the model gets top-1 {infer_top1:.2f} in inference mode "
            f"against {train_top1:.2f} in training mode: its batch-norm statistics do not match "
            f"its weights (raise --batch_norm_recalibration_steps or lower --batch_norm_decay)")
