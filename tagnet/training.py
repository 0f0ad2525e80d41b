"""The tag trainer (library). tagnet/train.py maps absl flags onto TrainConfig and calls train().

A custom tf.function step under a tf.distribute strategy, tf.train.CheckpointManager in
``train_dir/ckpt`` (resume is automatic), SIGINT/SIGTERM save before exiting, TensorBoard logs in
``train_dir/train`` and ``train_dir/validation``, the best model by validation mAP in
``train_dir/best`` and the last one in ``train_dir/model`` (see tagnet/model_dir.py).
"""
from __future__ import annotations

import contextlib
import dataclasses
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
from tagnet.contract import BEST, LAST, RUN_JSON

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
        trainer = Trainer(cfg, log)
        trainer.build()
        trainer.describe()
        trainer.make_steps()
        return trainer.finish(trainer.fit())
    finally:
        keras.mixed_precision.set_global_policy(previous_policy)


class Trainer:
    """One training run, in the order train() calls its steps: __init__ (check the dataset and
    the configuration, and the run folder on resume), build (strategy, model, optimizer,
    checkpoint: restored or warm-started), describe (dataset, model size, memory), make_steps
    (tf.function train / predict steps, TensorBoard writers, pipelines), fit (the loop, with
    periodic save_and_validate), finish (the last checkpoint and the exported model folders).
    validate and export first calibrate: batch-norm statistics for the weights being used."""

    def __init__(self, cfg: TrainConfig, log):
        import tensorflow as tf
        self.cfg, self.log = cfg, log
        info = self.info = records.load_dataset_info(cfg.dataset_dir)
        info.require_split("train")
        spec = self.spec = backbones.get(cfg.backbone)
        self.image_size = int(cfg.image_size or spec.default_size)
        if self.image_size < spec.min_size:
            raise TagnetError(f"--image_size={self.image_size} is below {spec.name}'s minimum "
                              f"{spec.min_size}")
        if cfg.batch_size < 1 or cfg.max_number_of_steps < 1:
            raise TagnetError("--batch_size and --max_number_of_steps must be positive")
        loss_name = cfg.loss
        if loss_name == "auto":
            loss_name = "bce" if info.multi_label else "softmax"
        if loss_name == "softmax" and info.multi_label:
            raise TagnetError("--loss=softmax needs a single-label dataset; this one is multi-label "
                              "(use bce, focal or asl)")
        self.loss_name, self.loss_fn = loss_name, losses.get(loss_name)
        self.sigmoid = loss_name != "softmax"
        self.activation = "sigmoid" if self.sigmoid else "softmax"
        self.has_val = info.count("validation") > 0
        self.run_cfg = {"backbone": spec.name, "image_size": self.image_size, "tags": info.tags,
                        "task": info.task, "activation": self.activation,
                        "dataset_dir": os.path.abspath(cfg.dataset_dir), "dropout": cfg.dropout,
                        "loss": loss_name}
        os.makedirs(cfg.train_dir, exist_ok=True)
        self.ckpt_dir = os.path.join(cfg.train_dir, "ckpt")
        for path in remove_stale_temp_checkpoints(self.ckpt_dir):
            log(f"removed {path}: left by an interrupted checkpoint save")
        self.resuming = tf.train.latest_checkpoint(self.ckpt_dir) is not None
        if self.resuming:
            self._check_same_run()
        self.calibration: Dict = {}
        self.last_val: Dict = {}
        self.bar = None

    def _check_same_run(self) -> None:
        run_path = os.path.join(self.cfg.train_dir, RUN_CONFIG)
        if not os.path.isfile(run_path):
            return
        with open(run_path) as f:
            old = json.load(f)
        for key in ("backbone", "image_size", "tags", "activation", "dropout"):
            if old.get(key) != self.run_cfg[key]:
                what = (f"{len(old.get('tags', []))} tags vs {len(self.info.tags)}" if key == "tags"
                        else f"{old.get(key)!r} vs {self.run_cfg[key]!r}")
                raise TagnetError(f"{self.cfg.train_dir} holds a run with a different {key} ({what}); "
                                  f"use a new --train_dir, or warm-start from it with "
                                  f"--checkpoint_path={self.cfg.train_dir}")

    # --- build ---------------------------------------------------------------------------------
    def build(self) -> None:
        import keras
        import tensorflow as tf
        cfg, info, spec = self.cfg, self.info, self.spec
        keras.mixed_precision.set_global_policy("mixed_float16" if cfg.mixed_precision else "float32")
        self.strategy = make_strategy(cfg.strategy)
        self.global_batch = cfg.batch_size * self.strategy.num_replicas_in_sync
        steps_per_epoch = max(1, math.ceil(info.count("train") / self.global_batch))
        with self.strategy.scope():
            # A resumed run gets its weights from the checkpoint: no need to fetch ImageNet weights.
            weights = None if self.resuming else cfg.weights
            model = self.model = backbones.build_model(spec.name, info.num_tags, self.image_size,
                                                       weights, cfg.dropout)
            backbones.set_trainable(model, spec.name, cfg.freeze_backbone, cfg.trainable_from)
            backbones.set_batch_norm_decay(model, cfg.batch_norm_decay)
            self.optimizer = make_optimizer(cfg, make_learning_rate(cfg, steps_per_epoch))
            self.optimizer.build(model.trainable_variables)
            self.step = tf.Variable(0, dtype=tf.int64, trainable=False, name="global_step")
            self.best_map = tf.Variable(-1.0, dtype=tf.float64, trainable=False, name="best_map")
        ckpt = tf.train.Checkpoint(model=model, optimizer=self.optimizer, step=self.step,
                                   best_map=self.best_map)
        self.manager = tf.train.CheckpointManager(ckpt, self.ckpt_dir, max_to_keep=3)
        if self.resuming:
            ckpt.restore(self.manager.latest_checkpoint).expect_partial()
            self.log(f"resumed from {self.manager.latest_checkpoint} at step {self.current_step}")
        elif cfg.checkpoint_path:
            self.log(warm_start(model, cfg.checkpoint_path, spec.name, info.tags,
                                cfg.checkpoint_exclude_head))
        with open(os.path.join(cfg.train_dir, RUN_CONFIG), "w") as f:
            json.dump(self.run_cfg, f, indent=1)

    @property
    def current_step(self) -> int:
        return int(self.step.numpy())

    def describe(self) -> None:
        """Logs the dataset and the model's size, and warns when memory will not do."""
        cfg, info = self.cfg, self.info
        desc = self.desc = describe_model(self.model, self.spec.name, self.image_size,
                                          self.global_batch, cfg.mixed_precision)
        self.log(f"dataset: {info.count('train')} train / {info.count('validation')} validation "
                 f"examples, {info.num_tags} tags ({info.task}), records at {info.image_size}px"
                 + (f", resized to {self.image_size}px on the fly"
                    if info.image_size != self.image_size else ""))
        self.log(desc["line"])
        avail = memory_available_bytes()
        need = desc["activation_bytes"] + desc["state_bytes"]
        if avail and need > 0.8 * avail:
            fit = max(1, int(cfg.batch_size * (0.8 * avail - desc["state_bytes"])
                             / max(desc["activation_bytes"], 1)))
            self.log(f"WARNING: that is more than the {_gib(avail)} available; expect an "
                     f"out-of-memory crash. Try --batch_size={max(1, min(fit, cfg.batch_size // 2))} "
                     f"or --mixed_precision or a smaller --image_size")

    def make_steps(self) -> None:
        """The tf.function steps, the pipelines and the TensorBoard writers."""
        import tensorflow as tf
        cfg, info = self.cfg, self.info
        model, optimizer, strategy = self.model, self.optimizer, self.strategy
        num_tags, global_batch = info.num_tags, self.global_batch
        one_hot = self.sigmoid and not info.multi_label

        def step_fn(images, labels):
            with tf.GradientTape() as tape:
                logits = tf.cast(model(images, training=True), tf.float32)
                y = tf.one_hot(labels, num_tags) if one_hot else labels
                per_example = self.loss_fn(y, logits, label_smoothing=cfg.label_smoothing)
                loss = tf.nn.compute_average_loss(per_example, global_batch_size=global_batch)
                if model.losses:
                    loss += tf.nn.scale_regularization_loss(tf.add_n(model.losses))
                scaled = optimizer.scale_loss(loss) if hasattr(optimizer, "scale_loss") else loss
            grads = tape.gradient(scaled, model.trainable_variables)
            optimizer.apply(grads, model.trainable_variables)
            return loss

        def train_step(batch):
            per_replica = strategy.run(step_fn, args=batch)
            self.step.assign_add(1)
            return strategy.reduce(tf.distribute.ReduceOp.SUM, per_replica, axis=None)

        def predict_step(images):
            logits = tf.cast(model(images, training=False), tf.float32)
            return tf.sigmoid(logits) if self.sigmoid else tf.nn.softmax(logits)

        if not cfg.run_eagerly:
            train_step = tf.function(train_step)
            predict_step = tf.function(predict_step, reduce_retracing=True)
        self.train_step, self.predict_step = train_step, predict_step
        train_ds = data.make_dataset(info, "train", global_batch, self.image_size, training=True,
                                     shuffle_buffer=cfg.shuffle_buffer, seed=cfg.seed,
                                     augment_images=cfg.augment)
        self.train_batches = iter(strategy.experimental_distribute_dataset(train_ds))
        self.val_ds = (data.make_dataset(info, "validation", max(global_batch, 32), self.image_size,
                                         training=False) if self.has_val else None)
        # Un-augmented, shuffled training batches: the images batch-norm statistics are
        # re-estimated on and the inference-mode check runs on.
        self.calibration_batches = iter(data.make_dataset(
            info, "train", global_batch, self.image_size, training=True,
            shuffle_buffer=cfg.shuffle_buffer, seed=cfg.seed, augment_images=False))
        self.train_writer = tf.summary.create_file_writer(os.path.join(cfg.train_dir, "train"))
        self.val_writer = tf.summary.create_file_writer(os.path.join(cfg.train_dir, "validation"))

    # --- calibrate, validate, export -------------------------------------------------------------
    def write(self, msg: str) -> None:
        """A line that does not break the progress bar."""
        if self.cfg.progress and self.bar is not None:
            self.bar.write(msg)
        else:
            self.log(msg)

    def calibrate(self) -> None:
        """Batch-norm statistics for the weights in the model now (once per step), then the
        inference-mode check; call with the weights that will be used (EMA swapped in)."""
        s = self.current_step
        if self.calibration.get("step") == s:
            return
        t0 = time.time()
        n = batch_norm.recalibrate(self.model, (x for x, _ in self.calibration_batches),
                                   self.cfg.batch_norm_recalibration_steps,
                                   run_eagerly=self.cfg.run_eagerly)
        x, y = next(self.calibration_batches)
        multi_hot = data.labels_to_multi_hot(y.numpy(), self.info.num_tags, self.info.multi_label)
        train_top1, infer_top1 = batch_norm.top1_by_mode(self.model, x, multi_hot)
        first = "step" not in self.calibration
        self.calibration.update(step=s, images=n, seconds=round(time.time() - t0, 3),
                                train_mode_top1=train_top1, inference_mode_top1=infer_top1)
        if n and first:
            self.write(f"batch-norm statistics re-estimated with the current weights over {n} "
                       f"training images ({self.calibration['seconds']:.1f} s)")
        warning = batch_norm.disagreement_warning(train_top1, infer_top1)
        if warning:
            self.write(f"step {s}: {warning}")

    def validate(self) -> Dict:
        cfg, info = self.cfg, self.info
        ys, ss, first = [], [], None
        n = 0
        with ema_weights(self.optimizer, self.model):
            self.calibrate()
            for x, y in self.val_ds:
                s = self.predict_step(x).numpy()
                if first is None:
                    first = (x.numpy()[:cfg.num_summary_images], s[:cfg.num_summary_images])
                ys.append(data.labels_to_multi_hot(y.numpy(), info.num_tags, info.multi_label))
                ss.append(s)
                n += len(s)
                if cfg.max_eval_examples and n >= cfg.max_eval_examples:
                    break
        y, s = np.concatenate(ys), np.concatenate(ss)
        res = metrics.evaluate(y, s, multi_label=info.multi_label)
        res["_y"], res["_s"], res["_first"] = y, s, first
        return res

    def export(self, sub: str, res: Optional[Dict]) -> str:
        """The model (EMA weights, calibrated) as a tagger folder train_dir/sub."""
        cfg, info = self.cfg, self.info
        clean = {k: v for k, v in (res or {}).items() if not k.startswith("_")}
        out = os.path.join(cfg.train_dir, sub)
        with ema_weights(self.optimizer, self.model):
            self.calibrate()
            model_dir.save(self.model, out, backbone=self.spec.name, image_size=self.image_size,
                           tags=info.tags, activation=self.activation, task=info.task,
                           step=self.current_step, metrics=clean,
                           dataset_dir=os.path.abspath(cfg.dataset_dir), tag_counts=info.tag_counts,
                           tag_categories=info.tag_categories,
                           extra={"dropout": cfg.dropout, "loss": self.loss_name})
        if res is not None and "_y" in res and np.isfinite(res["threshold"]):
            thresholds.save(out, thresholds.tune(res["_y"], res["_s"], info.tags, info.tag_categories,
                                                 source="validation split, during training"))
        return out

    def save_and_validate(self) -> None:
        """A checkpoint; with a validation split, its metrics in TensorBoard and the log, and
        train_dir/best when the mAP improved."""
        import tensorflow as tf
        self.manager.save(checkpoint_number=self.current_step)
        if not self.has_val:
            return
        res = self.last_val = self.validate()
        s = self.current_step
        with self.val_writer.as_default(step=s):
            for key in ("mAP", "micro_f1", "macro_f1", "threshold"):
                tf.summary.scalar(key, res[key])
            if not self.info.multi_label:
                tf.summary.scalar("top1_accuracy", res["top1_accuracy"])
            if res["_first"] is not None and self.cfg.num_summary_images:
                imgs = draw_tags(res["_first"][0], res["_first"][1], self.info.tags)
                tf.summary.image("top_tags", imgs, max_outputs=self.cfg.num_summary_images)
        self.val_writer.flush()
        msg = (f"step {s}: validation mAP {res['mAP']:.4f}, micro F1 {res['micro_f1']:.4f} "
               f"@ {res['threshold']:.3f}, macro F1 {res['macro_f1']:.4f}")
        if not self.info.multi_label:
            msg += f", top-1 {res['top1_accuracy']:.4f}"
        if np.isfinite(res["mAP"]) and res["mAP"] > float(self.best_map.numpy()):
            self.best_map.assign(res["mAP"])
            self.export("best", res)
            self.manager.save(checkpoint_number=s)  # record the new best_map
            msg += "  (new best)"
        self.write(msg)

    # --- the loop ------------------------------------------------------------------------------
    def _log_step(self, s: int, loss_mean: float, images_per_s: float) -> None:
        import keras
        import tensorflow as tf
        lr = float(keras.ops.convert_to_numpy(_inner(self.optimizer).learning_rate))
        with self.train_writer.as_default(step=s):
            tf.summary.scalar("loss", loss_mean)
            tf.summary.scalar("learning_rate", lr)
            tf.summary.scalar("images_per_second", images_per_s)
        self.bar.set_postfix(loss=f"{loss_mean:.4f}", lr=f"{lr:.2e}", img_s=f"{images_per_s:.1f}")
        if not self.cfg.progress:
            self.log(f"step {s}: loss {loss_mean:.4f} lr {lr:.3g} {images_per_s:.1f} img/s")

    def fit(self) -> Optional[int]:
        """Trains up to max_number_of_steps; returns the signal that stopped it, if any."""
        import tensorflow as tf
        from tqdm import tqdm
        cfg = self.cfg
        stop = _Stop()
        old_handlers = {}
        if cfg.handle_signals:
            try:
                for sig in (signal.SIGINT, signal.SIGTERM):
                    old_handlers[sig] = signal.signal(sig, stop)
            except ValueError:  # not in the main thread
                old_handlers = {}
        self.start_step = self.current_step
        self.bar = tqdm(total=cfg.max_number_of_steps, initial=self.start_step, desc="train",
                        unit="step", disable=not cfg.progress, dynamic_ncols=True, file=sys.stdout)
        last_save_time = time.time()
        t_log, n_log, loss_sum = time.time(), 0, 0.0
        first_step_done = False
        t_run, self.n_run = time.time(), 0
        try:
            while self.current_step < cfg.max_number_of_steps and stop.signum is None:
                loss = float(self.train_step(next(self.train_batches)))
                if not math.isfinite(loss):
                    raise TagnetError(f"loss became {loss} at step {self.current_step}; lower "
                                      f"--learning_rate (the last checkpoint is intact)")
                if not first_step_done:
                    first_step_done = True
                    t_log = t_run = time.time()  # do not count tracing in images/s
                    n_log, loss_sum, self.n_run = -1, 0.0, -1
                self.n_run += 1
                s = self.current_step
                n_log += 1
                loss_sum += loss
                self.bar.update(1)
                if s % max(1, cfg.log_every_n_steps) == 0 or s == cfg.max_number_of_steps:
                    self._log_step(s, loss_sum / max(n_log, 1),
                                   max(n_log, 0) * self.global_batch / max(time.time() - t_log, 1e-9))
                    t_log, n_log, loss_sum = time.time(), 0, 0.0
                due = (time.time() - last_save_time >= cfg.save_interval_secs
                       or (cfg.save_interval_steps and s % cfg.save_interval_steps == 0)
                       or (cfg.eval_interval_steps and s % cfg.eval_interval_steps == 0))
                if due and s < cfg.max_number_of_steps:
                    self.save_and_validate()
                    last_save_time = time.time()
            self.loop_seconds = max(time.time() - t_run, 1e-9)
        except tf.errors.ResourceExhaustedError:
            self.bar.close()
            raise TagnetError(
                f"out of memory at batch size {self.global_batch} and {self.image_size}px "
                f"({self.desc['line']}). Try --batch_size={max(1, cfg.batch_size // 2)}, "
                f"--mixed_precision or a smaller --image_size; the last checkpoint is intact") from None
        finally:
            for sig, h in old_handlers.items():
                signal.signal(sig, h)
        return stop.signum

    def finish(self, interrupted: Optional[int]) -> Dict:
        """The last checkpoint (validated unless interrupted) and the model folders."""
        if interrupted:
            self.manager.save(checkpoint_number=self.current_step)  # quickly: no validation pass
        else:
            self.save_and_validate()
        self.bar.close()
        self.train_writer.flush()
        final_res = self.last_val if self.has_val and not interrupted else None
        out_model = self.export(LAST, final_res)
        if not os.path.isdir(os.path.join(self.cfg.train_dir, BEST)):
            self.export(BEST, final_res)
        result = {"step": self.current_step, "start_step": self.start_step, "interrupted": interrupted,
                  "best_mAP": float(self.best_map.numpy()), "model_dir": out_model,
                  "checkpoint": self.manager.latest_checkpoint, "params": self.desc["params"],
                  "train_images_per_s": (self.n_run * self.global_batch / self.loop_seconds
                                         if self.n_run else None),
                  "batch_norm": {k: v for k, v in self.calibration.items() if k != "step"},
                  "validation": {k: v for k, v in (final_res or {}).items() if not k.startswith("_")}}
        if interrupted:
            self.log(f"stopped by {signal.Signals(interrupted).name} at step {result['step']}; "
                     f"checkpoint {self.manager.latest_checkpoint}; run the same command to resume")
        return result
