"""Trains a translation model (pix2pix for now) on a face-records dataset.

Example:
  python -m translate.train --model=pix2pix --dataset_dir=data/p2p --train_dir=runs/p2p \\
      --condition=keypoints_colors --image_size=256 --max_steps=200000

Re-running with the same --train_dir resumes (step, optimizer state, lr schedule). SIGINT or
SIGTERM saves a checkpoint and exits with status 0. TensorBoard: `tensorboard --logdir=<train_dir>`.
Dataset and flag problems print one line and exit with status 1.
"""
from __future__ import annotations

import os
import sys

if __package__ in (None, ""):  # `python translate/train.py`: the repo root, not translate/ (whose
    sys.path[0] = os.path.dirname(os.path.dirname(os.path.abspath(__file__)))  # translate.py shadows the package)
os.environ.setdefault("TF_CPP_MIN_LOG_LEVEL", "2")

from absl import app, flags, logging  # noqa: E402

from translate import cli  # noqa: E402

FLAGS = flags.FLAGS
flags.DEFINE_enum("model", "pix2pix", ["pix2pix"], "Model to train.")
flags.DEFINE_string("dataset_dir", None, "Dataset folder built by tools/build_tfrecords.py --task=pix2pix.")
flags.DEFINE_string("train_dir", None, "Checkpoints, TensorBoard logs and flags.json; resumed if present.")
flags.DEFINE_enum("condition", "keypoints", ["keypoints", "keypoints_colors", "keypoints_colors_noise"],
                  "Generator input: landmark layer; + colour planes; + colour jitter and a noise plane.")
flags.DEFINE_integer("image_size", 256, "Square image size, a power of 2 (U-Net depth = log2).")
flags.DEFINE_integer("batch_size", 1, "Global batch size (split over replicas); 1 is pix2pix's default.")
flags.DEFINE_integer("max_steps", 200_000, "Training steps; the lr decays linearly to 0 over the second half.")
flags.DEFINE_float("learning_rate", 2e-4, "Adam learning rate (G and D).")
flags.DEFINE_float("beta1", 0.5, "Adam beta_1.")
flags.DEFINE_float("lambda_l1", 100.0, "Weight of the L1 term in the generator loss.")
flags.DEFINE_integer("ngf", 64, "Generator filters at the first level.")
flags.DEFINE_integer("ndf", 64, "Discriminator filters at the first level.")
flags.DEFINE_enum("norm", "instance", ["instance", "batch"], "Norm layers (instance = batch norm at batch 1, per example).")
flags.DEFINE_bool("augment", True, "pix2pix jitter (resize to 286/256, random crop) and flips.")
flags.DEFINE_integer("save_every", 1000, "Steps between checkpoints.")
flags.DEFINE_integer("summary_every", 100, "Steps between TensorBoard scalars and image grids.")
flags.DEFINE_integer("log_every", 100, "Steps between log lines (losses, lr, steps/s).")
flags.DEFINE_integer("num_examples", 3, "Fixed test examples shown in the image grid.")
flags.DEFINE_integer("seed", 0, "Seed for weights, data order, augmentation and dropout.")
flags.DEFINE_enum("strategy", "default", ["default", "mirrored", "multi_worker"],
                  "tf.distribute strategy (multi_worker reads TF_CONFIG).")
flags.DEFINE_bool("jit_compile", False, "XLA-compile the forward/backward pass.")
flags.DEFINE_integer("max_to_keep", 3, "Checkpoints kept in train_dir.")
flags.mark_flags_as_required(["dataset_dir", "train_dir"])


def main(argv):
    if len(argv) > 1:
        raise app.UsageError(f"unexpected arguments: {argv[1:]}")
    logging.set_verbosity(logging.WARNING)  # keep TF's checkpoint INFO lines out of the log
    from translate import records, run_config, training  # TF import after flag parsing (fast --help)
    cfg = training.Pix2PixConfig(
        dataset_dir=FLAGS.dataset_dir, train_dir=FLAGS.train_dir, condition=FLAGS.condition,
        image_size=FLAGS.image_size, batch_size=FLAGS.batch_size, max_steps=FLAGS.max_steps,
        learning_rate=FLAGS.learning_rate, beta1=FLAGS.beta1, lambda_l1=FLAGS.lambda_l1,
        ngf=FLAGS.ngf, ndf=FLAGS.ndf, norm=FLAGS.norm, augment=FLAGS.augment,
        save_every=FLAGS.save_every, summary_every=FLAGS.summary_every, log_every=FLAGS.log_every,
        num_examples=FLAGS.num_examples, seed=FLAGS.seed, strategy=FLAGS.strategy,
        jit_compile=FLAGS.jit_compile, max_to_keep=FLAGS.max_to_keep)
    log = lambda s: print(s, flush=True)  # noqa: E731
    try:
        if not os.path.isdir(cfg.dataset_dir):
            raise records.DatasetError(f"{cfg.dataset_dir}: no such dataset folder")
        info = records.read_info(cfg.dataset_dir, task="pix2pix")  # fail before creating train_dir
        records.split_shards(cfg.dataset_dir, info, "train", "anime")
        trainer = training.Pix2PixTrainer(cfg, log=log)
        trainer.run()
    except (records.DatasetError, run_config.IncompatibleRunError, training.ConfigError) as e:
        print(f"error: {e}", file=sys.stderr, flush=True)
        sys.exit(1)


def run():
    cli.run(main)


if __name__ == "__main__":
    run()
