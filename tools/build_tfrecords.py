"""Builds leak-free sharded TFRecord datasets of face crops for pix2pix or CycleGAN.

Reads detection JSONL files (one Face per line, with crops; see translate/faces/schema.py), removes
near-duplicate crops, drops faces whose keypoints are implausible for their crop, splits train/test
so that no group (character, person, near-duplicate cluster) is on both sides, and writes
<output_dir>/{train,test}-<domain>-NNNNN-of-NNNNN.tfrecord plus dataset.json.

Examples:
  python tools/build_tfrecords.py --task=pix2pix --input=anime/faces.jsonl \\
      --labels=anime/labels.csv --output_dir=data/p2p
  python tools/build_tfrecords.py --task=cyclegan --input=photos/faces.jsonl \\
      --input=anime/faces.jsonl --group_regex='photo:^(.+)_\\d+\\.' --output_dir=data/cyc

`--task=tags` builds a tagnet dataset instead (Danbooru metadata, a CSV or class folders): it
runs tagnet/build_dataset.py with the other flags; see `--task=tags --help`.

pix2pix keeps the anime faces (the target crop; its keypoints and colours become the input at read
time); cyclegan needs both photo and anime faces. Errors print one line and exit with status 1.
"""
from __future__ import annotations

import cliboot  # noqa: F401  (first: sys.path of the script form, TensorFlow's start-up notices)

import os
import shlex
import sys

from absl import flags


def _tags_task(argv) -> bool:
    """True for `--task=tags` / `--task tags`: the tag builder has flags of its own, so it must
    take over before this file defines the face builder's."""
    return any(a == "--task=tags" or (a == "--task" and argv[i + 1:i + 2] == ["tags"])
               for i, a in enumerate(argv[1:], 1))


from translate.datasets import builder  # noqa: E402  (no TensorFlow import until records are written)

FLAGS = flags.FLAGS


def _define_flags() -> None:
    # The face tasks of builder.TASKS, plus `tags` (dispatched to tagnet's builder by run()).
    flags.DEFINE_enum("task", None, list(builder.TASKS) + ["tags"], "What the dataset is for: " + "; ".join(
        f"{t.name}: {t.description}" for t in builder.TASKS.values()) + "; tags: a tagnet dataset "
        "(its own flags: see --task=tags --help).")
    flags.DEFINE_multi_string("input", None, "faces.jsonl file(s) with crops; repeat the flag or "
                              "separate with commas.")
    flags.DEFINE_string("output_dir", None, "Dataset folder to write (shards + dataset.json).")
    flags.DEFINE_string("labels", None, "Optional CSV (file, group): character / person of each "
                        "face, matched on the face's source or crop file name.")
    flags.DEFINE_multi_string("group_regex", None, "Optional regex with one capture group applied to "
                              "the source file name to get an identity, e.g. '^(.+)_\\d+\\.' for "
                              "Person_12.jpg; prefix with 'photo:' or 'anime:' to use it for one domain "
                              "only (repeatable). Used for faces the labels do not cover.")
    flags.DEFINE_float("test_fraction", 0.1, "Share of faces (per domain) in the test split.")
    flags.DEFINE_enum("split_by", "group", ["group", "image"], "group: leak-free; image: every face "
                      "on its own (the leaky split of the original work, for comparison only).")
    flags.DEFINE_integer("seed", 0, "Seed of the split and of the shard order.")
    flags.DEFINE_integer("num_shards", 4, "Shards per split and domain (fewer when there are fewer "
                         "records).")
    flags.DEFINE_integer("dup_distance", 4, "Perceptual-hash distance (bits of 64) at or below which "
                         "two crops are the same picture (with --dup_min_corr); only one is kept.")
    flags.DEFINE_float("dup_min_corr", 0.97, "Minimum 16x16 colour-thumbnail correlation for the same "
                       "picture (re-encoded copies: >= 0.999).")
    flags.DEFINE_float("dup_max_color_diff", 6.0, "Maximum mean absolute difference (0-255 levels) of "
                       "the 16x16 colour thumbnails for the same picture (JPEG re-encodes: <= 3).")
    flags.DEFINE_integer("group_distance", 10, "Perceptual-hash distance at or below which crops are "
                         "near-duplicates (with --group_min_corr): kept, but forced into the same split.")
    flags.DEFINE_float("group_min_corr", 0.90, "Minimum thumbnail correlation for near-duplicates.")
    flags.DEFINE_list("require_points", ["left_eye", "right_eye"], "Points a face must have.")
    flags.DEFINE_float("max_outside", 0.05, "How far a point may lie outside its crop (fraction of "
                       "crop size).")
    flags.DEFINE_float("min_eye_distance", 0.10, "Minimum eye distance / crop size.")
    flags.DEFINE_float("max_eye_distance", 0.70, "Maximum eye distance / crop size.")
    flags.DEFINE_float("min_chin_mouth_ratio", 1.15, "Minimum (eye line to chin) / (eye line to "
                       "mouth).")
    flags.DEFINE_float("max_chin_mouth_ratio", 2.3, "Maximum (eye line to chin) / (eye line to mouth): "
                       "a larger one means the face outline is bigger than the drawn face (the "
                       "'double jaw'); it does not depend on head turn. Photos: 1.42-2.06.")
    flags.DEFINE_float("min_chin_ratio", 0.8, "Minimum (eye line to chin) / eye distance.")
    flags.DEFINE_float("max_chin_ratio", 3.5, "Maximum (eye line to chin) / eye distance for photos "
                       "(1.36-3.21 on photos; large for three-quarter views).")
    flags.DEFINE_float("max_chin_ratio_anime", 2.6, "Same for anime faces (eyes set wider).")
    flags.DEFINE_float("max_chin_offset", 0.75, "Maximum sideways chin offset / eye distance.")
    flags.DEFINE_bool("overwrite", False, "Replace an existing dataset in --output_dir.")
    flags.DEFINE_bool("progress", True, "Show progress bars on stderr.")


def _fail(msg: str) -> None:
    print(f"build_tfrecords: error: {msg}", file=sys.stderr)
    sys.exit(1)

def main(argv):
    if not FLAGS.task:
        _fail(f"--task is required ({' or '.join(builder.TASKS)})")
    if not FLAGS.input:
        _fail("--input is required (one or more faces.jsonl files)")
    if not FLAGS.output_dir:
        _fail("--output_dir is required")

    from translate.faces.schema import FaceFormatError, POINT_NAMES

    bad = [p for p in FLAGS.require_points if p not in POINT_NAMES]
    if bad:
        _fail(f"--require_points: unknown point(s) {bad}; known: {', '.join(POINT_NAMES)}")
    inputs = [p for arg in FLAGS.input for p in arg.split(",") if p]
    group_regex = {}
    for r in FLAGS.group_regex or []:
        dom, sep, rest = r.partition(":")
        if sep and dom in ("photo", "anime"):
            group_regex[dom] = rest
        else:
            group_regex["*"] = r
    cfg = builder.BuildConfig(
        task=FLAGS.task, inputs=inputs, output_dir=FLAGS.output_dir, labels=FLAGS.labels,
        group_regex=group_regex or None, test_fraction=FLAGS.test_fraction, split_by=FLAGS.split_by,
        seed=FLAGS.seed, num_shards=FLAGS.num_shards, dup_distance=FLAGS.dup_distance,
        group_distance=FLAGS.group_distance, dup_min_corr=FLAGS.dup_min_corr,
        dup_max_color_diff=FLAGS.dup_max_color_diff,
        group_min_corr=FLAGS.group_min_corr,
        keypoint_filter=builder.KeypointFilter(
            required=tuple(FLAGS.require_points), max_outside=FLAGS.max_outside,
            min_eye_distance=FLAGS.min_eye_distance, max_eye_distance=FLAGS.max_eye_distance,
            min_chin_mouth_ratio=FLAGS.min_chin_mouth_ratio,
            max_chin_mouth_ratio=FLAGS.max_chin_mouth_ratio,
            min_chin_ratio=FLAGS.min_chin_ratio, max_chin_ratio=FLAGS.max_chin_ratio,
            max_chin_ratio_anime=FLAGS.max_chin_ratio_anime, max_chin_offset=FLAGS.max_chin_offset),
        overwrite=FLAGS.overwrite, progress=FLAGS.progress,
        command=" ".join(shlex.quote(a) for a in ["python"] + sys.argv))
    try:
        info = builder.build(cfg)
    except (builder.BuildError, FaceFormatError) as e:
        _fail(str(e))
    except OSError as e:
        _fail(f"{e.filename or ''}: {e.strerror or e}")
    except ValueError as e:  # records.DatasetError (records is imported late: it loads TensorFlow)
        if type(e).__module__ == "translate.datasets.records":
            _fail(str(e))
        raise
    print(f"wrote {os.path.join(FLAGS.output_dir, 'dataset.json')} "
          f"({info['counts']['train']} train, {info['counts']['test']} test)")


def _run_tags_task() -> None:
    """tagnet/build_dataset.py with the other flags (`--task=tags` removed)."""
    i = sys.argv.index("--task") if "--task" in sys.argv else sys.argv.index("--task=tags")
    del sys.argv[i:i + (2 if sys.argv[i] == "--task" else 1)]
    from tagnet import build_dataset, cli
    flags.adopt_module_key_flags(build_dataset)  # --help lists the tag builder's flags
    sys.modules["__main__"].__doc__ = build_dataset.__doc__  # and its usage text
    cli.run(build_dataset.main)


def run():
    if _tags_task(sys.argv):  # before the face builder's flags: the tag builder has its own
        _run_tags_task()
        return
    _define_flags()
    cliboot.run(main)


if __name__ == "__main__":
    run()
