"""tools/serve.py without --model_base_path serves the models the packages ship (exported once
into the cache folder)."""
import base64
import io
import json
import os
import subprocess
import sys
import urllib.request

from tagnet import model_dir, pretrained
from tests.helpers import ROOT

ENV = {**os.environ, "PYTHONPATH": ROOT, "TF_CPP_MIN_LOG_LEVEL": "2"}


def test_serve_without_model_base_path_serves_the_shipped_tagger(tmp_path):
    from PIL import Image
    buf = io.BytesIO()
    Image.new("RGB", (96, 96), (200, 120, 160)).save(buf, format="PNG")
    p = subprocess.Popen([sys.executable, os.path.join(ROOT, "tools", "serve.py"), "--rest_api_port=0"],
                         stdout=subprocess.PIPE, stderr=subprocess.STDOUT, text=True,
                         env={**ENV, "XDG_CACHE_HOME": str(tmp_path / "cache")})
    try:
        seen = []
        for line in p.stdout:
            seen.append(line)
            if line.startswith("serving"):
                break
        assert seen and seen[-1].startswith("serving") and "tagger" in seen[-1], "".join(seen)
        assert any("exporting the shipped model tagger" in l for l in seen)
        port = int(seen[-1].rsplit(":", 1)[1].split()[0].strip("/"))
        body = json.dumps({"signature_name": "with_labels",
                           "instances": [{"b64": base64.b64encode(buf.getvalue()).decode()}]})
        req = urllib.request.Request(f"http://127.0.0.1:{port}/v1/models/tagger:predict",
                                     data=body.encode(), headers={"Content-Type": "application/json"})
        with urllib.request.urlopen(req, timeout=120) as resp:
            row = json.loads(resp.read())["predictions"][0]
    finally:
        p.terminate()
        p.wait(30)
    cfg = model_dir.read_config(pretrained.default_model_dir())
    assert row["tags"] == cfg["tags"] and len(row["character_tags"]) == 1
    assert row["character_tags"][0] in cfg["tags"]
    assert os.listdir(tmp_path / "cache" / "anime-face-kit" / "shipped")
