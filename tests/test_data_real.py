"""Real data (../shared/data): photos with 68-point ground truth -> crops + JSONL -> build ->
read back, for both tasks; counts must match dataset.json.

Until tools/detect_faces.py lands, the photo JSONL is derived from sample/landmarks68.csv (eyes =
mean of points 36-41 / 42-47, nose = 30, mouth = mean of 48-67, chin = 8) and the anime half
comes from the synthetic generator (skipped, with the reason, when it is absent).
"""
import csv
import os

import numpy as np
import pytest

tf = pytest.importorskip("tensorflow")

from translate import builder, data, records  # noqa: E402
from translate.faces import Crop, Face  # noqa: E402

CROP = 96
S = 32


def five_points(p68):
    p = np.asarray(p68, np.float64).reshape(68, 2)
    pts = {"left_eye": p[36:42].mean(0), "right_eye": p[42:48].mean(0), "nose": p[30],
           "mouth": p[48:68].mean(0), "chin": p[8]}
    if pts["left_eye"][0] > pts["right_eye"][0]:  # "left" is the image's left
        pts["left_eye"], pts["right_eye"] = pts["right_eye"], pts["left_eye"]
    return {k: (float(v[0]), float(v[1])) for k, v in pts.items()}, p


def photo_jsonl(sample_dir, out_dir):
    """Square crops (1.25 x the 68-point box, resized to CROP) and their Face lines."""
    from PIL import Image
    os.makedirs(os.path.join(out_dir, "crops"), exist_ok=True)
    rows = list(csv.reader(open(os.path.join(sample_dir, "landmarks68.csv"))))[1:]
    lines = []
    for row in rows:
        name = row[0]
        pts, p = five_points([float(v) for v in row[1:137]])
        lo, hi = p.min(0), p.max(0)
        side = 1.25 * float((hi - lo).max())
        cx, cy = (lo + hi) / 2
        x0, y0 = cx - side / 2, cy - side / 2
        k = CROP / side
        img = Image.open(os.path.join(sample_dir, "photos", name)).convert("RGB")
        crop = img.transform((CROP, CROP), Image.AFFINE, (1 / k, 0, x0, 0, 1 / k, y0), Image.BILINEAR)
        rel = f"crops/{os.path.splitext(name)[0]}.png"
        crop.save(os.path.join(out_dir, rel))
        # pixel-centre convention: crop pixel centre j <-> source x0 + (j + 0.5) / k - 0.5
        cpts = {n: ((x - x0 + 0.5) * k - 0.5, (y - y0 + 0.5) * k - 0.5) for n, (x, y) in pts.items()}
        face = Face(box=(float(lo[0]), float(lo[1]), float(hi[0] - lo[0]), float(hi[1] - lo[1])),
                    points=pts, detector="dlib", source=name, domain="photo", image_size=img.size,
                    crop=Crop(path=rel, size=CROP, points=cpts,
                              matrix=[[k, 0.0, -x0 * k], [0.0, k, -y0 * k]]))
        lines.append(face.to_line())
    path = os.path.join(out_dir, "faces.jsonl")
    with open(path, "w") as f:
        f.writelines(lines)
    return path, len(lines)


def anime_jsonl(out_dir, count=12):
    try:
        from translate import synthetic
    except ImportError as e:
        pytest.skip(f"anime half: translate.synthetic unavailable ({e}); no real anime keypoints yet")
    synthetic.write_dataset(out_dir, count, size=64, seed=0)
    return os.path.join(out_dir, "faces.jsonl")


def count_records(ds_dir, info):
    n = {}
    for s, per in info["splits"].items():
        for d, v in per.items():
            n[(s, d)] = sum(sum(1 for _ in tf.data.TFRecordDataset(os.path.join(ds_dir, sh["file"])))
                            for sh in v["shards"])
    return n


@pytest.mark.shared_data
def test_real_photos_build_and_read_back(shared_data, tmp_path):
    photos, n_photos = photo_jsonl(str(shared_data / "sample"), str(tmp_path / "photos"))
    assert n_photos == 16
    anime = anime_jsonl(str(tmp_path / "anime"))

    out = str(tmp_path / "cyc")
    info = builder.build(builder.BuildConfig(
        task="cyclegan", inputs=[photos, anime], output_dir=out, group_regex={"photo": r"^(.+)_\d+\."},
        test_fraction=0.25, num_shards=2, progress=False), log=lambda s: None)
    assert records.read_info(out, "cyclegan") == info
    assert sum(info["rejects"].values()) == 0, info["rejects"]  # ground-truth keypoints are plausible
    n = count_records(out, info)
    assert n == {(s, d): info["splits"][s][d]["count"] for s in ("train", "test") for d in ("photo", "anime")}
    assert n[("train", "photo")] + n[("test", "photo")] == 16 and n[("test", "photo")] == 4
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
