"""CycleGAN as a family of translate.training.unpaired: networks, optimizers and the step.

A = photo, B = anime. G_ab: A -> B, G_ba: B -> A, D_a / D_b score domain A / B (RGB only; see
translate/models/cyclegan.py for why D never sees the landmark layer).

Losses as junyanz (per example, then scaled by the global batch):
  G = LSGAN(D_b(G_ab(a))) + LSGAN(D_a(G_ba(b)))
      + lambda_cycle * (|G_ba(G_ab(a)) - a| + |G_ab(G_ba(b)) - b|)
      + lambda_cycle * lambda_identity * (|G_ab(b) - b| + |G_ba(a) - a|)
      [+ lambda_landmark * landmark reconstruction, with landmark_output]
  D_x = 0.5 * ((D_x(real) - 1)^2 + D_x(pool(fake))^2)
One Adam over both generators and one over both discriminators (junyanz chains the
parameters), FusedAdam (TF's fused kernel); the generators' optimizer's step is the run's step.

The step does the published computation with fewer, larger calls (instance norm is per example,
so batching calls is exact): G_ab runs once on [a; b] (fake B and identity B), G_ba once on
[b; a], then once each for the cycle; each D runs once on [real; pooled fake] for its own loss
and once on the current fake for the generators' loss (with the pool they differ; the gradient
to G must not flow through the pool). One persistent tape gives both gradient sets; G and D are
updated from the same forward pass (junyanz updates D after G but with the fakes computed
before G's update, so the result is the same). Stride-1 convolutions are
translate.models.layers.FastConv2D (gradients computed as forward convolutions). Speed against
the straightforward Keras step, and a small configuration for CPUs: translate/README.md.
"""
from __future__ import annotations

from typing import Dict

import tensorflow as tf

from translate.training import optimizers, schedules
from translate.training.history_pool import HistoryPool
from translate.models import cyclegan
from translate.training.unpaired import Family


class CycleGAN(Family):
    name = "cyclegan"
    defaults = dict(ngf=64, ndf=64, n_blocks=None, upsample="transpose", landmark_output=False,
                    keypoint_attention=False, lambda_cycle=cyclegan.LAMBDA_CYCLE,
                    lambda_identity=cyclegan.LAMBDA_IDENTITY, lambda_landmark=10.0, pool_size=50)
    model_keys = ("ngf", "ndf", "n_blocks", "upsample", "landmark_output", "keypoint_attention")
    default_learning_rate = 2e-4

    def __init__(self, cfg):
        super().__init__(cfg)
        if self.options["n_blocks"] is None:
            self.options["n_blocks"] = cyclegan.default_blocks(cfg.image_size)

    def check(self) -> None:
        o, cfg = self.options, self.cfg
        if cfg.image_size % 4 or cfg.image_size < 32:
            raise ValueError(f"--image_size must be a multiple of 4 and >= 32, got {cfg.image_size}")
        if (o["landmark_output"] or o["keypoint_attention"]) and not cfg.landmark_channel:
            raise ValueError("--landmark_output and --keypoint_attention need --landmark_channel")
        if o["upsample"] not in cyclegan.UPSAMPLE:
            raise ValueError(f"--upsample must be one of {cyclegan.UPSAMPLE}, not {o['upsample']!r}")
        for k in ("ngf", "ndf", "n_blocks"):
            if o[k] < 1:
                raise ValueError(f"--{k} must be >= 1, got {o[k]}")
        for k in ("lambda_cycle", "lambda_identity", "lambda_landmark", "pool_size"):
            if o[k] < 0:
                raise ValueError(f"--{k} must be >= 0, got {o[k]}")

    # ------------------------------------------------------------------ build
    def build(self, in_channels: int) -> None:
        cfg, o = self.cfg, self.options
        self.in_channels = in_channels
        args = cyclegan.generator_args({**o, "image_size": cfg.image_size,
                                        "landmark_channel": cfg.landmark_channel})
        self.g_ab = cyclegan.resnet_generator(**args, name="generator_ab")
        self.g_ba = cyclegan.resnet_generator(**args, name="generator_ba")
        self.d_a = cyclegan.patch_discriminator(cfg.image_size, 3, ndf=o["ndf"], name="discriminator_a")
        self.d_b = cyclegan.patch_discriminator(cfg.image_size, 3, ndf=o["ndf"], name="discriminator_b")
        self.schedule = schedules.LinearDecay(self.lr, cfg.max_steps, cfg.decay_start)
        adam = lambda: optimizers.FusedAdam(self.schedule, beta_1=cfg.beta1, beta_2=0.999,  # noqa: E731
                                            epsilon=1e-8)
        self.g_vars = self.g_ab.trainable_variables + self.g_ba.trainable_variables
        self.d_vars = self.d_a.trainable_variables + self.d_b.trainable_variables
        self.g_opt, self.d_opt = adam(), adam()
        self.g_opt.build(self.g_vars)
        self.d_opt.build(self.d_vars)
        shape = [cfg.image_size, cfg.image_size, 3]
        self.pool_a = HistoryPool(o["pool_size"], shape, seed=cfg.seed * 2 + 1, name="pool_a")
        self.pool_b = HistoryPool(o["pool_size"], shape, seed=cfg.seed * 2 + 2, name="pool_b")

    def checkpoint_objects(self) -> Dict:
        return dict(generator_ab=self.g_ab, generator_ba=self.g_ba, discriminator_a=self.d_a,
                    discriminator_b=self.d_b, g_optimizer=self.g_opt, d_optimizer=self.d_opt,
                    pool_a=self.pool_a, pool_b=self.pool_b)

    @property
    def step_counter(self):
        return self.g_opt

    def learning_rate(self) -> float:
        return float(self.schedule(self.g_opt.iterations))

    def translate(self, x, direction):
        return (self.g_ab if direction == "ab" else self.g_ba)(x, training=False)

    def log_line(self, m: Dict[str, float]) -> str:
        s = (f"G {m['G_total']:.3f} (GAN {m['G_GAN_ab']:.3f}/{m['G_GAN_ba']:.3f}, cycle {m['cycle']:.4f}, "
             f"identity {m['identity']:.4f}")
        if "landmark" in m:
            s += f", landmark {m['landmark']:.4f}"
        return s + f")  D {m['D_a']:.3f}/{m['D_b']:.3f}"

    # ------------------------------------------------------------------ step
    def losses(self, a: tf.Tensor, b: tf.Tensor, pool: bool = True):
        """Per-example losses [B] from one forward pass; (g_total, d_total, parts)."""
        o = self.options
        lam_c, lam_i = o["lambda_cycle"], o["lambda_cycle"] * o["lambda_identity"]
        layer_out = bool(o["landmark_output"])
        rgb = lambda x: x[..., :3]  # noqa: E731
        n = tf.shape(a)[0]

        def through(g, src, other):
            """g on [src; other] (fake and identity) in one call, or on src alone."""
            if lam_i > 0:
                fake, idt = tf.split(g(tf.concat([src, other], 0), training=True), [n, n])
                return fake, idt
            return g(src, training=True), None

        def cycle_input(fake, src):
            if layer_out or src.shape[-1] == 3:
                return fake  # with landmark_output, back with the layer G carried
            return tf.concat([rgb(fake), src[..., 3:]], -1)  # back with the source's layer

        fake_b, idt_b = through(self.g_ab, a, b)
        fake_a, idt_a = through(self.g_ba, b, a)
        rec_a = self.g_ba(cycle_input(fake_b, a), training=True)
        rec_b = self.g_ab(cycle_input(fake_a, b), training=True)
        gan_ab = cyclegan.lsgan_generator_loss(self.d_b(rgb(fake_b), training=True))
        gan_ba = cyclegan.lsgan_generator_loss(self.d_a(rgb(fake_a), training=True))
        cycle = cyclegan.l1(rgb(rec_a), rgb(a)) + cyclegan.l1(rgb(rec_b), rgb(b))
        parts = {"G_GAN_ab": gan_ab, "G_GAN_ba": gan_ba, "cycle": cycle}
        g_total = gan_ab + gan_ba + lam_c * cycle
        if idt_a is not None:
            identity = cyclegan.l1(rgb(idt_b), rgb(b)) + cyclegan.l1(rgb(idt_a), rgb(a))
            parts["identity"] = identity
            g_total += lam_i * identity
        else:
            parts["identity"] = tf.zeros_like(cycle)
        if layer_out:
            lay = lambda x: x[..., 3:]  # noqa: E731
            landmark = (cyclegan.l1(lay(fake_b), lay(a)) + cyclegan.l1(lay(rec_a), lay(a))
                        + cyclegan.l1(lay(fake_a), lay(b)) + cyclegan.l1(lay(rec_b), lay(b)))
            parts["landmark"] = landmark
            g_total += o["lambda_landmark"] * landmark
        d_total = tf.zeros_like(cycle)
        for name, d, real, fake, hist in (("D_a", self.d_a, a, fake_a, self.pool_a),
                                          ("D_b", self.d_b, b, fake_b, self.pool_b)):
            fake = tf.stop_gradient(rgb(fake))
            if pool:
                fake = hist.query(fake)
            real_s, fake_s = tf.split(d(tf.concat([rgb(real), fake], 0), training=True), [n, n])
            d_real, d_fake = cyclegan.lsgan_discriminator_loss(real_s, fake_s)
            parts[name] = 0.5 * (d_real + d_fake)
            d_total += parts[name]
        parts["G_total"], parts["D_total"] = g_total, d_total
        return g_total, d_total, parts

    def replica_step(self, photo, anime):
        avg = lambda v: tf.nn.compute_average_loss(v, global_batch_size=self.cfg.batch_size)  # noqa: E731
        with tf.GradientTape(persistent=True) as tape:
            g_total, d_total, parts = self.losses(photo, anime)
            g_loss, d_loss = avg(g_total), avg(d_total)
        g_grads = tape.gradient(g_loss, self.g_vars)
        d_grads = tape.gradient(d_loss, self.d_vars)
        del tape
        self.g_opt.apply_gradients(zip(g_grads, self.g_vars))
        self.d_opt.apply_gradients(zip(d_grads, self.d_vars))
        return {k: avg(v) for k, v in parts.items()}
