"""Evaluates a trained tagger on a dataset split.

  python tagnet/evaluate.py --model_dir=RUN --dataset_dir=DATA [--split=validation]
      [--report_csv=per_tag.csv] [--save_thresholds] [--baseline]

Prints mAP, micro / macro F1 at the threshold that maximises micro F1, F1 with per-tag thresholds,
precision@1/5 and, for single-label data, top-1 / top-5 accuracy. Then the operating points WD
taggers publish: the threshold where precision equals recall and F1 there, micro and macro, over
all tags and for each tag category (with, for rating, the accuracy of its one choice; conventions
in tagnet/operating_points.py). --save_thresholds writes the tuned global, per-category (P = R)
and per-tag thresholds next to the model (thresholds.json; predict.py and export.py use them).
--baseline also scores a colour-histogram nearest-neighbour classifier fitted on the train split.
The last line is one JSON object with every figure.
"""
import cliboot  # noqa: F401  (first: sys.path of the script form, TensorFlow's start-up notices)

import json
import os

from absl import flags

from tagnet import cli

FLAGS = flags.FLAGS
flags.DEFINE_string("model_dir", None, "A trained model folder, or a training folder (uses best/).")
flags.DEFINE_string("dataset_dir", None, "Dataset folder (default: the one the model was trained on).")
flags.DEFINE_string("split", "validation", "Split to evaluate.")
flags.DEFINE_integer("batch_size", 64, "Batch size.")
flags.DEFINE_integer("max_examples", 0, "Evaluate at most this many examples (0: all).")
flags.DEFINE_string("report_csv", None, "Write a per-tag CSV report (AP, threshold, P/R/F1, support).")
flags.DEFINE_boolean("save_thresholds", False, "Save tuned thresholds next to the model.")
flags.DEFINE_integer("min_positives_for_threshold", 2, "Tags with fewer positives use the global "
                     "threshold.")
flags.DEFINE_boolean("baseline", False, "Also report the colour-histogram nearest-neighbour baseline.")
flags.DEFINE_boolean("baseline_only", False, "Only the baseline (no --model_dir needed).")
flags.DEFINE_integer("baseline_k", 10, "Neighbours of the baseline.")
flags.DEFINE_boolean("progress", True, "Progress bar.")

_SHOW = ("mAP", "threshold", "micro_f1", "macro_f1", "per_tag_threshold_micro_f1",
         "per_tag_threshold_macro_f1", "precision@1", "precision@5", "top1_accuracy", "top5_accuracy")


def _print(title, res):
    print(f"{title}: " + ", ".join(f"{k} {res[k]:.4f}" for k in _SHOW if k in res))


def main(argv):
    from tagnet import evaluation, metrics, model_dir, operating_points, records, thresholds
    out = {}
    cfg = None
    if not FLAGS.baseline_only:
        if not FLAGS.model_dir:
            raise cli.TagnetError("--model_dir is required (or --baseline_only)")
        try:
            model, cfg = model_dir.load(FLAGS.model_dir)
        except model_dir.ModelDirError as e:
            raise cli.TagnetError(str(e)) from None
    dataset_dir = FLAGS.dataset_dir or (cfg or {}).get("dataset_dir")
    if not dataset_dir:
        raise cli.TagnetError("--dataset_dir is required")
    info = records.load_dataset_info(dataset_dir)
    info.require_split(FLAGS.split)
    if cfg is not None:
        try:
            y, s, _ = evaluation.predict_split(model, cfg, info, FLAGS.split, FLAGS.batch_size,
                                               FLAGS.max_examples, FLAGS.progress)
        except ValueError as e:
            raise cli.TagnetError(str(e)) from None
        res = metrics.evaluate(y, s, multi_label=info.multi_label)
        _print(f"{cfg['backbone']} on {FLAGS.split} ({len(y)} images)", res)
        points = operating_points.report(y, s, info.tag_categories)
        for name, r in points.items():
            print(f"  {operating_points.describe(name, r)}")
        res["precision_equals_recall"] = points
        out["model"] = res
        tuned = thresholds.tune(y, s, info.tags, info.tag_categories,
                                FLAGS.min_positives_for_threshold,
                                f"{os.path.abspath(dataset_dir)} split {FLAGS.split}")
        per_tag = [tuned.per_tag[t] for t in info.tags]
        if FLAGS.report_csv:
            train_counts = info.info["splits"].get("train", {}).get("tag_counts")
            metrics.write_report_csv(FLAGS.report_csv, metrics.per_tag_report(
                y, s, info.tags, per_tag, train_counts, info.tag_categories))
            print(f"per-tag report: {FLAGS.report_csv}")
        if FLAGS.save_thresholds:
            path = thresholds.save(cfg["model_dir"], tuned)
            print(f"thresholds: {path}")
    if FLAGS.baseline or FLAGS.baseline_only:
        base = evaluation.color_histogram_baseline(info, FLAGS.split, k=FLAGS.baseline_k)
        base = {k: v for k, v in base.items() if not k.startswith("_")}
        _print("colour-histogram kNN baseline", base)
        out["color_histogram_knn"] = base
        if "model" in out:
            key = "top1_accuracy" if not info.multi_label else "mAP"
            out["margin_over_baseline"] = {key: out["model"][key] - base[key],
                                           "mAP": out["model"]["mAP"] - base["mAP"]}
            print(f"model - baseline: " + ", ".join(f"{k} {v:+.4f}" for k, v in
                                                    out["margin_over_baseline"].items()))
    print(json.dumps(out))


def run():
    cli.run(main)


if __name__ == "__main__":
    run()
