"""UGATIT training step on CPU: our step vs the most straightforward Keras step, same networks.

Both variants build the six networks of translate/models/ugatit.py (two generators, global and
local discriminators per domain) from the same seed, at 256x256, batch 1, `--light` by default
(the full generator's 268 M-weight MLP makes a step several times slower and ~10 GB here; pass
--full to time it anyway).

* baseline: a straightforward Keras port of UGATIT: plain tf.function, one persistent tape for
  the simultaneous G and D update (the scheme our step uses too, so both compute the same
  update), every network application a separate call (6 generator and 8 discriminator calls),
  straightforward layers (CAM = re-weight twice, concat, 1x1 conv over 2C channels; AdaLIN /
  LIN = two separate normalisations mixed by rho; spectral norm always rescales the kernel;
  keras GroupNormalization for the encoder's instance norm), keras Conv2D everywhere, keras.optimizers.Adam x2 with PyTorch's weight decay added to the gradients.
* ours: translate/training/ugatit.py: the same losses and update with batched real calls (each
  generator's translation + identity and each discriminator's real + fake in one call), the
  folded CAM conv, one-pass LIN/AdaLIN statistics, spectral norm scaling the smaller of kernel /
  output, layers.FastConv2D for stride-1 convs (gradients as forward convolutions), and
  translate.training.optimizers.FusedAdam.
* ours_xla: ours with the forward/backward XLA-compiled (the family's jit_compile option).

Timing runs the variants round-robin in one process (`--rounds` x `--steps` after `--warmup`).
Peak memory (VmHWM) is measured per variant in a fresh subprocess (build + warm-up + 2 steps).
Prints a table and the ratio ours / baseline (goal <= 0.65) on median wall, best wall and
process CPU time, and ends with ONE JSON line.

  PYTHONPATH=. python benchmarks/train_step_ugatit.py [--image_size=256] [--full] [--steps=3]

Measured 2026-11-26, light, 256 px, load average ~9-10 on 2 cores (2 round-robin steps each,
--steps=1 --rounds=2 --no_memory): baseline 80.8 s/step (CPU 78.7), ours 48.0 s/step (CPU 46.5):
ratio 0.594 median wall, 0.637 best wall, 0.591 CPU. Peak RSS (memory children, run separately):
baseline 8634 MB, ours 6557 MB (0.76). A concurrent full run was OOM-killed at 10 GB with other
users' jobs: run the memory children one at a time (the default).
"""
from __future__ import annotations

import cliboot  # noqa: F401  (first: sys.path of the script form, TensorFlow's start-up notices)

import argparse
import contextlib
import json
import os
import subprocess
import sys
import time

import numpy as np

from benchmarks.train_step import _rss_mb, compare, memory_runs, timed  # the shared protocol

VARIANTS = ("baseline", "ours")  # + "ours_xla" on request: its XLA compile took minutes here


@contextlib.contextmanager
def straightforward_layers():
    """Builds ugatit networks with the plain formulations of CAM, AdaLIN, LIN, spectral norm and
    keras Conv2D for the stride-1 convs (same weights and maths, no shortcuts)."""
    import tensorflow as tf

    from translate.models import ugatit

    class PlainCAM(ugatit.CAM):
        def call(self, x):
            w_gap, w_gmp = self.w_gap, self.w_gmp
            if self.spectral:
                w_gap, w_gmp = tf.math.l2_normalize(w_gap), tf.math.l2_normalize(w_gmp)
            gap_logit = tf.reduce_sum(tf.reduce_mean(x, [1, 2]) * w_gap, -1, keepdims=True)
            gmp_logit = tf.reduce_sum(tf.reduce_max(x, [1, 2]) * w_gmp, -1, keepdims=True)
            h = tf.concat([x * w_gap, x * w_gmp], -1)
            h = tf.nn.conv2d(h, self.kernel[None, None], 1, "VALID") + self.bias
            h = tf.nn.leaky_relu(h, self.leaky) if self.leaky else tf.nn.relu(h)
            return h, tf.concat([gap_logit, gmp_logit], -1), tf.reduce_sum(h, -1, keepdims=True)

    def plain_lin(x, rho, eps):
        in_mean, in_var = tf.nn.moments(x, [1, 2], keepdims=True)
        ln_mean, ln_var = tf.nn.moments(x, [1, 2, 3], keepdims=True)
        out_in = (x - in_mean) / tf.sqrt(in_var + eps)
        out_ln = (x - ln_mean) / tf.sqrt(ln_var + eps)
        return rho * out_in + (1.0 - rho) * out_ln

    class PlainAdaLIN(ugatit.AdaLIN):
        def call(self, inputs):
            x, gamma, beta = inputs
            return plain_lin(x, self.rho, self.epsilon) * gamma[:, None, None] + beta[:, None, None]

    class PlainLIN(ugatit.LIN):
        def call(self, x):
            return plain_lin(x, self.rho, self.epsilon) * self.gamma + self.beta

    class PlainSNConv2D(ugatit.SNConv2D):
        def call(self, x, training=False):
            y = tf.nn.conv2d(x, self.kernel / self.sigma(bool(training)), self.strides, "VALID")
            return y + self.bias if self.use_bias else y

    import functools

    import keras

    from translate.models import layers
    saved = {n: getattr(ugatit, n) for n in ("CAM", "AdaLIN", "LIN", "SNConv2D", "STRIDE1_CONV")}
    for n, cls in zip(saved, (PlainCAM, PlainAdaLIN, PlainLIN, PlainSNConv2D, keras.layers.Conv2D)):
        setattr(ugatit, n, cls)
    instance_norm = layers.instance_norm  # keras GroupNormalization, not our closed-form gradient
    layers.instance_norm = functools.partial(instance_norm, fast=False)
    try:
        yield
    finally:
        for n, cls in saved.items():
            setattr(ugatit, n, cls)
        layers.instance_norm = instance_norm


def baseline_step(nets, lr, wd):
    import keras
    import tensorflow as tf

    from translate.models import ugatit
    g_ab, g_ba = nets["generator_ab"], nets["generator_ba"]
    d_ga, d_la, d_gb, d_lb = (nets[n] for n in ("disc_a_global", "disc_a_local", "disc_b_global",
                                                "disc_b_local"))
    g_vars = g_ab.trainable_variables + g_ba.trainable_variables
    d_vars = [v for d in (d_ga, d_la, d_gb, d_lb) for v in d.trainable_variables]
    g_opt = keras.optimizers.Adam(lr, beta_1=0.5, beta_2=0.999, epsilon=1e-8)
    d_opt = keras.optimizers.Adam(lr, beta_1=0.5, beta_2=0.999, epsilon=1e-8)
    mse = lambda x, t: tf.reduce_mean(tf.square(x - t))  # noqa: E731
    bce = keras.losses.BinaryCrossentropy(from_logits=True)
    l1 = lambda a, b: tf.reduce_mean(tf.abs(a - b))  # noqa: E731

    @tf.function
    def step(real_a, real_b):
        with tf.GradientTape(persistent=True) as tape:
            fake_a2b, fake_a2b_cam, _ = g_ab(real_a, training=True)
            fake_b2a, fake_b2a_cam, _ = g_ba(real_b, training=True)
            fake_a2b2a, _, _ = g_ba(fake_a2b, training=True)
            fake_b2a2b, _, _ = g_ab(fake_b2a, training=True)
            fake_a2a, fake_a2a_cam, _ = g_ba(real_a, training=True)
            fake_b2b, fake_b2b_cam, _ = g_ab(real_b, training=True)
            d_loss, g_adv = 0.0, 0.0
            for d, real, fake in ((d_ga, real_a, fake_b2a), (d_la, real_a, fake_b2a),
                                  (d_gb, real_b, fake_a2b), (d_lb, real_b, fake_a2b)):
                r_logit, r_cam, _ = d(real, training=True)
                f_logit, f_cam, _ = d(fake, training=True)
                d_loss += (mse(r_logit, 1.0) + mse(f_logit, 0.0) + mse(r_cam, 1.0) + mse(f_cam, 0.0))
                g_adv += mse(f_logit, 1.0) + mse(f_cam, 1.0)
            cam = (bce(tf.ones_like(fake_b2a_cam), fake_b2a_cam) + bce(tf.zeros_like(fake_a2a_cam), fake_a2a_cam)
                   + bce(tf.ones_like(fake_a2b_cam), fake_a2b_cam) + bce(tf.zeros_like(fake_b2b_cam), fake_b2b_cam))
            g_loss = (ugatit.ADV_WEIGHT * g_adv
                      + ugatit.CYCLE_WEIGHT * (l1(fake_a2b2a, real_a) + l1(fake_b2a2b, real_b))
                      + ugatit.IDENTITY_WEIGHT * (l1(fake_a2a, real_a) + l1(fake_b2b, real_b))
                      + ugatit.CAM_WEIGHT * cam)
            d_loss = ugatit.ADV_WEIGHT * d_loss
        g_grads = tape.gradient(g_loss, g_vars)
        d_grads = tape.gradient(d_loss, d_vars)
        g_opt.apply_gradients(zip([g + wd * v for g, v in zip(g_grads, g_vars)], g_vars))
        d_opt.apply_gradients(zip([g + wd * v for g, v in zip(d_grads, d_vars)], d_vars))
        return g_loss
    return step


def build(variant: str, size: int, light: bool, ch: int = 64, n_dis: int = 6, seed: int = 0):
    """(step_fn, args) for one variant; step_fn(*args) runs one training step."""
    import keras
    import tensorflow as tf

    from translate.training import unpaired as ut
    from translate.models import ugatit

    keras.utils.set_random_seed(seed)
    a = tf.random.stateless_uniform([1, size, size, 3], [seed, 1], -1, 1)
    b = tf.random.stateless_uniform([1, size, size, 3], [seed, 2], -1, 1)
    if variant == "baseline":
        with straightforward_layers():
            nets = ugatit.build_networks(size, ch=ch, n_dis=n_dis, light=light)
        return baseline_step(nets, ugatit.LEARNING_RATE, ugatit.WEIGHT_DECAY), (a, b)
    cfg = ut.UnpairedConfig(dataset_dir="", train_dir="", model="ugatit", image_size=size,
                            options={"light": light, "ch": ch, "n_dis": n_dis,
                                     "jit_compile": variant == "ours_xla"})
    fam = ut.get_family("ugatit")(cfg)
    fam.check()
    fam.build(3)
    return tf.function(lambda x, y: fam.replica_step(x, y)["G_total"]), (a, b)


def memory_child(variant, size, light, ch, n_dis, warmup):
    step, args = build(variant, size, light, ch, n_dis)
    rss_built = _rss_mb()
    timed(step, args, warmup + 2)
    print(json.dumps({"variant": variant, "peak_rss_mb": round(_rss_mb(), 1),
                      "rss_after_build_mb": round(rss_built, 1)}))

def main():
    ap = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    ap.add_argument("--image_size", type=int, default=256)
    ap.add_argument("--full", action="store_true", help="full UGATIT (default: --light)")
    ap.add_argument("--ch", type=int, default=64, help="base filters (64 as published; small for a smoke run)")
    ap.add_argument("--n_dis", type=int, default=6, help="discriminator depth (6 as published)")
    ap.add_argument("--variants", default=",".join(VARIANTS))
    ap.add_argument("--steps", type=int, default=3, help="timed steps per variant per round")
    ap.add_argument("--rounds", type=int, default=2)
    ap.add_argument("--warmup", type=int, default=0, help="untimed steps after the first call")
    ap.add_argument("--no_memory", action="store_true", help="skip the per-variant memory runs")
    ap.add_argument("--memory_child", default=None, help=argparse.SUPPRESS)
    a = ap.parse_args()
    size, light = a.image_size, not a.full
    if a.memory_child:
        memory_child(a.memory_child, size, light, a.ch, a.n_dis, a.warmup)
        return
    variants = [v for v in a.variants.split(",") if v]
    load_before = [round(x, 2) for x in os.getloadavg()]
    mode = "light" if light else "full"
    print(f"UGATIT ({mode}) train step, {size}x{size}, batch 1; {os.cpu_count()} CPUs, "
          f"load average {load_before}")

    import tensorflow as tf
    figures = {"model": "ugatit", "mode": mode, "image_size": size, "batch_size": 1, "ch": a.ch,
               "n_dis": a.n_dis,
               "tf": tf.__version__, "loadavg_before": load_before}
    compare({v: (lambda v=v: build(v, size, light, a.ch, a.n_dis)) for v in variants},
            a.warmup, a.rounds, a.steps, figures, verbose=True)  # its networks are freed on return
    if not a.no_memory:
        memory_runs({v: [sys.executable, os.path.abspath(__file__), f"--memory_child={v}",
                         f"--image_size={size}", f"--warmup={a.warmup}", f"--ch={a.ch}",
                         f"--n_dis={a.n_dis}"] + (["--full"] if a.full else []) for v in variants},
                    figures)
        if "baseline_peak_rss_mb" in figures:
            for v in variants:
                if v != "baseline" and f"{v}_peak_rss_mb" in figures:
                    figures[f"ratio_{v}_vs_baseline_memory"] = round(
                        figures[f"{v}_peak_rss_mb"] / figures["baseline_peak_rss_mb"], 3)
    figures["loadavg_after"] = [round(x, 2) for x in os.getloadavg()]
    print(f"load average after: {figures['loadavg_after']}")
    print(json.dumps(figures))


if __name__ == "__main__":
    main()
