"""Photo -> anime: translates the faces of a photo (or a folder of photos) with a trained run.

  python translate/translate.py --train_dir=runs/p2p --input=photos/ --output_dir=out/ \\
      [--hair_color=#rrggbb --skin_color=#rrggbb --eye_color=#rrggbb] [--side_by_side] \\
      [--direction=photo2anime|anime2photo] [--seed=0] [--max_faces=1]

Each photo: MTCNN detection, the usability filter, alignment, the landmark layer, then the run's
generator (pix2pix: the keypoint condition with colours measured on the photo unless given;
CycleGAN / UGATIT: the aligned crop, + the layer with a landmark-channel run). Writes
OUTPUT_DIR/<photo path without extension>_face<i>.png per face, and with --side_by_side
..._face<i>_side.png (aligned photo | landmark layer | output). A photo without a usable face is
reported and skipped; a summary ends the run. Outputs are written whole (temporary name, then
rename), so an interrupted run leaves only finished pictures. Flag, model and input problems
print one line and exit with status 1.

The same command runs as `python -m translate.photo2anime` (translate/translate.py, the documented
script path, only calls this module). The library behind it: translate/inference/pipeline.py.
--model_dir is the deprecated name of --train_dir (accepted, with a one-line notice).
"""
from __future__ import annotations

import cliboot  # noqa: F401  (first: sys.path of the script form, TensorFlow's start-up notices)

import os
import sys

from absl import flags

from translate import cli

FLAGS = flags.FLAGS
flags.DEFINE_string("train_dir", None, "Training folder of the run (flags.json + checkpoints); "
                    "--model_dir is its deprecated name.")
flags.DEFINE_string("input", None, "A photo, or a folder searched recursively for photos.")
flags.DEFINE_string("output_dir", None, "Folder for the translated faces (PNG).")
flags.DEFINE_string("hair_color", None, "Hair colour #rrggbb (default: measured on the photo).")
flags.DEFINE_string("skin_color", None, "Skin colour #rrggbb (default: measured on the photo).")
flags.DEFINE_string("eye_color", None, "Colour of both eyes #rrggbb (default: measured).")
flags.DEFINE_string("left_eye_color", None, "Colour of the image-left eye #rrggbb (wins over --eye_color).")
flags.DEFINE_string("right_eye_color", None, "Colour of the image-right eye #rrggbb (wins over --eye_color).")
flags.DEFINE_bool("side_by_side", False, "Also write <name>_side.png: aligned photo | landmark layer | output.")
flags.DEFINE_enum("direction", "photo2anime", ["photo2anime", "anime2photo"],
                  "photo2anime (all models); anime2photo (CycleGAN / UGATIT; detects anime faces).")
flags.DEFINE_bool("anime_proportions", True, "For nets that draw the face from keypoints alone "
                  "(pix2pix): move the photo's nose, mouth and chin up to anime proportions "
                  "(anime faces are shorter below the eyes); see translate/faces/align.py.")
flags.DEFINE_integer("seed", None, "Seed for dropout and the noise condition (same seed, same output).")
flags.DEFINE_integer("max_faces", None, "Translate at most this many faces per photo (best first).",
                     lower_bound=1)
flags.DEFINE_float("min_score", None, "Detector score threshold (default: 0.9 photo, 0.5 anime).")
flags.DEFINE_integer("max_image_pixels", 40_000_000, "Largest photo read, width x height from its "
                     "header; larger ones (decompression bombs) are skipped as unreadable.",
                     lower_bound=1)
flags.mark_flags_as_required(["train_dir", "input", "output_dir"])

DEPRECATED_FLAGS = {"model_dir": "train_dir"}


def _colors():
    from translate.inference import pipeline

    try:
        return pipeline.color_overrides(
            hair=FLAGS.hair_color, skin=FLAGS.skin_color, eye=FLAGS.eye_color,
            left_eye=FLAGS.left_eye_color, right_eye=FLAGS.right_eye_color)
    except ValueError as e:
        raise cli.TranslateError(str(e)) from None


def _sources():
    """(root, relative paths) of the photos to translate."""
    from translate.faces.images import list_images

    path = FLAGS.input
    if os.path.isdir(path):
        rel = list_images(path)
        if not rel:
            raise cli.TranslateError(f"no images (.jpg .jpeg .png .webp .bmp) found under {path}")
        return path, rel
    if os.path.isfile(path):
        return os.path.dirname(path) or ".", [os.path.basename(path)]
    raise cli.TranslateError(f"--input {path!r}: no such file or folder")


def _check_train_dir(path: str) -> None:
    """Fails fast, before TensorFlow loads, on a folder that is not a training run."""
    from translate import run_config

    if not os.path.isdir(path):
        raise cli.TranslateError(f"--train_dir {path!r}: no such folder")
    if not os.path.exists(run_config.path(path)):
        raise cli.TranslateError(f"--train_dir {path!r}: no {run_config.FILENAME}; not a training folder")


def main(argv):
    colors = _colors()
    root, sources = _sources()
    _check_train_dir(FLAGS.train_dir)
    if FLAGS.seed is not None:
        import keras
        keras.utils.set_random_seed(FLAGS.seed)  # before the networks exist: dropout seeds
    from translate.faces import quality
    from translate.inference import export, loading, pipeline

    try:
        translator = loading.load(FLAGS.train_dir)
        runner = pipeline.Runner(translator, FLAGS.direction,
                                    anime_proportions=FLAGS.anime_proportions)
    except (loading.LoadError, export.ExportError) as e:
        raise cli.TranslateError(str(e)) from None
    config = quality.QualityConfig()
    if FLAGS.min_score is not None:
        config = quality.QualityConfig(min_score_photo=FLAGS.min_score, min_score_anime=FLAGS.min_score)
    detector = pipeline.default_detector(runner.domain)
    summary = pipeline.translate_all(runner, detector, root, sources, FLAGS.output_dir, colors, FLAGS.seed,
                            FLAGS.side_by_side, FLAGS.max_faces, config,
                            max_pixels=FLAGS.max_image_pixels)
    rej = ", ".join(f"{k} {v}" for k, v in summary["rejected"].items()) or "none"
    print(f"{summary['photos']} images: {summary['faces']} faces translated from "
          f"{summary['photos_translated']} photos; skipped {summary['no_face']} without a usable "
          f"face (rejected: {rej}), {summary['unreadable']} unreadable, {summary['failed']} failed "
          f"-> {FLAGS.output_dir}")


def _interrupt(signum, frame):
    raise KeyboardInterrupt


def _main(argv):
    import signal

    signal.signal(signal.SIGTERM, _interrupt)  # SIGTERM ends like Ctrl-C: finished pictures kept
    try:
        main(argv)
    except KeyboardInterrupt:
        print("\ninterrupted: finished pictures are in place", file=sys.stderr)
        sys.exit(130)


def run():
    cli.run(_main, deprecated=DEPRECATED_FLAGS)


if __name__ == "__main__":
    run()
