"""Trains a model the project ships, from the team's shared data, in one command.

  python tools/train_pretrained.py --model=tagger [--data_dir=../shared/data]
      [--work_dir=runs/pretrained] [--output_dir=tagnet/pretrained/hololive]

tagger: the example character tagger (tools/recipes/tagger.py says each step): builds the
20-character dataset with whole artworks held back, trains from scratch, evaluates on the
held-back artworks next to the colour-histogram kNN baseline, and writes the tagger folder with
its MODEL_CARD.md. Run the same command again after an interruption: it resumes (the dataset
is kept, training continues from its checkpoints in --work_dir).
"""
import cliboot  # noqa: F401  (first: sys.path of the script form, TensorFlow's start-up notices)

import json
import os

from absl import flags

ROOT = os.path.dirname(os.path.dirname(os.path.abspath(__file__)))

FLAGS = flags.FLAGS
flags.DEFINE_enum("model", "tagger", ["tagger"], "Which shipped model to train.")
flags.DEFINE_string("data_dir", os.path.join(os.path.dirname(ROOT), "shared", "data"),
                    "The shared data folder (anime/hololive/ and anime/hololive_more/ with "
                    "labels.csv).")
flags.DEFINE_string("work_dir", os.path.join(ROOT, "runs", "pretrained"),
                    "Dataset, checkpoints and logs (git-ignored); resumes from here.")
flags.DEFINE_string("output_dir", None, "Where the shipped model goes (default: the package's "
                    "pretrained/ folder, e.g. tagnet/pretrained/hololive).")
flags.DEFINE_integer("max_number_of_steps", None, "Training steps (default: the recipe's).")


def main(argv):
    from tools.recipes import tagger
    from tagnet import pretrained
    recipe = tagger.TaggerRecipe(data_dir=os.path.abspath(FLAGS.data_dir),
                                 work_dir=os.path.abspath(os.path.join(FLAGS.work_dir, FLAGS.model)),
                                 output_dir=os.path.abspath(FLAGS.output_dir or pretrained.path()))
    if FLAGS.max_number_of_steps:
        recipe.max_number_of_steps = FLAGS.max_number_of_steps
    figures = tagger.run(recipe)
    print(f"held-back top-1 {figures['top1']:.3f} (colour-histogram kNN {figures['baseline_top1']:.3f}, "
          f"margin {figures['margin_top1']:+.3f}), mAP {figures['mAP']:.3f}; training "
          f"{figures['seconds'].get('train', 0) / 60:.1f} min; -> {recipe.output_dir}")
    print(json.dumps({k: v for k, v in figures.items() if k != "worst_tags"}))


def run():
    from tools.recipes.tagger import RecipeError
    cliboot.run(main, errors=(RecipeError,))


if __name__ == "__main__":
    run()
