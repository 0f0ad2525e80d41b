"""Exports a trained tagger as a SavedModel in TensorFlow Serving's layout (library:
tagnet/exporting.py, which documents the signatures).

  python tagnet/export.py --model_dir=runs/vgg19 --export_dir=models/tagger [--version=N]

writes models/tagger/<version>/ (the next integer unless --version is given), checked against the
Keras model before it is renamed into place. Usage errors print one line and exit with status 1.
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


def main(argv):
    if not FLAGS.model_dir or not FLAGS.export_dir:
        raise cli.TagnetError("--model_dir and --export_dir are required")
    from tagnet import exporting
    try:
        path = exporting.export(FLAGS.model_dir, FLAGS.export_dir, FLAGS.version,
                                verify=FLAGS.verify, log=lambda m: print(m, file=sys.stderr))
    except KeyboardInterrupt:  # the temporary folder is already removed
        raise cli.TagnetError("interrupted; nothing was published") from None
    except exporting.ExportError as e:
        raise cli.TagnetError(str(e)) from None
    print(path)


def run():
    cli.run(main)


if __name__ == "__main__":
    run()
