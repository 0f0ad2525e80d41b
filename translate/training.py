"""pix2pix training: a tf.function step under a tf.distribute strategy, checkpoints, summaries.

* Resume: generator, discriminator and both Adam optimizers (slots and `iterations`) are in a
  tf.train.Checkpoint in train_dir; the step *is* the generator optimizer's `iterations`, and the
  learning rate is a schedule of it, so a re-run continues with the same step, state and lr.
  The input stream restarts with a seed derived from (seed, step): a resumed run sees new draws,
  still a function of the flags.
* SIGINT / SIGTERM finish the current step, save a checkpoint and return (a second signal
  interrupts at once).
* The step: one forward pass and one (persistent) tape give both nets' gradients; G and D are
  updated simultaneously as in the TF tutorial. Both Adams are `optimizers.FusedAdam` (TF's
  fused kernel): Keras' Adam spent 0.7-1 s per step on the 54 M generator weights alone.
  Real and fake pairs are scored in two D calls: one call on a batch of 2B is exact with
  instance norm but measured slower (the generator's loss then back-propagates through D for
  the real half too). With `jit_compile` the forward/backward is XLA-compiled; the optimizer
  updates stay outside (they cross replicas under a strategy). XLA did not help on our CPU
  (benchmarks/train_step.py).
"""
from __future__ import annotations

import dataclasses
import math
import os
import shutil
import signal
import threading
import time
from typing import Callable, Dict, Optional

import keras
import tensorflow as tf

from translate import data, optimizers, records, run_config, schedules, summaries
from translate.models import pix2pix

MODEL_KEYS = ("model", "condition", "image_size", "ngf", "ndf", "norm")
STRATEGIES = ("default", "mirrored", "multi_worker")


class ConfigError(ValueError):
    """Flags that cannot make a run (bad size, batch, strategy...)."""


@dataclasses.dataclass
class Pix2PixConfig:
    dataset_dir: str
    train_dir: str
    condition: str = "keypoints"
    image_size: int = 256
    batch_size: int = 1  # global batch, split over the strategy's replicas
    max_steps: int = 200_000
    learning_rate: float = 2e-4
    beta1: float = 0.5
    lambda_l1: float = pix2pix.LAMBDA_L1
    ngf: int = 64
    ndf: int = 64
    norm: str = "instance"
    augment: bool = True
    save_every: int = 1000
    summary_every: int = 100
    log_every: int = 100
    num_examples: int = 3  # fixed test examples in the TensorBoard image grid
    seed: int = 0
    strategy: str = "default"
    jit_compile: bool = False
    max_to_keep: int = 3
    handle_signals: bool = True

    def as_flags(self) -> Dict:
        d = dataclasses.asdict(self)
        d.pop("handle_signals")
        return {"model": "pix2pix", **d}


def make_strategy(name: str) -> tf.distribute.Strategy:
    if name == "default":
        return tf.distribute.get_strategy()
    if name == "mirrored":
        return tf.distribute.MirroredStrategy()
    if name == "multi_worker":  # workers from TF_CONFIG; a single worker without it
        return tf.distribute.MultiWorkerMirroredStrategy()
    raise ConfigError(f"strategy must be one of {STRATEGIES}, not {name!r}")


def is_chief(strategy: tf.distribute.Strategy) -> bool:
    """True unless this is a non-chief worker of a multi-worker cluster."""
    resolver = getattr(strategy, "cluster_resolver", None)
    if resolver is None or not resolver.task_type:
        return True
    if resolver.task_type == "chief":
        return True
    has_chief = "chief" in resolver.cluster_spec().as_dict()
    return resolver.task_type == "worker" and resolver.task_id == 0 and not has_chief


def make_grads_fn(generator: keras.Model, discriminator: keras.Model, lambda_l1: float,
                  global_batch_size: int, shared_d_batch: bool = False) -> Callable:
    """(condition, target) -> (G grads, D grads, metrics) from one forward pass.

    Losses are per-example means scaled by the global batch (tf.nn.compute_average_loss), so
    summing over replicas gives the global mean. `shared_d_batch` (one D call for real and fake)
    needs a per-example norm; it was slower on CPU, so it is off by default.
    """
    def grads(cond, target):
        with tf.GradientTape(persistent=True) as tape:
            fake = generator(cond, training=True)
            if shared_d_batch:
                logits = discriminator([tf.concat([cond, cond], 0), tf.concat([target, fake], 0)],
                                       training=True)
                real_logits, fake_logits = tf.split(logits, 2, axis=0)
            else:
                real_logits = discriminator([cond, target], training=True)
                fake_logits = discriminator([cond, fake], training=True)
            g_total, g_gan, l1 = pix2pix.generator_losses(fake_logits, fake, target, lambda_l1)
            d_total, d_real, d_fake = pix2pix.discriminator_losses(real_logits, fake_logits)
            avg = lambda v: tf.nn.compute_average_loss(v, global_batch_size=global_batch_size)  # noqa: E731
            g_loss, d_loss = avg(g_total), avg(d_total)
        g_grads = tape.gradient(g_loss, generator.trainable_variables)
        d_grads = tape.gradient(d_loss, discriminator.trainable_variables)
        del tape
        metrics = {"G_total": g_loss, "G_GAN": avg(g_gan), "G_L1": avg(l1), "D_total": d_loss,
                   "D_real": avg(d_real), "D_fake": avg(d_fake)}
        return g_grads, d_grads, metrics
    return grads


def make_replica_step(generator, discriminator, g_opt, d_opt, lambda_l1: float,
                      global_batch_size: int, jit_compile: bool = False,
                      shared_d_batch: bool = False) -> Callable:
    """One training step on one replica's batch: gradients, then both Adam updates."""
    grads = make_grads_fn(generator, discriminator, lambda_l1, global_batch_size, shared_d_batch)
    if jit_compile:
        grads = tf.function(grads, jit_compile=True)

    def step(cond, target):
        g_grads, d_grads, metrics = grads(cond, target)
        g_opt.apply_gradients(zip(g_grads, generator.trainable_variables))
        d_opt.apply_gradients(zip(d_grads, discriminator.trainable_variables))
        return metrics
    return step


class _Signals:
    """SIGINT/SIGTERM set a flag the loop checks between steps; a second one interrupts."""

    def __init__(self, enabled: bool, log):
        self.received: Optional[int] = None
        self.enabled = enabled and threading.current_thread() is threading.main_thread()
        self.log, self.old = log, {}

    def _handle(self, signum, frame):
        if self.received is not None:
            raise KeyboardInterrupt
        self.received = signum
        self.log(f"received {signal.Signals(signum).name}: saving a checkpoint after this step "
                 "(signal again to stop at once)")

    def __enter__(self):
        if self.enabled:
            for sig in (signal.SIGINT, signal.SIGTERM):
                self.old[sig] = signal.signal(sig, self._handle)
        return self

    def __exit__(self, *exc):
        for sig, h in self.old.items():
            signal.signal(sig, h)
        return False


class Pix2PixTrainer:
    """Builds the run described by a Pix2PixConfig (checking train_dir first); `run()` trains."""

    def __init__(self, cfg: Pix2PixConfig, log: Callable[[str], None] = print):
        self.cfg, self.log = cfg, log
        self._check(cfg)
        run_config.check_and_save(cfg.train_dir, cfg.as_flags(), MODEL_KEYS, log=log)
        self.in_channels = data.CONDITION_CHANNELS[cfg.condition]
        self.strategy = make_strategy(cfg.strategy)
        if cfg.batch_size % self.strategy.num_replicas_in_sync:
            raise ConfigError(f"--batch_size={cfg.batch_size} does not split over "
                              f"{self.strategy.num_replicas_in_sync} replicas")
        keras.utils.set_random_seed(cfg.seed)
        with self.strategy.scope():
            self.generator = pix2pix.unet_generator(cfg.image_size, self.in_channels, ngf=cfg.ngf,
                                                    norm=cfg.norm)
            self.discriminator = pix2pix.patch_discriminator(cfg.image_size, self.in_channels,
                                                             ndf=cfg.ndf, norm=cfg.norm)
            self.schedule = schedules.LinearDecay(cfg.learning_rate, cfg.max_steps)
            adam = lambda: optimizers.FusedAdam(self.schedule, beta_1=cfg.beta1, beta_2=0.999,  # noqa: E731
                                                epsilon=1e-8)
            self.g_opt, self.d_opt = adam(), adam()
            self.g_opt.build(self.generator.trainable_variables)
            self.d_opt.build(self.discriminator.trainable_variables)
        self.checkpoint = tf.train.Checkpoint(generator=self.generator, discriminator=self.discriminator,
                                              g_optimizer=self.g_opt, d_optimizer=self.d_opt)
        # Every multi-worker replica must save (collectives); non-chiefs write to a scratch folder.
        self.chief = is_chief(self.strategy)
        ckpt_dir = cfg.train_dir if self.chief else os.path.join(
            cfg.train_dir, f"worker_tmp_{self.strategy.cluster_resolver.task_id}")
        self.manager = tf.train.CheckpointManager(self.checkpoint, ckpt_dir, cfg.max_to_keep)

    @staticmethod
    def _check(cfg: Pix2PixConfig) -> None:
        if cfg.condition not in data.CONDITIONS:
            raise ConfigError(f"condition must be one of {data.CONDITIONS}, not {cfg.condition!r}")
        try:
            pix2pix.unet_levels(cfg.image_size)
        except ValueError as e:
            raise ConfigError(f"--image_size: {e}") from None
        if cfg.image_size < 32:
            raise ConfigError(f"--image_size must be >= 32 for the 70x70 PatchGAN, got {cfg.image_size}")
        for name in ("batch_size", "max_steps", "save_every", "summary_every", "log_every"):
            if getattr(cfg, name) < 1:
                raise ConfigError(f"--{name} must be >= 1, got {getattr(cfg, name)}")
        if cfg.strategy not in STRATEGIES:
            raise ConfigError(f"strategy must be one of {STRATEGIES}, not {cfg.strategy!r}")
        if not cfg.dataset_dir or not cfg.train_dir:
            raise ConfigError("--dataset_dir and --train_dir are required")

    @property
    def step(self) -> int:
        return int(self.g_opt.iterations.numpy())

    def learning_rate(self) -> float:
        return float(self.schedule(self.g_opt.iterations))

    def restore(self) -> int:
        """Restores the latest checkpoint in train_dir if any; returns the step."""
        latest = tf.train.latest_checkpoint(self.cfg.train_dir)  # the chief's, on every worker
        if latest:
            self.checkpoint.restore(latest).assert_existing_objects_matched()
            self.log(f"resumed from {latest} at step {self.step}, lr {self.learning_rate():.3g}")
        return self.step

    def save(self) -> str:
        return self.manager.save(checkpoint_number=self.step)

    # ------------------------------------------------------------------ data
    def _train_dataset(self, start_step: int) -> tf.data.Dataset:
        cfg = self.cfg
        ds = data.pix2pix_dataset(cfg.dataset_dir, "train", cfg.condition, cfg.image_size,
                                  augment=cfg.augment, batch_size=cfg.batch_size,
                                  seed=cfg.seed + 1_000_003 * start_step, repeat=True,
                                  drop_remainder=True)
        opts = tf.data.Options()
        opts.experimental_distribute.auto_shard_policy = tf.data.experimental.AutoShardPolicy.DATA
        return ds.with_options(opts)

    def fixed_examples(self):
        """The first `num_examples` test examples (train if there is no test split), unaugmented."""
        cfg = self.cfg
        for split in ("test", "train"):
            try:
                ds = data.pix2pix_dataset(cfg.dataset_dir, split, cfg.condition, cfg.image_size,
                                          augment=False, batch_size=cfg.num_examples, shuffle=False,
                                          seed=cfg.seed)
            except records.DatasetError:
                if split == "train":
                    raise
                continue
            return next(iter(ds))

    # ------------------------------------------------------------------ loop
    def _train_step_fn(self):
        cfg, strategy = self.cfg, self.strategy
        replica_step = make_replica_step(self.generator, self.discriminator, self.g_opt, self.d_opt,
                                         cfg.lambda_l1, cfg.batch_size, cfg.jit_compile)

        @tf.function
        def train_step(iterator):
            cond, target = next(iterator)
            per_replica = strategy.run(replica_step, args=(cond, target))
            return {k: strategy.reduce(tf.distribute.ReduceOp.SUM, v, axis=None)
                    for k, v in per_replica.items()}
        return train_step

    def run(self, on_step: Optional[Callable[[int, Dict[str, float]], bool]] = None) -> Dict:
        """Trains to max_steps (or a signal, or `on_step` returning True); returns a summary.

        on_step(step, metrics) is called after every step with float metrics.
        """
        cfg = self.cfg
        with _Signals(cfg.handle_signals, self.log) as signals:
            start = self.restore()
            result = {"start_step": start, "step": start, "stopped_by": None, "metrics": {}}
            if start >= cfg.max_steps:
                self.log(f"step {start} >= --max_steps={cfg.max_steps}: nothing to do")
                return result
            fixed_cond, fixed_target = self.fixed_examples()
            dist_ds = self.strategy.experimental_distribute_dataset(self._train_dataset(start))
            iterator = iter(dist_ds)
            train_step = self._train_step_fn()
            sample = tf.function(lambda c: self.generator(c, training=False))
            writer = (tf.summary.create_file_writer(cfg.train_dir) if self.chief
                      else tf.summary.create_noop_writer())

            def write_images(step):
                with writer.as_default(step=step):
                    tf.summary.image("pix2pix/layer_output_target",
                                     summaries.pix2pix_grid(fixed_cond, sample(fixed_cond), fixed_target))

            self.log(f"training pix2pix ({cfg.condition}, {cfg.image_size}px, batch {cfg.batch_size}, "
                     f"{self.strategy.num_replicas_in_sync} replica(s)) from step {start} to {cfg.max_steps}")
            step, saved_at = start, start
            t_log, s_log = time.perf_counter(), start
            while step < cfg.max_steps:
                out = train_step(iterator)
                step = self.step
                m = {k: float(v) for k, v in out.items()}
                if not all(math.isfinite(v) for v in m.values()):
                    self.save()
                    raise FloatingPointError(f"non-finite loss at step {step}: {m}")
                result["metrics"], result["step"] = m, step
                if step % cfg.summary_every == 0 or step == start + 1:
                    with writer.as_default(step=step):
                        for k, v in m.items():
                            tf.summary.scalar(f"loss/{k}", v)
                        tf.summary.scalar("lr", self.learning_rate())
                    write_images(step)
                if step % cfg.log_every == 0 or step == cfg.max_steps:
                    now = time.perf_counter()
                    rate = (step - s_log) / max(now - t_log, 1e-9)
                    t_log, s_log = now, step
                    with writer.as_default(step=step):
                        tf.summary.scalar("steps_per_sec", rate)
                    self.log(f"step {step}/{cfg.max_steps}  G {m['G_total']:.3f} (GAN {m['G_GAN']:.3f}, "
                             f"L1 {m['G_L1']:.4f})  D {m['D_total']:.3f}  lr {self.learning_rate():.3g}  "
                             f"{rate:.2f} steps/s")
                if step % cfg.save_every == 0:
                    self.save()
                    saved_at = step
                if signals.received is not None:
                    result["stopped_by"] = signal.Signals(signals.received).name
                    break
                if on_step is not None and on_step(step, m):
                    result["stopped_by"] = "on_step"
                    break
            if saved_at != step:
                self.save()
            if not self.chief:  # its copies were only for the collective save
                shutil.rmtree(self.manager.directory, ignore_errors=True)
            write_images(step)
            writer.flush()
            if result["stopped_by"] in ("SIGINT", "SIGTERM"):
                self.log(f"stopped by {result['stopped_by']} at step {step}; checkpoint saved in "
                         f"{cfg.train_dir}; run again with the same flags to resume")
            return result
