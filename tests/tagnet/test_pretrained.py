"""The shipped example tagger: complete, within its size budget, documented, the default of
tagnet/predict.py, and right on anime faces it never saw (tools/serve.py's default:
tests/tools/test_serve_shipped.py)."""
import csv
import json
import os
import subprocess
import sys

import pytest

from tagnet import contract, model_dir, pretrained
from tests.helpers import ROOT

ENV = {**os.environ, "PYTHONPATH": ROOT, "TF_CPP_MIN_LOG_LEVEL": "2"}
MAX_BYTES = 15 * 2**20


def test_shipped_tagger_is_complete_small_and_documented():
    folder = pretrained.default_model_dir()
    assert pretrained.DEFAULT in pretrained.available()
    size = sum(os.path.getsize(os.path.join(folder, f)) for f in os.listdir(folder))
    assert size <= MAX_BYTES, f"{size / 2**20:.1f} MiB"
    cfg = model_dir.read_config(folder)
    assert len(cfg["tags"]) == 20 and cfg["activation"] == "softmax"
    assert set(model_dir.categories_of(cfg)) == {"character"}
    assert os.path.isfile(os.path.join(folder, contract.THRESHOLDS))
    card = open(os.path.join(folder, pretrained.CARD), encoding="utf-8").read()
    for needed in ("No licence", "tools/train_pretrained.py", "top-1", "baseline", "Limits"):
        assert needed in card


def _labels(folder):
    with open(os.path.join(folder, "labels.csv"), newline="") as f:
        return {row["file"]: row["character"] for row in csv.DictReader(f)}


@pytest.mark.shared_data
def test_predict_without_model_dir_names_characters_it_never_saw(shared_data, tmp_path):
    # sample/anime: one crop of each of 16 characters, no near-duplicate of anything trained on.
    sample = shared_data / "sample"
    truth = _labels(str(sample))
    out = tmp_path / "tags.jsonl"
    r = subprocess.run([sys.executable, os.path.join(ROOT, "tagnet", "predict.py"),
                        f"--input={sample / 'anime'}", f"--output={out}", "--progress=false"],
                       capture_output=True, text=True, env=ENV, timeout=300)
    assert r.returncode == 0, r.stderr[-2000:]
    rows = [json.loads(l) for l in out.read_text().splitlines()]
    assert len(rows) == len(truth) == 16
    right = 0
    for row in rows:
        assert list(row["by_category"]["character"]) == list(row["tags"])[:1]
        right += next(iter(row["tags"])) == truth[os.path.basename(row["file"])]
    print(f"shipped tagger on sample/anime: {right}/16 right")
    assert right >= 12
