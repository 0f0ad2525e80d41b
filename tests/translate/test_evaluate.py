"""Translation evaluation: a tiny trained pix2pix run end to end (JSON + HTML with every metric),
fake generators that memorise, ignore or copy the keypoints, an unpaired (CycleGAN-style) family
registered in the test, and CLI error paths. 32 px, a couple of training steps."""
import json
import os
import subprocess
import sys

import numpy as np
import pytest

tf = pytest.importorskip("tensorflow")
keras = pytest.importorskip("keras")

from tests.helpers import MARK_COLORS, make_faces  # noqa: E402
from translate.datasets import builder  # noqa: E402
from translate.evaluation import common, paired, report as reporting
from translate.models import registry
from translate.inference import loading
from translate.faces import synthetic
from translate.training import pix2pix as training
from translate.faces.schema import POINT_NAMES  # noqa: E402
from tests.helpers import ROOT

S = 32


@pytest.fixture(scope="module")
def p2p(tmp_path_factory):
    """(dataset_dir, train_dir) of a keypoints_colors run trained for 2 steps."""
    root = tmp_path_factory.mktemp("evp2p")
    synthetic.write_dataset(str(root / "syn"), 10, size=64, seed=3)
    builder.build(builder.BuildConfig(task="pix2pix", inputs=[str(root / "syn" / "faces.jsonl")],
                                      output_dir=str(root / "ds"), test_fraction=0.3, num_shards=1,
                                      progress=False), log=lambda s: None)
    cfg = training.Pix2PixConfig(dataset_dir=str(root / "ds"), train_dir=str(root / "run"),
                                 image_size=S, ngf=8, ndf=8, max_steps=2, num_examples=1,
                                 condition="keypoints_colors", summary_every=1000, log_every=1000,
                                 handle_signals=False)
    training.Pix2PixTrainer(cfg, log=lambda s: None).run()
    return str(root / "ds"), str(root / "run")


def _translator(generator, condition="keypoints_colors", **networks):
    nets = {"generator": generator} if generator is not None else networks
    return loading.Translator("fake", {"image_size": S, "condition": condition}, nets, "none", 0)


def _fake(fn, channels=13, name="fake"):
    x = keras.Input((S, S, channels))
    return keras.Model(x, keras.layers.Lambda(fn)(x), name=name)


def test_trained_pix2pix_report_has_every_metric(p2p, tmp_path):
    dataset, run = p2p
    t = loading.load(run)
    cfg = common.EvalConfig(dataset_dir=dataset, progress=False, html_examples=2)
    report, images = reporting.evaluate_run(t, cfg, common.anime_detector())
    m = report["metrics"]
    assert report["kind"] == "paired" and report["step"] == 2 and m["num_examples"] >= 2
    for key in ("l1", "psnr", "ssim"):
        assert np.isfinite(m[key]), key
    assert 0 < m["l1"] <= 2 and 0 <= m["ssim"] <= 1
    kf = m["keypoint_fidelity"]
    assert kf["count"] == m["num_examples"] and 0 <= kf["detected_share"] <= 1
    assert "reference_targets" in kf
    assert m["color_fidelity"]["count"] > 0 and m["color_fidelity"]["mean_rgb_distance"] >= 0
    memo = m["memorisation"]
    assert 0 <= memo["closer_to_train_share"] <= 1 and memo["mean_train_to_own_ratio"] > 0
    assert memo["reference_targets_nearest_train"] > 0 and "reference_mean_train_image" in memo
    ks = m["keypoint_sensitivity"]
    assert ks["shift"]["keypoint_move"] == pytest.approx(0.05 * np.sqrt(2), rel=1e-4)
    assert ks["output_change_per_unit_move"] > 0  # a real U-Net sees its layer
    assert m["skipped"] == {}
    # repeatable: dropout stays on at inference but is seeded
    again, _ = paired.evaluate_pix2pix(t, cfg, None)
    assert again["l1"] == m["l1"]

    out = reporting.write_reports(str(tmp_path / "out"), {"a": report, "b": report},
                                   {"a": images, "b": images})
    summary = json.loads(open(out["json"]).read())
    assert set(summary["runs"]) == {"a", "b"} and len(summary["table"]["rows"]) == 2
    assert "memorisation" in json.loads(open(tmp_path / "out" / "a" / "metrics.json").read())["metrics"]
    page = open(out["html"]).read()
    assert page.count("<tr>") == 3 and "kp sensitivity" in page and "nearest training target" in page
    pngs = os.listdir(tmp_path / "out" / "images" / "a")
    assert len(pngs) == 2 * 4  # 2 examples x (layer, output, target, nearest training target)


def test_memorising_generator_is_flagged(p2p):
    dataset, _ = p2p
    train = common.read_examples(dataset, "train", "anime", S, "pix2pix")["image"]
    recalled = tf.constant(train[1:2])
    gen = _fake(lambda x: tf.repeat(recalled, tf.shape(x)[0], axis=0))
    cfg = common.EvalConfig(dataset_dir=dataset, progress=False)
    m, _ = paired.evaluate_pix2pix(_translator(gen), cfg)
    assert m["memorisation"]["closer_to_train_share"] == 1.0
    assert m["memorisation"]["mean_train_to_own_ratio"] < 0.02  # uint8 rounding only
    ref = m["memorisation"]["reference_mean_train_image"]  # blur reference: clearly above recall
    assert ref["mean_train_to_own_ratio"] > 0.2
    assert m["keypoint_sensitivity"]["output_change_per_unit_move"] == 0.0


def test_memorisation_of_outputs_equal_to_their_own_targets(p2p):
    dataset, _ = p2p
    cfg = common.EvalConfig(dataset_dir=dataset, progress=False)
    targets = common.read_examples(dataset, "test", "anime", S, "pix2pix")["image"]
    memo, nearest = paired._memorisation(common.to_uint8(targets), targets, cfg, S)
    assert memo["closer_to_train_share"] == 0.0 and memo["mean_train_to_own_ratio"] > 10
    assert nearest["images"].shape == (len(targets), S, S, 3)


def test_keypoint_sensitivity_zero_when_ignored_and_positive_when_copied(p2p):
    dataset, _ = p2p
    cfg = common.EvalConfig(dataset_dir=dataset, progress=False)
    # uses the colour planes, ignores the keypoint layer (the original Exp3 failure)
    ignore = _fake(lambda x: tf.tanh(x[..., 1:4] + 0.1 * x[..., 4:7]))
    m, _ = paired.evaluate_pix2pix(_translator(ignore), cfg)
    ks = m["keypoint_sensitivity"]
    assert ks["output_change_per_unit_move"] == 0.0 and ks["relative_to_layer"] == 0.0
    copy = _fake(lambda x: tf.repeat(x[..., :1], 3, axis=-1))
    m, _ = paired.evaluate_pix2pix(_translator(copy), cfg)
    ks = m["keypoint_sensitivity"]
    assert ks["output_change_per_unit_move"] > 0.01
    assert ks["relative_to_layer"] == pytest.approx(1.0, rel=1e-4)  # moves exactly as the layer


def test_real_detector_on_synthetic_faces():
    imgs, pts, masks = [], [], []
    for i in range(3):
        img, face = synthetic.render_face(synthetic.face_rng(5, i), 64)
        imgs.append(np.asarray(img))
        pts.append([[(face.points[n][0] + 0.5) / 64, (face.points[n][1] + 0.5) / 64] for n in POINT_NAMES])
        masks.append([1.0] * 5)
    r, found = common.landmark_fidelity(np.stack(imgs), np.array(pts), np.array(masks),
                                            common.anime_detector())
    assert r["detected_share"] >= 2 / 3 and r["mean_error"] < 0.35, r
    shifted, _ = common.landmark_fidelity(np.stack(imgs), np.array(pts) + 0.15, np.array(masks),
                                              lambda im: found[0])
    assert shifted["mean_error"] > r["mean_error"] + 0.3  # the error sees a wrong place


# ----------------------------------------------------------------------------- unpaired
def mark_detector(image):
    """Finds the coloured squares test_data_helpers paints at the keypoints."""
    out = {}
    img = image.astype(np.int32)
    for name, rgb in MARK_COLORS.items():
        ys, xs = np.nonzero(np.abs(img - np.array(rgb)).max(-1) < 60)
        if len(xs):
            out[name] = (xs.mean() + 0.5, ys.mean() + 0.5)
    return out if "left_eye" in out and "right_eye" in out else None


def _identity(channels, name):
    x = keras.Input((S, S, channels))
    y = keras.layers.DepthwiseConv2D(1, use_bias=False, depthwise_initializer="ones", name=f"{name}_k")(x)
    return keras.Model(x, y, name=name)


def _build_fake(flags):
    c = 4 if flags["landmark_channel"] else 3
    return {"generator_ab": _identity(c, "g_ab"), "generator_ba": _identity(c, "g_ba")}


registry.register(registry.ModelFamily("fake_unpaired_test", paired=False, networks=_build_fake))


def test_unpaired_family_through_the_registry(tmp_path):
    a = make_faces(str(tmp_path / "a"), 5, size=48, seed=12)
    p = make_faces(str(tmp_path / "p"), 6, domain="photo", size=64, seed=13)
    builder.build(builder.BuildConfig(task="cyclegan", inputs=[a, p], output_dir=str(tmp_path / "ds"),
                                      test_fraction=0.0, num_shards=1, progress=False),
                  log=lambda s: None)
    run = tmp_path / "run"
    run.mkdir()
    flags = {"model": "fake_unpaired_test", "image_size": S, "landmark_channel": True,
             "landmark_output": True}
    (run / "flags.json").write_text(json.dumps(flags))
    nets = _build_fake(flags)
    tf.train.Checkpoint(**nets).save(str(run / "ckpt"))
    t = loading.load(str(run))
    assert reporting.family(t) == "unpaired"

    def features(images):  # cheap stand-in for Inception: 4x4 colour thumbnails
        return tf.reshape(tf.image.resize(images[..., :3], [4, 4], antialias=True), [len(images), -1]).numpy()

    cfg = common.EvalConfig(dataset_dir=str(tmp_path / "ds"), split="train", progress=False,
                                kid_subsets=5)
    report, images = reporting.evaluate_run(t, cfg, mark_detector, features)
    m = report["metrics"]
    assert m["landmark_channel"] and m["landmark_output"]
    # identity generators: perfect cycles and layers, outputs are the photos themselves
    assert m["cycle"]["l1_photo_anime_photo"] < 1e-6 and m["cycle"]["l1_anime_photo_anime"] < 1e-6
    assert m["landmark_output"]["l1_photo_to_anime"] < 1e-6
    lf = m["landmark_fidelity"]
    assert lf["detected_share"] == 1.0 and lf["mean_error"] < 0.15, lf
    fk = m["fid_kid"]
    assert fk["photo_to_anime"]["fid"] == pytest.approx(fk["reference_photos_vs_anime"]["fid"], rel=1e-6)
    assert fk["photo_to_anime"]["fid"] > 0 and fk["photo_to_anime"]["kid_subset_size"] == 5
    assert m["skipped"] == {}

    report2, _ = reporting.evaluate_run(t, cfg)  # no detector, no Inception: said, not hidden
    assert set(report2["metrics"]["skipped"]) == {"landmark_fidelity", "fid_kid"}
    out = reporting.write_reports(str(tmp_path / "out"), {"lm": report, "plain": report2},
                                   {"lm": images, "plain": images})
    table = json.loads(open(out["json"]).read())["table"]
    assert "FID p→a" in table["header"] and table["rows"][1][table["header"].index("FID p→a")] == "–"


# ----------------------------------------------------------------------------- CLI
def _cli(*args):
    env = dict(os.environ, TF_CPP_MIN_LOG_LEVEL="3", CUDA_VISIBLE_DEVICES="")
    return subprocess.run([sys.executable, "translate/evaluate.py", *args], capture_output=True,
                          text=True, cwd=ROOT, env=env, timeout=300)


def test_cli_error_paths_exit_1_without_traceback(p2p, tmp_path):
    dataset, run = p2p
    out = f"--output_dir={tmp_path / 'out'}"
    cases = [
        ([f"--dataset_dir={dataset}", out], "at least one --train_dir"),
        ([f"--train_dir={tmp_path / 'nope'}", f"--dataset_dir={dataset}", out], "no such training folder"),
        ([f"--train_dir={tmp_path}", f"--dataset_dir={dataset}", out], "no flags.json"),
        ([f"--train_dir={run}", f"--dataset_dir={tmp_path / 'nods'}", out], "no such dataset folder"),
        ([f"--train_dir={run}", f"--dataset_dir={dataset}", out,
          f"--inception_weights={tmp_path / 'w.h5'}"], "Inception weights file not found"),
    ]
    for args, msg in cases:
        r = _cli(*args)
        assert r.returncode == 1, (args, r.stderr)
        assert msg in r.stderr and "Traceback" not in r.stderr, r.stderr
    assert not os.path.exists(tmp_path / "out")


def test_cli_writes_json_html_and_table(p2p, tmp_path):
    """One run, one example (the CLI's own cost is the TensorFlow import); several runs in one
    table are covered in-process above."""
    dataset, run = p2p
    out = tmp_path / "out"
    r = _cli(f"--train_dir={run}", f"--dataset_dir={dataset}", f"--output_dir={out}",
             "--nodetect", "--html_examples=1", "--max_examples=1")
    assert r.returncode == 0, r.stderr[-2000:]
    summary = json.loads((out / "evaluation.json").read_text())
    rep = summary["runs"]["run"]
    assert rep["metrics"]["num_examples"] == 1 and len(summary["table"]["rows"]) == 1
    assert rep["metrics"]["skipped"] == {"keypoint_fidelity": "no anime face detector",
                                         "eye_follow": "no anime face detector"}
    assert (out / "index.html").exists() and "PSNR" in r.stdout
