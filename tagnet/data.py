"""tf.data input pipelines over Tag records (pure TF maps, no py_function)."""
from __future__ import annotations

from typing import Optional, Tuple

import tensorflow as tf

from tagnet import records


def resize_square(image: tf.Tensor, size: int) -> tf.Tensor:
    """uint8/float HxWx3 -> float32 size x size x 3 in [0, 255]; pads to square on white first."""
    image = tf.cast(image, tf.float32)
    h, w = tf.shape(image)[0], tf.shape(image)[1]
    side = tf.maximum(h, w)
    top, left = (side - h) // 2, (side - w) // 2
    image = tf.pad(image - 255.0, [[top, side - h - top], [left, side - w - left], [0, 0]]) + 255.0
    image = tf.image.resize(image, [size, size], method="bilinear", antialias=True)
    return tf.clip_by_value(image, 0.0, 255.0)


def augment(image: tf.Tensor, size: int, min_crop: float = 0.8) -> tf.Tensor:
    """Random horizontal flip and a random square crop of >= min_crop of the side, resized back."""
    image = tf.image.random_flip_left_right(image)
    if min_crop < 1.0:
        side = tf.cast(tf.shape(image)[0], tf.float32)
        crop = tf.cast(side * tf.random.uniform([], min_crop, 1.0), tf.int32)
        image = tf.image.random_crop(image, tf.stack([crop, crop, 3]))
        image = tf.image.resize(image, [size, size], method="bilinear")
    return image


def make_dataset(info: records.DatasetInfo, split: str, batch_size: int, image_size: int,
                 training: bool, repeat: Optional[bool] = None, shuffle_buffer: int = 2048,
                 seed: Optional[int] = None, with_ids: bool = False, augment_images: bool = True,
                 drop_remainder: Optional[bool] = None) -> tf.data.Dataset:
    """(images float32 [B,S,S,3] in [0,255], labels) batches.

    labels: multi-hot float32 [B, num_tags] for multi_label sets, int32 class [B] for single_label.
    With ``with_ids`` the batches are (images, labels, source_ids).
    """
    info.require_split(split)
    num_tags = info.num_tags
    multi = info.multi_label
    files = info.shards(split)
    repeat = training if repeat is None else repeat
    drop_remainder = training if drop_remainder is None else drop_remainder
    ds = tf.data.Dataset.from_tensor_slices(files)
    if training:
        ds = ds.shuffle(len(files), seed=seed)
    ds = ds.interleave(tf.data.TFRecordDataset, cycle_length=min(4, len(files)),
                       num_parallel_calls=tf.data.AUTOTUNE, deterministic=not training)
    if training and shuffle_buffer:
        ds = ds.shuffle(min(shuffle_buffer, max(1, info.count(split))), seed=seed,
                        reshuffle_each_iteration=True)
    if repeat:
        ds = ds.repeat()
    stored = info.image_size

    def parse(serialized):
        ex = records.parse_example(serialized)
        image = ex["image"]
        if stored != image_size:
            image = resize_square(image, image_size)
        else:
            image = tf.cast(image, tf.float32)
        if training and augment_images:
            image = augment(image, image_size)
        image = tf.ensure_shape(image, [image_size, image_size, 3])
        if multi:
            label = records.multi_hot(ex["tags"], num_tags)
        else:
            label = tf.cast(ex["tags"][0], tf.int32)
        if with_ids:
            return image, label, ex["source_id"]
        return image, label

    ds = ds.map(parse, num_parallel_calls=tf.data.AUTOTUNE, deterministic=not training)
    ds = ds.batch(batch_size, drop_remainder=drop_remainder)
    return ds.prefetch(tf.data.AUTOTUNE)


def labels_to_multi_hot(labels, num_tags: int, multi_label: bool):
    """numpy labels as produced by make_dataset -> multi-hot [N, num_tags] (for metrics)."""
    import numpy as np
    labels = np.asarray(labels)
    if multi_label:
        return labels.astype(np.float32)
    out = np.zeros((len(labels), num_tags), np.float32)
    out[np.arange(len(labels)), labels.astype(int)] = 1
    return out


def load_split_numpy(info: records.DatasetInfo, split: str, image_size: int,
                     limit: Optional[int] = None) -> Tuple:
    """The whole split in memory: (images uint8 [N,S,S,3], multi-hot labels, source ids)."""
    import numpy as np
    ds = make_dataset(info, split, 256, image_size, training=False, with_ids=True)
    images, labels, ids = [], [], []
    n = 0
    for x, y, s in ds:
        images.append(x.numpy().round().astype(np.uint8))
        labels.append(y.numpy())
        ids += [v.decode("utf-8") for v in s.numpy()]
        n += len(x)
        if limit and n >= limit:
            break
    if not images:
        return (np.zeros((0, image_size, image_size, 3), np.uint8),
                np.zeros((0, info.num_tags), np.float32), [])
    x = np.concatenate(images)
    y = labels_to_multi_hot(np.concatenate(labels), info.num_tags, info.multi_label)
    if limit:
        x, y, ids = x[:limit], y[:limit], ids[:limit]
    return x, y, ids
