"""Input-pipeline throughput: tf.data (translate/data.py) vs a per-image NumPy/PIL baseline.

Builds a small dataset in a temporary folder (synthetic anime faces from translate/synthetic.py,
also registered as the photo domain for the CycleGAN pipeline), then measures, in the same run:

* tf.data pix2pix (keypoints, and keypoints_colors_noise), batch 1 and 16, with augmentation;
* tf.data CycleGAN with the landmark channel, batch 1;
* baseline "numpy": a straightforward per-image loop doing the same work: parse the record
  (protobuf), PIL decode + resize to 286, random crop, flip with the eye swap, render the same
  layer the obvious way (a full-grid Gaussian per point, a distance field per sketch segment),
  colour planes + jitter + noise, scale to [-1, 1];
* baseline "numpy-matmul": the same loop with the layer rendered by the separable / matmul
  method that translate/landmarks.py uses (the fairest like-for-like renderer).

Prints examples/s, CPU core-ms per example, the speed-up over each baseline and the headroom over
a ~1.4 s pix2pix training step (tf-stack-notes §7), and ends with ONE JSON line.

  PYTHONPATH=. python benchmarks/input_pipeline.py [--count=128] [--seconds=4] [--size=256]
"""
from __future__ import annotations

import argparse
import io
import json
import os
import sys
import tempfile
import time

os.environ.setdefault("TF_CPP_MIN_LOG_LEVEL", "2")
sys.path.insert(0, os.path.dirname(os.path.dirname(os.path.abspath(__file__))))

import numpy as np  # noqa: E402
from PIL import Image  # noqa: E402

TRAIN_STEP_S = 1.4  # pix2pix U-Net-256 step on this CPU (tf-stack-notes §7: 1.42-1.50 s)


# ----------------------------------------------------------------------------- baseline
def _lowered(d, s):
    """translate.landmarks._gauss in NumPy: a Gaussian lowered to reach 0 at TRUNCATE sigmas."""
    from translate import landmarks as L
    return np.maximum(np.exp(-d * d / (2 * s * s)) - L._E3, 0) / (1 - L._E3)


def render_numpy(points, mask, size):
    """Straightforward NumPy rendering of translate.landmarks' layer (same look, exact lines)."""
    from translate import landmarks as L
    sp, sl = L.sigmas_px(size)
    yy, xx = np.mgrid[0:size, 0:size].astype(np.float32) + 0.5
    blobs = np.zeros((size, size), np.float32)
    cover = np.zeros((size, size), np.float32)
    p = np.asarray(points, np.float32) * size
    for k in range(5):
        if not mask[k]:
            continue
        dx, dy = xx - p[k, 0], yy - p[k, 1]
        g = _lowered(dx, sp) * _lowered(dy, sp)  # the renderer's truncated Gaussian profile
        blobs += L.POINT_VALUES[k] * g
        cover += g
    line = np.zeros((size, size), np.float32)
    for a, b in L.SEGMENTS:
        if not (mask[a] and mask[b]):
            continue
        v = p[b] - p[a]
        len2 = max(float(v @ v), 1e-6)
        dx, dy = xx - p[a, 0], yy - p[a, 1]
        t = np.clip((dx * v[0] + dy * v[1]) / len2, 0, 1)
        d2 = (dx - t * v[0]) ** 2 + (dy - t * v[1]) ** 2
        g = _lowered(np.sqrt(d2), sl)
        np.maximum(line, g, out=line)
    out = blobs + L.LINE_VALUE * line * (1 - np.minimum(cover, 1))
    return np.clip(out, -1, 1)[..., None]


def render_numpy_matmul(points, mask, size):
    """The separable / matmul renderer of translate/landmarks.py, in NumPy."""
    from translate import landmarks as L
    sp, sl = L.sigmas_px(size)
    c = np.arange(size, dtype=np.float32) + 0.5
    p = np.asarray(points, np.float32) * size
    m = np.asarray(mask, np.float32)

    def g1(d, s):
        return _lowered(d, s).astype(np.float32)

    gx, gy = g1(c - p[:, :1], sp), g1(c - p[:, 1:], sp) * m[:, None]
    blobs = (gy * np.asarray(L.POINT_VALUES, np.float32)[:, None]).T @ gx
    cover = np.minimum(gy.T @ gx, 1)
    half = size >= L.LINES_HALF_RES_FROM  # lines at half resolution, upsampled, as in landmarks.py
    ls, lsig = (size // 2, sl / 2) if half else (size, sl)
    lc, lp = np.arange(ls, dtype=np.float32) + 0.5, p * (ls / size)
    n = L._samples(ls, lsig)
    t = np.linspace(0, 1, n, dtype=np.float32)[:, None]
    qs, ws = [], []
    for a, b in L.SEGMENTS:
        qs.append(lp[a] + (lp[b] - lp[a]) * t)
        ws.append(np.full(n, m[a] * m[b] * np.linalg.norm(lp[b] - lp[a]) / ((n - 1) * lsig * np.sqrt(2 * np.pi))))
    q, w = np.concatenate(qs), np.concatenate(ws).astype(np.float32)
    line = np.minimum(g1(lc - q[:, 1:], lsig).T @ (g1(lc - q[:, :1], lsig) * w[:, None]), 1)
    if half:
        line = np.asarray(Image.fromarray(line.astype(np.float32)).resize((size, size), Image.BILINEAR))
    return np.clip(blobs + L.LINE_VALUE * line * (1 - cover), -1, 1)[..., None]


def baseline_example(serialized, rng, size, load, condition, renderer):
    from translate import records
    ex = records.example_to_numpy(serialized)
    img = Image.open(io.BytesIO(ex["image"])).convert("RGB").resize((load, load), Image.BILINEAR)
    ox, oy = rng.integers(0, load - size + 1, 2)
    arr = np.asarray(img, np.float32)[oy:oy + size, ox:ox + size]
    pts = (ex["points"] * load - [ox, oy]) / size
    mask, colors, cmask = ex["point_mask"], ex["colors"], ex["color_mask"]
    if rng.random() < 0.5:
        arr = arr[:, ::-1]
        pts = np.stack([1 - pts[:, 0], pts[:, 1]], -1)[[1, 0, 2, 3, 4]]
        mask, colors, cmask = mask[[1, 0, 2, 3, 4]], colors[[0, 1, 3, 2]], cmask[[0, 1, 3, 2]]
    target = arr / 127.5 - 1
    parts = [renderer(pts, mask, size)]
    if condition != "keypoints":
        if condition == "keypoints_colors_noise":
            colors = np.clip(colors + rng.uniform(-0.05, 0.05, colors.shape), 0, 1)
        planes = ((colors * 2 - 1) * cmask[:, None]).reshape(12).astype(np.float32)
        parts.append(np.broadcast_to(planes, (size, size, 12)))
        if condition == "keypoints_colors_noise":
            parts.append(rng.uniform(-1, 1, (size, size, 1)).astype(np.float32))
    return np.concatenate(parts, -1), target.astype(np.float32)


def run_baseline(serialized, seconds, size, condition, renderer):
    rng = np.random.default_rng(0)
    load = int(round(size * 286 / 256))
    baseline_example(serialized[0], rng, size, load, condition, renderer)  # warm-up
    n, t0, c0 = 0, time.perf_counter(), time.process_time()
    while time.perf_counter() - t0 < seconds:
        baseline_example(serialized[n % len(serialized)], rng, size, load, condition, renderer)
        n += 1
    wall, cpu = time.perf_counter() - t0, time.process_time() - c0
    return n / wall, 1000 * cpu / n


# ----------------------------------------------------------------------------- tf.data
def run_tf(ds, seconds, batch):
    it = iter(ds)
    for _ in range(3):  # warm-up: tracing, autotune
        next(it)
    n, t0, c0 = 0, time.perf_counter(), time.process_time()
    while time.perf_counter() - t0 < seconds:
        x = next(it)
        n += batch
    _ = x
    wall, cpu = time.perf_counter() - t0, time.process_time() - c0
    return n / wall, 1000 * cpu / n


def write_png(path, p2p, n=4, size=128):
    """Augmented pix2pix examples: target | layer | layer over target (synthetic data only).
    The last row drops the mouth and chin: missing points and their lines are not drawn."""
    from translate import data, landmarks, records
    examples, _ = data._examples(p2p, "train", "anime", records.read_info(p2p), size, True, 1,
                                 True, 64, False, None, False, 1)
    rows = []
    for i, ex in enumerate(examples.take(n)):
        mask = ex["point_mask"].numpy().copy()
        if i == n - 1:
            mask[3:] = 0
        layer = landmarks.render(ex["points"], mask, size).numpy()[..., 0]
        img = (ex["image"].numpy() + 1) * 127.5
        u8 = landmarks.to_uint8(layer).astype(np.float32)
        a = np.abs(layer)[..., None]
        over = img * (1 - a) + a * np.where(layer[..., None] > 0, [255.0, 255.0, 0.0], [0.0, 0.0, 255.0])
        rows.append(np.concatenate([img, np.repeat(u8[..., None], 3, -1), over], 1))
    grid = np.concatenate(rows, 0).clip(0, 255).astype(np.uint8)
    os.makedirs(os.path.dirname(os.path.abspath(path)), exist_ok=True)
    Image.fromarray(grid).save(path, optimize=True)
    print(f"wrote {path} ({os.path.getsize(path) // 1024} KB)")


def others_load():
    """1-minute load average minus nothing: a hint of how busy the shared machine was."""
    try:
        return round(os.getloadavg()[0], 2)
    except OSError:
        return None


def main():
    ap = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    ap.add_argument("--count", type=int, default=128, help="synthetic faces in the dataset")
    ap.add_argument("--size", type=int, default=256, help="image size")
    ap.add_argument("--seconds", type=float, default=3.0, help="measuring time per pipeline and round")
    ap.add_argument("--rounds", type=int, default=3, help="rounds; each figure is the best round "
                    "(other engineers' jobs share the 2 cores: the best round is the least disturbed)")
    ap.add_argument("--png", default=None, help="also write a picture of augmented pipeline "
                    "outputs (target | landmark layer | overlay; the last row with the chin and "
                    "mouth dropped), e.g. docs/landmarks_pipeline.png")
    args = ap.parse_args()

    import tensorflow as tf

    from translate import builder, data, synthetic
    from translate.faces import read_faces

    load_before = others_load()
    with tempfile.TemporaryDirectory() as tmp:
        synthetic.write_dataset(os.path.join(tmp, "anime"), args.count, size=args.size, seed=0)
        anime = os.path.join(tmp, "anime", "faces.jsonl")
        photo = os.path.join(tmp, "anime", "as_photo.jsonl")  # same crops, photo domain
        with open(photo, "w") as f:
            for face in read_faces(anime):
                face.domain, face.detector = "photo", "mtcnn"
                f.write(face.to_line())
        p2p, cyc = os.path.join(tmp, "p2p"), os.path.join(tmp, "cyc")
        for task, inputs, out in (("pix2pix", [anime], p2p), ("cyclegan", [anime, photo], cyc)):
            builder.build(builder.BuildConfig(task=task, inputs=inputs, output_dir=out,
                                              test_fraction=0.0, num_shards=4, progress=False),
                          log=lambda s: None)
        serialized = [r.numpy() for r in tf.data.TFRecordDataset(
            sorted(os.path.join(p2p, f) for f in os.listdir(p2p) if f.endswith(".tfrecord")))]

        # Same rendering? Compare the two NumPy renderers with translate.landmarks on real points.
        from translate import landmarks, records
        diffs = []
        for s in serialized[:8]:
            ex = records.example_to_numpy(s)
            ref = landmarks.render(ex["points"], ex["point_mask"], args.size).numpy()
            diffs.append((np.abs(render_numpy(ex["points"], ex["point_mask"], args.size) - ref).max(),
                          np.abs(render_numpy_matmul(ex["points"], ex["point_mask"], args.size) - ref).max()))
        diffs = np.max(np.array(diffs), 0)

        if args.png:
            write_png(args.png, p2p)
        S, sec = args.size, args.seconds
        res = {}
        cases = [
            ("pix2pix_keypoints_b1", lambda: data.pix2pix_dataset(p2p, "train", "keypoints", S, True, 1, repeat=True), 1),
            ("pix2pix_noise_b1", lambda: data.pix2pix_dataset(p2p, "train", "keypoints_colors_noise", S, True, 1, repeat=True), 1),
            ("pix2pix_noise_b16", lambda: data.pix2pix_dataset(p2p, "train", "keypoints_colors_noise", S, True, 16, repeat=True, drop_remainder=True), 16),
            ("cyclegan_landmarks_b1", lambda: data.cyclegan_dataset(cyc, "train", S, True, True, 1).repeat(), 1),
        ]
        pipelines = {name: (make(), batch) for name, make, batch in cases}

        def keep(key, r):
            if key not in res or r[0] > res[key][0]:
                res[key] = r
            print(f"  {key:36s} {r[0]:8.1f} examples/s  {r[1]:6.2f} core-ms/example", flush=True)

        for rnd in range(args.rounds):  # interleaved, so a busy spell hits all pipelines alike
            print(f"round {rnd + 1}/{args.rounds} (load average {others_load()})", flush=True)
            for name, (ds, batch) in pipelines.items():
                keep(name, run_tf(ds, sec, batch))
            for cond in ("keypoints", "keypoints_colors_noise"):
                for rname, fn in (("numpy", render_numpy), ("numpy_matmul", render_numpy_matmul)):
                    key = f"baseline_{rname}_{'noise' if 'noise' in cond else 'keypoints'}"
                    keep(key, run_baseline(serialized, sec, S, cond, fn))
        print("best of the rounds:")
        for k, v in res.items():
            print(f"  {k:36s} {v[0]:8.1f} examples/s  {v[1]:6.2f} core-ms/example")

    ratio = {
        "keypoints_vs_numpy": res["pix2pix_keypoints_b1"][0] / res["baseline_numpy_keypoints"][0],
        "noise_vs_numpy": res["pix2pix_noise_b1"][0] / res["baseline_numpy_noise"][0],
        "noise_b16_vs_numpy": res["pix2pix_noise_b16"][0] / res["baseline_numpy_noise"][0],
        "keypoints_vs_numpy_matmul": res["pix2pix_keypoints_b1"][0] / res["baseline_numpy_matmul_keypoints"][0],
        "noise_vs_numpy_matmul": res["pix2pix_noise_b1"][0] / res["baseline_numpy_matmul_noise"][0],
    }
    slowest = min(v[0] for k, v in res.items() if not k.startswith("baseline"))
    heaviest_cpu = max(v[1] for k, v in res.items() if not k.startswith("baseline"))
    headroom = slowest * TRAIN_STEP_S  # examples the pipeline makes during one batch-1 step
    print(f"renderer max |diff| vs translate.landmarks: numpy {diffs[0]:.3f}, numpy-matmul {diffs[1]:.4f}")
    for k, v in ratio.items():
        print(f"speed-up {k:28s} {v:6.1f}x")
    print(f"slowest tf.data pipeline: {slowest:.0f} examples/s = {headroom:.0f}x the rate of a "
          f"{TRAIN_STEP_S} s batch-1 training step; it costs {heaviest_cpu:.1f} core-ms per example, "
          f"{100 * heaviest_cpu / (TRAIN_STEP_S * 1000):.2f}% of one step's time on one core")
    print(f"load average before/after: {load_before} / {others_load()} (2 shared cores)")
    out = {"benchmark": "input_pipeline", "size": args.size, "count": args.count,
           **{f"{k}_examples_per_s": round(v[0], 1) for k, v in res.items()},
           **{f"{k}_core_ms": round(v[1], 2) for k, v in res.items()},
           **{f"speedup_{k}": round(v, 2) for k, v in ratio.items()},
           "train_step_s": TRAIN_STEP_S, "headroom_vs_train_step": round(headroom, 1),
           "render_max_abs_diff_numpy": round(float(diffs[0]), 4),
           "render_max_abs_diff_numpy_matmul": round(float(diffs[1]), 5),
           "loadavg_before": load_before, "loadavg_after": others_load()}
    print(json.dumps(out))


if __name__ == "__main__":
    main()
