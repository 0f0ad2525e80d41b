"""tagnet/predict.py against decompression bombs and failures: a bomb gets an "error" line and the
run goes on; the output is written as OUTPUT.partial and renamed at the end, so a failed run
never truncates an existing output and keeps what it computed."""
import json
import os
import subprocess
import sys

import numpy as np
import pytest
from PIL import Image

from tagnet import build, predicting
from tests.helpers import ROOT, bomb_png
from tests.tagnet.test_tag_categories import trained  # noqa: F401  (a 3-step 32 px tagger)

ENV = {**os.environ, "PYTHONPATH": ROOT, "TF_CPP_MIN_LOG_LEVEL": "2"}


def test_open_image_refuses_bombs_from_the_header(tmp_path):
    with pytest.raises(build.ImageTooLarge, match="decompression bomb"):
        build.open_image(bomb_png(tmp_path / "huge.png", 30000, 30000))  # over Pillow's limit
    with pytest.raises(build.ImageTooLarge, match="8000x8000 = 64000000 pixels"):
        build.open_image(bomb_png(tmp_path / "mid.png", 8000, 8000))  # over the 40 Mpx default
    Image.new("RGB", (20, 20)).save(tmp_path / "small.png")
    with pytest.raises(build.ImageTooLarge, match="over the limit of 100"):
        build.open_image(str(tmp_path / "small.png"), max_pixels=100)
    with build.open_image(str(tmp_path / "small.png")) as img:
        assert img.size == (20, 20)


def test_write_jsonl_keeps_the_old_output_and_the_finished_lines_on_error(tmp_path):
    out = tmp_path / "tags.jsonl"
    out.write_text('{"file": "old"}\n')

    def records():
        yield {"file": "a"}
        yield {"file": "b"}
        raise RuntimeError("model failed")

    with pytest.raises(RuntimeError):
        predicting.write_jsonl(records(), str(out))
    assert out.read_text() == '{"file": "old"}\n'
    partial = tmp_path / "tags.jsonl.partial"
    assert [json.loads(l)["file"] for l in partial.read_text().splitlines()] == ["a", "b"]
    assert predicting.write_jsonl(iter([{"file": "c"}]), str(out)) == 1
    assert out.read_text() == '{"file": "c"}\n' and not partial.exists()


def test_predict_cli_skips_a_bomb_and_writes_every_other_image(trained, tmp_path):  # noqa: F811
    folder = tmp_path / "in"
    folder.mkdir()
    rng = np.random.default_rng(0)
    for name in ("a.png", "c.png"):
        Image.fromarray(rng.integers(0, 255, (48, 48, 3), np.uint8)).save(folder / name)
    bomb_png(folder / "b.png")
    out = tmp_path / "tags.jsonl"
    out.write_text("old\n")
    r = subprocess.run([sys.executable, os.path.join(ROOT, "tagnet", "predict.py"),
                        f"--model_dir={trained['run']}", f"--input={folder}", f"--output={out}", "--progress=false", "--batch_size=2"],
                       capture_output=True, text=True, env=ENV, timeout=300)
    assert r.returncode == 0, r.stderr[-2000:]
    rows = [json.loads(l) for l in out.read_text().splitlines()]
    assert [row["file"] for row in rows] == ["a.png", "b.png", "c.png"]
    assert "too large" in rows[1]["error"] and "tags" in rows[0] and "tags" in rows[2]
    assert "1 image(s) could not be read" in r.stderr and "Traceback" not in r.stderr
    assert not (tmp_path / "tags.jsonl.partial").exists()


def test_predict_cli_failing_midway_keeps_the_output_and_says_where(trained, tmp_path):  # noqa: F811
    folder = tmp_path / "in"
    folder.mkdir()
    rng = np.random.default_rng(1)
    for name in ("a.png", "b.png", "c.png"):
        Image.fromarray(rng.integers(0, 255, (48, 48, 3), np.uint8)).save(folder / name)
    out = tmp_path / "tags.jsonl"
    out.write_text("old\n")
    # The model fails on the third image (in the tool's process).
    wrapper = ("import runpy, sys\n"
               "from tagnet import predicting\n"
               "real = predicting.Tagger.tag_files\n"
               "def tag_files(self, *a, **k):\n"
               "    for i, rec in enumerate(real(self, *a, **k)):\n"
               "        if i == 2:\n"
               "            raise RuntimeError('model failed')\n"
               "        yield rec\n"
               "predicting.Tagger.tag_files = tag_files\n"
               "sys.argv = sys.argv[1:]\n"
               "runpy.run_path(sys.argv[0], run_name='__main__')\n")
    r = subprocess.run([sys.executable, "-c", wrapper, os.path.join(ROOT, "tagnet", "predict.py"),
                        f"--model_dir={trained['run']}", f"--input={folder}", f"--output={out}",
                        "--progress=false", "--batch_size=1"],
                       capture_output=True, text=True, env=ENV, timeout=300)
    assert r.returncode != 0
    assert out.read_text() == "old\n"
    partial = tmp_path / "tags.jsonl.partial"
    assert [json.loads(l)["file"] for l in partial.read_text().splitlines()] == ["a.png", "b.png"]
    assert f"results computed so far are in {partial}" in r.stderr
