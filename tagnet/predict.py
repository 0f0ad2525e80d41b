"""Tags images with a trained tagger.

  python tagnet/predict.py [--model_dir=RUN] --input=IMAGE_OR_DIR [--threshold=0.35 | --per_tag]
      [--category_thresholds=character=0.85] [--mcut] [--output=tags.jsonl] [--top_k=0]

Writes one JSON object per image: {"file", "tags": {tag: score, ...}, "by_category": {category:
{tag: score, ...}}} (the tags the image gets, highest first; every category of the vocabulary).
Thresholds, for each tag: --category_thresholds for its category; else --threshold; else the
thresholds saved with the model (thresholds.json from training or evaluate.py --save_thresholds):
the tag's own with --per_tag (default), else its category's, else the global one; 0.5 for sigmoid
models that have none. Rating is one choice: the best rating tag, whatever its score. --mcut
instead cuts each category of each image at its largest score gap. Single-label (softmax) models
always report their top class; --top_k adds the k best tags whatever their score.

An image that cannot be read, or has more than --max_image_pixels (a decompression bomb), gets a
line with its "error" instead and the run goes on. --output is written as OUTPUT.partial, one line
flushed per image, and renamed to OUTPUT at the end: a failed or interrupted run leaves an existing
OUTPUT as it was and keeps the lines computed so far in OUTPUT.partial (it says so).
"""
import cliboot  # noqa: F401  (first: sys.path of the script form, TensorFlow's start-up notices)

import json
import os
import sys

from absl import flags

from tagnet import cli

FLAGS = flags.FLAGS
flags.DEFINE_string("model_dir", None, "A trained model folder, or a training folder (uses best/); "
                    "default: the shipped example tagger (tagnet/pretrained/hololive).")
flags.DEFINE_string("input", None, "An image file or a folder of images (searched recursively).")
flags.DEFINE_string("output", None, "JSON-lines file to write (default: stdout).")
flags.DEFINE_float("threshold", None, "One threshold for every tag (overrides saved thresholds).")
flags.DEFINE_boolean("per_tag", True, "Use the saved per-tag thresholds when there are some "
                     "(otherwise the saved per-category ones).")
flags.DEFINE_list("category_thresholds", [], "CATEGORY=VALUE pairs, e.g. character=0.85,general=0.35: "
                  "one threshold for every tag of that category (overrides the others).")
flags.DEFINE_boolean("mcut", False, "Cut each category of each image at its largest score gap "
                     "(MCut) instead of thresholds.")
flags.DEFINE_integer("top_k", 0, "Also keep the k best tags whatever their score.")
flags.DEFINE_integer("batch_size", 16, "Batch size.")
flags.DEFINE_boolean("progress", True, "Progress bar (when writing to --output).")
flags.DEFINE_integer("max_image_pixels", 40_000_000, "Largest image read, width x height from its "
                     "header; larger ones (decompression bombs) get an \"error\" line.",
                     lower_bound=1)


def main(argv):
    from tagnet import predicting, pretrained, thresholds
    if not FLAGS.input:
        raise cli.TagnetError("--input is required")
    model_dir = FLAGS.model_dir or pretrained.default_model_dir()
    try:
        by_category = thresholds.parse_category_thresholds(FLAGS.category_thresholds)
    except ValueError as e:
        raise cli.TagnetError(f"--category_thresholds: {e}") from None
    tagger = predicting.Tagger(model_dir, threshold=FLAGS.threshold, per_tag=FLAGS.per_tag,
                               top_k=FLAGS.top_k, category_thresholds=by_category, mcut=FLAGS.mcut,
                               max_pixels=FLAGS.max_image_pixels)
    files = predicting.input_files(FLAGS.input)
    print(f"{len(files)} image(s); {tagger.describe_threshold()}", file=sys.stderr)
    n_bad = 0

    def records():
        nonlocal n_bad
        for rec in tagger.tag_files(files, FLAGS.batch_size,
                                    progress=FLAGS.progress and bool(FLAGS.output)):
            if "error" in rec:
                n_bad += 1
            rec["file"] = os.path.relpath(rec["file"], FLAGS.input) if os.path.isdir(FLAGS.input) else rec["file"]
            yield rec

    if FLAGS.output:
        try:
            predicting.write_jsonl(records(), FLAGS.output)
        except BaseException:
            print(f"stopped: the results computed so far are in {predicting.partial_path(FLAGS.output)}"
                  + (f" ({FLAGS.output} is unchanged)" if os.path.exists(FLAGS.output) else ""),
                  file=sys.stderr)
            raise
    else:
        for rec in records():
            sys.stdout.write(json.dumps(rec) + "\n")
            sys.stdout.flush()
    if n_bad:
        print(f"{n_bad} image(s) could not be read (see their 'error')", file=sys.stderr)


def run():
    cli.run(main)


if __name__ == "__main__":
    run()
