"""Exports a trained tagger as a SavedModel in TensorFlow Serving's layout (library:
tagnet/exporting.py, which documents the signatures).

  python tagnet/export.py --model_dir=runs/vgg19 --export_dir=models/tagger [--version=N]
      [--category_thresholds=character=0.85] [--noper_tag] [--mcut]

writes models/tagger/<version>/ (the next integer unless --version is given), checked against the
Keras model before it is renamed into place. The thresholds and MCut flags set which tags the
`with_labels` signature gives each image, as tagnet/predict.py's flags of the same names do.
Usage errors print one line and exit with status 1.
"""
import cliboot  # noqa: F401  (first: sys.path of the script form, TensorFlow's start-up notices)

import sys

from absl import flags

from tagnet import cli

FLAGS = flags.FLAGS
flags.DEFINE_string("model_dir", None, "A trained tagger folder, or a training folder (uses best/).")
flags.DEFINE_string("export_dir", None, "BASE/NAME: the version folder BASE/NAME/<version>/ is created.")
flags.DEFINE_integer("version", None, "Version number (default: one more than the newest).")
flags.DEFINE_boolean("verify", True, "Reload the export and compare with the Keras model first.")
flags.DEFINE_boolean("per_tag", True, "Use the saved per-tag thresholds when there are some "
                     "(otherwise the saved per-category ones).")
flags.DEFINE_list("category_thresholds", [], "CATEGORY=VALUE pairs, e.g. character=0.85: one "
                  "threshold for every tag of that category (overrides the saved ones).")
flags.DEFINE_boolean("mcut", False, "with_labels cuts each category of each image at its largest "
                     "score gap (MCut) instead of thresholds.")


def main(argv):
    if not FLAGS.model_dir or not FLAGS.export_dir:
        raise cli.TagnetError("--model_dir and --export_dir are required")
    from tagnet import exporting, thresholds
    try:
        by_category = thresholds.parse_category_thresholds(FLAGS.category_thresholds)
    except ValueError as e:
        raise cli.TagnetError(f"--category_thresholds: {e}") from None
    try:
        path = exporting.export(FLAGS.model_dir, FLAGS.export_dir, FLAGS.version,
                                verify=FLAGS.verify, log=lambda m: print(m, file=sys.stderr),
                                per_tag=FLAGS.per_tag, category_thresholds=by_category,
                                mcut=FLAGS.mcut)
    except KeyboardInterrupt:  # the temporary folder is already removed
        raise cli.TagnetError("interrupted; nothing was published") from None
    except exporting.ExportError as e:
        raise cli.TagnetError(str(e)) from None
    print(path)


def run():
    cli.run(main)


if __name__ == "__main__":
    run()
