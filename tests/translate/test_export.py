"""translate.inference.export: the translator SavedModel (serving contract, versions) reloads in a fresh
process without project code and matches the in-process Keras generator. Tiny: 32 px, ngf 8."""
import json
import os
import subprocess
import sys
import textwrap

import numpy as np
import pytest

tf = pytest.importorskip("tensorflow")

from translate.datasets import builder, pipelines as data, landmarks  # noqa: E402
from translate.inference import export, loading
from translate.faces import synthetic
from translate.models import registry
from translate.training import pix2pix as training
from tests.helpers import ROOT

S = 32

# Runs in a fresh interpreter (-I: no PYTHONPATH, no user site, cwd a temp folder), with any
# import of the project refused, so the SavedModel must stand alone.
RELOAD = textwrap.dedent("""
    import sys
    class Refuse:
        def find_spec(self, name, path=None, target=None):
            if name == "translate" or name.startswith("translate."):
                raise ImportError("project code is off limits here")
    sys.meta_path.insert(0, Refuse())
    import numpy as np, tensorflow as tf
    plain_dir, dropout_dir, inputs, out = sys.argv[1:5]
    d = {k: tf.constant(v) for k, v in np.load(inputs, allow_pickle=True).items()}
    m = tf.saved_model.load(plain_dir)
    raw = m.signatures["predict_raw"](**d)
    png = m.signatures["serving_default"](**d)
    drop = tf.saved_model.load(dropout_dir).signatures["predict_raw"]
    np.savez(out, output=raw["output"].numpy(), png=png["image_bytes"].numpy().astype(object),
             image_size=png["image_size"].numpy(),
             names=np.array(sorted(m.signatures["serving_default"].structured_input_signature[1])),
             dropout_a=drop(**d)["output"].numpy(), dropout_b=drop(**d)["output"].numpy())
""")


def _faces(n=3, seed=0):
    rng = np.random.default_rng(seed)
    base = np.array([[0.38, 0.40], [0.62, 0.40], [0.5, 0.55], [0.5, 0.68], [0.5, 0.85]], np.float32)
    kp = base[None] + rng.uniform(-0.03, 0.03, (n, 5, 2)).astype(np.float32)
    pm = np.ones((n, 5), np.float32)
    pm[1, 4] = 0.0  # one face without a chin
    colors = rng.uniform(0, 1, (n, 4, 3)).astype(np.float32)
    cmask = np.ones((n, 4), np.float32)
    cmask[n - 1, 0] = 0.0  # one without hair colour
    return {"keypoints": kp, "point_mask": pm, "colors": colors, "color_mask": cmask,
            "seed": np.arange(5, 5 + n, dtype=np.int64)}


def trained_run(tmp_path_factory) -> str:
    """A 32 px pix2pix run (keypoints_colors_noise: every serving input) trained 2 steps on
    synthetic faces; trained once per session, shared with tests/test_translate_cli.py."""
    root = tmp_path_factory.getbasetemp() / "translator_run"
    if not (root / "ready").exists():
        synthetic.write_dataset(str(root / "syn"), 6, size=64, seed=1)
        builder.build(builder.BuildConfig(task="pix2pix", inputs=[str(root / "syn" / "faces.jsonl")],
                                          output_dir=str(root / "ds"), test_fraction=0.0,
                                          num_shards=1, progress=False), log=lambda s: None)
        cfg = training.Pix2PixConfig(dataset_dir=str(root / "ds"), train_dir=str(root / "run"),
                                     image_size=S, ngf=8, ndf=8, max_steps=2, num_examples=1,
                                     condition="keypoints_colors_noise", summary_every=1000,
                                     log_every=1000, handle_signals=False)
        training.Pix2PixTrainer(cfg, log=lambda s: None).run()
        (root / "ready").touch()
    return str(root / "run")


@pytest.fixture(scope="module")
def run(tmp_path_factory):
    return trained_run(tmp_path_factory)


def test_contract_input_names():
    assert export.input_names({"model": "pix2pix", "condition": "keypoints"}) == ["keypoints", "point_mask"]
    assert export.input_names({"model": "pix2pix", "condition": "keypoints_colors_noise"}) == [
        "keypoints", "point_mask", "colors", "color_mask", "seed"]
    assert export.input_names({"model": "cyclegan", "landmark_channel": False}) == ["image"]
    assert export.input_names({"model": "ugatit", "landmark_channel": True}) == ["image", "keypoints", "point_mask"]
    with pytest.raises(export.ExportError, match="photo2anime only"):
        export.generator_name("pix2pix", "anime2photo")


@pytest.fixture(scope="module")
def exported(run, tmp_path_factory):
    """Two exports of the run (dropout off, then the default: on), then, in parallel: a fresh
    isolated process that reloads and runs both, and the export CLI on a bad --train_dir."""
    tmp = tmp_path_factory.mktemp("exported")
    base = str(tmp / "models" / "p2p")
    plain = export.export(run, base, inference_dropout=False)
    with_dropout = export.export(run, base)
    np.savez(tmp / "in.npz", **_faces())
    env = {k: v for k, v in os.environ.items() if k != "PYTHONPATH"}
    procs = {
        "reload": subprocess.Popen([sys.executable, "-I", "-c", RELOAD, plain, with_dropout,
                                    str(tmp / "in.npz"), str(tmp / "out.npz")], cwd=str(tmp), env=env,
                                   stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True),
        "cli_error": subprocess.Popen([sys.executable, os.path.join(ROOT, "translate", "export.py"),
                                       f"--train_dir={tmp / 'nope'}", f"--export_dir={tmp / 'm'}"],
                                      stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True),
    }
    results = {}
    for name, p in procs.items():
        out, err = p.communicate(timeout=300)
        results[name] = (p.returncode, out, err)
    return {"base": base, "plain": plain, "dropout": with_dropout, "tmp": tmp, **results}


def test_export_writes_versions_atomically(exported):
    base = exported["base"]
    assert exported["plain"] == os.path.join(base, "1") and exported["dropout"] == os.path.join(base, "2")
    assert sorted(os.listdir(base)) == ["1", "2"]  # no temporary folder left behind
    meta = json.load(open(os.path.join(exported["plain"], export.METADATA_FILE)))
    assert meta["inputs"] == ["keypoints", "point_mask", "colors", "color_mask", "seed"]
    assert meta["step"] == 2 and meta["inference_dropout"] is False


def test_next_version(tmp_path):
    assert export.next_version(str(tmp_path / "new")) == 1
    for d in ("3", "12", "notes", ".tmp-13-1"):
        (tmp_path / d).mkdir()
    assert export.next_version(str(tmp_path)) == 13


def test_reloaded_without_project_code_matches_keras(run, exported):
    code, _, err = exported["reload"]
    assert code == 0, err[-3000:]
    got = np.load(exported["tmp"] / "out.npz", allow_pickle=True)
    f = _faces()
    assert sorted(got["names"]) == sorted(f)

    # In process: the trained generator, dropout off, on the condition the pipeline builds.
    gen = loading.load(run).networks["generator"]
    assert export.disable_dropout(gen) == 3
    cond = tf.stack([data.pix2pix_condition(f["keypoints"][i], f["point_mask"][i], f["colors"][i],
                                            f["color_mask"][i], S, "keypoints_colors_noise",
                                            tf.constant([f["seed"][i], 0], tf.int64))
                     for i in range(3)])
    want = gen(cond, training=False).numpy()
    assert want.std() > 1e-3  # the comparison below means something
    np.testing.assert_allclose(got["output"], want, atol=2e-5)
    assert list(got["image_size"]) == [S] * 3
    for png, y in zip(got["png"], want):
        img = tf.io.decode_png(png).numpy()
        expect = np.round((y + 1.0) * 127.5).clip(0, 255)
        assert img.shape == (S, S, 3) and np.abs(img.astype(float) - expect).max() <= 1

    # The default export keeps pix2pix's inference dropout: two calls differ, around one picture.
    a, b = got["dropout_a"], got["dropout_b"]
    assert np.abs(a - b).max() > 1e-4 and np.abs(a - b).mean() < 0.5


def test_saved_model_cli_lists_both_signatures(exported):
    """What `saved_model_cli show --all --dir DIR` prints (its own function, run in process:
    a subprocess would spend ~8 s importing TensorFlow again)."""
    import contextlib
    import io

    from tensorflow.python.tools import saved_model_cli

    buf = io.StringIO()
    with contextlib.redirect_stdout(buf):
        saved_model_cli._show_all(exported["dropout"])
    out = buf.getvalue()
    for text in ("signature_def['serving_default']", "signature_def['predict_raw']",
                 "inputs['keypoints']", "inputs['seed']", "outputs['image_bytes']",
                 "outputs['image_size']", "outputs['output']"):
        assert text in out


def test_export_cli_errors_exit_1_without_traceback(exported):
    code, _, err = exported["cli_error"]
    assert code == 1 and "Traceback" not in err
    assert "no such folder" in err.strip().splitlines()[-1]


def test_cyclegan_landmark_run_serves_encoded_images(tmp_path):
    flags = {"model": "cyclegan", "image_size": S, "landmark_channel": True, "ngf": 4, "n_blocks": 1}
    train_dir = tmp_path / "cg"
    train_dir.mkdir()
    (train_dir / "flags.json").write_text(json.dumps(flags))
    nets = registry.build_inference(flags)
    tf.train.Checkpoint(**nets).save(str(train_dir / "ckpt"))
    module = export.build_module(loading.load(str(train_dir)), "photo2anime")
    assert module.input_names == ["image", "keypoints", "point_mask"]
    f = _faces(2)
    rng = np.random.default_rng(1)
    faces = rng.integers(0, 256, (2, 48, 48, 3), dtype=np.uint8)  # bigger than S: resized in graph
    encoded = np.array([tf.io.encode_png(x).numpy() for x in faces], dtype=object)
    out = module.serve(encoded, f["keypoints"], f["point_mask"])
    assert out["image_bytes"].shape == (2,) and list(out["image_size"].numpy()) == [S, S]
    x = tf.image.resize(faces.astype(np.float32), [S, S], antialias=True) / 127.5 - 1.0
    x = tf.concat([x, landmarks.render(f["keypoints"], f["point_mask"], S)], -1)
    want = np.round((nets["generator_ab"](x).numpy() + 1) * 127.5).clip(0, 255)
    for png, y in zip(out["image_bytes"].numpy(), want):
        assert np.abs(tf.io.decode_png(png).numpy().astype(float) - y).max() <= 1
    with pytest.raises(export.ExportError, match="no network"):
        export.build_module(loading.Translator("cyclegan", flags, {}, "ckpt", None), "anime2photo")
