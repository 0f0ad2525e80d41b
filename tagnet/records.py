"""The Tag record contract. Writers (tagnet.build) and readers (tagnet.data, evaluate, predict) both
import this module; nothing else knows the feature keys or the dataset.json layout.

A dataset folder holds:
  dataset.json      schema name and version, task, image size, vocabulary file and size, each
                    tag's category (``tag_categories``, in vocabulary order), per-split example
                    counts and shard names, the command that built it
  tags.txt          the vocabulary: one tag a line, ``tag<TAB>count<TAB>category`` (count over the
                    whole set; category one of contract.CATEGORIES); line i (0-based) is tag index i

Version 1 folders (``tag<TAB>count``, no ``tag_categories``) still load: every tag is general.
  <split>-NNNNN-of-MMMMM.tfrecord
                    one tf.train.Example per image (see FEATURES)
"""
from __future__ import annotations

import json
import os
import sys
import time
from typing import Dict, Iterable, List, Optional, Sequence, Tuple

import tensorflow as tf

from tagnet.contract import (CATEGORIES, DATASET_JSON, DEFAULT_CATEGORY, TAGS_TXT,  # noqa: F401
                             shard_names)  # (records.X for its readers)

SCHEMA = "tagnet.tags"
SCHEMA_VERSION = 2
READABLE_VERSIONS = (1, 2)  # 1: no tag categories
TASKS = ("multi_label", "single_label")

# Feature keys.
IMAGE = "image/encoded"          # bytes: JPEG (or PNG) of the square, resized RGB image
FORMAT = "image/format"          # bytes: b"jpeg" | b"png"
HEIGHT = "image/height"          # int64
WIDTH = "image/width"            # int64
TAGS = "image/tags"              # int64 list: tag indices into tags.txt (one for single_label)
SOURCE_ID = "image/source_id"    # bytes: path relative to the source root, or a Danbooru id
GROUP_ID = "image/group_id"      # bytes: group used for the leak-free split

FEATURES = {
    IMAGE: tf.io.FixedLenFeature([], tf.string),
    FORMAT: tf.io.FixedLenFeature([], tf.string, default_value=b"jpeg"),
    HEIGHT: tf.io.FixedLenFeature([], tf.int64),
    WIDTH: tf.io.FixedLenFeature([], tf.int64),
    TAGS: tf.io.VarLenFeature(tf.int64),
    SOURCE_ID: tf.io.FixedLenFeature([], tf.string, default_value=b""),
    GROUP_ID: tf.io.FixedLenFeature([], tf.string, default_value=b""),
}


class DatasetError(ValueError):
    """A dataset folder that cannot be used; the message says why and what to do."""


# --- writing ------------------------------------------------------------------------------------
def _bytes(v: bytes) -> tf.train.Feature:
    return tf.train.Feature(bytes_list=tf.train.BytesList(value=[v]))


def _ints(v: Iterable[int]) -> tf.train.Feature:
    return tf.train.Feature(int64_list=tf.train.Int64List(value=list(v)))


def make_example(encoded: bytes, height: int, width: int, tags: Sequence[int], source_id: str,
                 group_id: str = "", image_format: str = "jpeg") -> tf.train.Example:
    return tf.train.Example(features=tf.train.Features(feature={
        IMAGE: _bytes(encoded),
        FORMAT: _bytes(image_format.encode()),
        HEIGHT: _ints([height]),
        WIDTH: _ints([width]),
        TAGS: _ints(int(t) for t in tags),
        SOURCE_ID: _bytes(str(source_id).encode("utf-8")),
        GROUP_ID: _bytes(str(group_id).encode("utf-8")),
    }))


def check_categories(categories: Sequence[str], where: str = "") -> List[str]:
    """The categories as a list; DatasetError naming the first unknown one."""
    bad = [c for c in categories if c not in CATEGORIES]
    if bad:
        raise DatasetError(f"{where}unknown tag category {bad[0]!r}; choose from {', '.join(CATEGORIES)}")
    return list(categories)


def write_vocabulary(path: str, tags: Sequence[str], counts: Sequence[int],
                     categories: Optional[Sequence[str]] = None) -> None:
    """tags.txt: ``tag<TAB>count<TAB>category`` lines (category general when not given)."""
    categories = check_categories(categories or [DEFAULT_CATEGORY] * len(tags))
    with open(path, "w", encoding="utf-8") as f:
        for tag, count, cat in zip(tags, counts, categories):
            if "\t" in tag or "\n" in tag:
                raise DatasetError(f"tag {tag!r} contains a tab or newline")
            f.write(f"{tag}\t{int(count)}\t{cat}\n")


def read_vocabulary(path: str, with_categories: bool = False):
    """-> (tags, counts), or (tags, counts, categories) with ``with_categories``; lines without a
    category (version 1) are general."""
    tags, counts, cats = [], [], []
    with open(path, encoding="utf-8") as f:
        for n, line in enumerate(f, 1):
            line = line.rstrip("\n")
            if not line:
                continue
            tag, _, rest = line.partition("\t")
            count, _, cat = rest.partition("\t")
            try:
                counts.append(int(count) if count else 0)
            except ValueError:
                raise DatasetError(f"{path}:{n}: expected 'tag<TAB>count<TAB>category', "
                                   f"got {line!r}") from None
            tags.append(tag)
            cats.append(cat or DEFAULT_CATEGORY)
    check_categories(cats, f"{path}: ")
    return (tags, counts, cats) if with_categories else (tags, counts)


def write_dataset_info(dataset_dir: str, *, task: str, image_size: int, tags: Sequence[str],
                       splits: Dict[str, Dict], categories: Optional[Sequence[str]] = None,
                       tag_categories: Optional[Sequence[str]] = None, source: str = "",
                       command: Optional[Sequence[str]] = None, extra: Optional[Dict] = None) -> Dict:
    """Writes dataset.json. ``splits`` maps split name -> {"count": int, "shards": [names],
    "tag_counts": [per-tag positives in that split]}; ``categories``: the Danbooru categories the
    builder kept; ``tag_categories``: each tag's category (default general)."""
    if task not in TASKS:
        raise ValueError(f"task must be one of {TASKS}")
    info = {
        "schema": SCHEMA,
        "schema_version": SCHEMA_VERSION,
        "task": task,
        "image_size": int(image_size),
        "vocabulary": TAGS_TXT,
        "num_tags": len(tags),
        "categories": list(categories or []),
        "tag_categories": check_categories(tag_categories or [DEFAULT_CATEGORY] * len(tags)),
        "source": source,
        "splits": splits,
        "command": list(command if command is not None else sys.argv),
        "created": time.strftime("%Y-%m-%dT%H:%M:%SZ", time.gmtime()),
    }
    if extra:
        info.update(extra)
    with open(os.path.join(dataset_dir, DATASET_JSON), "w", encoding="utf-8") as f:
        json.dump(info, f, indent=1)
    return info


# --- reading ------------------------------------------------------------------------------------
class DatasetInfo:
    """dataset.json after the checks, plus the vocabulary."""

    def __init__(self, dataset_dir: str, info: Dict, tags: List[str], counts: List[int],
                 categories: Optional[List[str]] = None):
        self.dataset_dir = dataset_dir
        self.info = info
        self.tags = tags
        self.tag_counts = counts
        self.tag_categories = categories or [DEFAULT_CATEGORY] * len(tags)

    task = property(lambda self: self.info["task"])
    image_size = property(lambda self: int(self.info["image_size"]))
    num_tags = property(lambda self: len(self.tags))
    multi_label = property(lambda self: self.info["task"] == "multi_label")

    def count(self, split: str) -> int:
        return int(self.info["splits"].get(split, {}).get("count", 0))

    def shards(self, split: str) -> List[str]:
        return [os.path.join(self.dataset_dir, s) for s in self.info["splits"][split]["shards"]]

    def require_split(self, split: str) -> None:
        """Raises DatasetError unless the split exists and has examples (zero-sample guard)."""
        splits = self.info.get("splits", {})
        if split not in splits:
            raise DatasetError(f"{self.dataset_dir}: no split {split!r} (has: "
                               f"{', '.join(sorted(splits)) or 'none'})")
        if self.count(split) <= 0:
            raise DatasetError(
                f"{self.dataset_dir}: split {split!r} has 0 examples. The builder found no usable "
                f"images for it; check the image paths and tag filters it reported "
                f"(command: {' '.join(self.info.get('command', []))})")


def load_dataset_info(dataset_dir: str, check_shards: bool = True) -> DatasetInfo:
    """Reads and checks dataset.json and tags.txt; raises DatasetError with a clear message."""
    if not dataset_dir:
        raise DatasetError("no dataset directory given (--dataset_dir)")
    if not os.path.isdir(dataset_dir):
        raise DatasetError(f"dataset directory {dataset_dir!r} does not exist")
    path = os.path.join(dataset_dir, DATASET_JSON)
    if not os.path.isfile(path):
        raise DatasetError(
            f"{dataset_dir} is not a tagnet dataset: it has no {DATASET_JSON}. Build one with "
            f"`python tagnet/build_dataset.py --output_dir={dataset_dir} ...`")
    try:
        with open(path, encoding="utf-8") as f:
            info = json.load(f)
    except (OSError, json.JSONDecodeError) as e:
        raise DatasetError(f"{path}: unreadable ({e})") from None
    if info.get("schema") != SCHEMA:
        raise DatasetError(f"{path}: schema is {info.get('schema')!r}, expected {SCHEMA!r} "
                           f"(is this a face dataset rather than a tag dataset?)")
    if info.get("schema_version") not in READABLE_VERSIONS:
        raise DatasetError(f"{path}: schema version {info.get('schema_version')} but this code "
                           f"reads versions {', '.join(map(str, READABLE_VERSIONS))}; rebuild the dataset")
    if info.get("task") not in TASKS:
        raise DatasetError(f"{path}: task {info.get('task')!r} is not one of {TASKS}")
    vocab = os.path.join(dataset_dir, info.get("vocabulary", TAGS_TXT))
    if not os.path.isfile(vocab):
        raise DatasetError(f"{dataset_dir}: vocabulary {vocab} is missing")
    tags, counts, cats = read_vocabulary(vocab, with_categories=True)
    if "tag_categories" in info and list(info["tag_categories"]) != cats:
        raise DatasetError(f"{dataset_dir}: the tag categories of {os.path.basename(vocab)} and "
                           f"{DATASET_JSON} differ; the folder is inconsistent")
    if len(tags) != info.get("num_tags"):
        raise DatasetError(f"{dataset_dir}: {os.path.basename(vocab)} has {len(tags)} tags but "
                           f"{DATASET_JSON} says {info.get('num_tags')}; the folder is inconsistent")
    if not tags:
        raise DatasetError(f"{dataset_dir}: the vocabulary is empty (no tag passed the filters)")
    if check_shards:
        for split, s in info.get("splits", {}).items():
            missing = [n for n in s.get("shards", []) if not os.path.isfile(os.path.join(dataset_dir, n))]
            if missing:
                raise DatasetError(f"{dataset_dir}: split {split!r} is missing shard(s) "
                                   f"{', '.join(missing[:3])}{' ...' if len(missing) > 3 else ''}")
    return DatasetInfo(dataset_dir, info, tags, counts, cats)


def parse_example(serialized: tf.Tensor) -> Dict[str, tf.Tensor]:
    """Pure-TF parse: {'image': uint8 HxWx3, 'tags': int64 [n], 'source_id': string}."""
    f = tf.io.parse_single_example(serialized, FEATURES)
    image = tf.io.decode_image(f[IMAGE], channels=3, expand_animations=False)
    image = tf.reshape(image, tf.stack([f[HEIGHT], f[WIDTH], 3]))
    return {"image": image, "tags": tf.sparse.to_dense(f[TAGS]),
            "source_id": f[SOURCE_ID], "group_id": f[GROUP_ID]}


def multi_hot(tags: tf.Tensor, num_tags: int) -> tf.Tensor:
    """int indices [n] -> float32 [num_tags] (an image with no tag gives all zeros)."""
    return tf.minimum(tf.reduce_sum(tf.one_hot(tags, num_tags, dtype=tf.float32), axis=0), 1.0)
