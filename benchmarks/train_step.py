"""Training step on CPU (pix2pix or CycleGAN): our step vs the most straightforward Keras step,
same networks.

Networks: translate/models/pix2pix.py (U-Net-256 G, 70x70 PatchGAN D, instance norm, no norm at
the 1x1 bottleneck), built separately for each variant from the same seed.

* baseline: the TF pix2pix tutorial's step, untuned: plain tf.function, two GradientTapes,
  D called separately on the real and the fake pair, keras.optimizers.Adam x2.
* ours: translate.training.pix2pix's step: one persistent tape, two D calls, and
  translate.training.optimizers.FusedAdam (TF's fused ResourceApplyAdam kernel) x2; the networks with
  `fast_conv` (same weights): the U-Net's convs and transposed convs at <= 16 px as matmuls
  oriented to stream their 16-32 MB kernels once (layers.LowResConv2D / LowResConv2DTranspose;
  TF's conv kernels took 2-6x longer there), the PatchGAN's stride-1 convs as layers.FastConv2D.
* ours_xla: ours with the forward/backward XLA-compiled (--jit_compile).

Each variant runs in its own process, with the process settings it would have: the baseline
with TF's defaults, ours with what translate/train.py sets before TensorFlow starts (OURS_ENV:
TF's caching CPU allocator; the default allocator gave a 256 px CycleGAN step ~600 k page
faults and 1.5 s of system time). The parent times them round-robin (so load from other users
hits them alike): `--rounds` x `--steps` steps each after `--warmup`; CPU time is the worker's.
`--in_process` (implied by --profile / --components) runs all in one process with TF's
defaults instead. Peak memory (max RSS) is measured per variant in a fresh subprocess with the
same settings (VmHWM after build + warm-up + 2 steps). With `--components`, also times
the parts: G / D forward, G forward+backward, and one Adam update of G (Keras vs fused).
With `--profile=baseline,ours`, traces 2 steps of each with tf.profiler and prints op time by
op type (on our AMD CPU, Eigen's Conv2DBackpropFilter / Conv2DBackpropInput take about 5x the
forward Conv2D time: that, not the optimizer, is what is left).
CycleGAN (--model=cyclegan; 2 ResNet generators, 2 PatchGANs, junyanz sizes at 256):

* baseline: the straightforward step (TF CycleGAN tutorial style, with the published losses):
  plain tf.function, one persistent tape, 6 generator calls (fake, cycle, identity per
  direction), D called on the real and the fake image separately, LSGAN + 10 cycle + 5
  identity, keras.optimizers.Adam x4, keras Conv2D everywhere, no history pool.
* ours: translate.training.cyclegan's step (which also runs the 50-image history pools, so one
  more D call per domain): layers.FastConv2D (gradients as forward convolutions), instance norm
  with its closed-form gradient, batched generator and D calls, FusedAdam x2 (one per pair of
  networks, as junyanz).

Prints a table, the ratio ours / baseline (goal <= 0.65) from the median wall time, the best
wall time and the process CPU time per step (on a busy machine they disagree: quote all three),
and ends with ONE JSON line.

  PYTHONPATH=. python benchmarks/train_step.py --model=pix2pix [--image_size=256] [--steps=6]
  PYTHONPATH=. python benchmarks/train_step.py --model=cyclegan --steps=2 --rounds=2 --warmup=1
"""
from __future__ import annotations

import cliboot  # noqa: F401  (first: sys.path of the script form, TensorFlow's start-up notices)

import argparse
import json
import os
import resource
import subprocess
import sys
import time
from typing import Optional

import numpy as np

VARIANTS = ("baseline", "ours", "ours_xla")
CYCLEGAN_VARIANTS = ("baseline", "ours")
LAMBDA = 100.0


def _rss_mb() -> float:
    """Peak resident memory of this process (VmHWM; ru_maxrss survives exec on Linux, so a
    child would report its parent's peak)."""
    try:
        with open("/proc/self/status") as f:
            for line in f:
                if line.startswith("VmHWM:"):
                    return int(line.split()[1]) / 1024.0
    except OSError:
        pass
    return resource.getrusage(resource.RUSAGE_SELF).ru_maxrss / 1024.0


def build(variant: str, size: int, in_channels: int, batch: int, seed: int = 0):
    """(step_fn, args) for one variant; step_fn(*args) runs one training step."""
    import keras
    import tensorflow as tf

    from translate.training import optimizers, pix2pix as training
    from translate.models import pix2pix

    keras.utils.set_random_seed(seed)
    fast = variant != "baseline"
    G = pix2pix.unet_generator(size, in_channels, fast_conv=fast)
    D = pix2pix.patch_discriminator(size, in_channels, fast_conv=fast)
    cond = tf.random.stateless_uniform([batch, size, size, in_channels], [seed, 1], -1, 1)
    target = tf.random.stateless_uniform([batch, size, size, 3], [seed, 2], -1, 1)
    if variant == "baseline":
        g_opt = keras.optimizers.Adam(2e-4, beta_1=0.5)
        d_opt = keras.optimizers.Adam(2e-4, beta_1=0.5)
        bce = keras.losses.BinaryCrossentropy(from_logits=True)

        @tf.function
        def step(inp, tar):
            with tf.GradientTape() as gen_tape, tf.GradientTape() as disc_tape:
                gen_output = G(inp, training=True)
                disc_real_output = D([inp, tar], training=True)
                disc_generated_output = D([inp, gen_output], training=True)
                gan_loss = bce(tf.ones_like(disc_generated_output), disc_generated_output)
                l1_loss = tf.reduce_mean(tf.abs(tar - gen_output))
                gen_total_loss = gan_loss + LAMBDA * l1_loss
                disc_loss = 0.5 * (bce(tf.ones_like(disc_real_output), disc_real_output)
                                   + bce(tf.zeros_like(disc_generated_output), disc_generated_output))
            g_grads = gen_tape.gradient(gen_total_loss, G.trainable_variables)
            d_grads = disc_tape.gradient(disc_loss, D.trainable_variables)
            g_opt.apply_gradients(zip(g_grads, G.trainable_variables))
            d_opt.apply_gradients(zip(d_grads, D.trainable_variables))
            return gen_total_loss
    else:
        g_opt = optimizers.FusedAdam(2e-4, beta_1=0.5)
        d_opt = optimizers.FusedAdam(2e-4, beta_1=0.5)
        g_opt.build(G.trainable_variables)
        d_opt.build(D.trainable_variables)
        replica = training.make_replica_step(G, D, g_opt, d_opt, LAMBDA, batch,
                                             jit_compile=variant == "ours_xla")
        step = tf.function(lambda inp, tar: replica(inp, tar)["G_total"])
    return step, (cond, target), (G, D)


def build_cyclegan(variant: str, size: int, in_channels: int, batch: int, seed: int = 0):
    """(step_fn, args, nets) for one CycleGAN variant."""
    import keras
    import tensorflow as tf

    from translate.training import unpaired as unpaired_training
    from translate.models import cyclegan

    keras.utils.set_random_seed(seed)
    a = tf.random.stateless_uniform([batch, size, size, in_channels], [seed, 1], -1, 1)
    b = tf.random.stateless_uniform([batch, size, size, in_channels], [seed, 2], -1, 1)
    if variant == "ours":
        cfg = unpaired_training.UnpairedConfig(dataset_dir="-", train_dir="-", image_size=size,
                                               landmark_channel=in_channels == 4, batch_size=batch)
        family = unpaired_training.get_family("cyclegan")(cfg)
        family.build(in_channels)
        step = tf.function(lambda x, y: family.replica_step(x, y)["G_total"])
        return step, (a, b), (family.g_ab, family.g_ba, family.d_a, family.d_b)
    if variant != "baseline":
        raise ValueError(f"--model=cyclegan variants: {CYCLEGAN_VARIANTS}")
    G_AB = cyclegan.resnet_generator(size, in_channels, fast_conv=False)
    G_BA = cyclegan.resnet_generator(size, in_channels, fast_conv=False)
    D_A = cyclegan.patch_discriminator(size, 3, fast_conv=False)
    D_B = cyclegan.patch_discriminator(size, 3, fast_conv=False)
    opts = [keras.optimizers.Adam(2e-4, beta_1=0.5) for _ in range(4)]
    mse = lambda s, t: tf.reduce_mean(tf.square(s - t))  # noqa: E731
    l1 = lambda x, y: tf.reduce_mean(tf.abs(x - y))  # noqa: E731

    def with_layer(img, src):  # the cycle maps back with the source's landmark layer
        return img if in_channels == 3 else tf.concat([img, src[..., 3:]], -1)

    @tf.function
    def step(real_a, real_b):
        with tf.GradientTape(persistent=True) as tape:
            fake_b = G_AB(real_a, training=True)
            cycled_a = G_BA(with_layer(fake_b, real_a), training=True)
            fake_a = G_BA(real_b, training=True)
            cycled_b = G_AB(with_layer(fake_a, real_b), training=True)
            same_a = G_BA(real_a, training=True)
            same_b = G_AB(real_b, training=True)
            disc_real_a = D_A(real_a[..., :3], training=True)
            disc_real_b = D_B(real_b[..., :3], training=True)
            disc_fake_a = D_A(fake_a, training=True)
            disc_fake_b = D_B(fake_b, training=True)
            cycle = l1(real_a[..., :3], cycled_a) + l1(real_b[..., :3], cycled_b)
            g_ab_loss = mse(disc_fake_b, 1.0) + 10.0 * cycle + 5.0 * l1(real_b[..., :3], same_b)
            g_ba_loss = mse(disc_fake_a, 1.0) + 10.0 * cycle + 5.0 * l1(real_a[..., :3], same_a)
            d_a_loss = 0.5 * (mse(disc_real_a, 1.0) + mse(disc_fake_a, 0.0))
            d_b_loss = 0.5 * (mse(disc_real_b, 1.0) + mse(disc_fake_b, 0.0))
        for loss, net, opt in ((g_ab_loss, G_AB, opts[0]), (g_ba_loss, G_BA, opts[1]),
                               (d_a_loss, D_A, opts[2]), (d_b_loss, D_B, opts[3])):
            opt.apply_gradients(zip(tape.gradient(loss, net.trainable_variables), net.trainable_variables))
        return g_ab_loss
    return step, (a, b), (G_AB, G_BA, D_A, D_B)


def build_any(model: str, variant: str, size: int, in_channels: int, batch: int):
    return (build_cyclegan if model == "cyclegan" else build)(variant, size, in_channels, batch)


def timed(fn, args, n, cpu=None):
    """Wall seconds per step; with a list `cpu`, also appends process CPU seconds per step
    (user + sys: less sensitive than wall time to other users' load on a shared machine)."""
    out = []
    for _ in range(n):
        c0, t0 = os.times(), time.perf_counter()
        float(fn(*args))
        out.append(time.perf_counter() - t0)
        if cpu is not None:
            c1 = os.times()
            own = isinstance(fn, WorkerStep)  # it ran in the worker: the worker's CPU time
            cpu.append(fn.last_cpu if own else (c1.user - c0.user) + (c1.system - c0.system))
    return out


# What translate/train.py sets before TensorFlow starts (TF's caching CPU allocator); a
# straightforward Keras script runs with TF's default allocator.
OURS_ENV = {"TF_CPU_ALLOCATOR_USE_BFC": "true"}


class WorkerStep:
    """A variant's step in its own process (so each variant runs with its own process settings:
    ours with OURS_ENV as our training CLI, the baseline with TF's defaults). Calling it runs one
    step there; `last_cpu` is that process's CPU seconds for the step."""

    def __init__(self, argv, env):
        self.proc = subprocess.Popen(argv, stdin=subprocess.PIPE, stdout=subprocess.PIPE, text=True,
                                     env={**os.environ, **env})
        self.last_cpu = None
        self._read()  # "ready" after building

    def _read(self):
        for line in self.proc.stdout:
            if line.startswith("{"):
                return json.loads(line)
        raise RuntimeError(f"step worker exited with status {self.proc.wait()}")

    def __call__(self):
        self.proc.stdin.write("step\n")
        self.proc.stdin.flush()
        reply = self._read()
        self.last_cpu = reply["cpu"]
        return reply["loss"]

    def close(self):
        self.proc.stdin.close()
        self.proc.wait()


def step_worker(model, variant, size, in_channels, batch):
    """The child side of WorkerStep: build, say ready, run one step per line on stdin."""
    step, args, _ = build_any(model, variant, size, in_channels, batch)
    print(json.dumps({"ready": variant}), flush=True)
    for _ in sys.stdin:
        c0 = os.times()
        loss = float(step(*args))
        c1 = os.times()
        print(json.dumps({"loss": loss, "cpu": (c1.user - c0.user) + (c1.system - c0.system)}), flush=True)


def compare(builders, warmup: int, rounds: int, steps: int, figures: dict, verbose: bool = False) -> dict:
    """The shared timing protocol of the step benchmarks. builders: {variant: () -> (step, args)}.

    Builds each variant (its first call, tracing included, is timed), runs `warmup` more untimed
    steps, then `rounds` x `steps` timed steps round-robin (order reversed every other round, so
    load from other users hits all variants alike). Prints the table and the ratios to
    "baseline" (median wall, best wall, CPU time), adds them to `figures`; returns
    {variant: (step, args)}.
    """
    built, first = {}, {}
    for v, make in builders.items():
        step, args = make()
        t0 = time.perf_counter()
        float(step(*args))
        first[v] = round(time.perf_counter() - t0, 2)
        timed(step, args, warmup)
        built[v] = (step, args)
        if verbose:
            print(f"  built {v}: first call {first[v]:.1f} s", flush=True)
    variants = list(builders)
    times = {v: [] for v in variants}
    cpu = {v: [] for v in variants}
    for r in range(rounds):
        for v in (variants if r % 2 == 0 else variants[::-1]):
            times[v] += timed(*built[v], steps, cpu[v])
    print(f"{'variant':10s} {'first call s':>12s} {'median s/step':>14s} {'min':>7s} {'max':>7s} "
          f"{'CPU s/step':>10s}")
    for v in variants:
        t = times[v]
        print(f"{v:10s} {first[v]:12.2f} {np.median(t):14.3f} {min(t):7.3f} {max(t):7.3f} "
              f"{np.median(cpu[v]):10.3f}")
        figures[f"{v}_s_per_step"] = round(float(np.median(t)), 4)
        figures[f"{v}_min_s"] = round(float(min(t)), 4)
        figures[f"{v}_cpu_s_per_step"] = round(float(np.median(cpu[v])), 4)
        figures[f"{v}_first_call_s"] = first[v]
    figures["timed_steps_per_variant"] = rounds * steps
    if "baseline" in variants:
        for v in variants:
            if v != "baseline":
                r = figures[f"{v}_s_per_step"] / figures["baseline_s_per_step"]
                rmin = figures[f"{v}_min_s"] / figures["baseline_min_s"]
                rcpu = figures[f"{v}_cpu_s_per_step"] / figures["baseline_cpu_s_per_step"]
                figures[f"ratio_{v}_vs_baseline"] = round(r, 3)
                figures[f"ratio_{v}_vs_baseline_min"] = round(rmin, 3)
                figures[f"ratio_{v}_vs_baseline_cpu"] = round(rcpu, 3)
                print(f"ratio {v} / baseline: {r:.3f} median wall, {rmin:.3f} best wall, "
                      f"{rcpu:.3f} CPU time (goal <= 0.65)")
    return built


def memory_runs(commands: dict, figures: dict, envs: Optional[dict] = None) -> None:
    """Peak memory of each variant in a fresh process: {variant: command line of its memory child,
    which prints a JSON line with peak_rss_mb and rss_after_build_mb}; envs: {variant: extra
    environment}."""
    for v, cmd in commands.items():
        out = subprocess.run(cmd, capture_output=True, text=True,
                             env={**os.environ, **(envs or {}).get(v, {})})
        line = [ln for ln in out.stdout.splitlines() if ln.startswith("{")]
        if out.returncode or not line:
            print(f"memory run for {v} failed: {out.stderr[-500:]}")
            continue
        m = json.loads(line[-1])
        figures[f"{v}_peak_rss_mb"] = m["peak_rss_mb"]
        print(f"peak RSS {v}: {m['peak_rss_mb']:.0f} MB (after building: {m['rss_after_build_mb']:.0f} MB)")


def memory_child(model, variant, size, in_channels, batch, warmup):
    rss0 = _rss_mb()
    step, args, _ = build_any(model, variant, size, in_channels, batch)
    rss_built = _rss_mb()
    timed(step, args, warmup + 2)
    print(json.dumps({"variant": variant, "peak_rss_mb": round(_rss_mb(), 1),
                      "rss_after_build_mb": round(rss_built, 1), "rss_at_start_mb": round(rss0, 1)}))


def components(size, in_channels, batch, reps=4):
    import keras
    import tensorflow as tf

    from translate.training import optimizers
    from translate.models import pix2pix

    G = pix2pix.unet_generator(size, in_channels)
    D = pix2pix.patch_discriminator(size, in_channels)
    c = tf.random.uniform([batch, size, size, in_channels], -1, 1)
    t = tf.random.uniform([batch, size, size, 3], -1, 1)

    @tf.function
    def g_fwd_bwd():
        with tf.GradientTape() as tape:
            loss = tf.reduce_mean(G(c, training=True))
        return tape.gradient(loss, G.trainable_variables)[0]

    grads = [tf.random.normal(v.shape) * 1e-3 for v in G.trainable_variables]
    fns = {"G forward": tf.function(lambda: G(c, training=True)),
           "D forward (1 pair)": tf.function(lambda: D([c, t], training=True)),
           "D forward (2 pairs, one call)": tf.function(
               lambda: D([tf.concat([c, c], 0), tf.concat([t, t], 0)], training=True)),
           "G forward+backward": g_fwd_bwd}
    for name, cls in (("Adam update of G, keras", keras.optimizers.Adam),
                      ("Adam update of G, fused", optimizers.FusedAdam)):
        opt = cls(2e-4, beta_1=0.5)
        opt.build(G.trainable_variables)
        fns[name] = tf.function(lambda opt=opt: opt.apply_gradients(zip(grads, G.trainable_variables)))
    res = {}
    for name, fn in fns.items():
        fn()
        ts = []
        for _ in range(reps):
            t0 = time.perf_counter()
            out = fn()
            if out is not None and hasattr(out, "numpy"):
                out.numpy()
            ts.append(time.perf_counter() - t0)
        res[name] = round(float(np.median(ts)), 4)
        print(f"  {name:32s} {res[name]:.3f} s")
    return res


def profile(step, args, logdir: str, steps: int = 2, top: int = 12):
    """Op time per step (ms, summed over threads) by op type, from a tf.profiler trace."""
    import collections
    import glob

    import tensorflow as tf
    from tensorflow.tsl.profiler.protobuf import xplane_pb2

    tf.profiler.experimental.start(logdir)
    for _ in range(steps):
        float(step(*args))
    tf.profiler.experimental.stop()
    by_type = collections.Counter()
    for path in glob.glob(os.path.join(logdir, "**", "*.xplane.pb"), recursive=True):
        space = xplane_pb2.XSpace()
        with open(path, "rb") as f:
            space.ParseFromString(f.read())
        for plane in space.planes:
            if "host" not in plane.name.lower():
                continue
            names = {k: v.name for k, v in plane.event_metadata.items()}
            for line in plane.lines:
                for ev in line.events:
                    name = names.get(ev.metadata_id, "")
                    if ":" in name and not name.startswith(("__", "EagerLocalExecute", "ExecutorState",
                                                                   "KernelAndDevice")):
                        by_type[name.rsplit(":", 1)[1]] += ev.duration_ps / 1e9 / steps
    return {k: round(v, 1) for k, v in by_type.most_common(top)}

def main():
    ap = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    ap.add_argument("--model", default="pix2pix", choices=["pix2pix", "cyclegan"])
    ap.add_argument("--image_size", type=int, default=256)
    ap.add_argument("--batch_size", type=int, default=1)
    ap.add_argument("--in_channels", type=int, default=None,
                    help="pix2pix: 1 = --condition=keypoints (default); cyclegan: 3 (default) or 4 = --landmark_channel")
    ap.add_argument("--variants", default=None, help=f"pix2pix: {','.join(VARIANTS)} (default); "
                    f"cyclegan: {','.join(CYCLEGAN_VARIANTS)}")
    ap.add_argument("--steps", type=int, default=5, help="timed steps per variant per round")
    ap.add_argument("--rounds", type=int, default=2)
    ap.add_argument("--warmup", type=int, default=2)
    ap.add_argument("--components", action="store_true", help="also time the step's parts")
    ap.add_argument("--no_memory", action="store_true", help="skip the per-variant memory runs")
    ap.add_argument("--profile", default="", help="comma-separated variants to trace with "
                    "tf.profiler (2 steps each): op time per step by op type")
    ap.add_argument("--in_process", action="store_true", help="run every variant in this process "
                    "with TF's default allocator (implied by --profile / --components) instead of "
                    "one process per variant, ours with translate/train.py's allocator setting")
    ap.add_argument("--memory_child", default=None, help=argparse.SUPPRESS)
    ap.add_argument("--step_worker", default=None, help=argparse.SUPPRESS)
    a = ap.parse_args()
    size, batch = a.image_size, a.batch_size
    ch = a.in_channels if a.in_channels is not None else (3 if a.model == "cyclegan" else 1)
    if a.memory_child:
        memory_child(a.model, a.memory_child, size, ch, batch, a.warmup)
        return
    if a.step_worker:
        step_worker(a.model, a.step_worker, size, ch, batch)
        return
    all_variants = CYCLEGAN_VARIANTS if a.model == "cyclegan" else VARIANTS
    variants = [v for v in (a.variants or ",".join(all_variants)).split(",") if v]
    bad = [v for v in variants if v not in all_variants]
    if bad:
        ap.error(f"--model={a.model} has no variant(s) {bad}; choose from {all_variants}")
    load_before = [round(x, 2) for x in os.getloadavg()]
    print(f"{a.model} train step, {size}x{size}, batch {batch}, {ch}-channel input; "
          f"{os.cpu_count()} CPUs, load average {load_before}")

    import tensorflow as tf
    figures = {"model": a.model, "image_size": size, "batch_size": batch, "tf": tf.__version__,
               "loadavg_before": load_before}
    in_process = a.in_process or bool(a.profile) or a.components
    envs = {} if in_process else {v: OURS_ENV for v in variants if v != "baseline"}
    figures["process_per_variant"], figures["ours_env"] = not in_process, envs and OURS_ENV
    common = [f"--model={a.model}", f"--image_size={size}", f"--batch_size={batch}", f"--in_channels={ch}"]
    if in_process:
        builders = {v: (lambda v=v: build_any(a.model, v, size, ch, batch)[:2]) for v in variants}
    else:
        builders = {v: (lambda v=v: (WorkerStep([sys.executable, os.path.abspath(__file__),
                                                 f"--step_worker={v}"] + common, envs.get(v, {})), ()))
                    for v in variants}
    built = compare(builders, a.warmup - 1, a.rounds, a.steps, figures)
    for v in [v for v in a.profile.split(",") if v in built]:
        import tempfile
        with tempfile.TemporaryDirectory() as tmp:
            prof = profile(*built[v], tmp)
        figures[f"{v}_op_ms_by_type"] = prof
        print(f"op time per step by type, {v} (ms, summed over threads; profiler overhead included):")
        for k, ms in prof.items():
            print(f"  {k:36s} {ms:8.1f}")
    for step, _ in built.values():
        if isinstance(step, WorkerStep):
            step.close()
    del built
    if a.components and a.model == "pix2pix":
        print("components (median s):")
        figures["components_s"] = components(size, ch, batch)
    if not a.no_memory:
        memory_runs({v: [sys.executable, os.path.abspath(__file__), f"--memory_child={v}",
                         f"--warmup={a.warmup}"] + common for v in variants}, figures, envs)
    figures["loadavg_after"] = [round(x, 2) for x in os.getloadavg()]
    print(f"load average after: {figures['loadavg_after']}")
    print(json.dumps(figures))


if __name__ == "__main__":
    main()
