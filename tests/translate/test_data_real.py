"""Real data (../shared/data): detect -> crops + JSONL -> build -> read back, for both tasks;
counts must match dataset.json.

Photos and anime crops of ../shared/data/sample go through tools/detect_faces.py exactly as a user
would run it (MTCNN for photos, animeface for anime).
"""
import os
import subprocess
import sys

import numpy as np
import pytest

tf = pytest.importorskip("tensorflow")

from tests.helpers import ROOT_PATH as ROOT  # noqa: E402
from translate.datasets import builder, pipelines as data, records  # noqa: E402
from translate.faces.schema import read_faces  # noqa: E402

S = 32


def detect(input_dir, domain, out_dir):
    """Runs the detection CLI with 96 px crops; returns (jsonl path, faces found)."""
    out = os.path.join(out_dir, "faces.jsonl")
    proc = subprocess.run(
        [sys.executable, str(ROOT / "tools" / "detect_faces.py"), f"--input_dir={input_dir}",
         f"--domain={domain}", f"--output={out}", f"--crops_dir={os.path.join(out_dir, 'crops')}",
         "--crop_size=96", "--estimate_chin"],
        capture_output=True, text=True, timeout=600,
    )
    assert proc.returncode == 0, proc.stderr[-2000:]
    return out, len(list(read_faces(out)))


def count_records(ds_dir, info):
    n = {}
    for s, per in info["splits"].items():
        for d, v in per.items():
            n[(s, d)] = sum(sum(1 for _ in tf.data.TFRecordDataset(os.path.join(ds_dir, sh["file"])))
                            for sh in v["shards"])
    return n


@pytest.mark.shared_data
def test_real_photos_build_and_read_back(shared_data, tmp_path):
    photos, n_photos = detect(shared_data / "sample" / "photos", "photo", str(tmp_path / "photos"))
    anime, n_anime = detect(shared_data / "sample" / "anime", "anime", str(tmp_path / "anime"))
    assert n_photos == 16 and n_anime >= 8

    out = str(tmp_path / "cyc")
    info = builder.build(builder.BuildConfig(
        task="cyclegan", inputs=[photos, anime], output_dir=out, group_regex={"photo": r"^(.+)_\d+\."},
        test_fraction=0.25, num_shards=2, progress=False), log=lambda s: None)
    assert records.read_info(out, "cyclegan") == info
    assert sum(info["rejects"].values()) <= 2, info["rejects"]  # detected keypoints are plausible
    n = count_records(out, info)
    assert n == {(s, d): info["splits"][s][d]["count"] for s in ("train", "test") for d in ("photo", "anime")}
    kept = info["splits"]["train"]["photo"]["count"] + info["splits"]["test"]["photo"]["count"]
    assert kept >= 16 - sum(info["rejects"].values())
    assert n[("test", "photo")] >= 3
    assert info["groups"]["shared_between_splits"] == 0
    ds = data.cyclegan_dataset(out, "train", image_size=S, landmark_channel=True, augment=True)
    got = list(ds)
    assert len(got) == max(n[("train", "photo")], n[("train", "anime")])
    photo, anime_b = got[0]
    assert photo.shape == (1, S, S, 4) and anime_b.shape == (1, S, S, 4)
    # the photo's rendered eyes lie on the photo: its layer is not empty
    assert np.abs(photo.numpy()[..., 3]).max() > 0.5

    out2 = str(tmp_path / "p2p")
    info2 = builder.build(builder.BuildConfig(
        task="pix2pix", inputs=[anime, photos], output_dir=out2, test_fraction=0.25, num_shards=2,
        progress=False), log=lambda s: None)
    assert info2["inputs"]["other_domains_skipped"] == {"photo": 16}
    for split in ("train", "test"):
        ds = data.pix2pix_dataset(out2, split, "keypoints_colors", image_size=S, batch_size=4)
        assert sum(int(x.shape[0]) for x, _ in ds) == info2["counts"][split]
