"""Tagger throughput on this machine: input pipeline and training images/s for a few backbones,
against a plain `model.fit` on an in-memory dataset measured in the same run.

  python benchmarks/tagnet.py [--backbones=vgg_19,resnet_v1_50,mobilenet_v2] [--image_size=224]
      [--batch_size=16] [--steps=10] [--warmup=2]

For each backbone: (1) the tf.data pipeline alone over Tag records (decode, resize, augment,
batch), (2) tagnet's trainer (training.train) fed by that pipeline, (3) keras `model.fit` on the
same model from in-memory tensors. Ratios are tagnet / model.fit. The tagnet figure skips one
(tracing) step; model.fit gets --warmup untimed steps first. The last line is one JSON object
with every figure. Generated images, weights=none: no downloads.
"""

import cliboot  # noqa: F401  (first: sys.path of the script form, TensorFlow's start-up notices)

import argparse
import json
import os
import tempfile
import time

def main():
    ap = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    ap.add_argument("--backbones", default="vgg_19,resnet_v1_50,mobilenet_v2")
    ap.add_argument("--image_size", type=int, default=224)
    ap.add_argument("--batch_size", type=int, default=16)
    ap.add_argument("--steps", type=int, default=10, help="timed steps per measurement")
    ap.add_argument("--warmup", type=int, default=2, help="untimed steps first (tracing)")
    ap.add_argument("--images", type=int, default=64, help="generated images in the dataset")
    args = ap.parse_args()

    import keras
    import numpy as np
    import tensorflow as tf
    from tagnet import backbones, build, data, records, synthetic, training

    size, bs = args.image_size, args.batch_size
    tmp = tempfile.mkdtemp(prefix="tagnet_bench_")
    csv_path = synthetic.write_csv_set(os.path.join(tmp, "img"), args.images, size, seed=0)
    items, _ = build.items_from_csv(csv_path)
    build.write_dataset(items, os.path.join(tmp, "ds"), image_size=size, validation_fraction=0.0,
                        progress=False)
    info = records.load_dataset_info(os.path.join(tmp, "ds"))
    print(f"tf {tf.__version__}, keras {keras.__version__}, {os.cpu_count()} CPUs, "
          f"{size}px, batch {bs}, {args.steps} timed steps")

    def timed(fn, steps, warmup):
        for _ in range(warmup):
            fn()
        t = time.perf_counter()
        for _ in range(steps):
            fn()
        return steps * bs / (time.perf_counter() - t)

    results = {"image_size": size, "batch_size": bs, "steps": args.steps, "backbones": {}}
    ds = data.make_dataset(info, "train", bs, size, training=True)
    it = iter(ds)
    pipe = timed(lambda: next(it)[0].numpy(), args.steps * 3, args.warmup)
    print(f"input pipeline: {pipe:8.1f} images/s")
    results["input_pipeline_images_per_s"] = pipe
    x_mem, y_mem = next(iter(data.make_dataset(info, "train", bs, size, training=False, repeat=True)))
    for name in args.backbones.split(","):
        keras.backend.clear_session()

        # The real trainer (tf.data over records, tf.function step, checkpoint at the end); its
        # images/s leave out the first (tracing) step.
        res = training.train(training.TrainConfig(
            dataset_dir=os.path.join(tmp, "ds"), train_dir=os.path.join(tmp, f"run_{name}"),
            backbone=name, weights="none", image_size=size, batch_size=bs,
            max_number_of_steps=args.steps + 1, save_interval_secs=1e9, progress=False,
            log_every_n_steps=10**9, handle_signals=False), log=lambda *_: None)
        ours = res["train_images_per_s"]
        # Plain model.fit on in-memory tensors (fresh model and optimizer, same architecture).
        keras.backend.clear_session()
        ref = backbones.build_model(name, info.num_tags, size, weights="none")
        ref.compile(keras.optimizers.Adam(1e-4), keras.losses.BinaryCrossentropy(from_logits=True))
        mem = tf.data.Dataset.from_tensors((x_mem, y_mem)).repeat()
        ref.fit(mem, steps_per_epoch=args.warmup, epochs=1, verbose=0)
        t = time.perf_counter()
        ref.fit(mem, steps_per_epoch=args.steps, epochs=1, verbose=0)
        fit = args.steps * bs / (time.perf_counter() - t)
        print(f"{name:14s} train: tagnet {ours:7.2f} images/s | model.fit in-memory {fit:7.2f} "
              f"images/s | ratio {ours / fit:5.2f}")
        results["backbones"][name] = {"tagnet_train_images_per_s": ours,
                                      "model_fit_in_memory_images_per_s": fit,
                                      "ratio_tagnet_over_fit": ours / fit}
    print(json.dumps(results))


if __name__ == "__main__":
    main()
