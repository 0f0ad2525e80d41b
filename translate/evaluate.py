"""Evaluates trained translators on a dataset split: JSON metrics, an HTML page with image grids
and, for several runs, one comparison table.

Example:
  python translate/evaluate.py --train_dir=runs/p2p_kp --train_dir=runs/p2p_kpc \\
      --dataset_dir=data/p2p --split=test --output_dir=eval/p2p
  python translate/evaluate.py --train_dir=runs/cyclegan_lm --dataset_dir=data/cyc \\
      --output_dir=eval/cyc --inception_weights=inception_v3_notop.h5

pix2pix runs: L1/PSNR/SSIM, keypoint and colour fidelity, memorisation, keypoint sensitivity.
CycleGAN / UGATIT runs: FID/KID (with --inception_weights, a local InceptionV3 no-top weights file;
nothing is downloaded), landmark fidelity, cycle and landmark-layer reconstruction.
See translate/evaluation/ (paired.py, unpaired.py) for the definitions. Writes OUTPUT/evaluation.json (all runs and the
table), OUTPUT/<run>/metrics.json and OUTPUT/index.html. Bad input prints one line, exit status 1.
"""
from __future__ import annotations

import cliboot  # noqa: F401  (first: sys.path of the script form, TensorFlow's start-up notices)

import os
import sys

from absl import flags

from translate import cli
from translate.contract import DATASET_JSON, FLAGS_JSON

FLAGS = flags.FLAGS
flags.DEFINE_multi_string("train_dir", None, "Training folder of a run (repeat for several runs).")
flags.DEFINE_string("dataset_dir", None, "Face-records dataset (pix2pix or cyclegan task).")
flags.DEFINE_string("split", "test", "Split to evaluate on.")
flags.DEFINE_string("output_dir", None, "Where evaluation.json, index.html and images go.")
flags.DEFINE_string("inception_weights", None,
                    "Local InceptionV3 no-top weights (.h5 / .weights.h5) for FID/KID; "
                    "without it FID/KID are skipped (said in the JSON).")
flags.DEFINE_integer("max_examples", 0, "Evaluate at most this many examples per domain (0 = all).")
flags.DEFINE_integer("batch_size", 8, "Generator batch size.")
flags.DEFINE_integer("seed", 0, "Seed for inference dropout, noise/jitter conditions and KID subsets.")
flags.DEFINE_bool("detect", True, "Run the anime face detector (keypoint/landmark fidelity; the slow part).")
flags.DEFINE_float("shift", 0.05, "Keypoint sensitivity: shift of the keypoints (fraction of the size).")
flags.DEFINE_float("scale", 1.1, "Keypoint sensitivity: scale of the keypoints about their centre.")
flags.DEFINE_integer("kid_subsets", 100, "KID: number of random subsets.")
flags.DEFINE_integer("kid_subset_size", 1000, "KID: subset size (capped by the set sizes).")
flags.DEFINE_integer("html_examples", 8, "Examples per run shown on the page.")


def check_paths() -> None:
    """Cheap checks before TensorFlow is imported, so bad input fails at once."""
    if not FLAGS.train_dir:
        raise cli.TranslateError("give at least one --train_dir")
    if not FLAGS.dataset_dir:
        raise cli.TranslateError("give --dataset_dir")
    if not FLAGS.output_dir:
        raise cli.TranslateError("give --output_dir")
    if FLAGS.batch_size < 1 or FLAGS.max_examples < 0:
        raise cli.TranslateError("--batch_size must be >= 1 and --max_examples >= 0")
    for d in FLAGS.train_dir:
        if not os.path.isdir(d):
            raise cli.TranslateError(f"{d}: no such training folder")
        if not os.path.isfile(os.path.join(d, FLAGS_JSON)):
            raise cli.TranslateError(f"{d}: no {FLAGS_JSON}; not a training folder of ours")
    if not os.path.isdir(FLAGS.dataset_dir):
        raise cli.TranslateError(f"{FLAGS.dataset_dir}: no such dataset folder")
    if not os.path.isfile(os.path.join(FLAGS.dataset_dir, DATASET_JSON)):
        raise cli.TranslateError(f"{FLAGS.dataset_dir}: no {DATASET_JSON}; not a built dataset "
                           "(build one with tools/build_tfrecords.py)")
    if FLAGS.inception_weights and not os.path.isfile(FLAGS.inception_weights):
        raise cli.TranslateError(f"{FLAGS.inception_weights}: Inception weights file not found")


def main(argv):
    check_paths()
    # TensorFlow loads after the cheap checks
    from translate.datasets import records
    from translate.evaluation import common, fid, report
    from translate.inference import loading

    reports, images = {}, {}
    try:
        records.read_info(FLAGS.dataset_dir)  # a bad dataset fails before any model loads
        runs = [loading.load(d) for d in FLAGS.train_dir]  # every run checked before the long work
        cfg = common.EvalConfig(
            dataset_dir=FLAGS.dataset_dir, split=FLAGS.split, max_examples=FLAGS.max_examples,
            batch_size=FLAGS.batch_size, seed=FLAGS.seed, shift=FLAGS.shift, scale=FLAGS.scale,
            kid_subsets=FLAGS.kid_subsets, kid_subset_size=FLAGS.kid_subset_size,
            html_examples=FLAGS.html_examples)
        kinds = [report.family(t) for t in runs]
        detector = None
        if FLAGS.detect:
            try:
                detector = common.anime_detector()
            except ImportError as e:
                print(f"warning: no anime face detector ({e}); keypoint fidelity skipped",
                      file=sys.stderr)
        features = None
        if FLAGS.inception_weights and "unpaired" in kinds:
            features = common.memoised(fid.InceptionFeatures(FLAGS.inception_weights, progress=True))
        for name, train_dir, t in zip(report.run_names(FLAGS.train_dir), FLAGS.train_dir, runs):
            print(f"{name}: {t.model} step {t.step} on {FLAGS.split}", flush=True)
            run_report, imgs = report.evaluate_run(t, cfg, detector, features)
            run_report["train_dir"] = train_dir
            reports[name], images[name] = run_report, imgs
    except (records.DatasetError, loading.LoadError, fid.WeightsError, common.EvalError) as e:
        print(f"error: {e}", file=sys.stderr, flush=True)
        sys.exit(1)
    except KeyboardInterrupt:
        if reports:  # the runs already evaluated are kept
            out = report.write_reports(FLAGS.output_dir, reports, images)
            print(f"interrupted: wrote the {len(reports)} finished run(s) to {out['json']}",
                  file=sys.stderr, flush=True)
        else:
            print("interrupted before any run finished: nothing written", file=sys.stderr, flush=True)
        sys.exit(130)
    out = report.write_reports(FLAGS.output_dir, reports, images)
    header, rows = report.comparison_rows(reports)
    widths = [max(len(r[i]) for r in [header] + rows) for i in range(len(header))]
    for r in [header] + rows:
        print("  ".join(v.rjust(w) for v, w in zip(r, widths)))
    print(f"wrote {out['json']} and {out['html']}")


def run():
    cli.run(main)


if __name__ == "__main__":
    run()
