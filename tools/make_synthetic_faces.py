"""Writes a synthetic anime-face data set with exact keypoints and colours.

The demo's anime domain and the tests' ground truth: every image comes with a Face line in
faces.jsonl whose points and colours are the ones that were drawn, not estimated.

  python tools/make_synthetic_faces.py --output_dir=demo_data/synthetic --count=64 --negatives=8

Writes OUTPUT_DIR/images/face_NNNNN.png, OUTPUT_DIR/faces.jsonl and, with --negatives,
OUTPUT_DIR/negatives/*.png (face-free images for checking detectors). The same flags give the same
bytes.
"""
import cliboot  # noqa: F401  (first: sys.path of the script form, TensorFlow's start-up notices)

import time

from absl import flags

from translate.faces import synthetic

FLAGS = flags.FLAGS
flags.DEFINE_string("output_dir", None, "Folder to write images/, faces.jsonl and negatives/ into.")
flags.DEFINE_integer("count", 64, "Number of face images.", lower_bound=1)
flags.DEFINE_integer("size", 256, "Width and height of each square image in pixels.", lower_bound=64)
flags.DEFINE_integer("seed", 0, "Random seed; the same seed writes identical files.")
flags.DEFINE_integer("negatives", 0, "Number of face-free images (blank, noise, gradient, shapes).",
                     lower_bound=0)
flags.mark_flag_as_required("output_dir")


def main(argv):
    start = time.time()
    counts = synthetic.write_dataset(FLAGS.output_dir, FLAGS.count, size=FLAGS.size,
                                     seed=FLAGS.seed, negatives=FLAGS.negatives)
    print(f"wrote {counts['faces']} faces ({FLAGS.size}x{FLAGS.size}, seed {FLAGS.seed}) and "
          f"{counts['negatives']} negatives to {FLAGS.output_dir} in {time.time() - start:.1f} s; "
          f"keypoints and colours in faces.jsonl")


def run():
    cliboot.run(main)


if __name__ == "__main__":
    run()
