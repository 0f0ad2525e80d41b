"""Fine-tunes an ImageNet backbone to estimate image tags (TF-Slim train_image_classifier style).

  python tagnet/train.py --backbone=vgg_19 --dataset_dir=DATA --train_dir=RUN
  python tagnet/train.py --backbone=mobilenet_v2 --weights=none --image_size=96 ...

Datasets come from tagnet/build_dataset.py. Resume is automatic from --train_dir; Ctrl-C or
SIGTERM saves a checkpoint before exiting. TensorBoard: `tensorboard --logdir=RUN`.
"""
import cliboot  # noqa: F401  (first: sys.path of the script form, TensorFlow's start-up notices)

import json
import sys

from absl import flags

from tagnet import cli
from tagnet.backbones import names as _backbone_names

FLAGS = flags.FLAGS
# Data and model.
flags.DEFINE_string("dataset_dir", None, "Dataset folder written by tagnet/build_dataset.py.")
flags.DEFINE_string("train_dir", None, "Checkpoints, TensorBoard logs and exported models go here.")
flags.DEFINE_string("backbone", "mobilenet_v2", "TF-Slim network name: " + ", ".join(_backbone_names()))
flags.DEFINE_string("model_name", None, "TF-Slim spelling of --backbone.")
flags.DEFINE_string("weights", "imagenet", "imagenet | none | PATH to a keras.applications "
                    "'notop' .h5 weights file.")
flags.DEFINE_integer("image_size", 0, "Training input size (0: the backbone's default).")
flags.DEFINE_float("dropout", 0.0, "Dropout before the tag layer.")
flags.DEFINE_float("batch_norm_decay", None, "Momentum of the batch-norm moving averages during "
                   "training (default: the backbone's, 0.99 or 0.999).")
flags.DEFINE_integer("batch_norm_recalibration_steps", 32, "Before each validation and save, "
                     "re-estimate the batch-norm statistics with the current weights over this many "
                     "un-augmented training batches (0: keep the moving averages).")
flags.DEFINE_boolean("freeze_backbone", False, "Train only the tag layer.")
flags.DEFINE_string("trainable_from", None, "Freeze backbone layers before this layer name; "
                    "'last_block' = the registry's boundary for the backbone.")
flags.DEFINE_string("checkpoint_path", None, "Warm start from one of our model folders, training "
                    "folders or checkpoint prefixes.")
flags.DEFINE_boolean("checkpoint_exclude_head", False, "With --checkpoint_path: load only the "
                     "backbone (when the tag set differs).")
# Loss.
flags.DEFINE_enum("loss", "auto", ["auto", "bce", "focal", "asl", "softmax"],
                  "auto: bce for multi-label datasets, softmax for single-label ones.")
flags.DEFINE_float("label_smoothing", 0.0, "Label smoothing.")
# Optimisation (TF-Slim names).
flags.DEFINE_enum("optimizer", "adam", ["adam", "adamw", "nadam", "sgd", "momentum", "rmsprop",
                                        "adagrad", "adadelta", "ftrl"], "Optimizer.")
flags.DEFINE_float("learning_rate", 1e-3, "Initial learning rate.")
flags.DEFINE_enum("learning_rate_decay_type", "cosine", ["fixed", "exponential", "polynomial", "cosine"],
                  "Learning rate schedule.")
flags.DEFINE_float("learning_rate_decay_factor", 0.94, "exponential: factor per decay period.")
flags.DEFINE_float("num_epochs_per_decay", 2.0, "exponential: epochs per decay period.")
flags.DEFINE_float("end_learning_rate", 1e-5, "polynomial / cosine: final learning rate.")
flags.DEFINE_integer("warmup_steps", 0, "cosine: linear warm-up steps.")
flags.DEFINE_float("momentum", 0.9, "momentum / rmsprop momentum.")
flags.DEFINE_float("moving_average_decay", None, "Keep an exponential moving average of the "
                   "weights; validation and exports use it.")
flags.DEFINE_float("weight_decay", 0.0, "Decoupled weight decay (Keras optimizers' weight_decay).")
flags.DEFINE_integer("batch_size", 32, "Batch size per replica.")
flags.DEFINE_integer("max_number_of_steps", 10000, "Total training steps (resumed runs count on).")
# Checkpoints, logs.
flags.DEFINE_float("save_interval_secs", 600, "Save (and validate) at least this often.")
flags.DEFINE_integer("save_interval_steps", 0, "Also save every N steps (0: off).")
flags.DEFINE_integer("eval_interval_steps", 0, "Also validate every N steps (0: at each save).")
flags.DEFINE_integer("max_eval_examples", 0, "Validate on at most this many examples (0: all).")
flags.DEFINE_integer("log_every_n_steps", 10, "Log loss / learning rate / speed every N steps.")
flags.DEFINE_integer("num_summary_images", 4, "Validation images with their top tags in TensorBoard.")
# Hardware.
flags.DEFINE_boolean("mixed_precision", False, "mixed_float16 compute (GPU/TPU).")
flags.DEFINE_enum("strategy", "default", ["default", "mirrored", "multi_worker", "tpu"],
                  "tf.distribute strategy.")
flags.DEFINE_integer("seed", None, "Seed for shuffling and initialisation.")
flags.DEFINE_boolean("augment", True, "Random flips and crops.")
flags.DEFINE_boolean("progress", True, "Progress bar (otherwise log lines).")


def main(argv):
    from tagnet import training
    for name in ("dataset_dir", "train_dir"):
        if not FLAGS[name].value:
            raise cli.TagnetError(f"--{name} is required")
    if FLAGS.seed is not None:
        import keras
        keras.utils.set_random_seed(FLAGS.seed)
    cfg = training.TrainConfig(
        dataset_dir=FLAGS.dataset_dir, train_dir=FLAGS.train_dir,
        backbone=FLAGS.model_name or FLAGS.backbone, weights=FLAGS.weights,
        image_size=FLAGS.image_size, batch_size=FLAGS.batch_size,
        max_number_of_steps=FLAGS.max_number_of_steps, loss=FLAGS.loss,
        label_smoothing=FLAGS.label_smoothing, optimizer=FLAGS.optimizer,
        learning_rate=FLAGS.learning_rate, learning_rate_decay_type=FLAGS.learning_rate_decay_type,
        learning_rate_decay_factor=FLAGS.learning_rate_decay_factor,
        num_epochs_per_decay=FLAGS.num_epochs_per_decay, end_learning_rate=FLAGS.end_learning_rate,
        warmup_steps=FLAGS.warmup_steps, momentum=FLAGS.momentum,
        moving_average_decay=FLAGS.moving_average_decay, weight_decay=FLAGS.weight_decay,
        dropout=FLAGS.dropout, batch_norm_decay=FLAGS.batch_norm_decay,
        batch_norm_recalibration_steps=FLAGS.batch_norm_recalibration_steps,
        freeze_backbone=FLAGS.freeze_backbone,
        trainable_from=FLAGS.trainable_from, checkpoint_path=FLAGS.checkpoint_path,
        checkpoint_exclude_head=FLAGS.checkpoint_exclude_head,
        save_interval_secs=FLAGS.save_interval_secs, save_interval_steps=FLAGS.save_interval_steps,
        eval_interval_steps=FLAGS.eval_interval_steps, max_eval_examples=FLAGS.max_eval_examples,
        log_every_n_steps=FLAGS.log_every_n_steps, num_summary_images=FLAGS.num_summary_images,
        mixed_precision=FLAGS.mixed_precision, strategy=FLAGS.strategy, seed=FLAGS.seed,
        augment=FLAGS.augment, progress=FLAGS.progress)
    result = training.train(cfg)
    print(json.dumps({k: v for k, v in result.items() if k != "validation"}))
    if result["validation"]:
        print(json.dumps(result["validation"]))
    if result["interrupted"]:
        sys.exit(128 + int(result["interrupted"]))


def run():
    cli.run(main)


if __name__ == "__main__":
    run()
