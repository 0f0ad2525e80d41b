"""Photo -> anime: translates the faces of a photo (or a folder of photos) with a trained run.

  python translate/translate.py --model_dir=runs/p2p --input=photos/ --output_dir=out/ \\
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
"""
from __future__ import annotations

import collections
import os
import sys

if __name__ == "__main__":
    # `python translate/translate.py` puts translate/ first on sys.path, where this file would
    # shadow the `translate` package: use the repository root instead.
    _here = os.path.dirname(os.path.abspath(__file__))
    if sys.path and os.path.abspath(sys.path[0] or ".") == _here:
        sys.path[0] = os.path.dirname(_here)
    os.environ.setdefault("TF_CPP_MIN_LOG_LEVEL", "2")

from absl import flags  # noqa: E402

FLAGS = flags.FLAGS
flags.DEFINE_string("model_dir", None, "Training folder of the run (flags.json + checkpoints).")
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
                  "(anime faces are ~0.6x as long below the eyes); see translate/align.py.")
flags.DEFINE_integer("seed", None, "Seed for dropout and the noise condition (same seed, same output).")
flags.DEFINE_integer("max_faces", None, "Translate at most this many faces per photo (best first).",
                     lower_bound=1)
flags.DEFINE_float("min_score", None, "Detector score threshold (default: 0.9 photo, 0.5 anime).")
flags.mark_flags_as_required(["model_dir", "input", "output_dir"])


class UsageProblem(Exception):
    """Bad flags or inputs: one line, exit status 1."""


def _colors():
    from translate import photo2anime

    try:
        return photo2anime.color_overrides(
            hair=FLAGS.hair_color, skin=FLAGS.skin_color, eye=FLAGS.eye_color,
            left_eye=FLAGS.left_eye_color, right_eye=FLAGS.right_eye_color)
    except ValueError as e:
        raise UsageProblem(str(e)) from None


def _sources():
    """(root, relative paths) of the photos to translate."""
    from translate.imageio import list_images

    path = FLAGS.input
    if os.path.isdir(path):
        rel = list_images(path)
        if not rel:
            raise UsageProblem(f"no images (.jpg .jpeg .png .webp .bmp) found under {path}")
        return path, rel
    if os.path.isfile(path):
        return os.path.dirname(path) or ".", [os.path.basename(path)]
    raise UsageProblem(f"--input {path!r}: no such file or folder")


def _check_model_dir(path: str) -> None:
    """Fails fast, before TensorFlow loads, on a folder that is not a training run."""
    from translate import run_config

    if not os.path.isdir(path):
        raise UsageProblem(f"--model_dir {path!r}: no such folder")
    if not os.path.exists(run_config.path(path)):
        raise UsageProblem(f"--model_dir {path!r}: no {run_config.FILENAME}; not a training folder")


def _save_png(rgb, path: str) -> None:
    """Writes whole or not at all (temporary name, then rename)."""
    from PIL import Image

    os.makedirs(os.path.dirname(path) or ".", exist_ok=True)
    tmp = f"{path}.tmp-{os.getpid()}.png"
    try:
        Image.fromarray(rgb).save(tmp)
        os.replace(tmp, path)
    except BaseException:
        if os.path.exists(tmp):
            os.remove(tmp)
        raise


def translate_all(runner, detector, root, sources, output_dir, colors, seed=None, side_by_side=False,
                  max_faces=None, config=None, progress=True, log=print):
    """Translates every photo; returns the summary dict. Never raises on one bad photo."""
    import numpy as np
    from tqdm import tqdm

    from translate import imageio, photo2anime, quality

    config = config or quality.QualityConfig()
    summary = collections.Counter()
    rejected_total = collections.Counter()
    written = []
    bar = tqdm(sources, unit="photo", desc="translate", disable=not progress)
    for k, rel in enumerate(bar):
        summary["photos"] += 1
        try:
            rgb = imageio.load_rgb(os.path.join(root, rel))
        except imageio.ImageReadError as e:
            summary["unreadable"] += 1
            tqdm.write(f"skipped {rel}: {e}", file=sys.stderr)
            continue
        rejected = collections.Counter()
        try:
            faces = photo2anime.prepare_faces(rgb, runner.image_size, detector, colors, max_faces,
                                              config, rejected)
        except Exception as e:  # a detector crash on one odd photo must not end the run
            summary["failed"] += 1
            tqdm.write(f"skipped {rel}: detection failed: {type(e).__name__}: {e}", file=sys.stderr)
            continue
        if not faces:
            summary["no_face"] += 1
            rejected_total.update(rejected)
            why = ", ".join(f"{r} {n}" for r, n in sorted(rejected.items()))
            tqdm.write(f"skipped {rel}: no usable face ({why})", file=sys.stderr)
            continue
        face_seed = None if seed is None else seed + 1000 * k
        out = runner.translate(faces, seed=face_seed)
        stem = os.path.splitext(rel)[0]
        for i, (face, anime) in enumerate(zip(faces, out)):
            path = os.path.join(output_dir, f"{stem}_face{i}.png")
            _save_png(anime, path)
            written.append(path)
            if side_by_side:
                _save_png(np.concatenate([face.aligned, runner.layer(face), anime], axis=1),
                          os.path.join(output_dir, f"{stem}_face{i}_side.png"))
        summary["photos_translated"] += 1
        summary["faces"] += len(faces)
    return {**{k: summary.get(k, 0) for k in ("photos", "photos_translated", "faces", "no_face",
                                               "unreadable", "failed")},
            "rejected": dict(sorted(rejected_total.items())), "written": written}


def main(argv):
    if len(argv) > 1:
        raise UsageProblem(f"unexpected arguments: {' '.join(argv[1:])}")
    from absl import logging
    logging.set_verbosity(logging.WARNING)  # no INFO lines from checkpoint restore
    colors = _colors()
    root, sources = _sources()
    _check_model_dir(FLAGS.model_dir)
    if FLAGS.seed is not None:
        import keras
        keras.utils.set_random_seed(FLAGS.seed)  # before the networks exist: dropout seeds
    from translate import export, loading, photo2anime, quality

    try:
        translator = loading.load(FLAGS.model_dir)
        runner = photo2anime.Runner(translator, FLAGS.direction,
                                    anime_proportions=FLAGS.anime_proportions)
    except (loading.LoadError, export.ExportError) as e:
        raise UsageProblem(str(e)) from None
    config = quality.QualityConfig()
    if FLAGS.min_score is not None:
        config = quality.QualityConfig(min_score_photo=FLAGS.min_score, min_score_anime=FLAGS.min_score)
    detector = photo2anime.default_detector(runner.domain)
    summary = translate_all(runner, detector, root, sources, FLAGS.output_dir, colors, FLAGS.seed,
                            FLAGS.side_by_side, FLAGS.max_faces, config)
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
    except UsageProblem as e:
        print(f"error: {e}", file=sys.stderr)
        sys.exit(1)
    except KeyboardInterrupt:
        print("\ninterrupted: finished pictures are in place", file=sys.stderr)
        sys.exit(130)


def run():
    from translate import cli

    cli.run(_main)


if __name__ == "__main__":
    run()
