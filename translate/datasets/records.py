"""The Face record contract: one `tf.train.Example` per aligned face crop, and `dataset.json`.

Both the writer (`translate/datasets/builder.py`, `tools/build_tfrecords.py`) and the readers
(`translate/datasets/pipelines.py`) import this module; nothing else knows the feature keys.

Features of one example:

==================== ======== ========================================================
key                  type     meaning
==================== ======== ========================================================
image/encoded        bytes    the crop as stored on disk (JPEG or PNG; other formats are
                              re-encoded as PNG by the writer)
image/format         bytes    b"jpeg" | b"png"
image/height, width  int64    decoded size of the crop
face/keypoints       float[10] (x, y) per point in POINT_NAMES order, normalised to [0, 1]
                              over the crop with pixel centres at (i + 0.5) / size; 0 when
                              missing
face/keypoint_mask   int64[5] 1 where the point is present
face/colors          float[12] RGB per colour in COLOR_NAMES order, scaled to [0, 1]; 0 when
                              missing
face/color_mask      int64[4] 1 where the colour is present
face/domain          bytes    b"photo" | b"anime"
face/source_id       bytes    the face's source (image path as written by the detector)
face/group_id        bytes    identity group used by the split (character, person or
                              near-duplicate cluster)
==================== ======== ========================================================

Every dataset folder holds `dataset.json` (see `write_info`): schema version, task, domains, per
split and domain the shard files with their record counts and byte sizes, and how the set was
built. Readers check the schema version and the shards before reading and fail with a message
that names the file.
"""
from __future__ import annotations

import json
import os
from typing import Dict, List, Mapping, Optional, Sequence, Tuple

import numpy as np
import tensorflow as tf

from translate.contract import DATASET_JSON, RECORD_SCHEMA_VERSION
from translate.contract import DATASET_FORMAT as FORMAT_NAME
from translate.faces.schema import COLOR_NAMES, POINT_NAMES

NUM_POINTS = len(POINT_NAMES)
NUM_COLORS = len(COLOR_NAMES)


class DatasetError(ValueError):
    """A dataset folder that cannot be read (missing, wrong schema, bad shard)."""


class SchemaMismatchError(DatasetError):
    """dataset.json was written with another record schema version."""


class ShardError(DatasetError):
    """A shard that is missing, truncated or corrupt."""


# ----------------------------------------------------------------------------- writing
def normalise_points(points: Mapping[str, Sequence[float]], size: float) -> Tuple[List[float], List[int]]:
    """Crop-pixel points (pixel centres at integers) -> (flat [10] normalised, [5] mask)."""
    flat: List[float] = []
    mask: List[int] = []
    for name in POINT_NAMES:
        if name in points:
            x, y = points[name]
            flat += [(float(x) + 0.5) / size, (float(y) + 0.5) / size]
            mask.append(1)
        else:
            flat += [0.0, 0.0]
            mask.append(0)
    return flat, mask


def normalise_colors(colors: Mapping[str, Sequence[int]]) -> Tuple[List[float], List[int]]:
    """RGB 0-255 colours -> (flat [12] in [0, 1], [4] mask)."""
    flat: List[float] = []
    mask: List[int] = []
    for name in COLOR_NAMES:
        if name in colors:
            flat += [min(max(float(c), 0.0), 255.0) / 255.0 for c in colors[name]]
            mask.append(1)
        else:
            flat += [0.0, 0.0, 0.0]
            mask.append(0)
    return flat, mask


def _bytes(v: bytes) -> tf.train.Feature:
    return tf.train.Feature(bytes_list=tf.train.BytesList(value=[v]))


def _ints(v: Sequence[int]) -> tf.train.Feature:
    return tf.train.Feature(int64_list=tf.train.Int64List(value=[int(x) for x in v]))


def _floats(v: Sequence[float]) -> tf.train.Feature:
    return tf.train.Feature(float_list=tf.train.FloatList(value=[float(x) for x in v]))


def make_example(image_bytes: bytes, image_format: str, height: int, width: int,
                 points: Mapping[str, Sequence[float]], crop_size: float,
                 colors: Mapping[str, Sequence[int]], domain: str, source_id: str,
                 group_id: str) -> tf.train.Example:
    """One face record. `points` are in crop pixels of a crop of side `crop_size`."""
    if image_format not in ("jpeg", "png"):
        raise ValueError(f"image_format must be jpeg or png, not {image_format!r}")
    kp, kp_mask = normalise_points(points, crop_size)
    col, col_mask = normalise_colors(colors)
    return tf.train.Example(features=tf.train.Features(feature={
        "image/encoded": _bytes(image_bytes),
        "image/format": _bytes(image_format.encode()),
        "image/height": _ints([height]),
        "image/width": _ints([width]),
        "face/keypoints": _floats(kp),
        "face/keypoint_mask": _ints(kp_mask),
        "face/colors": _floats(col),
        "face/color_mask": _ints(col_mask),
        "face/domain": _bytes(domain.encode()),
        "face/source_id": _bytes(source_id.encode()),
        "face/group_id": _bytes(group_id.encode()),
    }))


def write_info(dataset_dir: str, info: dict) -> str:
    """Writes dataset.json atomically (temporary name, then rename)."""
    info = dict(info)
    info.setdefault("schema_version", RECORD_SCHEMA_VERSION)
    info.setdefault("format", FORMAT_NAME)
    path = os.path.join(dataset_dir, DATASET_JSON)
    tmp = path + f".tmp-{os.getpid()}"
    with open(tmp, "w", encoding="utf-8") as f:
        json.dump(info, f, indent=1, sort_keys=False)
        f.write("\n")
    os.replace(tmp, path)
    return path


# ----------------------------------------------------------------------------- reading
FEATURES = {
    "image/encoded": tf.io.FixedLenFeature([], tf.string),
    "image/format": tf.io.FixedLenFeature([], tf.string),
    "image/height": tf.io.FixedLenFeature([], tf.int64),
    "image/width": tf.io.FixedLenFeature([], tf.int64),
    "face/keypoints": tf.io.FixedLenFeature([NUM_POINTS * 2], tf.float32),
    "face/keypoint_mask": tf.io.FixedLenFeature([NUM_POINTS], tf.int64),
    "face/colors": tf.io.FixedLenFeature([NUM_COLORS * 3], tf.float32),
    "face/color_mask": tf.io.FixedLenFeature([NUM_COLORS], tf.int64),
    "face/domain": tf.io.FixedLenFeature([], tf.string),
    "face/source_id": tf.io.FixedLenFeature([], tf.string),
    "face/group_id": tf.io.FixedLenFeature([], tf.string),
}


def parse_example(serialized) -> Dict[str, tf.Tensor]:
    """Parses one serialized record (in-graph) into shaped tensors.

    Returns dict: image (encoded string), points [5, 2] float32, point_mask [5] float32,
    colors [4, 3] float32 in [0, 1], color_mask [4] float32, domain, source_id, group_id.
    """
    f = tf.io.parse_single_example(serialized, FEATURES)
    return {
        "image": f["image/encoded"],
        "points": tf.reshape(f["face/keypoints"], [NUM_POINTS, 2]),
        "point_mask": tf.cast(f["face/keypoint_mask"], tf.float32),
        "colors": tf.reshape(f["face/colors"], [NUM_COLORS, 3]),
        "color_mask": tf.cast(f["face/color_mask"], tf.float32),
        "domain": f["face/domain"],
        "source_id": f["face/source_id"],
        "group_id": f["face/group_id"],
    }


def read_info(dataset_dir: str, task: Optional[str] = None) -> dict:
    """Reads and checks dataset.json; raises DatasetError / SchemaMismatchError naming the file."""
    path = os.path.join(dataset_dir, DATASET_JSON)
    if not os.path.isdir(dataset_dir):
        raise DatasetError(f"{dataset_dir}: no such dataset folder")
    if not os.path.exists(path):
        raise DatasetError(f"{path} is missing: {dataset_dir} is not a built dataset "
                           "(build one with tools/build_tfrecords.py)")
    try:
        with open(path, "r", encoding="utf-8") as f:
            info = json.load(f)
    except (OSError, json.JSONDecodeError) as e:
        raise DatasetError(f"{path}: unreadable dataset.json ({e})") from None
    if not isinstance(info, dict) or info.get("format") != FORMAT_NAME:
        raise DatasetError(f"{path}: not a face-records dataset.json (format {info.get('format') if isinstance(info, dict) else None!r})")
    version = info.get("schema_version")
    if version != RECORD_SCHEMA_VERSION:
        raise SchemaMismatchError(
            f"{path}: record schema version {version}, but this code reads version "
            f"{RECORD_SCHEMA_VERSION}; rebuild the dataset with tools/build_tfrecords.py")
    if task is not None and info.get("task") != task:
        raise DatasetError(f"{path}: built for task {info.get('task')!r}, not {task!r}")
    return info


def split_shards(dataset_dir: str, info: dict, split: str, domain: str) -> Tuple[List[str], int]:
    """(shard paths, record count) of one split and domain; checks presence and byte sizes."""
    path = os.path.join(dataset_dir, DATASET_JSON)
    splits = info.get("splits", {})
    if split not in splits:
        raise DatasetError(f"{path}: no split {split!r} (has {sorted(splits)})")
    if domain not in splits[split]:
        raise DatasetError(f"{path}: split {split!r} has no domain {domain!r} (has {sorted(splits[split])})")
    entry = splits[split][domain]
    if not entry.get("count"):
        raise DatasetError(f"{path}: split {split!r} domain {domain!r} is empty")
    files = []
    for shard in entry["shards"]:
        f = os.path.join(dataset_dir, shard["file"])
        if not os.path.exists(f):
            raise ShardError(f"{f}: shard listed in dataset.json is missing")
        size = os.path.getsize(f)
        if size != shard["bytes"]:
            raise ShardError(f"{f}: shard is {size} bytes, dataset.json says {shard['bytes']}: "
                             "truncated or corrupt; rebuild the dataset")
        files.append(f)
    return files, int(entry["count"])


def verify_shards(dataset_dir: str, info: dict, split: str, domain: str) -> None:
    """Reads every record of the split's shards (CRC checked) and compares counts with dataset.json."""
    files, _ = split_shards(dataset_dir, info, split, domain)
    shards = {s["file"]: s["count"] for s in info["splits"][split][domain]["shards"]}
    for f in files:
        n = 0
        try:
            for _ in tf.data.TFRecordDataset(f, buffer_size=1 << 20):
                n += 1
        except (tf.errors.DataLossError, tf.errors.InvalidArgumentError) as e:
            raise ShardError(f"{f}: truncated or corrupt shard after {n} records "
                             f"({e.message.splitlines()[0] if e.message else type(e).__name__}); "
                             "rebuild the dataset") from None
        expected = shards[os.path.basename(f)]
        if n != expected:
            raise ShardError(f"{f}: {n} records, dataset.json says {expected}; rebuild the dataset")


def example_to_numpy(serialized: bytes) -> dict:
    """Parses one record outside the graph (for tools and tests)."""
    ex = tf.train.Example.FromString(serialized)
    f = ex.features.feature
    return {
        "image": f["image/encoded"].bytes_list.value[0],
        "format": f["image/format"].bytes_list.value[0].decode(),
        "points": np.array(f["face/keypoints"].float_list.value, np.float32).reshape(NUM_POINTS, 2),
        "point_mask": np.array(f["face/keypoint_mask"].int64_list.value, np.float32),
        "colors": np.array(f["face/colors"].float_list.value, np.float32).reshape(NUM_COLORS, 3),
        "color_mask": np.array(f["face/color_mask"].int64_list.value, np.float32),
        "domain": f["face/domain"].bytes_list.value[0].decode(),
        "source_id": f["face/source_id"].bytes_list.value[0].decode(),
        "group_id": f["face/group_id"].bytes_list.value[0].decode(),
    }
