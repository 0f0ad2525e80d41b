"""UGATIT: network shapes, AdaLIN / LIN / spectral norm / CAM against NumPy, rho clipping, a few
trainer steps at 32 px (ch 8, light, one residual block), and the loading builder."""
import numpy as np
import pytest

tf = pytest.importorskip("tensorflow")
import keras  # noqa: E402

from tests.helpers import make_faces  # noqa: E402
from translate.datasets import builder  # noqa: E402
from translate.inference import loading
from translate.training import optimizers
from translate.training import unpaired as ut  # noqa: E402
from translate.models import ugatit  # noqa: E402

S, CH = 32, 8


def _lin_reference(x, rho, eps=1e-5):
    """rho * IN(x) + (1 - rho) * LN(x), NumPy, biased variances."""
    in_m, in_v = x.mean((1, 2), keepdims=True), x.var((1, 2), keepdims=True)
    ln_m, ln_v = x.mean((1, 2, 3), keepdims=True), x.var((1, 2, 3), keepdims=True)
    return rho * (x - in_m) / np.sqrt(in_v + eps) + (1 - rho) * (x - ln_m) / np.sqrt(ln_v + eps)


@pytest.mark.parametrize("light", [True, False])
def test_generator_shapes_and_size(light):
    g = ugatit.generator(S, in_channels=4, ch=CH, n_res=2, light=light)
    img, cam, heat = g(tf.random.uniform([2, S, S, 4], -1, 1))
    assert img.shape == (2, S, S, 3) and cam.shape == (2, 2) and heat.shape == (2, S // 4, S // 4, 1)
    assert float(tf.reduce_max(tf.abs(img))) <= 1.0
    c = 4 * CH  # bottleneck channels; full mode's first MLP layer sees the whole map
    mlp_in = c if light else (S // 4) ** 2 * c
    assert g.get_layer("mlp0").kernel.shape == (mlp_in, c)


def test_published_sizes_at_256():
    """Full generator ~279 M weights (the 268 M flattened MLP), light ~10.6 M (build only)."""
    assert ugatit.generator(256, light=True).count_params() == 10_594_880
    assert ugatit.discriminator(256, ch=2, n_layers=5).outputs[0].shape[1:] == (30, 30, 1)
    assert ugatit.discriminator(256, ch=2, n_layers=7).outputs[0].shape[1:] == (6, 6, 1)


def test_discriminator_shapes_and_size_checks():
    nets = ugatit.build_networks(S, 4, ch=CH, n_res=1, n_dis=4, light=True)
    x = tf.random.uniform([2, S, S, 3], -1, 1)
    logits, cam, heat = nets["disc_a_global"](x)  # 3 stride-2 convs: 32 -> 4 -> 3 -> 2
    assert logits.shape == (2, 2, 2, 1) and cam.shape == (2, 2) and heat.shape == (2, 3, 3, 1)
    logits, cam, _ = nets["disc_b_local"](x)  # 1 stride-2 conv: 32 -> 16 -> 15 -> 14
    assert logits.shape == (2, 14, 14, 1) and cam.shape == (2, 2)
    with pytest.raises(ValueError, match="too small"):
        ugatit.check_sizes(S, 6)


def test_adalin_and_lin_match_numpy():
    rng = np.random.default_rng(0)
    x = rng.normal(1.5, 2.0, (2, 5, 6, 4)).astype(np.float32)
    gamma, beta = rng.normal(size=(2, 4)).astype(np.float32), rng.normal(size=(2, 4)).astype(np.float32)
    rho = np.array([0.0, 0.3, 0.9, 1.0], np.float32)
    ada = ugatit.AdaLIN()
    ada.build([x.shape, gamma.shape, beta.shape])
    ada.rho.assign(rho)
    want = _lin_reference(x, rho) * gamma[:, None, None] + beta[:, None, None]
    np.testing.assert_allclose(ada([x, gamma, beta]).numpy(), want, atol=2e-5)
    lin = ugatit.LIN()
    lin.build(x.shape)
    lin.rho.assign(rho)
    lin.gamma.assign(gamma[0])
    lin.beta.assign(beta[1])
    np.testing.assert_allclose(lin(x).numpy(), _lin_reference(x, rho) * gamma[0] + beta[1], atol=2e-5)


def test_spectral_norm_conv_matches_numpy():
    """Kernels with a known top singular value (5, clear gap): after a few training calls (one
    power iteration each) the output is conv(x, W / 5), both when the layer scales its kernel
    and when it scales its (smaller) output."""
    rng = np.random.default_rng(1)
    for k, c, f, hw in ((4, 3, 5, 9), (4, 16, 32, 4)):
        layer = ugatit.SNConv2D(f, k, 1)
        x = rng.normal(size=(1, hw, hw, c)).astype(np.float32)
        layer.build(x.shape)
        q1, _ = np.linalg.qr(rng.normal(size=(k * k * c, f)))
        q2, _ = np.linalg.qr(rng.normal(size=(f, f)))
        spectrum = np.concatenate([[5.0], np.linspace(1.0, 0.1, f - 1)])
        w = ((q1 * spectrum) @ q2.T).reshape(k, k, c, f).astype(np.float32)
        layer.kernel.assign(w)
        layer.bias.assign(rng.normal(size=f).astype(np.float32))
        for _ in range(8):
            y = layer(x, training=True).numpy()
        want = tf.nn.conv2d(x, w / 5.0, 1, "VALID").numpy() + layer.bias.numpy()
        np.testing.assert_allclose(y, want, rtol=1e-4, atol=1e-5)


def test_cam_matches_concat_reference_and_keeps_published_shapes():
    rng = np.random.default_rng(2)
    x = rng.normal(size=(2, 3, 3, 4)).astype(np.float32)
    cam = ugatit.CAM(leaky=0.2, spectral=True)
    h, logits, heat = cam(x)
    assert cam.kernel.shape == (8, 4) and logits.shape == (2, 2)  # the 1x1 conv sees 2C channels
    wa, wm = (w.numpy() / np.linalg.norm(w.numpy()) for w in (cam.w_gap, cam.w_gmp))
    np.testing.assert_allclose(logits, np.stack([x.mean((1, 2)) @ wa, x.max((1, 2)) @ wm], -1), atol=1e-5)
    z = np.concatenate([x * wa, x * wm], -1) @ cam.kernel.numpy() + cam.bias.numpy()
    z = np.where(z > 0, z, 0.2 * z)
    np.testing.assert_allclose(h, z, atol=1e-5)
    np.testing.assert_allclose(heat, z.sum(-1, keepdims=True), atol=1e-4)


def test_optimizer_update_clips_rho():
    g = ugatit.generator(16, ch=2, n_res=1, light=True)
    rhos = ugatit.rho_variables(g)
    assert len(rhos) == 2 * 1 + 2  # two AdaLIN per block + two LIN
    for sign, want in ((-1.0, 1.0), (1.0, 0.0)):  # huge steps up, then down: clipped at 1, at 0
        opt = optimizers.FusedAdam(5.0)
        opt.apply_gradients([(tf.fill(r.shape, sign), r) for r in rhos])
        for r in rhos:
            np.testing.assert_array_equal(r.numpy(), np.full(r.shape, want, np.float32))


TINY = dict(ch=CH, n_res=1, n_dis=4, light=True)


def _config(dataset_dir, train_dir, **options):
    return ut.UnpairedConfig(dataset_dir=str(dataset_dir), train_dir=str(train_dir), model="ugatit",
                             image_size=S, landmark_channel=True, max_steps=8, decay_start=8,
                             learning_rate=5e-4, augment=False, save_every=1000, summary_every=1000,
                             log_every=1000, num_examples=1, handle_signals=False,
                             options={**TINY, **options})


@pytest.fixture
def no_graph_rewrites():
    """Grappler off while the test's functions are first called: its rewrites of the ~10k-op
    UGATIT step took longer than the 8 steps it runs (restored afterwards)."""
    old = tf.config.optimizer.get_experimental_options()
    tf.config.optimizer.set_experimental_options({"disable_meta_optimizer": True})
    yield
    tf.config.optimizer.set_experimental_options({"disable_meta_optimizer": old.get("disable_meta_optimizer", False)})


def test_trainer_steps_and_loading_restores(tmp_path, no_graph_rewrites):
    """8 trainer steps on one photo and one anime face (a fixed batch; RGB + landmark layer):
    finite losses, cycle + identity fall, rho stays in [0, 1]; the loading builder rebuilds
    image-only generators with the trained weights from the train_dir."""
    a = make_faces(str(tmp_path / "a"), 1, size=40, seed=3)
    p = make_faces(str(tmp_path / "p"), 1, domain="photo", size=40, seed=4)
    builder.build(builder.BuildConfig(task="cyclegan", inputs=[a, p], output_dir=str(tmp_path / "ds"),
                                      test_fraction=0.0, num_shards=1, progress=False), log=lambda s: None)
    trainer = ut.UnpairedTrainer(_config(tmp_path / "ds", tmp_path / "run"), log=lambda s: None)
    hist = []
    res = trainer.run(on_step=lambda step, m: hist.append(m))  # None: keep going
    assert res["step"] == 8 and len(hist) == 8
    assert all(np.isfinite(list(m.values())).all() for m in hist), hist
    rec = [m["G_cycle"] + m["G_identity"] for m in hist]
    assert rec[-1] < rec[0] - 0.05, rec
    fam = trainer.family
    for g in (fam.g_ab, fam.g_ba):
        for r in ugatit.rho_variables(g):
            assert 0.0 <= float(tf.reduce_min(r)) and float(tf.reduce_max(r)) <= 1.0

    t = loading.load(str(tmp_path / "run"))
    assert t.model == "ugatit" and t.step == 8 and set(t.networks) == {"generator_ab", "generator_ba"}
    photo, _ = trainer.fixed_examples()
    for d, name in (("ab", "generator_ab"), ("ba", "generator_ba")):
        np.testing.assert_allclose(t.networks[name](photo).numpy(), fam.translate(photo, d).numpy(),
                                   atol=1e-5)


def test_family_rejects_bad_options(tmp_path):
    for options, match in (({"n_dis": 6}, "too small"), ({"lambda_l1": 1.0}, "unknown options"),
                           ({"cam_weight": -1.0}, "cam_weight")):
        with pytest.raises(ValueError, match=match):
            ut.get_family("ugatit")(_config(tmp_path, tmp_path, **options)).check()
