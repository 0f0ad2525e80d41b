"""tf.data pipelines over face-record datasets for pix2pix and CycleGAN.

Everything in the maps is plain TensorFlow (no `py_function`). Per example: parse, decode and
resize to the load size (286 for 256; uint8), then the random crop and horizontal flip (points
move with the pixels; left and right eye swap, and so do their colours) and the condition's
random draws. A training pipeline whose decoded images fit in CACHE_AUTO_BYTES keeps them in
memory after the first pass (`cache`), so later passes only crop, flip and render. The big
per-pixel tensors (landmark layer, colour and noise planes, CycleGAN's 4th channel) are then
written in one pass (`assemble_condition`, `with_landmarks`: XLA-compiled from JIT_FROM pixels),
per example at batch size 1 and after batching otherwise (so they are never copied into a
batch); prefetch.

pix2pix conditions (the three experiments of the original work), channels of `inputs`:

* ``keypoints``: 1 channel, the landmark layer.
* ``keypoints_colors``: 13 channels, the layer + the four colours (hair, skin, left eye, right
  eye) as constant RGB planes in [-1, 1]; a missing colour is a 0 (grey) plane. Constant planes,
  not painted regions: the network sees the colour everywhere, whatever the pose.
* ``keypoints_colors_noise``: 14 channels, as above with each colour jittered per example by up to
  +-`color_jitter` (in [-1, 1] units, uniform) and one channel of uniform noise in (-1, 1) (65536
  levels), so the net cannot map an exact attribute tuple to one memorised picture. Jitter and
  noise are seeded and drawn for every split (they are part of the condition, not augmentation).

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

import tensorflow as tf

from translate.contract import DOMAINS
from translate.datasets import landmarks, records

AUTOTUNE = tf.data.AUTOTUNE
CONDITIONS = ("keypoints", "keypoints_colors", "keypoints_colors_noise")
CONDITION_CHANNELS = {"keypoints": 1, "keypoints_colors": 13, "keypoints_colors_noise": 14}
COLOR_FLIP_ORDER = (0, 1, 3, 2)  # hair, skin, left_eye <-> right_eye
JIT_FROM = 128  # pipelines of this size and up compile their per-pixel work with XLA
CACHE_AUTO_BYTES = 1 << 30  # auto cache: a split's decoded images up to 1 GiB (per domain)
CACHE_CHOICES = {"auto": None, "on": True, "off": False}  # --cache_images -> `cache`


def load_size_for(image_size: int) -> int:
    """pix2pix's jitter: 286 for 256 (resize up by 286/256, then random-crop back)."""
    return int(round(image_size * 286 / 256))


def decode_uint8(encoded: tf.Tensor) -> tf.Tensor:
    """JPEG or PNG bytes -> uint8 [H, W, 3]."""
    img = tf.io.decode_image(encoded, channels=3, expand_animations=False)
    img.set_shape([None, None, 3])
    return img


def decode_image(encoded: tf.Tensor) -> tf.Tensor:
    """JPEG or PNG bytes -> float32 [H, W, 3] in [0, 255]."""
    return tf.cast(decode_uint8(encoded), tf.float32)


def resize_image(image: tf.Tensor, size: int) -> tf.Tensor:
    """[H, W, C] float -> [size, size, C], bilinear, antialiased when shrinking (the pipelines'
    resize, shared with the exported serving graphs)."""
    big = tf.reduce_max(tf.shape(image)[:2]) > size
    image = tf.cond(big, lambda: tf.image.resize(image, [size, size], antialias=True),
                    lambda: tf.image.resize(image, [size, size]))
    return tf.ensure_shape(image, [size, size, image.shape[-1]])


def jitter_draws(seed, image_size: int, load_size: int, flip: bool = True):
    """The random part of `augment`, a function of seed (int [2]): the crop offset (x, y) int32
    in [0, load - size] and whether to flip."""
    r = tf.random.stateless_uniform([3], seed)
    offset = tf.cast(r[:2] * float(load_size - image_size + 1), tf.int32)
    return offset, (r[2] < 0.5) if flip else tf.constant(False)


def move_keypoints(points, mask, colors, color_mask, offset, flipped, image_size: int,
                   load_size: int) -> Tuple[tf.Tensor, ...]:
    """Points, mask, colours and colour mask after the crop at `offset` of the image resized to
    load_size, and the flip: (u * load - o) / size, then x -> 1 - x with the eyes (names and
    colours) swapped."""
    points = (points * float(load_size) - tf.cast(offset, tf.float32)) / float(image_size)
    f_points, f_mask = landmarks.flip_points(points, mask)
    f_colors = tf.gather(colors, COLOR_FLIP_ORDER)
    f_cmask = tf.gather(color_mask, COLOR_FLIP_ORDER)
    return tuple(tf.where(flipped, f, t) for f, t in ((f_points, points), (f_mask, mask),
                                                      (f_colors, colors), (f_cmask, color_mask)))


def _to_unit(image):
    """uint8 [0, 255] -> float32 [-1, 1]: (x - 127.5) / 127.5 is exact at both ends (no clip)."""
    return (tf.cast(image, tf.float32) - 127.5) / 127.5


def _crop_flip(image, offset, flipped, image_size: int, load_size: int):
    """Crop and flip of an image already resized to load_size."""
    if load_size > image_size:
        image = tf.slice(image, tf.stack([offset[1], offset[0], 0]), [image_size, image_size, -1])
    return tf.cond(flipped, lambda: tf.reverse(image, axis=[1]), lambda: image)


def to_load_size(image, load_size: int) -> tf.Tensor:
    """[H, W, C] image in [0, 255] (any numeric dtype) -> uint8 [load, load, C]: the
    deterministic first stage of the pipelines (the form they cache). Bilinear and its
    antialiased form are convex combinations of the pixels, so the values stay in [0, 255] and
    + 0.5 then truncation rounds them."""
    image = resize_image(tf.cast(image, tf.float32), load_size)
    return tf.cast(image + 0.5, tf.uint8)


def jittered(image, points, mask, colors, color_mask, seed, image_size: int, load_size: int,
             flip: bool = True) -> Tuple[tf.Tensor, ...]:
    """The random second stage: crop and flip of an image already at load_size, and the points,
    mask, colours and colour mask moved with it (see `augment`)."""
    offset, flipped = jitter_draws(seed, image_size, load_size, flip)
    image = _crop_flip(image, offset, flipped, image_size, load_size)
    return (image,) + move_keypoints(points, mask, colors, color_mask, offset, flipped,
                                     image_size, load_size)


def augment(image: tf.Tensor, points: tf.Tensor, mask: tf.Tensor, colors: tf.Tensor,
            color_mask: tf.Tensor, seed: tf.Tensor, image_size: int, load_size: int,
            flip: bool = True) -> Tuple[tf.Tensor, ...]:
    """Random resize-crop jitter and horizontal flip, moving points (and eye names) with pixels:
    `to_load_size` then `jittered`, the pipelines' two stages.

    pix2pix's jitter: resize to load_size (bilinear; antialiased when shrinking), random crop of
    image_size, random horizontal flip. With pixel centres at (i + 0.5) / size, a resize leaves
    normalised points unchanged, a crop at offset o maps u to (u * load - o) / size and a flip
    maps x to 1 - x (and swaps the eyes, their colours too). Few, whole-image ops (one
    crop_and_resize, ScaleAndTranslate or an XLA gather-lerp kernel were not cheaper).

    image: [H, W, C] in [0, 255] (any size); points [5, 2] normalised; mask [5]; colors [4, 3];
    color_mask [4]; seed: int [2] for the stateless draws.
    Returns (image uint8 [S, S, C], points, mask, colors, color_mask).
    """
    points, mask, colors, color_mask = (
        tf.convert_to_tensor(t, tf.float32) for t in (points, mask, colors, color_mask))
    return jittered(to_load_size(image, load_size), points, mask, colors, color_mask, seed,
                    image_size, load_size, flip)


def _records(dataset_dir: str, split: str, domain: str, info: dict, verify: bool) -> Tuple[tf.data.Dataset, int]:
    files, count = records.split_shards(dataset_dir, info, split, domain)
    if verify:
        records.verify_shards(dataset_dir, info, split, domain)
    ds = tf.data.TFRecordDataset(files, buffer_size=1 << 20)
    return ds, count


def cache_decoded(cache: Optional[bool], count: int, load_size: int, repeat: bool) -> bool:
    """Whether a pipeline keeps its decoded images in memory (`cache`: None = auto: when the
    pipeline repeats and the split's images at load size fit in CACHE_AUTO_BYTES)."""
    if cache is None:
        return repeat and count * load_size * load_size * 3 <= CACHE_AUTO_BYTES
    return bool(cache)


def _decoded(serialized):
    """The deterministic part of an example: parse and decode. image stays uint8."""
    ex = records.parse_example(serialized)
    keep = ("points", "point_mask", "colors", "color_mask")
    return {"image": decode_uint8(ex["image"]), **{k: ex[k] for k in keep}}


def examples(dataset_dir: str, split: str, domain: str, *, image_size: int,
             augment: bool = False, seed: int = 0, shuffle: bool = False,
             shuffle_buffer: int = 1024, repeat: bool = False, load_size: Optional[int] = None,
             verify: bool = True, num_parallel_calls=AUTOTUNE, finish=None,
             cache: Optional[bool] = False, length: Optional[int] = None,
             info: Optional[dict] = None) -> Tuple[tf.data.Dataset, int]:
    """(dataset, record count) of one split and domain: per-example dicts, image [S, S, 3] in
    [-1, 1], points, point_mask, colors, color_mask, seed; or `finish(dict)` of them, computed in
    the same parallel map. With `repeat` and `length`, a pass is `length` examples, the records
    cycling (reshuffled every epoch) until then. `info`: the dataset.json already read (default:
    read it here).

    Two stages: decode + resize to the load size (deterministic), then the random crop, flip and
    `finish`. With `cache` (see `cache_decoded`) the first stage runs once per example and its
    uint8 output stays in memory (shuffled after the cache); without, records are shuffled and
    both stages run in one map."""
    info = records.read_info(dataset_dir) if info is None else info
    ds, count = _records(dataset_dir, split, domain, info, verify)
    load = (load_size or load_size_for(image_size)) if augment else image_size
    cached = cache_decoded(cache, count, load, repeat)
    def prepare(serialized):
        ex = _decoded(serialized)
        return {**ex, "image": to_load_size(ex["image"], load)}

    if cached:
        ds = ds.map(prepare, num_parallel_calls=num_parallel_calls, deterministic=True).cache()
    if shuffle:
        ds = ds.shuffle(min(shuffle_buffer, count), seed=seed, reshuffle_each_iteration=True)
    if repeat:
        ds = ds.repeat()
    if length is not None:
        # Below the parallel map, so its read-ahead never starts an epoch this pass won't use:
        # each epoch's shuffle takes the next seed, so an extra one would change the next pass.
        ds = ds.take(length)
    # One independent int64 per example; new values each pass, all determined by the seed.
    rnd = tf.data.Dataset.random(seed=seed, rerandomize_each_iteration=True)
    ds = tf.data.Dataset.zip((ds, rnd))

    def jitter(ex, r):
        if not cached:
            ex = prepare(ex)
        seed2 = tf.stack([r, tf.constant(seed, tf.int64)])
        image, pts, pmask, colors, cmask = jittered(
            ex["image"], ex["points"], ex["point_mask"], ex["colors"], ex["color_mask"], seed2,
            image_size, load, flip=augment)
        ex = {"image": _to_unit(image), "points": pts, "point_mask": pmask, "colors": colors,
              "color_mask": cmask, "seed": seed2}
        return finish(ex) if finish is not None else ex

    return ds.map(jitter, num_parallel_calls=num_parallel_calls, deterministic=True), count


def _batched(ds: tf.data.Dataset, batch_size: int, drop_remainder: bool, num_parallel_calls,
             assemble) -> tf.data.Dataset:
    """Batches per-example parts, then `assemble` builds the big per-pixel tensors of the whole
    batch at once: each is written once, where building them per example and batching would
    copy them again (megabytes per example for the 14-channel condition)."""
    ds = ds.batch(batch_size, drop_remainder=drop_remainder, num_parallel_calls=num_parallel_calls,
                  deterministic=True)
    return ds.map(assemble, num_parallel_calls=num_parallel_calls, deterministic=True)


def _add_batch_dim(*tensors):
    """Batch size 1 (the GAN default): a free reshape with a static batch dimension, where
    `batch` would copy every example once more."""
    return tuple(t[None] for t in tensors)


def use_xla(image_size: int, jit_compile: Optional[bool]) -> bool:
    """Whether the pipelines compile their per-pixel work with XLA: by default from JIT_FROM
    pixels, where it is ~3x cheaper per example; below, the ~1 s compile per shape is not
    worth it (tests, small experiments)."""
    return image_size >= JIT_FROM if jit_compile is None else bool(jit_compile)


def condition_draws(colors, seed, size: int, color_jitter: float = 0.1):
    """The random part of the ``keypoints_colors_noise`` condition of one face, a function of
    seed (int [2]): (colors [4, 3] jittered by up to +-color_jitter in [-1, 1] units, noise bits
    uint32 [size, ceil(size / 2)], two 16-bit noise values each: see `noise_from_bits`)."""
    k = tf.random.experimental.stateless_split(tf.cast(seed, tf.int64) + 7, 2)
    # +-color_jitter in [-1, 1] units is +-color_jitter / 2 in [0, 1] colour units
    jitter = tf.random.stateless_uniform([4, 3], k[0], -color_jitter / 2.0, color_jitter / 2.0)
    colors = tf.clip_by_value(tf.convert_to_tensor(colors, tf.float32) + jitter, 0.0, 1.0)
    bits = tf.random.stateless_uniform([size, (size + 1) // 2], k[1], minval=None, maxval=None,
                                       dtype=tf.uint32)
    return colors, bits


def noise_from_bits(bits, size: int) -> tf.Tensor:
    """uint32 [..., size, ceil(size / 2)] -> float32 noise [..., size, size], uniform in (-1, 1)
    on 65536 levels. Half the random bits of one float each (Philox is most of the noise's cost),
    and unpacked inside the (XLA) kernel that writes the condition."""
    halves = tf.stack([tf.bitwise.bitwise_and(bits, 0xFFFF), tf.bitwise.right_shift(bits, 16)], -1)
    halves = tf.reshape(halves, tf.concat([tf.shape(bits)[:-1], [-1]], 0))[..., :size]
    return tf.cast(halves, tf.float32) * (2.0 / 65536.0) + (1.0 / 65536.0 - 1.0)


def assemble_condition(points, point_mask, colors, color_mask, size: int, condition: str,
                       noise_bits=None) -> tf.Tensor:
    """The pix2pix generator input from already-drawn parts, [..., size, size, C] (see the module
    docstring): the landmark layer, the 12 colour planes (a missing colour is 0), then the noise
    of `noise_bits` (``keypoints_colors_noise`` only, see `condition_draws`). Vectorised over
    leading dimensions, and a per-pixel chain: under XLA, one pass writing the output."""
    layer = landmarks.render_graph(points, point_mask, size)  # [..., S, S, 1]
    if condition == "keypoints":
        return layer
    colors = tf.convert_to_tensor(colors, tf.float32)
    color_mask = tf.convert_to_tensor(color_mask, tf.float32)
    planes = (colors * 2.0 - 1.0) * color_mask[..., None]  # [..., 4, 3]
    planes = tf.reshape(planes, tf.concat([tf.shape(planes)[:-2], [1, 1, 12]], 0))
    parts = [layer, tf.broadcast_to(planes, tf.concat([tf.shape(layer)[:-1], [12]], 0))]
    if condition == "keypoints_colors_noise":
        parts.append(noise_from_bits(noise_bits, size)[..., None])
    out = tf.concat(parts, -1)
    out.set_shape(layer.shape[:-1].concatenate([CONDITION_CHANNELS[condition]]))
    return out


def with_landmarks(image, points, point_mask, size: int) -> tf.Tensor:
    """[..., S, S, 3] image + its landmark layer as a 4th channel (CycleGAN's landmark_channel)."""
    return tf.concat([image, landmarks.render_graph(points, point_mask, size)], -1)


# Graph functions (fast eagerly too) and their XLA-compiled twins: same ops, same values up to
# float rounding (tests check), one compile per shape.
_ASSEMBLE = {False: tf.function(assemble_condition, reduce_retracing=True),
             True: tf.function(assemble_condition, jit_compile=True)}
_WITH_LANDMARKS = {False: tf.function(with_landmarks, reduce_retracing=True),
                   True: tf.function(with_landmarks, jit_compile=True)}


def pix2pix_condition(points, point_mask, colors, color_mask, size: int, condition: str,
                      seed=None, color_jitter: float = 0.1) -> tf.Tensor:
    """The pix2pix generator input of one face, [size, size, C] (see the module docstring).

    The one definition of the condition: the training pipeline (which builds the same values
    from `condition_draws` + `assemble_condition`, batched), the photo -> anime CLI and the
    exported serving graphs. points [5, 2] normalised, point_mask [5], colors [4, 3] in [0, 1],
    color_mask [4]; seed: int [2], used (jitter and noise) only by ``keypoints_colors_noise``:
    the same seed gives the same condition.
    """
    if condition not in CONDITIONS:
        raise ValueError(f"condition must be one of {CONDITIONS}, not {condition!r}")
    bits = None
    if condition == "keypoints_colors_noise":
        colors, bits = condition_draws(colors, seed, size, color_jitter)
    points = tf.convert_to_tensor(points, tf.float32)
    point_mask = tf.cast(tf.convert_to_tensor(point_mask), tf.float32)
    colors = tf.convert_to_tensor(colors, tf.float32)
    color_mask = tf.cast(tf.convert_to_tensor(color_mask), tf.float32)
    return _ASSEMBLE[False](points, point_mask, colors, color_mask, size, condition, bits)


def pix2pix_dataset(dataset_dir: str, split: str = "train", condition: str = "keypoints",
                    image_size: int = 256, augment: bool = False, batch_size: int = 1, *,
                    seed: int = 0, shuffle: Optional[bool] = None, shuffle_buffer: int = 1024,
                    repeat: bool = False, drop_remainder: bool = False,
                    load_size: Optional[int] = None, color_jitter: float = 0.1,
                    verify: bool = True, num_parallel_calls=AUTOTUNE,
                    jit_compile: Optional[bool] = None,
                    cache: Optional[bool] = None) -> tf.data.Dataset:
    """(inputs [B, S, S, C], target [B, S, S, 3]) batches from a pix2pix dataset.

    `condition` picks C (see the module docstring). `shuffle` defaults to True for "train".
    `verify` reads every shard once (CRC) so a corrupt shard fails here, naming the file.
    `jit_compile`: XLA for the per-pixel work (default: see `use_xla`).
    `cache`: keep the decoded images in memory after the first pass (default: see
    `cache_decoded`).
    """
    if condition not in CONDITIONS:
        raise ValueError(f"condition must be one of {CONDITIONS}, not {condition!r}")
    info = records.read_info(dataset_dir, task="pix2pix")
    shuffle = (split == "train") if shuffle is None else shuffle
    s = image_size
    xla = use_xla(s, jit_compile)
    build = _ASSEMBLE[xla]
    noisy = condition == "keypoints_colors_noise"

    def parts(ex):
        """Per example: the target and the small inputs of the condition (+ its random draws)."""
        out = {k: ex[k] for k in ("image", "points", "point_mask", "colors", "color_mask")}
        if noisy:
            out["colors"], out["noise_bits"] = condition_draws(ex["colors"], ex["seed"], s,
                                                               color_jitter)
        return out

    def pair(p):
        return build(p["points"], p["point_mask"], p["colors"], p["color_mask"], s, condition,
                     p.get("noise_bits")), p["image"]

    one_by_one = batch_size == 1
    ds, _ = examples(dataset_dir, split, "anime", info=info, image_size=image_size, augment=augment,
                     seed=seed, shuffle=shuffle, shuffle_buffer=shuffle_buffer, repeat=repeat,
                     load_size=load_size, verify=verify, num_parallel_calls=num_parallel_calls,
                     finish=(lambda ex: _add_batch_dim(*pair(parts(ex)))) if one_by_one else parts,
                     cache=cache)
    if not one_by_one:
        ds = _batched(ds, batch_size, drop_remainder, num_parallel_calls, pair)
    return ds.prefetch(AUTOTUNE)


def cyclegan_dataset(dataset_dir: str, split: str = "train", image_size: int = 256,
                     landmark_channel: bool = False, augment: bool = False, batch_size: int = 1, *,
                     seed: int = 0, shuffle: Optional[bool] = None, shuffle_buffer: int = 1024,
                     drop_remainder: bool = False, load_size: Optional[int] = None,
                     verify: bool = True, num_parallel_calls=AUTOTUNE,
                     jit_compile: Optional[bool] = None,
                     cache: Optional[bool] = None) -> tf.data.Dataset:
    """Unpaired (photo [B, S, S, C], anime [B, S, S, C]) batches, C = 4 with `landmark_channel`.

    One pass is as long as the larger domain; the smaller one cycles (reshuffled each time).
    `jit_compile`: XLA for the per-pixel work (default: see `use_xla`).
    `cache`: keep each domain's decoded images in memory after its first pass (default: see
    `cache_decoded`).
    """
    info = records.read_info(dataset_dir, task="cyclegan")
    shuffle = (split == "train") if shuffle is None else shuffle
    s = image_size
    xla = use_xla(s, jit_compile)
    add_layer = _WITH_LANDMARKS[xla]

    def parts(ex):
        if not landmark_channel:
            return ex["image"]
        return {k: ex[k] for k in ("image", "points", "point_mask")}

    def one(p):
        return add_layer(p["image"], p["points"], p["point_mask"], s) if landmark_channel else p

    # With the landmark channel and batches, the 4-channel images are built after batching.
    late = landmark_channel and batch_size > 1
    length = max(records.split_shards(dataset_dir, info, split, name)[1] for name in DOMAINS)
    photo, anime = (examples(dataset_dir, split, name, info=info, image_size=image_size,
                             augment=augment, seed=seed + k, shuffle=shuffle,
                             shuffle_buffer=shuffle_buffer, repeat=True, load_size=load_size,
                             verify=verify, num_parallel_calls=num_parallel_calls,
                             finish=parts if late else (lambda ex: one(parts(ex))), cache=cache,
                             length=length)[0]
                    for k, name in enumerate(DOMAINS))
    ds = tf.data.Dataset.zip((photo, anime))
    if batch_size == 1:
        ds = ds.map(_add_batch_dim)
    elif late:
        ds = _batched(ds, batch_size, drop_remainder, num_parallel_calls, lambda a, b: (one(a), one(b)))
    else:
        ds = ds.batch(batch_size, drop_remainder=drop_remainder,
                      num_parallel_calls=num_parallel_calls, deterministic=True)
    return ds.prefetch(AUTOTUNE)


def element_spec_summary(ds: tf.data.Dataset) -> Dict[str, str]:
    """Shapes and dtypes of a pipeline's elements, for logs."""
    return {str(i): f"{s.shape} {s.dtype.name}" for i, s in enumerate(tf.nest.flatten(ds.element_spec))}
