"""Per-example losses on logits (the trainer averages them over the global batch)."""
from __future__ import annotations

import tensorflow as tf

LOSSES = ("bce", "focal", "asl", "softmax")


def _smooth(labels, label_smoothing):
    if label_smoothing:
        return labels * (1.0 - label_smoothing) + 0.5 * label_smoothing
    return labels


def bce(labels, logits, label_smoothing=0.0):
    """Binary cross-entropy, mean over tags: [B]."""
    labels = _smooth(tf.cast(labels, logits.dtype), label_smoothing)
    return tf.reduce_mean(tf.nn.sigmoid_cross_entropy_with_logits(labels, logits), axis=-1)


def focal(labels, logits, label_smoothing=0.0, gamma=2.0, alpha=None):
    """Focal loss (Lin et al. 2017) for multi-label sigmoid outputs, mean over tags: [B]."""
    labels = tf.cast(labels, logits.dtype)
    y = _smooth(labels, label_smoothing)
    ce = tf.nn.sigmoid_cross_entropy_with_logits(y, logits)
    p = tf.sigmoid(logits)
    p_t = labels * p + (1 - labels) * (1 - p)
    loss = tf.pow(1.0 - p_t, gamma) * ce
    if alpha is not None:
        loss *= labels * alpha + (1 - labels) * (1 - alpha)
    return tf.reduce_mean(loss, axis=-1)


def asl(labels, logits, label_smoothing=0.0, gamma_pos=0.0, gamma_neg=4.0, clip=0.05):
    """Asymmetric loss (Ridnik et al. 2021): easy negatives are down-weighted and, below `clip`,
    discarded. Mean over tags: [B]."""
    labels = tf.cast(labels, logits.dtype)
    y = _smooth(labels, label_smoothing)
    p = tf.sigmoid(logits)
    p_neg = tf.maximum(p - clip, 0.0) if clip else p
    log_p = tf.math.log_sigmoid(logits)
    log_1mp = tf.math.log(tf.maximum(1.0 - p_neg, 1e-7))
    pos = y * log_p * (tf.pow(1.0 - p, gamma_pos) if gamma_pos else 1.0)
    neg = (1 - y) * log_1mp * tf.pow(p_neg, gamma_neg)
    return -tf.reduce_mean(pos + neg, axis=-1)


def softmax(labels, logits, label_smoothing=0.0):
    """Single-label softmax cross-entropy; labels are class indices [B]."""
    num = tf.shape(logits)[-1]
    onehot = tf.one_hot(tf.cast(labels, tf.int32), num, dtype=logits.dtype)
    if label_smoothing:
        onehot = onehot * (1.0 - label_smoothing) + label_smoothing / tf.cast(num, logits.dtype)
    return tf.nn.softmax_cross_entropy_with_logits(onehot, logits)


def get(name: str):
    try:
        return {"bce": bce, "focal": focal, "asl": asl, "softmax": softmax}[name]
    except KeyError:
        raise ValueError(f"unknown loss {name!r}; choose from {', '.join(LOSSES)}") from None
