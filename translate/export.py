"""Exports a trained translator as a TensorFlow Serving SavedModel (the serving contract is
documented in its library, translate/inference/export.py).

  python translate/export.py --train_dir=runs/p2p --export_dir=models/p2p [--direction=photo2anime]

writes models/p2p/<version>/ (the next integer; written to a hidden folder and renamed, so a
watcher never sees half a model). Flag, run and folder problems print one line and exit with
status 1.
"""
from __future__ import annotations

import cliboot  # noqa: F401  (first: sys.path of the script form, TensorFlow's start-up notices)

from absl import flags

from translate import cli

FLAGS = flags.FLAGS
flags.DEFINE_string("train_dir", None, "Training folder of the run (flags.json + checkpoints).")
flags.DEFINE_string("export_dir", None, "BASE/NAME: the SavedModel goes to BASE/NAME/<next version>/.")
flags.DEFINE_enum("direction", "photo2anime", ["photo2anime", "anime2photo"],
                  "Which generator to export (CycleGAN / UGATIT have both; pix2pix photo2anime only).")
flags.DEFINE_bool("inference_dropout", True, "Keep pix2pix's dropout on at inference (stochastic "
                  "outputs, as trained); --noinference_dropout exports the deterministic generator.")
flags.DEFINE_string("checkpoint", None, "A checkpoint path to export instead of the latest.")
flags.mark_flags_as_required(["train_dir", "export_dir"])


def main(argv):
    from translate.inference import export, loading

    try:
        path = export.export(FLAGS.train_dir, FLAGS.export_dir, FLAGS.direction,
                             FLAGS.inference_dropout, FLAGS.checkpoint)
    except (loading.LoadError, export.ExportError, OSError) as e:
        raise cli.TranslateError(str(e)) from None
    print(f"exported {FLAGS.train_dir} ({FLAGS.direction}) -> {path}")


def run():
    cli.run(main)


if __name__ == "__main__":
    run()
