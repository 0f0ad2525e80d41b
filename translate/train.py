"""Trains a translation model on a face-records dataset: pix2pix (paired: landmark layer ->
anime face), CycleGAN or UGATIT (unpaired photo <-> anime).

Examples:
  python translate/train.py --model=pix2pix --dataset_dir=data/p2p --train_dir=runs/p2p \\
      --condition=keypoints_colors --image_size=256 --max_number_of_steps=200000
  python translate/train.py --model=cyclegan --dataset_dir=data/cyc --train_dir=runs/cyc \\
      --landmark_channel --image_size=256 --max_number_of_steps=200000
  # a small CycleGAN for CPUs (its measured speed: translate/README.md):
  python translate/train.py --model=cyclegan --dataset_dir=data/cyc --train_dir=runs/cyc128 \\
      --landmark_channel --image_size=128 --ngf=32 --ndf=32 --n_blocks=6 --max_number_of_steps=3000

Re-running with the same --train_dir resumes (step, optimizer state, lr schedule, history pools).
SIGINT or SIGTERM saves a checkpoint and exits with status 0. TensorBoard:
`tensorboard --logdir=<train_dir>`. Dataset and flag problems print one line and exit with status 1.
Model-specific flags only apply to their model; unpaired models take their defaults from the
model family unless a flag is given. The step and logging flags have TF-Slim's names (as in
tagnet/train.py); the older names (--max_steps, --save_every, --summary_every, --log_every) are
still accepted with a one-line deprecation notice.
"""
from __future__ import annotations

import cliboot  # noqa: F401  (first: sys.path of the script form, TensorFlow's start-up notices)

import os
import sys

# TF's caching (BFC) allocator on the CPU: with the default one every step's large activations
# were fresh pages from the kernel (~600 k page faults, 1.5 s of system time per 256 px CycleGAN
# step; 9% of the step's wall time). Must be set before TensorFlow starts.
os.environ.setdefault("TF_CPU_ALLOCATOR_USE_BFC", "true")

from absl import flags  # noqa: E402

from translate import cli  # noqa: E402
from translate.models import registry  # noqa: E402  (TensorFlow-free)

FLAGS = flags.FLAGS
flags.DEFINE_enum("model", "pix2pix", list(registry.NAMES), "Model family to train.")
flags.DEFINE_string("dataset_dir", None, "Dataset folder built by tools/build_tfrecords.py "
                    "(--task=pix2pix for pix2pix, --task=cyclegan for cyclegan / ugatit).")
flags.DEFINE_string("train_dir", None, "Checkpoints, TensorBoard logs and flags.json; resumed if present.")
flags.DEFINE_integer("image_size", 256, "Square image size (pix2pix: a power of 2; unpaired: a multiple of 4).")
flags.DEFINE_integer("batch_size", 1, "Global batch size (split over replicas); 1 is the GAN default.")
flags.DEFINE_integer("max_number_of_steps", 200_000, "Training steps (resumed runs count on).")
flags.DEFINE_integer("decay_from", None, "Unpaired models: step where the lr starts its linear decay to 0 "
                     "at --max_number_of_steps (CycleGAN's n_epochs then n_epochs_decay); default half of it. "
                     "pix2pix always decays over the second half.")
flags.DEFINE_float("learning_rate", None, "Adam learning rate (default 2e-4; UGATIT 1e-4).")
flags.DEFINE_float("beta1", 0.5, "Adam beta_1.")
flags.DEFINE_integer("ngf", 64, "Generator filters at the first level.")
flags.DEFINE_integer("ndf", 64, "Discriminator filters at the first level.")
flags.DEFINE_bool("augment", True, "Resize to 286/256 + random crop, and flips.")
flags.DEFINE_enum("cache_images", "auto", ["auto", "on", "off"], "Keep the decoded training "
                  "images (uint8, at 286 px for 256) in memory after the first pass, so later "
                  "passes skip decoding. auto: when a domain's images fit in 1 GiB.")
flags.DEFINE_integer("save_interval_steps", 1000, "Steps between checkpoints.")
flags.DEFINE_integer("save_summaries_steps", 100, "Steps between TensorBoard scalars and image grids.")
flags.DEFINE_integer("log_every_n_steps", 100, "Steps between log lines (losses, lr, s/step).")
flags.DEFINE_integer("num_examples", 3, "Fixed test examples shown in the image grids.")
flags.DEFINE_integer("seed", 0, "Seed for weights, data order, augmentation, dropout and history pools.")
flags.DEFINE_enum("strategy", "default", ["default", "mirrored", "multi_worker"],
                  "tf.distribute strategy (multi_worker reads TF_CONFIG).")
flags.DEFINE_integer("max_to_keep", 3, "Checkpoints kept in train_dir.")

# pix2pix
flags.DEFINE_enum("condition", "keypoints", ["keypoints", "keypoints_colors", "keypoints_colors_noise"],
                  "pix2pix generator input: landmark layer; + colour planes; + colour jitter and a noise plane.")
flags.DEFINE_float("lambda_l1", 100.0, "pix2pix: weight of the L1 term in the generator loss.")
flags.DEFINE_enum("norm", "instance", ["instance", "batch"], "pix2pix norm layers (instance = batch norm at batch 1, per example).")
flags.DEFINE_bool("jit_compile", False, "pix2pix: XLA-compile the forward/backward pass.")

# unpaired (cyclegan, ugatit)
flags.DEFINE_bool("landmark_channel", False, "Unpaired: the rendered landmark layer as a 4th input channel.")

# cyclegan (translate/training/cyclegan.py; unset flags take the family's defaults)
flags.DEFINE_bool("landmark_output", False, "CycleGAN: generators also output the landmark layer, "
                  "with a reconstruction loss (needs --landmark_channel).")
flags.DEFINE_bool("keypoint_attention", False, "CycleGAN: the landmark layer gates the residual blocks "
                  "as a spatial attention map (needs --landmark_channel).")
flags.DEFINE_integer("n_blocks", None, "CycleGAN residual blocks (default 9 at 256 px and above, 6 below).")
flags.DEFINE_enum("upsample", "transpose", ["transpose", "resize"], "CycleGAN up-sampling: transposed "
                  "conv (published) or nearest resize + conv (no checkerboard).")
flags.DEFINE_float("lambda_cycle", 10.0, "CycleGAN cycle-consistency weight.")
flags.DEFINE_float("lambda_identity", 0.5, "CycleGAN identity weight, times --lambda_cycle (0 = off).")
flags.DEFINE_float("lambda_landmark", 10.0, "CycleGAN landmark reconstruction weight (--landmark_output).")
flags.DEFINE_integer("pool_size", 50, "CycleGAN discriminator history pool size (0 = off).")

# ugatit (translate/training/ugatit.py; named like the family's option keys; unset flags take
# the family's defaults, the published ones)
flags.DEFINE_bool("light", False, "UGATIT light mode: AdaLIN's gamma/beta MLP reads the pooled "
                  "feature map (full mode flattens it into far more weights).")
flags.DEFINE_integer("ch", 64, "UGATIT base filters (generators and discriminators).")
flags.DEFINE_integer("n_res", 4, "UGATIT residual blocks in the encoder and AdaLIN blocks in the decoder.")
flags.DEFINE_integer("n_dis", 6, "UGATIT discriminator depth: the global D has n_dis + 1 layers "
                     "(n_dis - 1 stride-2 convs), the local D n_dis - 1; needs image_size / 2^(n_dis-1) >= 4.")
flags.DEFINE_float("adv_weight", 1.0, "UGATIT adversarial (LSGAN, patch + CAM logits) weight.")
flags.DEFINE_float("cycle_weight", 10.0, "UGATIT cycle-consistency (L1) weight.")
flags.DEFINE_float("identity_weight", 10.0, "UGATIT identity (L1) weight.")
flags.DEFINE_float("cam_weight", 1000.0, "UGATIT generator CAM (BCE) weight.")
flags.DEFINE_float("weight_decay", 1e-4, "UGATIT L2 weight decay added to the gradients (PyTorch Adam's).")
flags.DEFINE_bool("batch_calls", True, "UGATIT: one network call for each generator's translation + "
                  "identity and each discriminator's real + fake (per-example norms: same outputs, faster).")

flags.mark_flags_as_required(["dataset_dir", "train_dir"])

# Old translate names of TF-Slim's step and logging flags (accepted, with a deprecation notice).
DEPRECATED_FLAGS = {"max_steps": "max_number_of_steps", "save_every": "save_interval_steps",
                    "summary_every": "save_summaries_steps", "log_every": "log_every_n_steps"}


def _family_options(family_cls) -> dict:
    """The family's options that were given on the command line (the rest keep its defaults)."""
    return {k: FLAGS[k].value for k in family_cls.defaults if k in FLAGS and FLAGS[k].present}


def _pix2pix_config(training):
    return training.Pix2PixConfig(
        dataset_dir=FLAGS.dataset_dir, train_dir=FLAGS.train_dir, condition=FLAGS.condition,
        image_size=FLAGS.image_size, batch_size=FLAGS.batch_size,
        max_steps=FLAGS.max_number_of_steps, learning_rate=2e-4 if FLAGS.learning_rate is None else FLAGS.learning_rate,
        beta1=FLAGS.beta1, lambda_l1=FLAGS.lambda_l1, ngf=FLAGS.ngf, ndf=FLAGS.ndf, norm=FLAGS.norm,
        augment=FLAGS.augment, save_every=FLAGS.save_interval_steps,
        summary_every=FLAGS.save_summaries_steps, log_every=FLAGS.log_every_n_steps,
        num_examples=FLAGS.num_examples, seed=FLAGS.seed, strategy=FLAGS.strategy, jit_compile=FLAGS.jit_compile, max_to_keep=FLAGS.max_to_keep,
        cache_images=FLAGS.cache_images)


def _unpaired_config(unpaired_training):
    family_cls = unpaired_training.get_family(FLAGS.model)
    return unpaired_training.UnpairedConfig(
        dataset_dir=FLAGS.dataset_dir, train_dir=FLAGS.train_dir, model=FLAGS.model,
        image_size=FLAGS.image_size, landmark_channel=FLAGS.landmark_channel,
        batch_size=FLAGS.batch_size, max_steps=FLAGS.max_number_of_steps,
        decay_start=FLAGS.decay_from, learning_rate=FLAGS.learning_rate, beta1=FLAGS.beta1,
        augment=FLAGS.augment, save_every=FLAGS.save_interval_steps,
        summary_every=FLAGS.save_summaries_steps, log_every=FLAGS.log_every_n_steps,
        num_examples=FLAGS.num_examples, seed=FLAGS.seed, strategy=FLAGS.strategy,
        max_to_keep=FLAGS.max_to_keep, cache_images=FLAGS.cache_images,
        options=_family_options(family_cls))


def main(argv):
    # TF imports after flag parsing (fast --help)
    from translate import run_config
    from translate.datasets import records
    from translate.training import loop, pix2pix, unpaired as unpaired_training
    log = lambda s: print(s, flush=True)  # noqa: E731
    unpaired = FLAGS.model in registry.UNPAIRED
    try:
        if not os.path.isdir(FLAGS.dataset_dir):
            raise records.DatasetError(f"{FLAGS.dataset_dir}: no such dataset folder")
        task = "cyclegan" if unpaired else "pix2pix"
        info = records.read_info(FLAGS.dataset_dir, task=task)  # fail before creating train_dir
        for domain in (("photo", "anime") if unpaired else ("anime",)):
            records.split_shards(FLAGS.dataset_dir, info, "train", domain)
        if unpaired:
            trainer = unpaired_training.UnpairedTrainer(_unpaired_config(unpaired_training), log=log)
        else:
            trainer = pix2pix.Pix2PixTrainer(_pix2pix_config(pix2pix), log=log)
        trainer.run()
    except (records.DatasetError, run_config.IncompatibleRunError, loop.ConfigError,
            registry.UnknownModelError) as e:
        print(f"error: {e}", file=sys.stderr, flush=True)
        sys.exit(1)


def run():
    cli.run(main, deprecated=DEPRECATED_FLAGS)


if __name__ == "__main__":
    run()
