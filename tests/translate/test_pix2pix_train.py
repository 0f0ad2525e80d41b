"""pix2pix training: learning, resume (step, optimizer state, lr), flags.json, summaries,
signals and CLI errors. Tiny: 32 px, ngf/ndf 8-16, a few dozen steps."""
import json
import os
import shutil
import signal
import subprocess
import sys
import time

import numpy as np
import pytest

tf = pytest.importorskip("tensorflow")

from translate import run_config  # noqa: E402
from translate.datasets import builder, records
from translate.training import optimizers, schedules, pix2pix as training
from translate.faces import synthetic
from tests.helpers import ROOT

S = 32


@pytest.fixture(scope="module")
def dataset(tmp_path_factory):
    root = tmp_path_factory.mktemp("p2p")
    synthetic.write_dataset(str(root / "syn"), 10, size=64, seed=3)
    builder.build(builder.BuildConfig(task="pix2pix", inputs=[str(root / "syn" / "faces.jsonl")],
                                      output_dir=str(root / "ds"), test_fraction=0.2, num_shards=1,
                                      progress=False), log=lambda s: None)
    return str(root / "ds")


def _cfg(dataset, train_dir, **kw):
    base = dict(dataset_dir=dataset, train_dir=str(train_dir), image_size=S, ngf=8, ndf=8,
                batch_size=2, max_steps=8, save_every=1000, summary_every=4, log_every=4,
                num_examples=2, handle_signals=False)
    return training.Pix2PixConfig(**{**base, **kw})


def test_linear_decay_schedule():
    s = schedules.LinearDecay(2e-4, 100)
    got = [float(s(k)) for k in (0, 50, 75, 100, 120)]
    np.testing.assert_allclose(got, [2e-4, 2e-4, 1e-4, 0.0, 0.0], atol=1e-12)


def test_fused_adam_matches_keras_adam():
    keras = pytest.importorskip("keras")
    rng = np.random.default_rng(0)
    init = [rng.normal(size=(3, 4)).astype("float32"), rng.normal(size=(5,)).astype("float32")]
    grads = [[rng.normal(size=v.shape).astype("float32") for v in init] for _ in range(4)]
    out = []
    for cls in (keras.optimizers.Adam, optimizers.FusedAdam):
        vs = [keras.Variable(v) for v in init]
        opt = cls(schedules.LinearDecay(1e-2, 4, 2), beta_1=0.5, epsilon=1e-8)
        step = tf.function(lambda g: opt.apply_gradients(zip(g, vs)))
        for g in grads:
            step([tf.constant(x) for x in g])
        out.append([v.numpy() for v in vs + opt.variables])
    for a, b in zip(*out):
        np.testing.assert_allclose(a, b, rtol=2e-5, atol=1e-7)


def test_l1_falls_on_a_short_run(dataset, tmp_path):
    cfg = _cfg(dataset, tmp_path / "run", ngf=16, ndf=16, batch_size=4, max_steps=80,
               learning_rate=1e-3, summary_every=1000, log_every=1000)
    trainer = training.Pix2PixTrainer(cfg, log=lambda s: None)
    l1 = []
    result = trainer.run(on_step=lambda step, m: l1.append(m["G_L1"]) and False)
    assert result["step"] == 80 and len(l1) == 80
    before, after = np.mean(l1[:10]), np.mean(l1[-10:])
    print(f"L1 first 10 steps {before:.4f}, last 10 steps {after:.4f}")
    assert after < 0.8 * before, (before, after)


def test_resume_keeps_step_optimizer_state_and_lr(dataset, tmp_path):
    cfg = _cfg(dataset, tmp_path / "run")
    a = training.Pix2PixTrainer(cfg, log=lambda s: None)
    res = a.run(on_step=lambda step, m: step >= 5)  # stopped mid-run (as a signal would)
    assert res["stopped_by"] == "on_step" and res["step"] == 5
    lr_a = a.learning_rate()
    assert lr_a == pytest.approx(2e-4 * 3 / 4)  # decay over steps 4..8
    slots_a = [v.numpy() for v in a.g_opt.variables]
    weights_a = [v.numpy() for v in a.generator.weights]

    logs = []
    os.makedirs(tmp_path / "run" / "ckpt-6_temp")  # left by a save killed with -9: removed
    b = training.Pix2PixTrainer(cfg, log=logs.append)
    assert not (tmp_path / "run" / "ckpt-6_temp").exists()
    assert any("ckpt-6_temp" in l and "interrupted checkpoint save" in l for l in logs)
    assert b.step == 0
    assert b.restore() == 5 and b.learning_rate() == pytest.approx(lr_a)
    for x, y in zip(slots_a, [v.numpy() for v in b.g_opt.variables]):
        np.testing.assert_array_equal(x, y)
    for x, y in zip(weights_a, [v.numpy() for v in b.generator.weights]):
        np.testing.assert_array_equal(x, y)
    assert any(np.abs(s).max() > 0 for s in slots_a[2:])  # Adam moments are not still zero
    res = b.run()
    assert res["start_step"] == 5 and res["step"] == 8 and b.learning_rate() == 0.0
    assert tf.train.latest_checkpoint(str(tmp_path / "run")).endswith("ckpt-8")

    # nothing left to do: returns at once
    assert training.Pix2PixTrainer(cfg, log=lambda s: None).run()["step"] == 8


def test_flags_json_and_incompatible_rerun(dataset, tmp_path):
    train_dir = tmp_path / "run"
    training.Pix2PixTrainer(_cfg(dataset, train_dir, condition="keypoints_colors"), log=lambda s: None)
    saved = json.loads((train_dir / "flags.json").read_text())
    assert saved["model"] == "pix2pix" and saved["image_size"] == S and saved["condition"] == "keypoints_colors"
    with pytest.raises(run_config.IncompatibleRunError, match=r"--image_size=32 \(this run: 64\)"):
        training.Pix2PixTrainer(_cfg(dataset, train_dir, condition="keypoints_colors", image_size=64))
    with pytest.raises(run_config.IncompatibleRunError, match="--condition"):
        training.Pix2PixTrainer(_cfg(dataset, train_dir))
    logs = []  # a changed schedule is allowed, and said
    training.Pix2PixTrainer(_cfg(dataset, train_dir, condition="keypoints_colors", max_steps=9), log=logs.append)
    assert any("--max_steps=8" in s for s in logs)


def _events(train_dir):
    tags, images = set(), {}
    for f in tf.io.gfile.glob(os.path.join(train_dir, "events.out.tfevents.*")):
        for ev in tf.compat.v1.train.summary_iterator(f):
            for v in ev.summary.value:
                tags.add(v.tag)
                if v.tag.startswith("pix2pix/"):
                    images[ev.step] = tf.make_ndarray(v.tensor)
    return tags, images


@pytest.mark.parametrize("condition,strategy,jit", [
    ("keypoints_colors_noise", "mirrored", False),
    pytest.param("keypoints_colors", "default", True, marks=pytest.mark.slow)])
def test_summaries_strategies_and_xla(dataset, tmp_path, condition, strategy, jit):
    train_dir = str(tmp_path / "run")
    cfg = _cfg(dataset, train_dir, condition=condition, strategy=strategy, jit_compile=jit,
               max_steps=4)
    logs = []
    res = training.Pix2PixTrainer(cfg, log=logs.append).run()
    assert res["step"] == 4 and all(np.isfinite(v) for v in res["metrics"].values())
    assert any("steps/s" in s for s in logs)
    tags, images = _events(train_dir)
    assert {"loss/G_total", "loss/G_GAN", "loss/G_L1", "loss/D_total", "lr", "steps_per_sec",
            "pix2pix/layer_output_target"} <= tags
    img = images[4]  # [width, height, encoded...]: one PNG per grid
    png = tf.io.decode_png(img[2]).numpy()
    assert png.shape == (2 * S, 3 * S, 3)  # 2 fixed examples, layer | output | target


def _train_cmd(dataset, train_dir, *extra):
    return [sys.executable, "-m", "translate.train", f"--dataset_dir={dataset}", f"--train_dir={train_dir}",
            f"--image_size={S}", "--ngf=8", "--ndf=8", "--num_examples=1", *extra]


def _env():
    return {**os.environ, "TF_CPP_MIN_LOG_LEVEL": "2", "PYTHONUNBUFFERED": "1"}


def test_sigterm_saves_a_checkpoint_and_exits_cleanly(dataset, tmp_path):
    train_dir = tmp_path / "run"
    proc = subprocess.Popen(_train_cmd(dataset, train_dir, "--max_steps=100000", "--log_every=1",
                                       "--save_every=100000"),
                            stdout=subprocess.PIPE, stderr=subprocess.STDOUT, text=True, cwd=ROOT, env=_env())
    out = []
    deadline = time.time() + 120
    for line in proc.stdout:
        out.append(line)
        if line.startswith("step 3/") or time.time() > deadline:
            break
    proc.send_signal(signal.SIGTERM)
    rest, _ = proc.communicate(timeout=120)
    text = "".join(out) + rest
    assert proc.returncode == 0, text
    assert "stopped by SIGTERM" in text and "Traceback" not in text
    latest = tf.train.latest_checkpoint(str(train_dir))
    assert latest is not None and int(latest.rsplit("-", 1)[1]) >= 3, text


def test_dataset_and_config_errors(dataset, tmp_path):
    empty = tmp_path / "empty_ds"
    shutil.copytree(dataset, empty)
    info = json.loads((empty / "dataset.json").read_text())
    info["splits"]["train"]["anime"].update(count=0, shards=[])
    (empty / "dataset.json").write_text(json.dumps(info))
    with pytest.raises(records.DatasetError, match="is empty"):
        training.Pix2PixTrainer(_cfg(str(empty), tmp_path / "a"), log=lambda s: None).run()
    with pytest.raises(training.ConfigError, match="power-of-2"):
        training.Pix2PixTrainer(_cfg(dataset, tmp_path / "b", image_size=48))
    with pytest.raises(training.ConfigError, match="batch_size"):
        training.Pix2PixTrainer(_cfg(dataset, tmp_path / "b", batch_size=0))
    with pytest.raises(training.ConfigError, match="cache_images"):
        training.Pix2PixTrainer(_cfg(dataset, tmp_path / "b", cache_images="yes"))


def test_cli_error_is_one_line(tmp_path):
    """The CLI's clean-exit path (the library errors themselves are tested above)."""
    r = subprocess.run(_train_cmd(str(tmp_path / "missing"), tmp_path / "a"), capture_output=True,
                       text=True, cwd=ROOT, env=_env(), timeout=120)
    assert r.returncode == 1, (r.stdout, r.stderr)
    assert "no such dataset folder" in r.stderr and "Traceback" not in r.stderr + r.stdout, r.stderr
    assert not (tmp_path / "a").exists()
