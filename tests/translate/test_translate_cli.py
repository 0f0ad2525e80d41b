"""Photo -> anime: translate.inference.pipeline (prepare, serving inputs, in-process runner) and the
translate/translate.py CLI on a scikit-image photo with a just-trained tiny pix2pix run.

The CLI run that loads TensorFlow starts in the background before the in-process tests and is
checked at the end, so the two overlap."""
import os
import subprocess
import sys

import numpy as np
import pytest

tf = pytest.importorskip("tensorflow")
skdata = pytest.importorskip("skimage.data")

from PIL import Image  # noqa: E402

from tests.translate.test_export import trained_run  # noqa: E402  (the shared 2-step pix2pix run)
from translate.datasets import pipelines as data  # noqa: E402
from translate.inference import export, loading, pipeline as photo2anime
from tests.helpers import ROOT, bomb_png

CLI = os.path.join(ROOT, "translate", "translate.py")
S = 32


def _cli(*args, **kw):
    return subprocess.Popen([sys.executable, CLI, *args], stdout=subprocess.PIPE,
                            stderr=subprocess.PIPE, text=True, **kw)


@pytest.fixture(scope="module")
def run(tmp_path_factory):
    return trained_run(tmp_path_factory)


@pytest.fixture(scope="module")
def photos(tmp_path_factory):
    d = tmp_path_factory.mktemp("photos")
    Image.fromarray(skdata.astronaut()).save(d / "astronaut.jpg")
    (d / "more").mkdir()
    Image.fromarray(skdata.coffee()).save(d / "more" / "coffee.png")  # no face
    (d / "more" / "broken.png").write_bytes(b"not a picture")
    bomb_png(d / "more" / "bomb.png")  # 30000x30000 in its header: skipped, not a traceback
    return d


@pytest.fixture(scope="module")
def background(run, photos, tmp_path_factory):
    out = tmp_path_factory.mktemp("cli_out")
    procs = {
        "ok": _cli(f"--model_dir={run}", f"--input={photos}", f"--output_dir={out}",
                   "--side_by_side", "--seed=1", "--hair_color=#ff0000"),
    }
    done = {}

    def result(name):
        if name not in done:
            stdout, stderr = procs[name].communicate(timeout=600)
            done[name] = (procs[name].returncode, stdout, stderr)
        return done[name]
    yield {"out": out, "result": result}
    for p in procs.values():
        if p.poll() is None:
            p.kill()
            p.wait()


@pytest.fixture(scope="module")
def astronaut_faces(background):  # the CLI run starts first and overlaps the in-process tests
    return photo2anime.prepare_faces(skdata.astronaut(), S, colors={"hair": (255, 0, 0)})


def test_parse_colors():
    assert photo2anime.parse_color("#1a2B3c") == (0x1A, 0x2B, 0x3C)
    assert photo2anime.color_overrides(eye="#010203", right_eye="#040506") == {
        "left_eye": (1, 2, 3), "right_eye": (4, 5, 6)}
    for bad in ("red", "#12345", "#1234567", ""):
        with pytest.raises(ValueError, match="expected #rrggbb"):
            photo2anime.parse_color(bad)


def test_prepare_faces_aligns_and_measures(astronaut_faces):
    assert len(astronaut_faces) == 1
    f = astronaut_faces[0]
    assert f.aligned.shape == (S, S, 3) and f.aligned.dtype == np.uint8
    assert f.score > 0.9 and f.box[2] > 50
    # photo crop geometry: eyes at x = 0.5 -+ 0.125, y = 0.40 (pixel centres at (i + 0.5) / S)
    half = 0.5 / S
    np.testing.assert_allclose(f.keypoints[:2], [[0.375 + half, 0.4 + half], [0.625 + half, 0.4 + half]],
                               atol=1e-4)
    assert list(f.point_mask) == [1, 1, 1, 1, 1]  # chin estimated from eyes and mouth
    assert 0.4 < f.keypoints[2, 1] < f.keypoints[3, 1] < f.keypoints[4, 1] < 1.0  # nose, mouth, chin
    np.testing.assert_allclose(f.colors[0], [1, 0, 0])  # the override
    assert list(f.color_mask) == [1, 1, 1, 1]
    assert f.colors[1, 0] > f.colors[1, 2]  # measured skin: more red than blue


def test_no_face_gives_an_empty_list_and_a_reason():
    from collections import Counter
    rejected = Counter()
    grey = np.full((96, 96, 3), 128, np.uint8)
    assert photo2anime.prepare_faces(grey, S, rejected=rejected) == []
    assert rejected and set(rejected) <= {"no_face", "low_score", "missing_eye", "small_face",
                                          "eye_distance", "tilted", "point_outside_box", "point_order"}


def test_serving_inputs_follow_the_contract(astronaut_faces):
    names = ["image", "keypoints", "point_mask", "colors", "color_mask", "seed"]
    d = photo2anime.serving_inputs(astronaut_faces, names, seed=7)
    assert sorted(d) == sorted(names)
    assert d["keypoints"].shape == (1, 5, 2) and d["colors"].shape == (1, 4, 3)
    assert d["seed"].dtype == np.int64 and list(d["seed"]) == [7]
    np.testing.assert_array_equal(tf.io.decode_png(d["image"][0]).numpy(), astronaut_faces[0].aligned)
    raw = photo2anime.serving_inputs(astronaut_faces, ["image"], raw=True)["image"]
    assert raw.shape == (1, S, S, 3) and -1.0 <= raw.min() and raw.max() <= 1.0
    assert list(photo2anime.serving_inputs(astronaut_faces, ["keypoints"])) == ["keypoints"]


def test_runner_matches_the_generator_on_the_pipeline_condition(run, astronaut_faces):
    runner = photo2anime.Runner(loading.load(run), inference_dropout=False)
    assert runner.input_names == export.input_names(runner.translator.flags)
    got = runner.translate(astronaut_faces, seed=3)
    f = astronaut_faces[0]
    points = photo2anime.model_keypoints(f, runner.input_names)  # anime proportions for pix2pix
    assert np.allclose(points[:2], f.keypoints[:2], atol=0.06) and points[4, 1] < f.keypoints[4, 1]
    cond = data.pix2pix_condition(points, f.point_mask, f.colors, f.color_mask, S,
                                  "keypoints_colors_noise", tf.constant([3, 0], tf.int64))
    want = photo2anime.to_uint8(runner.module.generator(cond[None], training=False).numpy())
    assert got.shape == (1, S, S, 3) and got.dtype == np.uint8
    assert np.abs(got.astype(int) - want.astype(int)).max() <= 1
    np.testing.assert_array_equal(runner.translate(astronaut_faces, seed=3), got)  # same seed
    other = runner.translate(astronaut_faces, seed=4)  # another noise plane and colour jitter
    assert np.abs(other.astype(int) - got.astype(int)).max() > 1
    layer = runner.layer(f)
    assert layer.shape == (S, S, 3) and (layer == 127).mean() > 0.5  # grey background
    assert runner.translate([], seed=0).shape == (0, S, S, 3)


def test_anime2photo_is_refused_for_pix2pix(run):
    with pytest.raises(export.ExportError, match="photo2anime only"):
        photo2anime.Runner(loading.load(run), "anime2photo")


@pytest.mark.parametrize("args, message", [
    (["--hair_color=red"], "not a colour 'red'"),
    (["--input=/no/such/photo.jpg"], "no such file or folder"),
    (["--max_faces=0"], "max_faces"),
    (["--model_dir=/no/such/run"], "no such folder"),
    ([], "no flags.json"),  # --model_dir is an empty folder
    (["extra_argument"], "unexpected arguments"),
])
def test_bad_flags_exit_1_without_traceback(tmp_path, photos, args, message):
    base = {"--model_dir": str(tmp_path), "--input": str(photos), "--output_dir": str(tmp_path / "o")}
    for a in args:
        base.pop(a.split("=")[0], None)
    argv = [f"{k}={v}" for k, v in base.items()] + args
    p = _cli(*argv)
    _, err = p.communicate(timeout=120)
    assert p.returncode == 1 and "Traceback" not in err and message in err, err


def test_help_exits_0():
    p = _cli("--help")
    out, _ = p.communicate(timeout=120)
    assert p.returncode == 0 and "--model_dir" in out and "--side_by_side" in out
    assert "--train_dir" in out


def test_cli_translates_a_photo_and_skips_the_rest(background):
    code, out, err = background["result"]("ok")
    assert code == 0, err[-3000:]
    d = background["out"]
    face = np.asarray(Image.open(d / "astronaut_face0.png"))
    side = np.asarray(Image.open(d / "astronaut_face0_side.png"))
    assert face.shape == (S, S, 3) and side.shape == (S, 3 * S, 3)
    np.testing.assert_array_equal(side[:, 2 * S:], face)  # photo | layer | output
    assert sorted(os.listdir(d)) == ["astronaut_face0.png", "astronaut_face0_side.png"]  # no temp files
    assert "coffee.png: no usable face" in err and "broken.png" in err
    assert "skipped more/bomb.png: too large" in err and "Traceback" not in err
    assert "4 images: 1 faces translated from 1 photos" in out and "2 unreadable" in out
