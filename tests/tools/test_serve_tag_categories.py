"""The server's JSON for a tagger with tag categories: `with_labels` through tools/serve.py (as a
user starts it) returns the tags grouped by category, a stricter character threshold baked in
by the export, and one rating. Tiny: MobileNet 0.25 at 32 px, random weights."""
import base64
import json
import os
import subprocess
import sys
import urllib.request

import numpy as np
import pytest

pytest.importorskip("tensorflow")

from tagnet import backbones, exporting, model_dir  # noqa: E402
from tests.helpers import ROOT  # noqa: E402
from tests.tagnet.test_export import encode  # noqa: E402

S = 32
TAGS = ["1girl", "smile", "gawr_gura", "ina", "hololive", "rating:s", "rating:q"]
CATS = ["general", "general", "character", "character", "copyright", "rating", "rating"]


def test_with_labels_json_is_grouped_by_category(tmp_path):
    import keras
    keras.utils.set_random_seed(0)
    model = backbones.build_model("mobilenet_v1_025", len(TAGS), S, weights=None)
    backbones.set_batch_norm_decay(model, 0.0)
    model(np.random.default_rng(0).uniform(0, 255, (8, S, S, 3)).astype(np.float32), training=True)
    model_dir.save(model, str(tmp_path / "run"), backbone="mobilenet_v1_025", image_size=S, tags=TAGS,
                   activation="sigmoid", task="multi_label", tag_categories=CATS)
    exporting.export(str(tmp_path / "run"), str(tmp_path / "models" / "tagger"), verify=False,
                     category_thresholds={"general": 0.0, "character": 1.01}, log=lambda *_: None)
    p = subprocess.Popen([sys.executable, os.path.join(ROOT, "tools", "serve.py"),
                          f"--model_base_path={tmp_path / 'models'}", "--rest_api_port=0"],
                         stdout=subprocess.PIPE, stderr=subprocess.STDOUT, text=True,
                         env={**os.environ, "PYTHONPATH": ROOT, "TF_CPP_MIN_LOG_LEVEL": "2"})
    try:
        for line in p.stdout:
            if line.startswith("serving"):
                break
        port = int(line.rsplit(":", 1)[1].split()[0].strip("/"))
        images = [encode(np.random.default_rng(i).integers(0, 256, (S, S, 3))) for i in range(2)]
        body = json.dumps({"signature_name": "with_labels",
                           "instances": [{"b64": base64.b64encode(b).decode()} for b in images]})
        req = urllib.request.Request(f"http://127.0.0.1:{port}/v1/models/tagger:predict",
                                     data=body.encode(), headers={"Content-Type": "application/json"})
        with urllib.request.urlopen(req, timeout=120) as r:
            rows = json.loads(r.read())["predictions"]
    finally:
        p.terminate()
        p.wait(30)
    assert len(rows) == 2
    for row in rows:
        assert row["categories"] == CATS and row["tags"] == TAGS
        assert sorted(row["general_tags"]) == ["1girl", "smile"]          # threshold 0
        assert row["character_tags"] == [] and row["artist_tags"] == []  # above any score
        assert row["rating_tags"][0] in ("rating:s", "rating:q") and len(row["rating_tags"]) == 1
        best = max(("rating:s", "rating:q"), key=lambda t: row["scores"][TAGS.index(t)])
        assert row["rating_tags"] == [best]
        assert row["general_scores"] == sorted(row["general_scores"], reverse=True)
