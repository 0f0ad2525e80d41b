"""tf.data pipelines over face-record datasets for pix2pix and CycleGAN.

Everything in the maps is plain TensorFlow (no `py_function`), in one parallel map per
example: parse, decode, random resize-crop jitter and horizontal flip (points move with the
pixels; left and right eye swap, and so do their colours), the landmark
layer (`translate.landmarks.render`) and the conditioning planes; then batch and prefetch.

pix2pix conditions (the three experiments of the original work), channels of `inputs`:

* ``keypoints``: 1 channel, the landmark layer.
* ``keypoints_colors``: 13 channels, the layer + the four colours (hair, skin, left eye, right
  eye) as constant RGB planes in [-1, 1]; a missing colour is a 0 (grey) plane. Constant planes,
  not painted regions: the network sees the colour everywhere, whatever the pose.
* ``keypoints_colors_noise``: 14 channels, as above with each colour jittered per example by up to
  +-`color_jitter` (in [-1, 1] units, uniform) and one channel of uniform noise in [-1, 1], so the
  net cannot map an exact attribute tuple to one memorised picture. Jitter and noise are seeded
  and drawn for every split (they are part of the condition, not augmentation).

Images are float32 in [-1, 1] with static shapes [B, S, S, C] (B static with batch_size 1 or
drop_remainder).
Randomness (shuffle, crops, flips, jitter, noise) comes from `seed`: the same seed gives the same
batches; each new pass (with `repeat`, or iterating the dataset again) gets new draws, still a
function of the seed.

Before reading, the dataset.json schema version is checked, and each shard's presence and byte
size; with `verify=True` (default) every record is read once (CRC), so a truncated or corrupt
shard fails at construction with a `records.ShardError` naming the file, not mid-training.
"""
from __future__ import annotations

from typing import Dict, Optional, Tuple

import numpy as np
import tensorflow as tf

from translate import landmarks, records

AUTOTUNE = tf.data.AUTOTUNE
CONDITIONS = ("keypoints", "keypoints_colors", "keypoints_colors_noise")
CONDITION_CHANNELS = {"keypoints": 1, "keypoints_colors": 13, "keypoints_colors_noise": 14}
COLOR_FLIP_ORDER = (0, 1, 3, 2)  # hair, skin, left_eye <-> right_eye


def load_size_for(image_size: int) -> int:
    """pix2pix's jitter: 286 for 256 (resize up by 286/256, then random-crop back)."""
    return int(round(image_size * 286 / 256))


def decode_image(encoded: tf.Tensor) -> tf.Tensor:
    """JPEG or PNG bytes -> float32 [H, W, 3] in [0, 255]."""
    img = tf.io.decode_image(encoded, channels=3, expand_animations=False)
    img.set_shape([None, None, 3])
    return tf.cast(img, tf.float32)


def resize_image(image: tf.Tensor, size: int) -> tf.Tensor:
    """[H, W, C] float -> [size, size, C], bilinear, antialiased when shrinking (the pipelines'
    resize, shared with the exported serving graphs)."""
    big = tf.reduce_max(tf.shape(image)[:2]) > size
    image = tf.cond(big, lambda: tf.image.resize(image, [size, size], antialias=True),
                    lambda: tf.image.resize(image, [size, size]))
    return tf.ensure_shape(image, [size, size, image.shape[-1]])


def augment(image: tf.Tensor, points: tf.Tensor, mask: tf.Tensor, colors: tf.Tensor,
            color_mask: tf.Tensor, seed: tf.Tensor, image_size: int, load_size: int,
            flip: bool = True) -> Tuple[tf.Tensor, ...]:
    """Random resize-crop jitter and horizontal flip, moving points (and eye names) with pixels.

    pix2pix's jitter: resize to load_size (bilinear; antialiased when shrinking), random crop of
    image_size, random horizontal flip. With pixel centres at (i + 0.5) / size, a resize leaves
    normalised points unchanged, a crop at offset o maps u to (u * load - o) / size and a flip
    maps x to 1 - x (and swaps the eyes, their colours too). Few, whole-image ops: in a tf.data
    map the per-op overhead is a large part of the cost (one crop_and_resize was slower).

    image: [H, W, C] float (any size); points [5, 2] normalised; mask [5]; colors [4, 3];
    color_mask [4]; seed: int [2] for the stateless draws.
    Returns (image [S, S, C], points, mask, colors, color_mask).
    """
    s, load = image_size, load_size
    image, points, mask, colors, color_mask = (
        tf.convert_to_tensor(t, tf.float32) for t in (image, points, mask, colors, color_mask))
    image = resize_image(image, load)
    r = tf.random.stateless_uniform([3], seed)
    if load > s:
        offset = tf.cast(r[:2] * float(load - s + 1), tf.int32)  # (x, y), in [0, load - s]
        image = tf.slice(image, tf.stack([offset[1], offset[0], 0]), [s, s, -1])
        points = (points * float(load) - tf.cast(offset, tf.float32)) / float(s)
    if flip:
        def flipped():
            f_points, f_mask = landmarks.flip_points(points, mask)
            return (tf.reverse(image, axis=[1]), f_points, f_mask,
                    tf.gather(colors, COLOR_FLIP_ORDER), tf.gather(color_mask, COLOR_FLIP_ORDER))

        image, points, mask, colors, color_mask = tf.cond(
            r[2] < 0.5, flipped, lambda: (image, points, mask, colors, color_mask))
    return image, points, mask, colors, color_mask


def _records(dataset_dir: str, split: str, domain: str, info: dict, verify: bool) -> Tuple[tf.data.Dataset, int]:
    files, count = records.split_shards(dataset_dir, info, split, domain)
    if verify:
        records.verify_shards(dataset_dir, info, split, domain)
    ds = tf.data.TFRecordDataset(files, buffer_size=1 << 20)
    return ds, count


def _examples(dataset_dir: str, split: str, domain: str, info: dict, image_size: int,
              do_augment: bool, seed: int, shuffle: bool, shuffle_buffer: int, repeat: bool,
              load_size: Optional[int], verify: bool, num_parallel_calls,
              finish=None) -> Tuple[tf.data.Dataset, int]:
    """Per-example dicts: image [S, S, 3] in [-1, 1], points, point_mask, colors, color_mask, seed;
    or `finish(dict)` of them, computed in the same parallel map (rendering per example keeps
    the tensors cache-sized; rendering after batching was slower per example)."""
    ds, count = _records(dataset_dir, split, domain, info, verify)
    if shuffle:
        ds = ds.shuffle(min(shuffle_buffer, count), seed=seed, reshuffle_each_iteration=True)
    if repeat:
        ds = ds.repeat()
    # One independent int64 per example; new values each epoch, all determined by the seed.
    rnd = tf.data.Dataset.random(seed=seed, rerandomize_each_iteration=True)
    ds = tf.data.Dataset.zip((ds, rnd))
    load = (load_size or load_size_for(image_size)) if do_augment else image_size

    def parse(serialized, r):
        ex = records.parse_example(serialized)
        image = decode_image(ex["image"])
        seed2 = tf.stack([r, tf.constant(seed, tf.int64)])
        image, pts, pmask, colors, cmask = augment(
            image, ex["points"], ex["point_mask"], ex["colors"], ex["color_mask"], seed2,
            image_size, load, flip=do_augment)
        image = tf.clip_by_value(image / 127.5 - 1.0, -1.0, 1.0)
        image = tf.ensure_shape(image, [image_size, image_size, 3])
        ex = {"image": image, "points": pts, "point_mask": pmask, "colors": colors,
              "color_mask": cmask, "seed": seed2}
        return finish(ex) if finish is not None else ex

    return ds.map(parse, num_parallel_calls=num_parallel_calls, deterministic=True), count


def _batch(ds: tf.data.Dataset, batch_size: int, drop_remainder: bool, num_parallel_calls):
    """Batches pairs; batch 1 (the GAN default) is a free reshape with a static batch dimension,
    where `batch` would copy every example once more."""
    if batch_size == 1:
        return ds.map(lambda a, b: (a[None], b[None]))
    return ds.batch(batch_size, drop_remainder=drop_remainder, num_parallel_calls=num_parallel_calls,
                    deterministic=True)


def mix_planes(planes, weights, image_size: int) -> tf.Tensor:
    """[S, S, C] = sum over k of planes[k] ([S, S] or [S, S, 1]) times weights[k] ([C]).

    One matmul, [K, S*S]^T x [K, C], builds the channel-interleaved input: on the CPU this is
    ~3x cheaper than tf.tile + tf.concat, whose kernels copy a few floats per pixel at a time.
    """
    s = image_size
    p = tf.stack([tf.reshape(x, [s * s]) for x in planes])  # [K, S*S], contiguous copies
    c = weights.shape[-1]
    return tf.reshape(tf.matmul(p, weights, transpose_a=True), [s, s, c])


def pix2pix_condition(points, point_mask, colors, color_mask, size: int, condition: str,
                      seed=None, color_jitter: float = 0.1) -> tf.Tensor:
    """The pix2pix generator input of one face, [size, size, C] (see the module docstring).

    The one place the condition is built: the training pipeline, the photo -> anime CLI and the
    exported serving graphs all call this. points [5, 2] normalised, point_mask [5], colors
    [4, 3] in [0, 1], color_mask [4]; seed: int [2], used (jitter and noise) only by
    ``keypoints_colors_noise``: the same seed gives the same condition.
    """
    if condition not in CONDITIONS:
        raise ValueError(f"condition must be one of {CONDITIONS}, not {condition!r}")
    s = size
    layer = landmarks.render(points, point_mask, s)  # [S, S, 1]
    if condition == "keypoints":
        return layer
    n_ch = CONDITION_CHANNELS[condition]
    onehot = np.eye(n_ch, dtype=np.float32)
    ones = np.ones([s * s], np.float32)
    colors = tf.convert_to_tensor(colors, tf.float32)
    color_mask = tf.convert_to_tensor(color_mask, tf.float32)
    if condition == "keypoints_colors_noise":
        k = tf.random.experimental.stateless_split(tf.cast(seed, tf.int64) + 7, 2)
        # +-color_jitter in [-1, 1] units is +-color_jitter / 2 in [0, 1] colour units
        jitter = tf.random.stateless_uniform([4, 3], k[0], -color_jitter / 2.0, color_jitter / 2.0)
        colors = tf.clip_by_value(colors + jitter, 0.0, 1.0)
    planes = tf.reshape((colors * 2.0 - 1.0) * color_mask[:, None], [12])  # missing: 0
    row = tf.concat([[0.0], planes, [0.0] * (n_ch - 13)], 0)  # constant part, per channel
    if condition == "keypoints_colors_noise":
        noise = tf.random.stateless_uniform([s, s], k[1], -1.0, 1.0)
        return mix_planes([layer, noise, ones], tf.stack([onehot[0], onehot[13], row]), s)
    return mix_planes([layer, ones], tf.stack([onehot[0], row]), s)


def pix2pix_dataset(dataset_dir: str, split: str = "train", condition: str = "keypoints",
                    image_size: int = 256, augment: bool = False, batch_size: int = 1, *,
                    seed: int = 0, shuffle: Optional[bool] = None, shuffle_buffer: int = 1024,
                    repeat: bool = False, drop_remainder: bool = False,
                    load_size: Optional[int] = None, color_jitter: float = 0.1,
                    verify: bool = True, num_parallel_calls=AUTOTUNE) -> tf.data.Dataset:
    """(inputs [B, S, S, C], target [B, S, S, 3]) batches from a pix2pix dataset.

    `condition` picks C (see the module docstring). `shuffle` defaults to True for "train".
    `verify` reads every shard once (CRC) so a corrupt shard fails here, naming the file.
    """
    if condition not in CONDITIONS:
        raise ValueError(f"condition must be one of {CONDITIONS}, not {condition!r}")
    info = records.read_info(dataset_dir, task="pix2pix")
    shuffle = (split == "train") if shuffle is None else shuffle
    s = image_size

    def to_pair(ex):
        inputs = pix2pix_condition(ex["points"], ex["point_mask"], ex["colors"], ex["color_mask"],
                                   s, condition, ex["seed"], color_jitter)
        return inputs, ex["image"]

    ds, _ = _examples(dataset_dir, split, "anime", info, image_size, augment, seed, shuffle,
                      shuffle_buffer, repeat, load_size, verify, num_parallel_calls, finish=to_pair)
    return _batch(ds, batch_size, drop_remainder, num_parallel_calls).prefetch(AUTOTUNE)


def cyclegan_dataset(dataset_dir: str, split: str = "train", image_size: int = 256,
                     landmark_channel: bool = False, augment: bool = False, batch_size: int = 1, *,
                     seed: int = 0, shuffle: Optional[bool] = None, shuffle_buffer: int = 1024,
                     drop_remainder: bool = False, load_size: Optional[int] = None,
                     verify: bool = True, num_parallel_calls=AUTOTUNE) -> tf.data.Dataset:
    """Unpaired (photo [B, S, S, C], anime [B, S, S, C]) batches, C = 4 with `landmark_channel`.

    One pass is as long as the larger domain; the smaller one cycles (reshuffled each time).
    """
    info = records.read_info(dataset_dir, task="cyclegan")
    shuffle = (split == "train") if shuffle is None else shuffle
    s = image_size

    def one(ex):
        if not landmark_channel:
            return ex["image"]
        return tf.concat([ex["image"], landmarks.render(ex["points"], ex["point_mask"], s)], -1)

    photo, n_photo = _examples(dataset_dir, split, "photo", info, image_size, augment, seed,
                               shuffle, shuffle_buffer, True, load_size, verify, num_parallel_calls,
                               finish=one)
    anime, n_anime = _examples(dataset_dir, split, "anime", info, image_size, augment, seed + 1,
                               shuffle, shuffle_buffer, True, load_size, verify, num_parallel_calls,
                               finish=one)
    ds = tf.data.Dataset.zip((photo, anime)).take(max(n_photo, n_anime))
    return _batch(ds, batch_size, drop_remainder, num_parallel_calls).prefetch(AUTOTUNE)


def element_spec_summary(ds: tf.data.Dataset) -> Dict[str, str]:
    """Shapes and dtypes of a pipeline's elements, for logs."""
    return {str(i): f"{s.shape} {s.dtype.name}" for i, s in enumerate(tf.nest.flatten(ds.element_spec))}
