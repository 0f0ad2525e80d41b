"""tagnet/export.py: the tagger SavedModel (image bytes in, scores out, vocabulary baked in)
reloads in a fresh process without project code, `saved_model_cli show --all` lists it, and it
matches the in-process Keras model. Tiny: MobileNet 0.25 at 32 px, 5 tags."""
import io
import os
import subprocess
import sys
import textwrap

import numpy as np
import pytest

tf = pytest.importorskip("tensorflow")

from tagnet import backbones, exporting as export, model_dir  # noqa: E402
from tests.helpers import ROOT

ENV = {**os.environ, "PYTHONPATH": ROOT, "TF_CPP_MIN_LOG_LEVEL": "2"}
S = 32
TAGS = ["red", "blue", "circle", "square", "stripes"]
THRESHOLDS = [0.3, 0.4, 0.5, 0.6, 0.7]


def make_tagger(path, size=S, backbone="mobilenet_v1_025", seed=0):
    """A random-weight tagger folder (weights, tagnet.json, tags.txt, thresholds.json) whose
    outputs depend on the image: random MobileNets pass ~0 through BatchNorm in inference mode
    (stats of 0/1), so the moving statistics are set once from a random batch."""
    import keras
    keras.utils.set_random_seed(seed)
    model = backbones.build_model(backbone, len(TAGS), size, weights=None)
    backbones.set_batch_norm_decay(model, 0.0)
    model(np.random.default_rng(seed).uniform(0, 255, (8, size, size, 3)).astype(np.float32),
          training=True)
    model_dir.save(model, str(path), backbone=backbone, image_size=size, tags=TAGS,
                   activation="sigmoid", task="multi_label")
    model_dir.save_thresholds(str(path), 0.5, np.array(THRESHOLDS), TAGS, "test")
    return model


def encode(pixels, fmt="PNG", **kw) -> bytes:
    from PIL import Image
    buf = io.BytesIO()
    Image.fromarray(np.asarray(pixels, np.uint8)).save(buf, format=fmt, **kw)
    return buf.getvalue()


def sigmoid(x):
    return 1.0 / (1.0 + np.exp(-x))


# A fresh interpreter (-I: no PYTHONPATH, cwd a temp folder) that refuses project imports.
RELOAD = textwrap.dedent("""
    import sys
    class Refuse:
        def find_spec(self, name, path=None, target=None):
            if name.split(".")[0] in ("tagnet", "translate", "tools"):
                raise ImportError("project code is off limits here")
    sys.meta_path.insert(0, Refuse())
    import numpy as np, tensorflow as tf
    path, inputs, out = sys.argv[1:4]
    m = tf.saved_model.load(path)
    d = np.load(inputs, allow_pickle=True)
    res = {"scores": m.signatures["serving_default"](image=tf.constant(list(d["images"])))["scores"].numpy(),
           "raw": m.signatures["predict_raw"](images=tf.constant(d["pixels"]))["scores"].numpy()}
    both = m.signatures["with_labels"](image=tf.constant(list(d["images"][:2])))
    res["with_labels"] = both["scores"].numpy()
    res["row_tags"] = both["tags"].numpy().astype(str)
    labels = m.signatures["labels"]()
    res["tags"] = labels["tags"].numpy().astype(str)
    res["thresholds"] = labels["thresholds"].numpy()
    res["attr_tags"] = m.tags.numpy().astype(str)
    try:
        m.signatures["serving_default"](image=tf.constant([b"not an image"]))
        res["bad"] = "accepted"
    except tf.errors.InvalidArgumentError as e:
        res["bad"] = e.message
    np.savez(out, **res)
    from tensorflow.python.tools.saved_model_cli import main
    sys.argv = ["saved_model_cli", "show", "--all", "--dir", path]
    main()
""")


def test_export_reload_fresh_process_and_match_keras(tmp_path):
    model = make_tagger(tmp_path / "run" / "best")
    base = tmp_path / "models" / "tagger"
    # Given the training folder it picks best/. (verify=False: the fresh process below compares.)
    assert export.export(str(tmp_path / "run"), str(base), verify=False) == str(base / "1")
    assert sorted(os.listdir(base)) == ["1"]  # no temporary folder left behind
    assert sorted(os.listdir(base / "1" / "assets")) == ["tagnet.json", "tags.txt", "thresholds.json"]
    assert (base / "1" / "assets" / "tags.txt").read_text().split() == TAGS

    rng = np.random.default_rng(1)
    square = rng.integers(0, 256, (S, S, 3), dtype=np.uint8)         # no resize, no padding
    y, x = np.mgrid[0:40, 0:56]
    smooth = np.stack([x * 4, y * 5, (x + y) * 2], -1).clip(0, 255).astype(np.uint8)
    rgba = np.dstack([smooth, np.where(x < 20, 0, 255).astype(np.uint8)])  # left part transparent
    jpeg = encode(smooth, "JPEG", quality=95)
    images = [encode(square), encode(smooth), encode(rgba), encode(smooth[..., 0]), jpeg]
    pixels = rng.uniform(0, 255, (2, S, S, 3)).astype(np.float32)
    np.savez(tmp_path / "in.npz", images=np.array(images, dtype=object), pixels=pixels)
    r = subprocess.run([sys.executable, "-I", "-c", RELOAD, str(base / "1"), str(tmp_path / "in.npz"),
                        str(tmp_path / "out.npz")], capture_output=True, text=True, cwd=tmp_path,
                       env={k: v for k, v in ENV.items() if k != "PYTHONPATH"}, timeout=300)
    assert r.returncode == 0, r.stderr[-3000:]
    out = np.load(tmp_path / "out.npz")

    # saved_model_cli lists the three signatures with their typed inputs and outputs.
    for line in ("signature_def['serving_default']", "inputs['image'] tensor_info",
                 "dtype: DT_STRING", "outputs['scores'] tensor_info", "shape: (-1, 5)",
                 "signature_def['predict_raw']", "shape: (-1, 32, 32, 3)", "signature_def['labels']",
                 "outputs['tags'] tensor_info", "outputs['thresholds'] tensor_info",
                 "signature_def['with_labels']"):
        assert line in r.stdout, line
    # Vocabulary and per-tag thresholds are baked in.
    assert list(out["tags"]) == TAGS and list(out["attr_tags"]) == TAGS
    assert out["row_tags"].tolist() == [TAGS, TAGS]
    np.testing.assert_allclose(out["with_labels"], out["scores"][:2], atol=1e-6)
    np.testing.assert_allclose(out["thresholds"], THRESHOLDS, rtol=1e-6)
    # Raw pixels: the same function as Keras.
    np.testing.assert_allclose(out["raw"], sigmoid(model(pixels).numpy()), atol=1e-4)
    scores = out["scores"]
    assert scores.shape == (5, 5) and np.all((scores > 0) & (scores < 1))
    # A square PNG at the model's size decodes to exactly its pixels.
    np.testing.assert_allclose(scores[0], sigmoid(model(square[None].astype(np.float32)).numpy())[0],
                               atol=1e-4)
    # Other images: alpha on white and centred square padding as the dataset builder does them
    # (PIL, tagnet.build.square_image at full size), then the trainer's in-graph resize.
    # Random BatchNorm statistics make this model very sensitive to its input, so the scores are
    # compared for lossless PNGs only; JPEG decoding is compared in pixels below.
    from PIL import Image

    from tagnet.build import square_image
    from tagnet.data import resize_square

    def reference(data):
        with Image.open(io.BytesIO(data)) as img:
            padded = np.asarray(square_image(img, max(img.size)), np.float32)
        return resize_square(tf.constant(padded), S).numpy()
    for i in (1, 2, 3):
        np.testing.assert_allclose(scores[i], sigmoid(model(reference(images[i])[None]).numpy())[0],
                                   atol=1e-4)
    assert np.abs(scores[1] - scores[2]).max() > 1e-3  # transparency changed the input
    # JPEG: TF's decoder (the one the trainer's records use) vs PIL's differ by a level or two.
    diff = np.abs(export.decode_image(tf.constant(jpeg), S).numpy() - reference(jpeg))
    assert diff.max() <= 6 and diff.mean() < 1.5
    assert "Unknown image file format" in str(out["bad"])


def test_export_errors_and_versions(tmp_path):
    base = tmp_path / "models" / "t"
    for d in ("1", "3", ".tmp-4-x", "notes"):  # only integer folders are versions
        os.makedirs(base / d)
    assert export.versions(str(base)) == [1, 3]
    # Checked before any model is loaded.
    with pytest.raises(export.ExportError, match="already exists.*next free: 4"):
        export.export(str(tmp_path / "nowhere"), str(base), version=3)
    with pytest.raises(export.ExportError, match="positive"):
        export.export(str(tmp_path / "nowhere"), str(base), version=0)
    with pytest.raises(model_dir.ModelDirError, match="does not exist"):
        export.export(str(tmp_path / "nowhere"), str(base))
    with pytest.raises(model_dir.ModelDirError, match="no trained tagger"):
        export.export(str(tmp_path), str(base))
    assert sorted(os.listdir(base)) == [".tmp-4-x", "1", "3", "notes"]  # nothing written


def test_export_cli_errors(tmp_path):
    """Bad input: one `error:` line and exit status 1, never a traceback."""
    cli = os.path.join(ROOT, "tagnet", "export.py")
    r = subprocess.run([sys.executable, cli, f"--model_dir={tmp_path}"], capture_output=True,
                       text=True, env=ENV, timeout=120)
    assert r.returncode == 1 and r.stderr.strip().splitlines() == [
        "error: --model_dir and --export_dir are required"]
    r = subprocess.run([sys.executable, cli, "--help"], capture_output=True, text=True, env=ENV,
                       timeout=120)
    assert r.returncode == 0 and "--export_dir" in r.stdout, r.stderr
