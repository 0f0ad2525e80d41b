"""Builds leak-free sharded face-record datasets from detection JSONL files and their crops.

Library behind `tools/build_tfrecords.py` (plain arguments, no flags). Steps, in order:

1. read every faces.jsonl (Face contract), keep the faces of the task's domains;
2. drop faces without a crop, check every crop file exists (error listing the missing ones);
3. drop faces whose keypoints are implausible for their crop (`KeypointFilter`, counted per
   reason);
4. read each crop, its perceptual hash and colour thumbnail (and those of its mirror image);
   collapse same-picture duplicates (`dup_distance`, `dup_min_corr`, `dup_max_color_diff`; see
   translate/datasets/dedup.py);
5. give each face a group: the `labels` CSV (character / person), else `group_regex` on the
   source file name, else the source picture; then union groups joined by near-duplicates
   (`group_distance`, `group_min_corr`), so no identity or near-copy can straddle the split;
6. split each domain by group (`translate.datasets.splits`), seeded;
7. write shards under temporary names, rename them when all are complete, then dataset.json.

Tasks are entries of `TASKS`: which face domains they keep and how a face becomes a record.
(`tools/build_tfrecords.py --task=tags` is not a face task: tag datasets come from Danbooru
metadata, CSVs or class folders, so it hands over to tagnet's own builder.)
"""
from __future__ import annotations

import csv
import dataclasses
import datetime
import io
import math
import os
import random
import re
import sys
from collections import Counter, OrderedDict
from typing import Callable, Dict, List, Optional, Sequence, Tuple, Union

from translate.contract import DATASET_FORMAT, DATASET_JSON, RECORD_SCHEMA_VERSION, SPLITS, shard_name
from translate.datasets import dedup, splits
from translate.faces.schema import Face, FaceFormatError, read_faces




class BuildError(Exception):
    """A build that cannot go on; the message says what to fix."""


# ----------------------------------------------------------------------------- tasks
@dataclasses.dataclass
class Entry:
    """One face on its way to a record."""

    face: Face
    jsonl: str
    crop_path: str
    index: int
    image_bytes: bytes = b""  # only for crops re-encoded as PNG; others are read when writing
    image_format: str = ""
    width: int = 0
    height: int = 0
    phash: int = 0
    thumb: Optional[object] = None  # dedup.thumbnail vector
    mirror_phash: int = 0  # the same, of the left-right mirror image
    mirror_thumb: Optional[object] = None
    group: str = ""


@dataclasses.dataclass(frozen=True)
class Task:
    name: str
    domains: Tuple[str, ...]  # face domains kept; each gets its own shards
    make_example: Callable[[Entry], "object"]  # Entry -> tf.train.Example
    description: str = ""


def face_record(entry: Entry):
    """The face record of translate/datasets/records.py for one entry."""
    from translate.datasets import records  # imports TensorFlow: only when writing
    crop = entry.face.crop
    return records.make_example(
        image_bytes=entry.image_bytes or _file_bytes(entry.crop_path),
        image_format=entry.image_format, height=entry.height,
        width=entry.width, points=crop.points, crop_size=float(crop.size), colors=entry.face.colors,
        domain=entry.face.domain, source_id=entry.face.source, group_id=entry.group)


TASKS: "OrderedDict[str, Task]" = OrderedDict()


def register_task(task: Task) -> None:
    """Adds a task (e.g. `tags`, whose records come from tagnet/records.py)."""
    TASKS[task.name] = task


register_task(Task("pix2pix", ("anime",), face_record,
                   "anime crops with keypoints and colours (input layer rendered at read time)"))
register_task(Task("cyclegan", ("photo", "anime"), face_record,
                   "two unpaired domains, photo and anime crops, each with keypoints"))


# ----------------------------------------------------------------------------- keypoint filter
@dataclasses.dataclass
class KeypointFilter:
    """Plausibility of a face's keypoints in its crop. All distances are in crop pixels.

    Along the face's own axes (x from left to right eye, y perpendicular, pointing down), nose,
    mouth and chin must lie below the eyes in that order. The "double jaw" case (a face outline
    larger than the drawn face puts the chin far below the real jaw) is caught by comparing how
    far below the eye line the chin and the mouth are: that ratio does not change when the head
    turns, unlike ratios to the eye distance, which grow as the eyes foreshorten.

    Default limits, from the 300 Udacity photos with 68-point ground truth (eyes = centres of the
    eye contours, mouth = mean of the mouth points, chin = point 8): chin/mouth depth ratio
    1.42-2.06 (median 1.66); chin depth in eye distances 1.36-3.21 (median 1.86; the largest are
    three-quarter views); sideways chin offset at most 0.68 eye distances. Synthetic anime faces:
    chin/mouth 1.56, chin depth 1.04-1.43 eye distances.
    """

    required: Tuple[str, ...] = ("left_eye", "right_eye")
    max_outside: float = 0.05  # how far (fraction of crop size) a point may sit outside the crop
    min_eye_distance: float = 0.10  # eye distance / crop size
    max_eye_distance: float = 0.70
    min_chin_mouth_ratio: float = 1.15  # chin depth / mouth depth (below the eye line)
    max_chin_mouth_ratio: float = 2.3
    min_chin_ratio: float = 0.8  # chin depth / eye distance
    max_chin_ratio: float = 3.5
    max_chin_ratio_anime: float = 2.6
    max_chin_offset: float = 0.75  # |sideways chin offset from the eye midpoint| / eye distance

    def check(self, points: Dict[str, Tuple[float, float]], size: float, domain: str = "photo") -> Optional[str]:
        """None when plausible, else the reason (a short snake_case key)."""
        for name in self.required:
            if name not in points:
                return f"missing_{name}"
        lo, hi = -self.max_outside * size, (1.0 + self.max_outside) * size
        for x, y in points.values():
            if math.isnan(x) or math.isnan(y) or not (lo <= x <= hi and lo <= y <= hi):
                return "point_outside_crop"
        if "left_eye" not in points or "right_eye" not in points:
            return None
        (lx, ly), (rx, ry) = points["left_eye"], points["right_eye"]
        if lx >= rx:
            return "eyes_swapped"
        ex, ey = rx - lx, ry - ly
        dist = math.hypot(ex, ey)
        if not self.min_eye_distance * size <= dist <= self.max_eye_distance * size:
            return "eye_distance"
        ux, uy = ex / dist, ey / dist
        mx, my = (lx + rx) / 2.0, (ly + ry) / 2.0

        def axes(p):  # (sideways, down) in eye distances
            dx, dy = p[0] - mx, p[1] - my
            return (dx * ux + dy * uy) / dist, (-dx * uy + dy * ux) / dist

        depth = {n: axes(points[n])[1] for n in ("nose", "mouth", "chin") if n in points}
        last = 0.0
        for d in depth.values():
            if d <= last:
                return "point_order"
            last = d
        if "chin" in points:
            side, d = axes(points["chin"])
            if "mouth" in depth:
                ratio = d / depth["mouth"]
                if ratio > self.max_chin_mouth_ratio:
                    return "chin_too_low"
                if ratio < self.min_chin_mouth_ratio:
                    return "chin_too_high"
            if d > (self.max_chin_ratio_anime if domain == "anime" else self.max_chin_ratio):
                return "face_too_long"
            if d < self.min_chin_ratio:
                return "face_too_short"
            if abs(side) > self.max_chin_offset:
                return "chin_off_axis"
        return None


# ----------------------------------------------------------------------------- config
@dataclasses.dataclass
class BuildConfig:
    task: str
    inputs: Sequence[str]
    output_dir: str
    labels: Optional[str] = None
    group_regex: Union[None, str, Dict[str, str]] = None  # one regex, or per domain
    test_fraction: float = 0.1
    split_by: str = "group"
    seed: int = 0
    num_shards: int = 4
    dup_distance: int = 4
    group_distance: int = 10
    dup_min_corr: float = 0.97
    dup_max_color_diff: float = 6.0  # mean |thumbnail difference|, 0-255 levels
    group_min_corr: float = 0.90
    keypoint_filter: KeypointFilter = dataclasses.field(default_factory=KeypointFilter)
    overwrite: bool = False
    progress: bool = True
    command: str = ""


def _check_config(cfg: BuildConfig) -> Task:
    if cfg.task not in TASKS:
        raise BuildError(f"unknown task {cfg.task!r}; known: {', '.join(TASKS)}")
    if not cfg.inputs:
        raise BuildError("no input JSONL files given")
    if not 0.0 <= cfg.test_fraction < 1.0:
        raise BuildError(f"test_fraction must be in [0, 1), got {cfg.test_fraction}")
    if cfg.split_by not in splits.SPLIT_BY:
        raise BuildError(f"split_by must be one of {splits.SPLIT_BY}, got {cfg.split_by!r}")
    if cfg.num_shards < 1:
        raise BuildError(f"num_shards must be >= 1, got {cfg.num_shards}")
    if not -1.0 <= cfg.group_min_corr <= cfg.dup_min_corr <= 1.0:
        raise BuildError("need -1 <= group_min_corr <= dup_min_corr <= 1, got "
                         f"{cfg.group_min_corr} and {cfg.dup_min_corr}")
    if not 0 <= cfg.dup_distance <= cfg.group_distance <= 64:
        raise BuildError("need 0 <= dup_distance <= group_distance <= 64, got "
                         f"{cfg.dup_distance} and {cfg.group_distance}")
    _group_regexes(cfg)
    info_path = os.path.join(cfg.output_dir, DATASET_JSON)
    if os.path.exists(info_path) and not cfg.overwrite:  # fail before the slow part
        raise BuildError(f"{info_path} exists; pass --overwrite to replace that dataset")
    return TASKS[cfg.task]


def _group_regexes(cfg: BuildConfig) -> Dict[str, "re.Pattern"]:
    """Domain -> compiled regex ("*" for all domains)."""
    if not cfg.group_regex:
        return {}
    given = cfg.group_regex if isinstance(cfg.group_regex, dict) else {"*": cfg.group_regex}
    out = {}
    for dom, pattern in given.items():
        try:
            rx = re.compile(pattern)
        except re.error as e:
            raise BuildError(f"group_regex {pattern!r} is not a regular expression: {e}") from None
        if rx.groups < 1:
            raise BuildError(f"group_regex {pattern!r} needs one capture group, e.g. '^(.+)_\\d+\\.'")
        out[dom] = rx
    return out


# ----------------------------------------------------------------------------- steps
def load_entries(inputs: Sequence[str]) -> List[Entry]:
    entries: List[Entry] = []
    for path in inputs:
        if not os.path.isfile(path):
            raise BuildError(f"{path}: no such input file")
        n0 = len(entries)
        try:
            for face in read_faces(path):
                crop_path = os.path.join(os.path.dirname(os.path.abspath(path)), face.crop.path) if face.crop else ""
                entries.append(Entry(face=face, jsonl=path, crop_path=crop_path, index=len(entries)))
        except FaceFormatError as e:
            raise BuildError(f"invalid JSONL: {e}") from None
        except UnicodeDecodeError as e:
            raise BuildError(f"{path}: not a text JSONL file ({e.reason})") from None
        if len(entries) == n0:
            raise BuildError(f"{path}: no faces (empty JSONL)")
    return entries


def read_labels(path: str) -> Dict[str, str]:
    """CSV of (file, group): a header naming `file` and one of group/character/person/identity/label,
    or two plain columns."""
    if not os.path.isfile(path):
        raise BuildError(f"{path}: no such labels file")
    with open(path, newline="", encoding="utf-8") as f:
        rows = [r for r in csv.reader(f) if r and any(c.strip() for c in r)]
    if not rows:
        raise BuildError(f"{path}: empty labels file")
    header = [c.strip().lower() for c in rows[0]]
    fi, gi = 0, 1
    if "file" in header:
        fi = header.index("file")
        names = [n for n in ("group", "character", "person", "identity", "label") if n in header]
        if not names:
            raise BuildError(f"{path}: header {rows[0]} has no group column "
                             "(group, character, person, identity or label)")
        gi = header.index(names[0])
        rows = rows[1:]
    labels = {}
    for n, r in enumerate(rows, 2):
        if len(r) <= max(fi, gi):
            raise BuildError(f"{path}:{n}: expected file and group columns, got {r}")
        labels[r[fi].strip()] = r[gi].strip()
    return labels


def _label_for(entry: Entry, labels: Dict[str, str]) -> Optional[str]:
    keys = [entry.face.source, os.path.basename(entry.face.source)]
    if entry.face.crop:
        keys += [entry.face.crop.path, os.path.basename(entry.face.crop.path)]
    for k in keys:
        if k and k in labels:
            return labels[k]
    return None


def _file_bytes(path: str) -> bytes:
    with open(path, "rb") as f:
        return f.read()


def _read_crop(entry: Entry) -> None:
    from PIL import Image, UnidentifiedImageError

    with open(entry.crop_path, "rb") as f:
        data = f.read()
    try:
        img = Image.open(io.BytesIO(data))
        img.load()
    except (UnidentifiedImageError, OSError, ValueError) as e:
        raise BuildError(f"{entry.crop_path}: unreadable crop image ({e})") from None
    fmt = (img.format or "").upper()
    if fmt in ("JPEG", "PNG") and img.mode in ("RGB", "L"):
        # stored as is; the bytes are read again when writing, so memory stays small
        entry.image_bytes, entry.image_format = b"", fmt.lower()
    else:  # re-encode anything else (WebP, RGBA, palette, ...) as lossless RGB PNG
        buf = io.BytesIO()
        img.convert("RGB").save(buf, format="PNG")
        entry.image_bytes, entry.image_format = buf.getvalue(), "png"
    entry.width, entry.height = img.size
    entry.phash = dedup.phash(img)
    entry.thumb = dedup.thumbnail(img)
    flipped = dedup.mirrored(img)
    entry.mirror_phash = dedup.phash(flipped)
    entry.mirror_thumb = dedup.thumbnail(flipped)


def _progress(it, total, desc, enabled):
    if not enabled:
        return it
    from tqdm import tqdm
    return tqdm(it, total=total, desc=desc, file=sys.stderr, leave=False, dynamic_ncols=True)


def _largest_groups(entries: List[Entry], domains: Sequence[str]) -> Dict[str, int]:
    out = {}
    for d in domains:
        sizes = Counter(e.group for e in entries if e.face.domain == d)
        out[d] = max(sizes.values()) if sizes else 0
    return out


def _cluster(entries: List[Entry], max_distance: int, min_corr: float,
             max_color_diff: Optional[float] = None) -> List[int]:
    """Clusters by phash + thumbnail, each crop also compared with the others' mirror images."""
    import numpy as np
    if not entries:
        return []
    return dedup.cluster([e.phash for e in entries], max_distance,
                         np.stack([e.thumb for e in entries]), min_corr,
                         mirror_hashes=[e.mirror_phash for e in entries],
                         mirror_thumbs=np.stack([e.mirror_thumb for e in entries]),
                         max_color_diff=max_color_diff)


class _UnionFind:
    def __init__(self):
        self.parent: Dict[str, str] = {}

    def find(self, a: str) -> str:
        self.parent.setdefault(a, a)
        while self.parent[a] != a:
            self.parent[a] = self.parent[self.parent[a]]
            a = self.parent[a]
        return a

    def union(self, a: str, b: str) -> None:
        ra, rb = self.find(a), self.find(b)
        if ra != rb:  # the smaller name wins: deterministic, readable group ids
            lo, hi = sorted((ra, rb))
            self.parent[hi] = lo


# ----------------------------------------------------------------------------- build
def build(cfg: BuildConfig, log: Callable[[str], None] = print) -> dict:
    """Builds the dataset and returns the dataset.json content. Raises BuildError.

    The steps of the module docstring, in order; each returns what the next needs and adds its
    counts to `rejects` (and the other dataset.json sections)."""
    task = _check_config(cfg)
    entries = load_entries(cfg.inputs)  # 1. read
    n_faces = len(entries)
    labels = read_labels(cfg.labels) if cfg.labels else None
    entries, skipped = keep_task_domains(entries, task)
    rejects: Counter = Counter()
    entries = keep_faces_with_crops(entries, rejects)  # 2. crops
    entries = keep_plausible_keypoints(entries, cfg.keypoint_filter, rejects)  # 3. keypoints
    if not entries:
        raise BuildError(f"no faces left after filtering ({n_faces} read; rejected: {dict(rejects) or 'none'}"
                         f"; other domains skipped: {dict(skipped) or 'none'})")
    for e in _progress(entries, len(entries), "reading crops", cfg.progress):
        _read_crop(e)  # 4. hashes and thumbnails
    entries, dup_report = remove_duplicates(entries, task, cfg)
    rejects["duplicate"] = dup_report["removed"]
    regexes = _group_regexes(cfg)
    groups = assign_groups(entries, task, cfg, labels, regexes)  # 5. groups
    split_of, shared = split_by_group(entries, task, cfg)  # 6. split

    from translate.datasets import records  # TensorFlow is imported only once the inputs look right

    info = _write(cfg, task, entries, split_of)  # 7. shards, then dataset.json
    info.update({
        "inputs": {"jsonl": [os.path.abspath(p) for p in cfg.inputs], "faces_read": n_faces,
                   "other_domains_skipped": dict(skipped)},
        "rejects": {k: int(v) for k, v in sorted(rejects.items())},
        "duplicates": dup_report,
        "groups": {
            "source": "+".join([n for n, on in (("labels", labels is not None),
                                                 ("group_regex", bool(regexes))) if on])
                      or "source picture",
            "largest": _largest_groups(entries, task.domains),
            **groups,
            "train": len({e.group for e in entries if split_of[e.index] == "train"}),
            "test": len({e.group for e in entries if split_of[e.index] == "test"}),
            "shared_between_splits": len(shared),
        },
        "split": {"test_fraction": cfg.test_fraction, "split_by": cfg.split_by, "seed": cfg.seed,
                  "dup_distance": cfg.dup_distance, "dup_min_corr": cfg.dup_min_corr,
                  "dup_max_color_diff": cfg.dup_max_color_diff,
                  "group_distance": cfg.group_distance, "group_min_corr": cfg.group_min_corr},
        "keypoint_filter": dataclasses.asdict(cfg.keypoint_filter),
        "command": cfg.command,
        "created": datetime.datetime.now(datetime.timezone.utc).isoformat(timespec="seconds"),
    })
    records.write_info(cfg.output_dir, info)
    for line in summary(info):
        log(line)
    return records.read_info(cfg.output_dir)


def keep_task_domains(entries: List[Entry], task: Task) -> Tuple[List[Entry], Counter]:
    """Step 1: the faces of the task's domains, and the count of the others by domain."""
    found = Counter(e.face.domain for e in entries)
    skipped = Counter({d: n for d, n in found.items() if d not in task.domains})
    entries = [e for e in entries if e.face.domain in task.domains]
    for d in task.domains:
        if not any(e.face.domain == d for e in entries):
            raise BuildError(f"task {task.name} needs {d} faces, but the inputs hold none "
                             f"(domains found: {dict(found)})")
    return entries, skipped


def keep_faces_with_crops(entries: List[Entry], rejects: Counter) -> List[Entry]:
    """Step 2: faces without a crop are rejected; a crop file missing on disk is an error."""
    kept: List[Entry] = []
    for e in entries:
        if e.face.crop is None:
            rejects["no_crop"] += 1
        else:
            kept.append(e)
    missing = [e.crop_path for e in kept if not os.path.isfile(e.crop_path)]
    if missing:
        more = f" (and {len(missing) - 5} more)" if len(missing) > 5 else ""
        raise BuildError(f"{len(missing)} crop file(s) named in the JSONL are missing on disk: "
                         f"{', '.join(missing[:5])}{more}")
    return kept


def keep_plausible_keypoints(entries: List[Entry], keypoint_filter: "KeypointFilter",
                             rejects: Counter) -> List[Entry]:
    """Step 3: faces whose keypoints are implausible for their crop are rejected, by reason."""
    kept: List[Entry] = []
    for e in entries:
        reason = keypoint_filter.check(e.face.crop.points, float(e.face.crop.size), e.face.domain)
        if reason:
            rejects[reason] += 1
        else:
            kept.append(e)
    return kept


def remove_duplicates(entries: List[Entry], task: Task, cfg: BuildConfig) -> Tuple[List[Entry], dict]:
    """Step 4: same-picture duplicates collapse to one (the largest crop, then the first read).
    Returns the kept entries in input order and the dataset.json `duplicates` report."""
    dup_report = {"removed": 0, "clusters": 0, "examples": []}
    kept = []
    for d in task.domains:
        dom = [e for e in entries if e.face.domain == d]
        labels_d = _cluster(dom, cfg.dup_distance, cfg.dup_min_corr, cfg.dup_max_color_diff)
        clusters: Dict[int, List[Entry]] = {}
        for e, lab in zip(dom, labels_d):
            clusters.setdefault(lab, []).append(e)
        for members in clusters.values():
            best = max(members, key=lambda e: (e.width * e.height, -e.index))
            kept.append(best)
            if len(members) > 1:
                dup_report["clusters"] += 1
                dup_report["removed"] += len(members) - 1
                if len(dup_report["examples"]) < 20:
                    dup_report["examples"].append(
                        {"kept": best.face.crop.path, "dropped": [m.face.crop.path for m in members if m is not best]})
    return sorted(kept, key=lambda e: e.index), dup_report


def assign_groups(entries: List[Entry], task: Task, cfg: BuildConfig, labels, regexes) -> dict:
    """Step 5: sets each entry's group: identity (labels / regex / source picture) united with
    near-duplicate clusters. Returns the counts for dataset.json's `groups`."""
    uf = _UnionFind()
    unlabelled = 0
    for e in entries:
        g = None
        if labels is not None:
            g = _label_for(e, labels)
            if g is None:
                unlabelled += 1
        rx = regexes.get(e.face.domain, regexes.get("*"))
        if g is None and rx is not None:
            m = rx.search(os.path.basename(e.face.source or e.face.crop.path))
            g = m.group(1) if m else None
        if g is None:
            g = "src:" + (e.face.source or e.face.crop.path)
        e.group = f"{e.face.domain}/{g}"
        uf.find(e.group)
    near_links = 0
    for d in task.domains:
        dom = [e for e in entries if e.face.domain == d]
        labs = _cluster(dom, cfg.group_distance, cfg.group_min_corr)
        first: Dict[int, Entry] = {}
        for e, lab in zip(dom, labs):
            if lab in first:
                if uf.find(first[lab].group) != uf.find(e.group):
                    near_links += 1
                uf.union(first[lab].group, e.group)
            else:
                first[lab] = e
    for e in entries:
        e.group = uf.find(e.group)
    return {"unlabelled": unlabelled, "near_duplicate_merges": near_links}


def split_by_group(entries: List[Entry], task: Task, cfg: BuildConfig) -> Tuple[Dict[int, str], set]:
    """Step 6: each domain split separately (so each gets its test share), whole groups to one
    side. Returns {entry index: split} and the groups on both sides (none with split_by=group)."""
    split_of: Dict[int, str] = {}
    for d in task.domains:
        dom = [e for e in entries if e.face.domain == d]
        for e, s in zip(dom, splits.assign_splits([e.group for e in dom], cfg.test_fraction,
                                                  cfg.seed, cfg.split_by)):
            split_of[e.index] = s
    shared = splits.shared_groups([e.group for e in entries], [split_of[e.index] for e in entries])
    if cfg.split_by == "group" and shared:  # cannot happen; guard the invariant anyway
        raise BuildError(f"internal error: groups on both sides of the split: {sorted(shared)[:5]}")
    return split_of, shared


def _write(cfg: BuildConfig, task: Task, entries: List[Entry], split_of: Dict[int, str]) -> dict:
    import tensorflow as tf

    from translate.datasets import records

    out = cfg.output_dir
    info_path = os.path.join(out, DATASET_JSON)
    old_files: List[str] = []
    if os.path.exists(info_path):
        if not cfg.overwrite:
            raise BuildError(f"{info_path} exists; pass --overwrite to replace that dataset")
        try:
            import json
            with open(info_path) as f:
                old = json.load(f)
            old_files = [s["file"] for sp in old.get("splits", {}).values() for d in sp.values()
                         for s in d.get("shards", [])]
        except Exception:  # an unreadable old dataset.json: just replace it
            old_files = []
        os.remove(info_path)  # the folder is no longer a valid dataset until the new one is complete
    os.makedirs(out, exist_ok=True)

    plan: List[Tuple[str, str, List[Entry]]] = []
    for s in SPLITS:
        for d in task.domains:
            items = [e for e in entries if e.face.domain == d and split_of[e.index] == s]
            random.Random(f"{cfg.seed}/{s}/{d}").shuffle(items)  # mix groups across shards
            plan.append((s, d, items))
    total = sum(len(items) for _, _, items in plan)
    bar = _progress(None, total, "writing records", cfg.progress)
    split_info: Dict[str, Dict[str, dict]] = {s: {} for s in SPLITS}
    tmp_files: List[Tuple[str, str]] = []
    try:
        for s, d, items in plan:
            n_shards = min(cfg.num_shards, len(items))
            shards = []
            for k in range(n_shards):
                name = shard_name(s, d, k, n_shards)
                final = os.path.join(out, name)
                tmp = final + f".tmp-{os.getpid()}"
                part = items[k::n_shards]
                with tf.io.TFRecordWriter(tmp) as w:
                    for e in part:
                        w.write(task.make_example(e).SerializeToString())
                        if bar is not None and hasattr(bar, "update"):
                            bar.update(1)
                tmp_files.append((tmp, final))
                shards.append({"file": name, "count": len(part), "bytes": os.path.getsize(tmp)})
            split_info[s][d] = {"count": len(items), "shards": shards,
                                "groups": len({e.group for e in items})}
        for tmp, final in tmp_files:
            os.replace(tmp, final)
    except BaseException:
        for tmp, _ in tmp_files:
            if os.path.exists(tmp):
                os.remove(tmp)
        for s, d, _ in plan:  # a shard being written when interrupted
            for f in os.listdir(out):
                if ".tmp-" in f and f.startswith(f"{s}-{d}-"):
                    os.remove(os.path.join(out, f))
        raise
    finally:
        if bar is not None and hasattr(bar, "close"):
            bar.close()
    new_files = {os.path.basename(f) for _, f in tmp_files}
    for f in old_files:
        if f not in new_files and os.path.exists(os.path.join(out, f)):
            os.remove(os.path.join(out, f))
    counts = {s: sum(v["count"] for v in split_info[s].values()) for s in SPLITS}
    counts["total"] = sum(counts.values())
    return {
        "schema_version": RECORD_SCHEMA_VERSION,
        "format": DATASET_FORMAT,
        "task": task.name,
        "domains": list(task.domains),
        "counts": counts,
        "splits": split_info,
    }


def summary(info: dict) -> List[str]:
    lines = [f"dataset: task {info['task']}, {info['counts']['total']} records "
             f"(train {info['counts']['train']}, test {info['counts']['test']})"]
    for s, per in info["splits"].items():
        for d, v in per.items():
            lines.append(f"  {s:5s} {d:5s}: {v['count']:6d} records, {v['groups']} groups, "
                         f"{len(v['shards'])} shard(s)")
    rej = {k: v for k, v in info.get("rejects", {}).items() if v}
    lines.append(f"  rejected: {rej if rej else 'none'}")
    g = info.get("groups", {})
    if g:
        lines.append(f"  groups from {g['source']}: {g['train']} train / {g['test']} test, "
                     f"shared between splits: {g['shared_between_splits']}, "
                     f"near-duplicate merges: {g['near_duplicate_merges']}"
                     + (f", unlabelled faces: {g['unlabelled']}" if g.get("unlabelled") else ""))
    for d, n in g.get("largest", {}).items():
        total = sum(info["splits"][s][d]["count"] for s in info["splits"] if d in info["splits"][s])
        if total >= 10 and n > total / 2:
            lines.append(f"  WARNING: one {d} group holds {n} of {total} faces: check --labels / "
                         "--group_regex (a regex meant for one domain applies to all unless given "
                         "as DOMAIN:REGEX)")
    frac = info.get("split", {}).get("test_fraction", 0)
    for d in info.get("domains", []):
        if frac > 0 and not info["splits"]["test"].get(d, {}).get("count"):
            lines.append(f"  WARNING: the {d} test split is empty (too few groups)")
    sk = info.get("inputs", {}).get("other_domains_skipped")
    if sk:
        lines.append(f"  skipped (not used by this task): {sk}")
    return lines
