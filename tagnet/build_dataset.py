r"""Builds a tagnet dataset (Tag records + tags.txt + dataset.json).

  # a CSV of `file,tags` (space-separated tags, `character:name` for a tag's category), images
  # relative to the CSV's folder
  python tagnet/build_dataset.py --csv=labels.csv --output_dir=data/tags
  # folders of classes (single-label), the classes being characters
  python tagnet/build_dataset.py --class_dir=faces/ --category=character --output_dir=data/classes
  # Danbooru20xx metadata (JSON lines) with images in 0NNN/ID.ext folders
  python tagnet/build_dataset.py --danbooru_metadata=metadata/ --image_root=512px/ \
      --max_tags=1000 --min_tag_count=20 --categories=general,character,rating --output_dir=data/dan

Every tag keeps its category (general, character, copyright, artist, meta, rating) in tags.txt and
dataset.json: Danbooru's own, a CSV tag's `category:` prefix (`rating:X` keeps its name), or
--category. `python tools/build_tfrecords.py --task=tags ...` runs this same builder with the same
flags.
"""
import cliboot  # noqa: F401  (first: sys.path of the script form, TensorFlow's start-up notices)

import json
import sys

from absl import flags

from tagnet import cli
from tagnet.contract import CATEGORIES

FLAGS = flags.FLAGS
flags.DEFINE_string("csv", None, "CSV of `file,tags[,group]` rows (space-separated tags).")
flags.DEFINE_string("class_dir", None, "Folder of class folders: ROOT/<class>/<image> (single-label).")
flags.DEFINE_list("danbooru_metadata", None, "Danbooru JSON-lines metadata file(s) or folder(s).")
flags.DEFINE_string("image_root", None, "Image folder (CSV: default the CSV's folder; Danbooru: the "
                    "folder holding 0000/ ... 0999/).")
flags.DEFINE_string("output_dir", None, "Empty folder to write the dataset into.")
flags.DEFINE_enum("label_type", "auto", ["auto", "multi_label", "single_label"],
                  "auto: single_label for --class_dir, multi_label otherwise.")
flags.DEFINE_integer("image_size", 224, "Images are padded to square on white and resized to this once.")
flags.DEFINE_integer("max_tags", 0, "Keep the N most frequent tags (0 = all that pass --min_tag_count).")
flags.DEFINE_integer("min_tag_count", 1, "Drop tags on fewer images than this.")
flags.DEFINE_list("categories", ["general", "character", "copyright", "rating"],
                  "Danbooru tag categories to keep: general, character, copyright, artist, meta, rating.")
flags.DEFINE_enum("category", "general", list(CATEGORIES),
                  "Category of the class-folder names (--class_dir) and of CSV tags written without "
                  "a `category:` prefix.")
flags.DEFINE_list("ratings", None, "Danbooru: keep only posts with these ratings (e.g. s,g).")
flags.DEFINE_float("validation_fraction", 0.1, "Share of groups held out for validation.")
flags.DEFINE_string("group_pattern", None, "CSV: regex on the file name whose first group names the "
                    "group (e.g. '^(.*)-\\d+\\.jpg$' keeps crops of one artwork together).")
flags.DEFINE_boolean("keep_untagged", False, "Keep images none of whose tags is in the vocabulary.")
flags.DEFINE_integer("examples_per_shard", 1024, "Examples per TFRecord shard.")
flags.DEFINE_integer("num_workers", 2, "Threads decoding and resizing images.")
flags.DEFINE_integer("limit", 0, "Danbooru: stop after this many posts with images (0 = all).")
flags.DEFINE_integer("seed", 0, "Seed of the split and shuffling.")
flags.DEFINE_boolean("progress", True, "Show progress bars.")


def main(argv):
    from tagnet import build
    sources = [n for n in ("csv", "class_dir", "danbooru_metadata") if FLAGS[n].value]
    if len(sources) != 1:
        raise cli.TagnetError("give exactly one source: --csv, --class_dir or --danbooru_metadata")
    if not FLAGS.output_dir:
        raise cli.TagnetError("--output_dir is required")
    categories = []
    if FLAGS.csv:
        items, report = build.items_from_csv(FLAGS.csv, FLAGS.image_root, FLAGS.group_pattern,
                                             FLAGS.category)
        task, source = "multi_label", f"csv:{FLAGS.csv}"
    elif FLAGS.class_dir:
        items, report = build.items_from_class_folders(FLAGS.class_dir, FLAGS.category)
        task, source = "single_label", f"folders:{FLAGS.class_dir}"
    else:
        if not FLAGS.image_root:
            raise cli.TagnetError("--danbooru_metadata needs --image_root")
        categories = FLAGS.categories
        items, report = build.items_from_danbooru(FLAGS.danbooru_metadata, FLAGS.image_root,
                                                  categories, FLAGS.ratings, FLAGS.limit or None)
        task, source = "multi_label", f"danbooru:{','.join(FLAGS.danbooru_metadata)}"
    if FLAGS.label_type != "auto":
        task = FLAGS.label_type
    print(f"source: {report.rows} records, {len(items)} images found, {report.missing} missing"
          + (f" (e.g. {report.missing_examples[0]})" if report.missing else "")
          + (f", {report.skipped} skipped" if report.skipped else ""))
    summary = build.write_dataset(
        items, FLAGS.output_dir, task=task, image_size=FLAGS.image_size, max_tags=FLAGS.max_tags,
        min_tag_count=FLAGS.min_tag_count, validation_fraction=FLAGS.validation_fraction,
        seed=FLAGS.seed, examples_per_shard=FLAGS.examples_per_shard,
        keep_untagged=FLAGS.keep_untagged, num_workers=FLAGS.num_workers,
        progress=FLAGS.progress, categories=categories, source=source, command=sys.argv)
    print(f"wrote {summary['train']} train + {summary['validation']} validation examples, "
          f"{summary['num_tags']} tags ({task}), {summary['groups']} groups -> {FLAGS.output_dir}")
    for key in ("dropped_untagged", "dropped_not_single_label", "unreadable"):
        if summary[key]:
            print(f"  {key.replace('_', ' ')}: {summary[key]}")
    if summary["unreadable_examples"]:
        print("  e.g. " + "; ".join(summary["unreadable_examples"]))
    if summary["tags_without_validation_example"]:
        print(f"  tags with no validation example: {summary['tags_without_validation_example']}")
    print("  top tags: " + ", ".join(f"{t} ({c})" for t, c in summary["top_tags"]))
    print("  tags by category: " + ", ".join(f"{c} {n}" for c, n in summary["tags_by_category"].items()))
    print(json.dumps({k: v for k, v in summary.items() if k not in ("top_tags", "unreadable_examples")}))


def run():
    cli.run(main)


if __name__ == "__main__":
    run()
