"""The tag trainer (library). tagnet/train.py maps absl flags onto TrainConfig and calls train().

A custom tf.function step under a tf.distribute strategy, tf.train.CheckpointManager in
``train_dir/ckpt`` (resume is automatic), SIGINT/SIGTERM save before exiting, TensorBoard logs in
``train_dir/train`` and ``train_dir/validation``, the best model by validation mAP in
``train_dir/best`` and the last one in ``train_dir/model`` (see tagnet/model_dir.py).
"""
from __future__ import annotations

import contextlib
import dataclasses
import io
import json
import math
import os
import signal
import sys
import time
from typing import Dict, List, Optional

import numpy as np

from tagnet import backbones, batch_norm, data, losses, metrics, model_dir, records, thresholds
from tagnet.cli import TagnetError
from tagnet.contract import RUN_JSON

OPTIMIZERS = ("adam", "adamw", "sgd", "momentum", "rmsprop", "adagrad", "adadelta", "ftrl", "nadam")
DECAY_TYPES = ("fixed", "exponential", "polynomial", "cosine")
STRATEGIES = ("default", "mirrored", "multi_worker", "tpu")
RUN_CONFIG = RUN_JSON


@dataclasses.dataclass
class TrainConfig:
    dataset_dir: str
    train_dir: str
    backbone: str = "mobilenet_v2"
    weights: Optional[str] = "imagenet"        # imagenet | none | PATH
    image_size: int = 0                        # 0: the backbone's default
    batch_size: int = 32                       # per replica (TF-Slim: per clone)
    max_number_of_steps: int = 10000
    loss: str = "auto"                         # auto | bce | focal | asl | softmax
    label_smoothing: float = 0.0
    optimizer: str = "adam"
    learning_rate: float = 1e-3
    learning_rate_decay_type: str = "cosine"
    learning_rate_decay_factor: float = 0.94
    num_epochs_per_decay: float = 2.0
    end_learning_rate: float = 1e-5
    warmup_steps: int = 0
    momentum: float = 0.9
    moving_average_decay: Optional[float] = None
    weight_decay: float = 0.0
    dropout: float = 0.0
    batch_norm_decay: Optional[float] = None   # None: the backbone's own (0.99 / 0.999)
    batch_norm_recalibration_steps: int = 32   # batches; 0: save the moving averages as they are
    freeze_backbone: bool = False
    trainable_from: Optional[str] = None
    checkpoint_path: Optional[str] = None
    checkpoint_exclude_head: bool = False
    save_interval_secs: float = 600.0
    save_interval_steps: int = 0
    eval_interval_steps: int = 0               # 0: validate whenever a checkpoint is saved
    max_eval_examples: int = 0                 # 0: the whole validation split
    log_every_n_steps: int = 10
    num_summary_images: int = 4
    mixed_precision: bool = False
    strategy: str = "default"
    shuffle_buffer: int = 2048
    seed: Optional[int] = None
    augment: bool = True
    progress: bool = True
    run_eagerly: bool = False                  # tests: skip tf.function tracing
    handle_signals: bool = True


# --- pieces -------------------------------------------------------------------------------------
def remove_stale_temp_checkpoints(ckpt_dir: str, checkpoint_name: str = "ckpt") -> List[str]:
    """Removes the `NAME-N_temp*` folders a killed checkpoint save leaves in `ckpt_dir` (TensorFlow
    writes NAME-N_temp/part-* and merges them into NAME-N at the end), except any of the live
    (latest) checkpoint; -> the removed paths. Call at the start of a run, before any save."""
    import re
    import shutil

    import tensorflow as tf

    if not os.path.isdir(ckpt_dir):
        return []
    latest = tf.train.latest_checkpoint(ckpt_dir)
    live = os.path.basename(latest) if latest else None
    pattern = re.compile(rf"^({re.escape(checkpoint_name)}-\d+)_temp")
    removed = []
    for name in sorted(os.listdir(ckpt_dir)):
        m = pattern.match(name)
        path = os.path.join(ckpt_dir, name)
        if m and m.group(1) != live and os.path.isdir(path) and not os.path.islink(path):
            shutil.rmtree(path, ignore_errors=True)
            removed.append(path)
    return removed


def make_strategy(name: str):
    import tensorflow as tf
    if name == "default":
        return tf.distribute.get_strategy()
    if name == "mirrored":
        return tf.distribute.MirroredStrategy()
    if name == "multi_worker":
        if not os.environ.get("TF_CONFIG"):
            raise TagnetError("--strategy=multi_worker needs the TF_CONFIG environment variable "
                              "describing the cluster")
        return tf.distribute.MultiWorkerMirroredStrategy()
    if name == "tpu":
        try:
            resolver = tf.distribute.cluster_resolver.TPUClusterResolver()
            tf.config.experimental_connect_to_cluster(resolver)
            tf.tpu.experimental.initialize_tpu_system(resolver)
        except (ValueError, tf.errors.OpError) as e:
            raise TagnetError(f"--strategy=tpu: no TPU found ({e})") from None
        return tf.distribute.TPUStrategy(resolver)
    raise TagnetError(f"unknown strategy {name!r}; choose from {', '.join(STRATEGIES)}")


def make_learning_rate(cfg: TrainConfig, steps_per_epoch: int):
    import keras
    lr, total = cfg.learning_rate, max(1, cfg.max_number_of_steps)
    kind = cfg.learning_rate_decay_type
    if kind == "fixed":
        sched = None
    elif kind == "exponential":
        decay_steps = max(1, int(steps_per_epoch * cfg.num_epochs_per_decay))
        sched = keras.optimizers.schedules.ExponentialDecay(
            lr, decay_steps, cfg.learning_rate_decay_factor, staircase=True)
    elif kind == "polynomial":
        sched = keras.optimizers.schedules.PolynomialDecay(lr, total, cfg.end_learning_rate, power=1.0)
    elif kind == "cosine":
        warm = min(cfg.warmup_steps, total - 1)
        sched = keras.optimizers.schedules.CosineDecay(
            0.0 if warm else lr, max(1, total - warm), alpha=cfg.end_learning_rate / lr if lr else 0.0,
            warmup_target=lr if warm else None, warmup_steps=warm)
        return sched
    else:
        raise TagnetError(f"unknown --learning_rate_decay_type={kind}; choose from {', '.join(DECAY_TYPES)}")
    if cfg.warmup_steps and sched is not None:
        raise TagnetError("--warmup_steps is supported with --learning_rate_decay_type=cosine")
    return sched if sched is not None else lr


def make_optimizer(cfg: TrainConfig, learning_rate):
    import keras
    common = {"learning_rate": learning_rate}
    if cfg.weight_decay:
        common["weight_decay"] = cfg.weight_decay
    if cfg.moving_average_decay:
        common.update(use_ema=True, ema_momentum=cfg.moving_average_decay)
    o = cfg.optimizer
    if o == "adam":
        opt = keras.optimizers.Adam(**common)
    elif o == "adamw":
        common.setdefault("weight_decay", 0.004)
        opt = keras.optimizers.AdamW(**common)
    elif o == "nadam":
        opt = keras.optimizers.Nadam(**common)
    elif o == "sgd":
        opt = keras.optimizers.SGD(**common)
    elif o == "momentum":
        opt = keras.optimizers.SGD(momentum=cfg.momentum, **common)
    elif o == "rmsprop":
        opt = keras.optimizers.RMSprop(rho=0.9, momentum=cfg.momentum, epsilon=1.0, **common)
    elif o == "adagrad":
        opt = keras.optimizers.Adagrad(**common)
    elif o == "adadelta":
        opt = keras.optimizers.Adadelta(**common)
    elif o == "ftrl":
        opt = keras.optimizers.Ftrl(**common)
    else:
        raise TagnetError(f"unknown --optimizer={o}; choose from {', '.join(OPTIMIZERS)}")
    if cfg.mixed_precision:
        opt = keras.optimizers.LossScaleOptimizer(opt)
    return opt


def _inner(optimizer):
    return getattr(optimizer, "inner_optimizer", optimizer)


@contextlib.contextmanager
def ema_weights(optimizer, model):
    """Temporarily swaps the exponential moving averages into the model (TF-Slim's
    --moving_average_decay evaluates and exports the averaged weights)."""
    opt = _inner(optimizer)
    averages = getattr(opt, "_model_variables_moving_average", None) if opt.use_ema else None
    if not averages:
        yield
        return
    variables = opt._trainable_variables
    saved = [v.numpy() for v in variables]
    for v, a in zip(variables, averages):
        v.assign(a)
    try:
        yield
    finally:
        for v, s in zip(variables, saved):
            v.assign(s)


def memory_available_bytes() -> Optional[int]:
    try:
        with open("/proc/meminfo") as f:
            for line in f:
                if line.startswith("MemAvailable:"):
                    return int(line.split()[1]) * 1024
    except OSError:
        pass
    return None


def _gib(n: float) -> str:
    return f"{n / 2**30:.2f} GiB" if n >= 2**28 else f"{n / 2**20:.0f} MiB"


def describe_model(model, backbone: str, image_size: int, batch_size: int, mixed: bool) -> Dict:
    total, trainable = backbones.count_params(model)
    act = backbones.activation_bytes(model, batch_size, 2 if mixed else 4)
    # Weights + gradients + two optimizer slots (Adam) in float32.
    state = total * 4 + trainable * 4 * 3
    return {"params": total, "trainable_params": trainable, "activation_bytes": act,
            "state_bytes": state, "line": (
                f"{backbone} at {image_size}px: {total / 1e6:.2f}M parameters "
                f"({trainable / 1e6:.2f}M trainable); estimated memory at batch size {batch_size}: "
                f"activations ~{_gib(act)} + weights/gradients/optimizer ~{_gib(state)}")}


def draw_tags(images: np.ndarray, scores: np.ndarray, tags: List[str], k: int = 3) -> np.ndarray:
    """Images with their top-k tags written on them (for TensorBoard)."""
    from PIL import Image, ImageDraw
    out = []
    for img, s in zip(images, scores):
        im = Image.fromarray(np.clip(img, 0, 255).astype(np.uint8)).resize((160, 160))
        d = ImageDraw.Draw(im)
        for i, j in enumerate(np.argsort(-s)[:k]):
            text = f"{tags[j][:18]} {s[j]:.2f}"
            d.rectangle([0, 12 * i, 8 + 6 * len(text), 12 * i + 11], fill=(0, 0, 0))
            d.text((2, 12 * i), text, fill=(255, 255, 255))
        out.append(np.asarray(im))
    return np.stack(out)


class _Stop:
    def __init__(self):
        self.signum = None

    def __call__(self, signum, frame):
        if self.signum is not None:  # second signal: give up immediately
            raise KeyboardInterrupt
        self.signum = signum
        print(f"\nreceived {signal.Signals(signum).name}: saving a checkpoint, then stopping "
              f"(send again to abort without saving)", file=sys.stderr)


# --- warm start ---------------------------------------------------------------------------------
def warm_start(model, checkpoint_path: str, backbone: str, tags: List[str], exclude_head: bool) -> str:
    """Loads one of our checkpoints (a model folder, a training folder, or a ckpt prefix)."""
    import tensorflow as tf
    path = checkpoint_path
    src_cfg = None
    weights_file = None
    prefix = None
    if os.path.isdir(path):
        try:
            md = model_dir.resolve(path)
            src_cfg = model_dir.read_config(md)
            weights_file = os.path.join(md, model_dir.WEIGHTS)
        except model_dir.ModelDirError:
            prefix = tf.train.latest_checkpoint(os.path.join(path, "ckpt")) or tf.train.latest_checkpoint(path)
            for run in (os.path.join(path, RUN_CONFIG), os.path.join(os.path.dirname(os.path.abspath(path)), RUN_CONFIG)):
                if os.path.isfile(run):
                    with open(run) as f:
                        src_cfg = json.load(f)
                    break
    elif tf.io.gfile.exists(path + ".index"):
        prefix = path
        run = os.path.join(os.path.dirname(os.path.dirname(path)), RUN_CONFIG)
        if os.path.isfile(run):
            with open(run) as f:
                src_cfg = json.load(f)
    if weights_file is None and prefix is None:
        raise TagnetError(f"--checkpoint_path={path}: not a tagnet model folder, training folder or "
                          f"checkpoint prefix (TF-Slim .ckpt files are not supported: use "
                          f"--weights=imagenet or a Keras weights file)")
    if src_cfg is None:
        raise TagnetError(f"--checkpoint_path={path}: cannot tell which backbone and tags it holds "
                          f"(no {model_dir.CONFIG} / {RUN_CONFIG} next to it)")
    if backbones.get(src_cfg["backbone"]).name != backbones.get(backbone).name:
        raise TagnetError(f"--checkpoint_path holds a {src_cfg['backbone']} but --backbone={backbone}")
    same_tags = list(src_cfg.get("tags", [])) == list(tags)
    if not same_tags and not exclude_head:
        raise TagnetError(f"--checkpoint_path was trained on {len(src_cfg.get('tags', []))} other tags "
                          f"than this dataset's {len(tags)}; add --checkpoint_exclude_head to load "
                          f"only the backbone")
    src = backbones.build_model(src_cfg["backbone"], len(src_cfg["tags"]), src_cfg["image_size"],
                                weights=None, dropout=src_cfg.get("dropout", 0.0))
    if weights_file:
        src.load_weights(weights_file)
    else:
        tf.train.Checkpoint(model=src).restore(prefix).expect_partial()
    backbones.backbone_of(model).set_weights(backbones.backbone_of(src).get_weights())
    if not exclude_head:
        model.get_layer("tags").set_weights(src.get_layer("tags").get_weights())
    return f"warm start from {weights_file or prefix} ({'backbone only' if exclude_head else 'backbone + head'})"


# --- the trainer --------------------------------------------------------------------------------
def train(cfg: TrainConfig, log=print) -> Dict:
    """Trains as configured; returns step, best mAP, validation metrics, paths, images/s.
    Raises TagnetError / DatasetError / BackboneError with a user-facing message on bad input."""
    import keras
    previous_policy = keras.mixed_precision.global_policy()
    try:
        return _train(cfg, log)
    finally:
        keras.mixed_precision.set_global_policy(previous_policy)


def _train(cfg: TrainConfig, log) -> Dict:
    import keras
    import tensorflow as tf
    from tqdm import tqdm

    info = records.load_dataset_info(cfg.dataset_dir)
    info.require_split("train")
    spec = backbones.get(cfg.backbone)
    image_size = int(cfg.image_size or spec.default_size)
    if image_size < spec.min_size:
        raise TagnetError(f"--image_size={image_size} is below {spec.name}'s minimum {spec.min_size}")
    if cfg.batch_size < 1 or cfg.max_number_of_steps < 1:
        raise TagnetError("--batch_size and --max_number_of_steps must be positive")
    loss_name = cfg.loss
    if loss_name == "auto":
        loss_name = "bce" if info.multi_label else "softmax"
    if loss_name == "softmax" and info.multi_label:
        raise TagnetError("--loss=softmax needs a single-label dataset; this one is multi-label "
                          "(use bce, focal or asl)")
    loss_fn = losses.get(loss_name)
    sigmoid = loss_name != "softmax"
    activation = "sigmoid" if sigmoid else "softmax"
    tags = info.tags
    has_val = info.count("validation") > 0

    os.makedirs(cfg.train_dir, exist_ok=True)
    run_path = os.path.join(cfg.train_dir, RUN_CONFIG)
    run_cfg = {"backbone": spec.name, "image_size": image_size, "tags": tags, "task": info.task,
               "activation": activation, "dataset_dir": os.path.abspath(cfg.dataset_dir),
               "dropout": cfg.dropout, "loss": loss_name}
    ckpt_dir = os.path.join(cfg.train_dir, "ckpt")
    for path in remove_stale_temp_checkpoints(ckpt_dir):
        log(f"removed {path}: left by an interrupted checkpoint save")
    resuming = tf.train.latest_checkpoint(ckpt_dir) is not None
    if resuming and os.path.isfile(run_path):
        with open(run_path) as f:
            old = json.load(f)
        for key in ("backbone", "image_size", "tags", "activation", "dropout"):
            if old.get(key) != run_cfg[key]:
                what = (f"{len(old.get('tags', []))} tags vs {len(tags)}" if key == "tags"
                        else f"{old.get(key)!r} vs {run_cfg[key]!r}")
                raise TagnetError(f"{cfg.train_dir} holds a run with a different {key} ({what}); "
                                  f"use a new --train_dir, or warm-start from it with "
                                  f"--checkpoint_path={cfg.train_dir}")

    if cfg.mixed_precision:
        keras.mixed_precision.set_global_policy("mixed_float16")
    else:
        keras.mixed_precision.set_global_policy("float32")
    strategy = make_strategy(cfg.strategy)
    replicas = strategy.num_replicas_in_sync
    global_batch = cfg.batch_size * replicas
    steps_per_epoch = max(1, math.ceil(info.count("train") / global_batch))

    with strategy.scope():
        # A resumed run gets its weights from the checkpoint: no need to fetch ImageNet weights.
        weights = None if resuming else cfg.weights
        model = backbones.build_model(spec.name, info.num_tags, image_size, weights, cfg.dropout)
        backbones.set_trainable(model, spec.name, cfg.freeze_backbone, cfg.trainable_from)
        backbones.set_batch_norm_decay(model, cfg.batch_norm_decay)
        optimizer = make_optimizer(cfg, make_learning_rate(cfg, steps_per_epoch))
        optimizer.build(model.trainable_variables)
        step = tf.Variable(0, dtype=tf.int64, trainable=False, name="global_step")
        best_map = tf.Variable(-1.0, dtype=tf.float64, trainable=False, name="best_map")
    ckpt = tf.train.Checkpoint(model=model, optimizer=optimizer, step=step, best_map=best_map)
    manager = tf.train.CheckpointManager(ckpt, ckpt_dir, max_to_keep=3)
    if resuming:
        ckpt.restore(manager.latest_checkpoint).expect_partial()
        log(f"resumed from {manager.latest_checkpoint} at step {int(step.numpy())}")
    elif cfg.checkpoint_path:
        log(warm_start(model, cfg.checkpoint_path, spec.name, tags, cfg.checkpoint_exclude_head))
    with open(run_path, "w") as f:
        json.dump(run_cfg, f, indent=1)

    desc = describe_model(model, spec.name, image_size, global_batch, cfg.mixed_precision)
    log(f"dataset: {info.count('train')} train / {info.count('validation')} validation examples, "
        f"{info.num_tags} tags ({info.task}), records at {info.image_size}px"
        + (f", resized to {image_size}px on the fly" if info.image_size != image_size else ""))
    log(desc["line"])
    avail = memory_available_bytes()
    need = desc["activation_bytes"] + desc["state_bytes"]
    if avail and need > 0.8 * avail:
        fit = max(1, int(cfg.batch_size * (0.8 * avail - desc["state_bytes"]) / max(desc["activation_bytes"], 1)))
        log(f"WARNING: that is more than the {_gib(avail)} available; expect an out-of-memory crash. "
            f"Try --batch_size={max(1, min(fit, cfg.batch_size // 2))} or --mixed_precision or a smaller "
            f"--image_size")

    train_ds = data.make_dataset(info, "train", global_batch, image_size, training=True,
                                 shuffle_buffer=cfg.shuffle_buffer, seed=cfg.seed,
                                 augment_images=cfg.augment)
    dist_ds = strategy.experimental_distribute_dataset(train_ds)
    num_tags = info.num_tags

    def step_fn(images, labels):
        with tf.GradientTape() as tape:
            logits = tf.cast(model(images, training=True), tf.float32)
            y = tf.one_hot(labels, num_tags) if (sigmoid and not info.multi_label) else labels
            per_example = loss_fn(y, logits, label_smoothing=cfg.label_smoothing)
            loss = tf.nn.compute_average_loss(per_example, global_batch_size=global_batch)
            if model.losses:
                loss += tf.nn.scale_regularization_loss(tf.add_n(model.losses))
            scaled = optimizer.scale_loss(loss) if hasattr(optimizer, "scale_loss") else loss
        grads = tape.gradient(scaled, model.trainable_variables)
        optimizer.apply(grads, model.trainable_variables)
        return loss

    def train_step(batch):
        per_replica = strategy.run(step_fn, args=batch)
        step.assign_add(1)
        return strategy.reduce(tf.distribute.ReduceOp.SUM, per_replica, axis=None)

    def predict_step(images):
        logits = tf.cast(model(images, training=False), tf.float32)
        return tf.sigmoid(logits) if sigmoid else tf.nn.softmax(logits)

    if not cfg.run_eagerly:
        train_step = tf.function(train_step)
        predict_step = tf.function(predict_step, reduce_retracing=True)

    train_writer = tf.summary.create_file_writer(os.path.join(cfg.train_dir, "train"))
    val_writer = tf.summary.create_file_writer(os.path.join(cfg.train_dir, "validation"))
    val_ds = (data.make_dataset(info, "validation", max(global_batch, 32), image_size, training=False)
              if has_val else None)

    # Un-augmented, shuffled training batches: the images batch-norm statistics are re-estimated
    # on and the inference-mode check runs on.
    calib_it = iter(data.make_dataset(info, "train", global_batch, image_size, training=True,
                                      shuffle_buffer=cfg.shuffle_buffer, seed=cfg.seed,
                                      augment_images=False))
    calibration: Dict = {}

    def calibrate():
        """Batch-norm statistics for the weights in the model now (once per step), then the
        inference-mode check; call with the weights that will be used (EMA swapped in)."""
        s = int(step.numpy())
        if calibration.get("step") == s:
            return
        t0 = time.time()
        n = batch_norm.recalibrate(model, (x for x, _ in calib_it),
                                   cfg.batch_norm_recalibration_steps, run_eagerly=cfg.run_eagerly)
        x, y = next(calib_it)
        multi_hot = data.labels_to_multi_hot(y.numpy(), num_tags, info.multi_label)
        train_top1, infer_top1 = batch_norm.top1_by_mode(model, x, multi_hot)
        calibration.update(step=s, images=n, seconds=round(time.time() - t0, 3),
                           train_mode_top1=train_top1, inference_mode_top1=infer_top1)
        if n and "logged" not in calibration:
            calibration["logged"] = True
            pbar_write(f"batch-norm statistics re-estimated with the current weights over {n} "
                       f"training images ({calibration['seconds']:.1f} s)")
        warning = batch_norm.disagreement_warning(train_top1, infer_top1)
        if warning:
            pbar_write(f"step {s}: {warning}")

    def validate() -> Dict:
        ys, ss, first = [], [], None
        n = 0
        with ema_weights(optimizer, model):
            calibrate()
            for x, y in val_ds:
                s = predict_step(x).numpy()
                if first is None:
                    first = (x.numpy()[:cfg.num_summary_images], s[:cfg.num_summary_images])
                ys.append(data.labels_to_multi_hot(y.numpy(), num_tags, info.multi_label))
                ss.append(s)
                n += len(s)
                if cfg.max_eval_examples and n >= cfg.max_eval_examples:
                    break
        y, s = np.concatenate(ys), np.concatenate(ss)
        res = metrics.evaluate(y, s, multi_label=info.multi_label)
        res["_y"], res["_s"], res["_first"] = y, s, first
        return res

    def export(sub: str, res: Optional[Dict]):
        clean = {k: v for k, v in (res or {}).items() if not k.startswith("_")}
        out = os.path.join(cfg.train_dir, sub)
        with ema_weights(optimizer, model):
            calibrate()
            model_dir.save(model, out, backbone=spec.name, image_size=image_size, tags=tags,
                           activation=activation, task=info.task, step=int(step.numpy()),
                           metrics=clean, dataset_dir=os.path.abspath(cfg.dataset_dir),
                           tag_counts=info.tag_counts, tag_categories=info.tag_categories,
                           extra={"dropout": cfg.dropout, "loss": loss_name})
        if res is not None and "_y" in res and np.isfinite(res["threshold"]):
            thresholds.save(out, thresholds.tune(res["_y"], res["_s"], tags, info.tag_categories,
                                                 source="validation split, during training"))
        return out

    last_val: Dict = {}

    def save_and_validate(final: bool = False):
        nonlocal last_val
        path = manager.save(checkpoint_number=int(step.numpy()))
        if not has_val:
            return path
        res = validate()
        last_val = res
        s = int(step.numpy())
        with val_writer.as_default(step=s):
            tf.summary.scalar("mAP", res["mAP"])
            tf.summary.scalar("micro_f1", res["micro_f1"])
            tf.summary.scalar("macro_f1", res["macro_f1"])
            tf.summary.scalar("threshold", res["threshold"])
            if not info.multi_label:
                tf.summary.scalar("top1_accuracy", res["top1_accuracy"])
            if res["_first"] is not None and cfg.num_summary_images:
                imgs = draw_tags(res["_first"][0], res["_first"][1], tags)
                tf.summary.image("top_tags", imgs, max_outputs=cfg.num_summary_images)
        val_writer.flush()
        msg = (f"step {s}: validation mAP {res['mAP']:.4f}, micro F1 {res['micro_f1']:.4f} "
               f"@ {res['threshold']:.3f}, macro F1 {res['macro_f1']:.4f}")
        if not info.multi_label:
            msg += f", top-1 {res['top1_accuracy']:.4f}"
        if np.isfinite(res["mAP"]) and res["mAP"] > float(best_map.numpy()):
            best_map.assign(res["mAP"])
            export("best", res)
            manager.save(checkpoint_number=s)  # record the new best_map
            msg += "  (new best)"
        pbar_write(msg)
        return path

    stop = _Stop()
    old_handlers = {}
    if cfg.handle_signals:
        try:
            for sig in (signal.SIGINT, signal.SIGTERM):
                old_handlers[sig] = signal.signal(sig, stop)
        except ValueError:  # not in the main thread
            old_handlers = {}

    start_step = int(step.numpy())
    bar = tqdm(total=cfg.max_number_of_steps, initial=start_step, desc="train", unit="step",
               disable=not cfg.progress, dynamic_ncols=True, file=sys.stdout)

    def pbar_write(msg):
        if cfg.progress:
            bar.write(msg)
        else:
            log(msg)

    it = iter(dist_ds)
    last_save_time = time.time()
    t_log, n_log, loss_sum = time.time(), 0, 0.0
    first_step_done = False
    t_run, n_run = time.time(), 0
    interrupted = None
    try:
        while int(step.numpy()) < cfg.max_number_of_steps:
            if stop.signum is not None:
                interrupted = stop.signum
                break
            batch = next(it)
            loss = float(train_step(batch))
            if not math.isfinite(loss):
                raise TagnetError(f"loss became {loss} at step {int(step.numpy())}; lower "
                                  f"--learning_rate (the last checkpoint is intact)")
            if not first_step_done:
                first_step_done = True
                t_log = t_run = time.time()  # do not count tracing in images/s
                n_log, loss_sum, n_run = -1, 0.0, -1
            n_run += 1
            s = int(step.numpy())
            n_log += 1
            loss_sum += loss
            bar.update(1)
            if s % max(1, cfg.log_every_n_steps) == 0 or s == cfg.max_number_of_steps:
                dt = max(time.time() - t_log, 1e-9)
                lr = float(keras.ops.convert_to_numpy(_inner(optimizer).learning_rate))
                ips = max(n_log, 0) * global_batch / dt
                with train_writer.as_default(step=s):
                    tf.summary.scalar("loss", loss_sum / max(n_log, 1))
                    tf.summary.scalar("learning_rate", lr)
                    tf.summary.scalar("images_per_second", ips)
                bar.set_postfix(loss=f"{loss_sum / max(n_log, 1):.4f}", lr=f"{lr:.2e}", img_s=f"{ips:.1f}")
                if not cfg.progress:
                    log(f"step {s}: loss {loss_sum / max(n_log, 1):.4f} lr {lr:.3g} {ips:.1f} img/s")
                t_log, n_log, loss_sum = time.time(), 0, 0.0
            due = (time.time() - last_save_time >= cfg.save_interval_secs
                   or (cfg.save_interval_steps and s % cfg.save_interval_steps == 0)
                   or (cfg.eval_interval_steps and s % cfg.eval_interval_steps == 0))
            if due and s < cfg.max_number_of_steps:
                save_and_validate()
                last_save_time = time.time()
        t_loop = max(time.time() - t_run, 1e-9)
    except tf.errors.ResourceExhaustedError:
        bar.close()
        raise TagnetError(
            f"out of memory at batch size {global_batch} and {image_size}px ({desc['line']}). "
            f"Try --batch_size={max(1, cfg.batch_size // 2)}, --mixed_precision or a smaller "
            f"--image_size; the last checkpoint is intact") from None
    finally:
        for sig, h in old_handlers.items():
            signal.signal(sig, h)
    if interrupted is None and stop.signum is not None:
        interrupted = stop.signum
    if interrupted:
        manager.save(checkpoint_number=int(step.numpy()))  # quickly: no validation pass
    else:
        save_and_validate(final=True)
    bar.close()
    train_writer.flush()
    final_res = last_val if has_val and not interrupted else None
    out_model = export("model", final_res)
    if not os.path.isdir(os.path.join(cfg.train_dir, "best")):
        export("best", final_res)
    result = {"step": int(step.numpy()), "start_step": start_step, "interrupted": interrupted,
              "best_mAP": float(best_map.numpy()), "model_dir": out_model,
              "checkpoint": manager.latest_checkpoint, "params": desc["params"],
              "train_images_per_s": (n_run * global_batch / t_loop if n_run else None),
              "batch_norm": {k: v for k, v in calibration.items() if k not in ("step", "logged")},
              "validation": {k: v for k, v in (final_res or {}).items() if not k.startswith("_")}}
    if interrupted:
        log(f"stopped by {signal.Signals(interrupted).name} at step {result['step']}; checkpoint "
            f"{manager.latest_checkpoint}; run the same command to resume")
    return result
