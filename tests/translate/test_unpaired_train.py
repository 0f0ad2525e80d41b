"""Unpaired (CycleGAN) training: finite losses, cycle loss falls on a fixed batch, resume with the
history pools, SIGTERM stop, the loading builder restores the generators, CLI errors.
Tiny: 32 px, ngf/ndf 4-8, one residual block, a few steps."""
import os
import signal
import subprocess
import sys

import numpy as np
import pytest

tf = pytest.importorskip("tensorflow")

from tests.helpers import make_faces  # noqa: E402
from translate import run_config  # noqa: E402
from translate.datasets import builder, pipelines as data
from translate.inference import loading
from translate.training import unpaired as unpaired_training
from translate.training.pix2pix import ConfigError  # noqa: E402
from tests.helpers import ROOT

S = 32
TINY = dict(ngf=4, ndf=4, n_blocks=1, pool_size=3)


@pytest.fixture(scope="module")
def dataset(tmp_path_factory):
    root = tmp_path_factory.mktemp("cyc")
    a = make_faces(str(root / "a"), 6, size=48, seed=21)
    p = make_faces(str(root / "p"), 5, domain="photo", size=48, seed=22)
    builder.build(builder.BuildConfig(task="cyclegan", inputs=[a, p], output_dir=str(root / "ds"),
                                      test_fraction=0.0, num_shards=1, progress=False), log=lambda s: None)
    return str(root / "ds")


def _cfg(dataset, train_dir, options=None, **kw):
    base = dict(dataset_dir=dataset, train_dir=str(train_dir), image_size=S, max_steps=6,
                save_every=1000, summary_every=1000, log_every=1000, num_examples=2,
                handle_signals=False, options={**TINY, **(options or {})})
    return unpaired_training.UnpairedConfig(**{**base, **kw})


def test_cycle_loss_falls_on_a_fixed_batch(dataset, tmp_path):
    cfg = _cfg(dataset, tmp_path, {"ngf": 8, "ndf": 4, "landmark_output": True, "keypoint_attention": True},
               landmark_channel=True, learning_rate=2e-3, max_steps=1000)
    family = unpaired_training.get_family("cyclegan")(cfg)
    family.build(4)
    photo, anime = next(iter(data.cyclegan_dataset(dataset, "train", S, landmark_channel=True)))
    step = tf.function(family.replica_step)
    hist = [{k: float(v) for k, v in step(photo, anime).items()} for _ in range(20)]
    assert all(np.isfinite(list(h.values())).all() for h in hist)
    first, last = np.mean([h["cycle"] for h in hist[:3]]), np.mean([h["cycle"] for h in hist[-3:]])
    print(f"cycle loss first 3 steps {first:.4f}, last 3 {last:.4f}")
    assert last < 0.85 * first, (first, last)
    assert hist[-1]["landmark"] < hist[0]["landmark"]
    assert int(family.step_counter.iterations.numpy()) == 20
    assert int(family.pool_a.count.numpy()) == 3


def test_resume_signal_stop_pool_state_and_loading(dataset, tmp_path):
    run = tmp_path / "run"
    a = unpaired_training.UnpairedTrainer(_cfg(dataset, run, landmark_channel=True, handle_signals=True),
                                          log=lambda s: None)

    def sigterm(step, metrics):
        assert all(np.isfinite(v) for v in metrics.values())
        if step == 2:  # as if it arrived during step 3: that step finishes, is saved, the run stops
            os.kill(os.getpid(), signal.SIGTERM)
        return False
    res = a.run(on_step=sigterm)
    assert res["stopped_by"] == "SIGTERM" and res["step"] == 3
    assert tf.train.latest_checkpoint(str(run)).endswith("-3")
    pool = {k: v.numpy() for k, v in vars(a.family.pool_b).items() if isinstance(v, tf.Variable)}
    assert int(pool["count"]) == 3 and int(pool["draws"]) == 3
    flags = run_config.load(str(run))
    assert flags["model"] == "cyclegan" and flags["n_blocks"] == 1 and flags["learning_rate"] == 2e-4

    logs = []  # resumed with the image cache off: a data flag, not a model flag
    b = unpaired_training.UnpairedTrainer(_cfg(dataset, run, landmark_channel=True, cache_images="off"),
                                          log=logs.append)
    assert b.restore() == 3
    assert b.family.learning_rate() == pytest.approx(2e-4 * 3 / 3)  # decay over steps 3..6
    for k, v in pool.items():
        np.testing.assert_array_equal(getattr(b.family.pool_b, k).numpy(), v)
    res = b.run(on_step=lambda step, m: step >= 5)
    assert res["start_step"] == 3 and res["step"] == 5 and res["stopped_by"] == "on_step"
    assert int(b.family.pool_b.draws.numpy()) == 5
    assert any("--cache_images='auto' (this run: 'off')" in line for line in logs), logs

    t = loading.load(str(run))
    assert t.model == "cyclegan" and t.step == 5 and set(t.networks) == {"generator_ab", "generator_ba"}
    x = tf.random.uniform([1, S, S, 4], -1, 1, seed=4)
    for name, net in (("generator_ab", b.family.g_ab), ("generator_ba", b.family.g_ba)):
        np.testing.assert_allclose(t.networks[name](x).numpy(), net(x, training=False).numpy(), atol=1e-6)

    with pytest.raises(run_config.IncompatibleRunError, match="landmark_channel"):
        unpaired_training.UnpairedTrainer(_cfg(dataset, run), log=lambda s: None)
    assert any(f.startswith("events.out.tfevents") for f in os.listdir(run))


def test_config_errors(dataset, tmp_path):
    with pytest.raises(ConfigError, match="need --landmark_channel"):
        unpaired_training.UnpairedTrainer(_cfg(dataset, tmp_path / "r1", {"keypoint_attention": True}))
    with pytest.raises(ConfigError, match="unknown model 'nosuchmodel'"):
        unpaired_training.UnpairedTrainer(_cfg(dataset, tmp_path / "r2", model="nosuchmodel", options={}))
    with pytest.raises(ValueError, match="unknown options"):
        unpaired_training.get_family("cyclegan")(_cfg(dataset, tmp_path / "r3", {"bogus": 1}))
    assert not os.path.exists(tmp_path / "r1")


def test_cli_bad_flags_exit_1_with_one_line(dataset, tmp_path):
    r = subprocess.run([sys.executable, "-m", "translate.train", "--model=cyclegan", f"--dataset_dir={dataset}",
                        f"--train_dir={tmp_path / 'run'}", f"--image_size={S}", "--landmark_output"],
                       capture_output=True, text=True, cwd=ROOT, timeout=300)
    assert r.returncode == 1, r.stderr
    assert r.stderr.strip().splitlines()[-1] == "error: --landmark_output and --keypoint_attention need --landmark_channel"
    assert "Traceback" not in r.stderr
