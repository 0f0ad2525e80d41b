"""Builds Tag record datasets (library; the CLI is tagnet/build_dataset.py).

Sources:
  * a CSV: ``file,tags`` with space-separated tags (a header row is detected; an optional third
    column ``group`` keeps related images on one side of the split); a tag written
    ``category:tag`` (e.g. ``character:gawr_gura``) has that category, ``rating:X`` keeps its
    name, other tags get the ``category`` argument,
  * folders of classes: ``ROOT/<class>/<image>`` (single-label; the classes get ``category``),
  * Danbooru20xx JSON-lines metadata (tags as ``[{"name", "category"}]`` objects, or as
    ``tag_string_general`` / ``tag_string_character`` / ... strings) with images in folders
    ``ROOT/0NNN/ID.ext`` (NNN = id % 1000), as in the original/ and 512px/ dumps.

Every image is padded to a square on white and resized once to ``image_size``. Each tag keeps its
category (contract.CATEGORIES) into tags.txt and dataset.json.
"""
from __future__ import annotations

import collections
import concurrent.futures
import csv
import dataclasses
import hashlib
import io
import json
import math
import os
import random
import re
from typing import Dict, Iterable, List, Optional, Sequence, Tuple

import numpy as np
import tensorflow as tf
from PIL import Image

from tagnet import records
from tagnet.contract import CATEGORIES, DEFAULT_CATEGORY, RATING

IMAGE_EXTENSIONS = (".jpg", ".jpeg", ".png", ".webp", ".bmp", ".gif")
# Danbooru tag categories (numeric ids in the 2018-2020 dumps, string suffixes in later ones).
CATEGORY_IDS = {0: "general", 1: "artist", 3: "copyright", 4: "character", 5: "meta"}
DEFAULT_CATEGORIES = ("general", "character", "copyright", "rating")


class BuildError(ValueError):
    """Bad input to the builder; the message says what was looked for."""


@dataclasses.dataclass
class Item:
    path: str                    # image file
    tags: List[str]
    source_id: str
    group_id: str
    categories: Dict[str, str] = dataclasses.field(default_factory=dict)  # tag -> its category


@dataclasses.dataclass
class SourceReport:
    rows: int = 0                # records read from the source
    missing: int = 0             # images that do not exist
    missing_examples: List[str] = dataclasses.field(default_factory=list)
    skipped: int = 0             # records skipped for other reasons (bad rows, filtered)

    def miss(self, path: str) -> None:
        self.missing += 1
        if len(self.missing_examples) < 3:
            self.missing_examples.append(path)


def _check_category(category: str) -> str:
    if category not in CATEGORIES:
        raise BuildError(f"unknown tag category {category!r}; choose from {', '.join(CATEGORIES)}")
    return category


def split_category(token: str, default: str = DEFAULT_CATEGORY) -> Tuple[str, str]:
    """``category:tag`` -> (tag, category) when the prefix is one of CATEGORIES (``rating:X``
    keeps its name, as the Danbooru reader names ratings); any other token -> (token, default)."""
    prefix, sep, rest = token.partition(":")
    if sep and rest and prefix in CATEGORIES:
        return (token if prefix == RATING else rest), prefix
    return token, default


def _check_found(items: List[Item], report: SourceReport, what: str) -> None:
    if not items:
        hint = (f"; none of the images exist (looked for e.g. {', '.join(report.missing_examples)})"
                if report.missing else "")
        raise BuildError(f"no usable images in {what}: {report.rows} record(s) read{hint}")


# --- sources ------------------------------------------------------------------------------------
def items_from_csv(csv_path: str, image_root: Optional[str] = None,
                   group_pattern: Optional[str] = None,
                   category: str = DEFAULT_CATEGORY) -> Tuple[List[Item], SourceReport]:
    """Rows ``file,tags[,group]``; ``file`` relative to image_root (default: the CSV's folder);
    tags ``category:tag`` or plain (then ``category``)."""
    _check_category(category)
    if not os.path.isfile(csv_path):
        raise BuildError(f"CSV {csv_path!r} does not exist")
    root = image_root or os.path.dirname(os.path.abspath(csv_path))
    pattern = re.compile(group_pattern) if group_pattern else None
    report, items = SourceReport(), []
    with open(csv_path, newline="", encoding="utf-8") as f:
        rows = list(csv.reader(f))
    if rows and rows[0] and rows[0][0].strip().lower() in ("file", "filename", "path", "image", "name"):
        rows = rows[1:]
    for row in rows:
        if not row or not row[0].strip():
            continue
        report.rows += 1
        if len(row) < 2:
            report.skipped += 1
            continue
        rel = row[0].strip()
        path = os.path.join(root, rel)
        if not os.path.isfile(path):
            report.miss(path)
            continue
        group = row[2].strip() if len(row) > 2 and row[2].strip() else None
        if group is None and pattern is not None:
            m = pattern.search(os.path.basename(rel))
            group = (m.group(1) if m.groups() else m.group(0)) if m else None
        pairs = [split_category(t, category) for t in row[1].split()]
        items.append(Item(path, [t for t, _ in pairs], rel, group or rel, dict(pairs)))
    _check_found(items, report, csv_path)
    return items, report


def items_from_class_folders(root: str, category: str = DEFAULT_CATEGORY) -> Tuple[List[Item], SourceReport]:
    """``ROOT/<class>/<image>``: one tag per image, the folder's name, of ``category``."""
    _check_category(category)
    if not os.path.isdir(root):
        raise BuildError(f"class folder root {root!r} does not exist")
    report, items = SourceReport(), []
    classes = sorted(d for d in os.listdir(root) if os.path.isdir(os.path.join(root, d))
                     and not d.startswith("."))
    if not classes:
        raise BuildError(f"{root} has no sub-folders; expected one folder per class")
    for cls in classes:
        for name in sorted(os.listdir(os.path.join(root, cls))):
            if not name.lower().endswith(IMAGE_EXTENSIONS):
                continue
            report.rows += 1
            rel = f"{cls}/{name}"
            items.append(Item(os.path.join(root, cls, name), [cls], rel, rel, {cls: category}))
    _check_found(items, report, root)
    return items, report


def danbooru_tag_categories(post: Dict, categories: Sequence[str]) -> List[Tuple[str, str]]:
    """(tag, category) of one metadata record in the chosen categories (both dump formats);
    the rating is the tag ``rating:X`` of category rating."""
    out: List[Tuple[str, str]] = []
    cats = set(categories)
    if isinstance(post.get("tags"), list):
        for t in post["tags"]:
            if isinstance(t, dict):
                cat = t.get("category")
                try:
                    cat = CATEGORY_IDS.get(int(cat), str(cat))
                except (TypeError, ValueError):
                    cat = str(cat)
                if cat in cats and t.get("name"):
                    out.append((str(t["name"]), cat))
            elif isinstance(t, str) and DEFAULT_CATEGORY in cats:
                out.append((t, DEFAULT_CATEGORY))
    else:
        for cat in [c for c in CATEGORIES if c in cats and c != RATING]:
            out.extend((t, cat) for t in str(post.get(f"tag_string_{cat}", "") or "").split())
    if RATING in cats and post.get("rating"):
        out.append((f"rating:{post['rating']}", RATING))
    return out


def danbooru_tags(post: Dict, categories: Sequence[str]) -> List[str]:
    """Tags of one metadata record in the chosen categories (both dump formats)."""
    return [t for t, _ in danbooru_tag_categories(post, categories)]


def danbooru_image_path(image_root: str, post: Dict) -> Optional[str]:
    pid = int(post["id"])
    bucket = os.path.join(image_root, f"{pid % 1000:04d}")
    exts = []
    if post.get("file_ext"):
        exts.append("." + str(post["file_ext"]).lstrip("."))
    exts += [e for e in (".jpg", ".png", ".jpeg", ".webp", ".gif") if e not in exts]
    for folder in (bucket, image_root):
        for ext in exts:
            p = os.path.join(folder, f"{pid}{ext}")
            if os.path.isfile(p):
                return p
    return None


def items_from_danbooru(metadata: Sequence[str], image_root: str,
                        categories: Sequence[str] = DEFAULT_CATEGORIES,
                        ratings: Optional[Sequence[str]] = None,
                        limit: Optional[int] = None) -> Tuple[List[Item], SourceReport]:
    """JSON-lines metadata files (or folders of them) -> items. Posts whose image is absent are
    counted, not fatal, unless none is found at all."""
    bad = [c for c in categories if c not in CATEGORIES]
    if bad:
        raise BuildError(f"unknown tag categories {bad}; choose from {', '.join(CATEGORIES)}")
    if not os.path.isdir(image_root):
        raise BuildError(f"Danbooru image root {image_root!r} does not exist")
    files: List[str] = []
    for m in metadata:
        if os.path.isdir(m):
            files += sorted(os.path.join(m, n) for n in os.listdir(m)
                            if n.endswith((".json", ".jsonl")) or n.startswith("20"))
        elif os.path.isfile(m):
            files.append(m)
        else:
            raise BuildError(f"metadata {m!r} does not exist")
    if not files:
        raise BuildError(f"no metadata files in {', '.join(metadata)}")
    report, items = SourceReport(), []
    for fn in files:
        with open(fn, encoding="utf-8") as f:
            for n, line in enumerate(f, 1):
                line = line.strip()
                if not line:
                    continue
                report.rows += 1
                try:
                    post = json.loads(line)
                    int(post["id"])
                except (ValueError, KeyError, TypeError):
                    report.skipped += 1
                    continue
                if ratings and post.get("rating") not in ratings:
                    report.skipped += 1
                    continue
                path = danbooru_image_path(image_root, post)
                if path is None:
                    report.miss(os.path.join(image_root, f"{int(post['id']) % 1000:04d}",
                                             f"{post['id']}.{post.get('file_ext', 'jpg')}"))
                    continue
                parent = post.get("parent_id")
                group = str(parent) if parent not in (None, "", 0, "0") else str(post["id"])
                pairs = danbooru_tag_categories(post, categories)
                items.append(Item(path, [t for t, _ in pairs], str(post["id"]), group, dict(pairs)))
                if limit and len(items) >= limit:
                    break
        if limit and len(items) >= limit:
            break
    _check_found(items, report, ", ".join(files))
    return items, report


# --- vocabulary and split -----------------------------------------------------------------------
def build_vocabulary(items: Sequence[Item], max_tags: int = 0,
                     min_tag_count: int = 1) -> Tuple[List[str], List[int]]:
    """Top ``max_tags`` tags (0 = all) with at least ``min_tag_count`` images, most frequent first
    (ties by name, so the order is deterministic)."""
    counts = collections.Counter(t for it in items for t in set(it.tags))
    kept = sorted(((t, c) for t, c in counts.items() if c >= min_tag_count), key=lambda x: (-x[1], x[0]))
    if max_tags and max_tags > 0:
        kept = kept[:max_tags]
    return [t for t, _ in kept], [c for _, c in kept]


def tag_categories(items: Sequence[Item], tags: Sequence[str]) -> List[str]:
    """Each tag's category: the one most items give it (Danbooru moves tags between categories
    over the years; ties go to the first of CATEGORIES), general when none does."""
    votes: Dict[str, collections.Counter] = collections.defaultdict(collections.Counter)
    wanted = set(tags)
    for it in items:
        for t, c in it.categories.items():
            if t in wanted:
                votes[t][c] += 1
    out = []
    for t in tags:
        v = votes.get(t)
        out.append(max(CATEGORIES, key=lambda c: (v[c], -CATEGORIES.index(c))) if v else DEFAULT_CATEGORY)
    return out


def split_items(items: Sequence[Item], validation_fraction: float, seed: int = 0,
                stratify: bool = False) -> Tuple[List[Item], List[Item]]:
    """Group-aware split: all items of a group land on the same side. With ``stratify`` (single-
    label) every class gets its share of validation groups."""
    if not 0 <= validation_fraction < 1:
        raise BuildError(f"validation fraction must be in [0, 1), got {validation_fraction}")
    groups: Dict[str, List[Item]] = collections.defaultdict(list)
    for it in items:
        groups[it.group_id].append(it)
    rng = random.Random(seed)
    strata: Dict[str, List[str]] = collections.defaultdict(list)
    for g in sorted(groups):
        strata[groups[g][0].tags[0] if stratify and groups[g][0].tags else ""].append(g)
    val_groups = set()
    for key in sorted(strata):
        gs = strata[key]
        rng.shuffle(gs)
        n_items = sum(len(groups[g]) for g in gs)
        target = validation_fraction * n_items
        taken = 0
        for g in gs:
            if taken + len(groups[g]) / 2 > target:
                break
            val_groups.add(g)
            taken += len(groups[g])
    train = [it for it in items if it.group_id not in val_groups]
    val = [it for it in items if it.group_id in val_groups]
    return train, val


# --- images -------------------------------------------------------------------------------------
# Decompression-bomb guard of predict.py's --max_image_pixels (tools/serve.py's default): width x
# height as read from the header, before decoding.
MAX_IMAGE_PIXELS = 40_000_000


class ImageTooLarge(ValueError):
    """An image over the pixel limit (or over Pillow's decompression-bomb limit)."""


def open_image(path: str, max_pixels: Optional[int] = MAX_IMAGE_PIXELS) -> Image.Image:
    """Image.open, refusing with ImageTooLarge what has more than `max_pixels` (None: only Pillow's
    own bomb limit) before anything is decoded. Close it (use it in a `with`)."""
    try:
        img = Image.open(path)
    except Image.DecompressionBombError as e:
        raise ImageTooLarge(f"too large (decompression bomb): {e}") from None
    w, h = img.size
    if max_pixels is not None and w * h > max_pixels:
        img.close()
        raise ImageTooLarge(f"too large: {w}x{h} = {w * h} pixels is over the limit of "
                            f"{max_pixels} (--max_image_pixels)")
    return img


def square_image(img: Image.Image, size: int) -> Image.Image:
    """RGB, transparency composited on white, padded to a centred square on white, resized."""
    if img.mode in ("RGBA", "LA", "P"):
        img = img.convert("RGBA")
        bg = Image.new("RGBA", img.size, (255, 255, 255, 255))
        img = Image.alpha_composite(bg, img)
    img = img.convert("RGB")
    w, h = img.size
    side = max(w, h)
    if w != h:
        canvas = Image.new("RGB", (side, side), (255, 255, 255))
        canvas.paste(img, ((side - w) // 2, (side - h) // 2))
        img = canvas
    if side != size:
        img = img.resize((size, size), Image.Resampling.LANCZOS if side > size else Image.Resampling.BICUBIC)
    return img


def encode_image(path: str, size: int, quality: int = 95) -> bytes:
    with open_image(path, max_pixels=None) as img:
        img.draft("RGB", (size, size))  # JPEG: decode at reduced scale when much larger
        out = square_image(img, size)
    buf = io.BytesIO()
    out.save(buf, format="JPEG", quality=quality)
    return buf.getvalue()


# --- writing ------------------------------------------------------------------------------------
def _write_split(items: List[Item], split: str, output_dir: str, tag_index: Dict[str, int],
                 image_size: int, examples_per_shard: int, num_workers: int, progress: bool,
                 unreadable: List[str], num_tags: int) -> Dict:
    from tqdm import tqdm
    num_shards = max(1, math.ceil(len(items) / examples_per_shard)) if items else 0
    names = records.shard_names(split, num_shards)
    tag_counts = np.zeros(num_tags, np.int64)
    written = 0
    writers = [tf.io.TFRecordWriter(os.path.join(output_dir, n)) for n in names]
    try:
        with concurrent.futures.ThreadPoolExecutor(max(1, num_workers)) as pool:
            def job(it):
                try:
                    return it, encode_image(it.path, image_size)
                except (OSError, ValueError, Image.DecompressionBombError) as e:
                    return it, e
            bar = tqdm(pool.map(job, items), total=len(items), desc=f"{split:>10s}",
                       unit="img", disable=not progress, leave=True)
            for it, data in bar:
                if isinstance(data, Exception):
                    unreadable.append(f"{it.path}: {data}")
                    continue
                idx = sorted({tag_index[t] for t in it.tags if t in tag_index})
                ex = records.make_example(data, image_size, image_size, idx, it.source_id, it.group_id)
                writers[written % num_shards].write(ex.SerializeToString())
                tag_counts[idx] += 1
                written += 1
    finally:
        for w in writers:
            w.close()
    return {"count": written, "shards": names, "tag_counts": tag_counts.tolist()}


def write_dataset(items: Sequence[Item], output_dir: str, *, task: str = "multi_label",
                  image_size: int = 224, max_tags: int = 0, min_tag_count: int = 1,
                  validation_fraction: float = 0.1, seed: int = 0, examples_per_shard: int = 1024,
                  keep_untagged: bool = False, num_workers: int = 2, progress: bool = True,
                  categories: Sequence[str] = (), source: str = "",
                  command: Optional[Sequence[str]] = None) -> Dict:
    """Vocabulary, split, images -> shards + tags.txt + dataset.json. Returns a summary dict."""
    if task not in records.TASKS:
        raise BuildError(f"task must be one of {records.TASKS}, got {task!r}")
    if image_size < 16:
        raise BuildError(f"image size {image_size} is too small")
    if os.path.isfile(os.path.join(output_dir, records.DATASET_JSON)) or (
            os.path.isdir(output_dir) and any(n.endswith(".tfrecord") for n in os.listdir(output_dir))):
        raise BuildError(f"{output_dir} already holds a dataset; choose an empty folder")
    items = list(items)
    tags, counts = build_vocabulary(items, max_tags, min_tag_count)
    if not tags:
        raise BuildError(f"no tag has at least {min_tag_count} image(s); lower --min_tag_count")
    tag_index = {t: i for i, t in enumerate(tags)}
    categories_of_tags = tag_categories(items, tags)
    kept, untagged, ambiguous = [], 0, 0
    for it in items:
        known = [t for t in dict.fromkeys(it.tags) if t in tag_index]
        if task == "single_label" and len(known) != 1:
            ambiguous += 1
            continue
        if not known and not keep_untagged:
            untagged += 1
            continue
        kept.append(Item(it.path, known, it.source_id, it.group_id))
    if not kept:
        raise BuildError(f"none of {len(items)} images has a tag in the vocabulary"
                         + (" (single-label needs exactly one tag per image)" if ambiguous else ""))
    train, val = split_items(kept, validation_fraction, seed, stratify=task == "single_label")
    rng = random.Random(seed)
    rng.shuffle(train)
    rng.shuffle(val)
    os.makedirs(output_dir, exist_ok=True)
    unreadable: List[str] = []
    splits = {}
    for split, part in (("train", train), ("validation", val)):
        splits[split] = _write_split(part, split, output_dir, tag_index, image_size,
                                     examples_per_shard, num_workers, progress, unreadable, len(tags))
    if splits["train"]["count"] == 0:
        raise BuildError(f"no training image could be written ({len(unreadable)} unreadable, e.g. "
                         f"{'; '.join(unreadable[:2])})")
    # Vocabulary counts are over what was written.
    total_counts = [a + b for a, b in zip(splits["train"]["tag_counts"], splits["validation"]["tag_counts"])]
    records.write_vocabulary(os.path.join(output_dir, records.TAGS_TXT), tags, total_counts,
                             categories_of_tags)
    records.write_dataset_info(output_dir, task=task, image_size=image_size, tags=tags,
                               splits=splits, categories=categories, tag_categories=categories_of_tags,
                               source=source, command=command,
                               extra={"seed": seed, "validation_fraction": validation_fraction,
                                      "min_tag_count": min_tag_count, "max_tags": max_tags})
    return {
        "output_dir": output_dir, "task": task, "num_tags": len(tags),
        "train": splits["train"]["count"], "validation": splits["validation"]["count"],
        "groups": len({it.group_id for it in kept}),
        "dropped_untagged": untagged, "dropped_not_single_label": ambiguous,
        "unreadable": len(unreadable), "unreadable_examples": unreadable[:3],
        "tags_without_validation_example": int(sum(
            1 for c in splits["validation"]["tag_counts"] if c == 0)) if splits["validation"]["count"] else None,
        "top_tags": list(zip(tags[:10], total_counts[:10])),
        "tags_by_category": dict(collections.Counter(categories_of_tags)),
    }
