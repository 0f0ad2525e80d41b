"""pix2pix training: its networks, optimizers and step on translate.training.loop's loop.

* Resume, signals, strategies, summaries and checkpoints: translate.training.loop. The step is
  the generator optimizer's `iterations`; the lr a linear-decay schedule of it.
* The step: one forward pass and one (persistent) tape give both nets' gradients; G and D are
  updated simultaneously as in the TF tutorial. Both Adams are `optimizers.FusedAdam` (TF's
  fused kernel; why: translate/README.md, Measured).
  Real and fake pairs are scored in two D calls: one call on a batch of 2B is exact with
  instance norm but slower (the generator's loss then back-propagates through D for
  the real half too). With `jit_compile` the forward/backward is XLA-compiled; the optimizer
  updates stay outside (they cross replicas under a strategy). XLA did not help on our CPU
  (benchmarks/train_step.py).
"""
from __future__ import annotations

import dataclasses
from typing import Callable, Dict

import keras
import tensorflow as tf

from translate import run_config
from translate.datasets import pipelines as data, records
from translate.training import optimizers, schedules, summaries
from translate.training.loop import ConfigError, GanTrainer, check_common
from translate.models import pix2pix

MODEL_KEYS = ("model", "condition", "image_size", "ngf", "ndf", "norm")


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
    cache_images: str = "auto"  # data.CACHE_CHOICES
    handle_signals: bool = True

    def as_flags(self) -> Dict:
        d = dataclasses.asdict(self)
        d.pop("handle_signals")
        return {"model": "pix2pix", **d}


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


class Pix2PixTrainer(GanTrainer):
    """Builds the run described by a Pix2PixConfig (checking train_dir first); `run()` trains."""

    def __init__(self, cfg: Pix2PixConfig, log: Callable[[str], None] = print):
        self.cfg, self.log = cfg, log
        self._check(cfg)
        run_config.check_and_save(cfg.train_dir, cfg.as_flags(), MODEL_KEYS, log=log)
        self.in_channels = data.CONDITION_CHANNELS[cfg.condition]
        self._setup(self._build)

    def _build(self) -> Dict:
        cfg = self.cfg
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
        return dict(generator=self.generator, discriminator=self.discriminator,
                    g_optimizer=self.g_opt, d_optimizer=self.d_opt)

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
        check_common(cfg)

    # ------------------------------------------------------------------ GanTrainer hooks
    def _step_variable(self) -> tf.Variable:
        return self.g_opt.iterations

    def learning_rate(self) -> float:
        return float(self.schedule(self.g_opt.iterations))

    def _train_dataset(self, start_step: int) -> tf.data.Dataset:
        cfg = self.cfg
        return data.pix2pix_dataset(cfg.dataset_dir, "train", cfg.condition, cfg.image_size,
                                    augment=cfg.augment, batch_size=cfg.batch_size,
                                    seed=cfg.seed + 1_000_003 * start_step, repeat=True,
                                    drop_remainder=True, cache=data.CACHE_CHOICES[cfg.cache_images])

    def _replica_step(self) -> Callable:
        cfg = self.cfg
        return make_replica_step(self.generator, self.discriminator, self.g_opt, self.d_opt,
                                 cfg.lambda_l1, cfg.batch_size, cfg.jit_compile)

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

    def _image_summaries(self) -> Callable[[], None]:
        cond, target = self.fixed_examples()
        sample = tf.function(lambda c: self.generator(c, training=False))
        return lambda: tf.summary.image("pix2pix/layer_output_target",
                                        summaries.pix2pix_grid(cond, sample(cond), target))

    def _describe(self, start: int) -> str:
        cfg = self.cfg
        return (f"training pix2pix ({cfg.condition}, {cfg.image_size}px, batch {cfg.batch_size}, "
                f"{self.strategy.num_replicas_in_sync} replica(s)) from step {start} to {cfg.max_steps}")

    @staticmethod
    def _log_line(m: Dict[str, float]) -> str:
        return (f"G {m['G_total']:.3f} (GAN {m['G_GAN']:.3f}, L1 {m['G_L1']:.4f})  "
                f"D {m['D_total']:.3f}")
