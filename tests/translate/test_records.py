"""Builder: dedup, leak-free splits, keypoint filter, errors, dataset.json; record round trip."""
import io
import os
import re
import subprocess
import sys

import numpy as np
import pytest

from tests.helpers import make_faces, reencode_jpeg  # noqa: E402
from translate.datasets import builder, dedup, records, splits  # noqa: E402
from translate.faces.schema import Crop, Face  # noqa: E402
from tests.helpers import ROOT



def cfg(tmp_path, inputs, task="pix2pix", **kw):
    kw.setdefault("progress", False)
    kw.setdefault("num_shards", 2)
    return builder.BuildConfig(task=task, inputs=inputs, output_dir=str(tmp_path / "out"), **kw)


def read_all(out, info):
    import tensorflow as tf
    got = []
    for s, per in info["splits"].items():
        for d, v in per.items():
            for sh in v["shards"]:
                for r in tf.data.TFRecordDataset(os.path.join(out, sh["file"])):
                    got.append((s, d, records.example_to_numpy(r.numpy())))
    return got


# ----------------------------------------------------------------------------- splits
def test_split_has_no_shared_group_and_is_deterministic():
    rng = np.random.default_rng(1)
    groups = [f"g{int(g)}" for g in rng.integers(0, 40, 500)]
    a = splits.assign_splits(groups, 0.2, seed=3)
    assert a == splits.assign_splits(groups, 0.2, seed=3)
    assert a != splits.assign_splits(groups, 0.2, seed=4)
    assert not splits.shared_groups(groups, a)
    assert 0.1 < a.count("test") / len(a) < 0.35
    # image split: per item, so groups do leak (that is what it is for)
    b = splits.assign_splits(groups, 0.2, seed=3, split_by="image")
    assert splits.shared_groups(groups, b)


def test_split_edge_cases():
    assert splits.assign_splits(["a", "a", "b"], 0.0) == ["train"] * 3
    s = splits.assign_splits(["a", "b"], 0.01)
    assert sorted(s) == ["test", "train"]  # a tiny fraction still gives each side a group
    assert splits.assign_splits(["a", "a"], 0.5) == ["train", "train"]  # one group: all train


# ----------------------------------------------------------------------------- dedup
def test_dedup_merges_reencoded_copy(tmp_path):
    jsonl = make_faces(str(tmp_path), 6, seed=2)
    reencode_jpeg(str(tmp_path / "crops/img000.png"), str(tmp_path / "crops/copy.jpg"), quality=70)
    face = next(iter(__import__("translate.faces.schema", fromlist=["read_faces"]).read_faces(jsonl)))
    face.source, face.crop.path = "copy-of-0.jpg", "crops/copy.jpg"
    with open(jsonl, "a") as f:
        f.write(face.to_line())
    h = [dedup.phash(str(tmp_path / f"crops/img{i:03d}.png")) for i in range(6)]
    hc = dedup.phash(str(tmp_path / "crops/copy.jpg"))
    assert dedup.hamming(h[0], hc) <= 4
    assert min(dedup.hamming(h[i], h[j]) for i in range(6) for j in range(i + 1, 6)) > 10
    info = builder.build(cfg(tmp_path, [jsonl], test_fraction=0.3), log=lambda s: None)
    assert info["rejects"]["duplicate"] == 1
    assert info["duplicates"]["clusters"] == 1
    ex = info["duplicates"]["examples"][0]
    assert {ex["kept"], *ex["dropped"]} == {"crops/img000.png", "crops/copy.jpg"}
    assert info["counts"]["total"] == 6


def test_near_duplicates_share_a_group(tmp_path):
    # the same picture, brightened: a few bits apart, so not collapsed (dup_distance 0) but grouped
    from PIL import Image, ImageEnhance
    from translate.faces.schema import read_faces
    jsonl = make_faces(str(tmp_path), 8, seed=3)
    img = ImageEnhance.Brightness(Image.open(tmp_path / "crops/img001.png")).enhance(1.3)
    img.save(tmp_path / "crops/bright.png")
    d = dedup.hamming(dedup.phash(str(tmp_path / "crops/img001.png")),
                      dedup.phash(str(tmp_path / "crops/bright.png")))
    assert 1 <= d <= 10
    face = list(read_faces(jsonl))[1]
    face.source, face.crop.path = "bright.jpg", "crops/bright.png"
    with open(jsonl, "a") as f:
        f.write(face.to_line())
    info = builder.build(cfg(tmp_path, [jsonl], test_fraction=0.5, dup_distance=0, group_distance=10),
                         log=lambda s: None)
    assert info["counts"]["total"] == 9 and info["groups"]["near_duplicate_merges"] >= 1
    got = read_all(str(tmp_path / "out"), info)
    by_src = {r["source_id"]: (s, r["group_id"]) for s, _, r in got}
    assert by_src["bright.jpg"] == by_src["img001.jpg"]
    assert info["groups"]["shared_between_splits"] == 0


# ----------------------------------------------------------------------------- build
def test_build_pix2pix_roundtrip_counts_and_labels(tmp_path):
    jsonl = make_faces(str(tmp_path), 20, seed=4)
    labels = tmp_path / "labels.csv"
    labels.write_text("file,character\n" + "".join(f"img{i:03d}.jpg,char{i % 5}\n" for i in range(20)))
    make_faces(str(tmp_path), 3, domain="photo", seed=5, prefix="ph")  # ignored by pix2pix
    info = builder.build(cfg(tmp_path, [jsonl], labels=str(labels), test_fraction=0.2, num_shards=3,
                             command="python tools/build_tfrecords.py --task=pix2pix"),
                         log=lambda s: None)
    out = str(tmp_path / "out")
    assert info["counts"] == {"train": 16, "test": 4, "total": 20}
    assert info["inputs"]["other_domains_skipped"] == {"photo": 3}
    assert info["groups"]["source"] == "labels" and info["groups"]["shared_between_splits"] == 0
    assert info["command"].startswith("python tools/build_tfrecords.py")
    assert not [f for f in os.listdir(out) if ".tmp-" in f]
    got = read_all(out, info)
    assert len(got) == 20
    per_split = {}
    from PIL import Image
    for s, d, r in got:
        assert d == "anime" and r["domain"] == "anime"
        assert r["format"] == "png" and Image.open(io.BytesIO(r["image"])).size == (64, 64)
        per_split.setdefault(r["group_id"], set()).add(s)
        assert r["point_mask"].tolist() == [1, 1, 1, 1, 1]
        assert np.all((r["points"] > 0) & (r["points"] < 1))
        assert r["color_mask"].tolist() == [1, 1, 1, 1]
        assert r["colors"][1].tolist() == pytest.approx([240 / 255, 200 / 255, 180 / 255])
    assert all(len(v) == 1 for v in per_split.values()) and len(per_split) == 5
    for s, per in info["splits"].items():
        for v in per.values():
            assert sum(sh["count"] for sh in v["shards"]) == v["count"]
    # deterministic: the same build gives byte-identical shards
    info2 = builder.build(cfg(tmp_path, [jsonl], labels=str(labels), test_fraction=0.2, num_shards=3,
                              overwrite=True), log=lambda s: None)
    assert info2["splits"] == info["splits"]


def test_points_normalised_with_pixel_centres(tmp_path):
    rel = "crops/a.png"
    os.makedirs(tmp_path / "crops")
    from PIL import Image
    Image.new("RGB", (40, 40), (90, 90, 90)).save(tmp_path / rel)
    pts = {"left_eye": (9.5, 15.0), "right_eye": (29.5, 15.0), "nose": (19.5, 22.0)}
    face = Face(box=(0, 0, 40, 40), points=pts, detector="animeface", domain="anime", source="a.jpg",
                crop=Crop(path=rel, size=40, points=pts, matrix=[[1, 0, 0], [0, 1, 0]]))
    (tmp_path / "f.jsonl").write_text(face.to_line())
    info = builder.build(cfg(tmp_path, [str(tmp_path / "f.jsonl")], test_fraction=0.0), log=lambda s: None)
    (_, _, r), = read_all(str(tmp_path / "out"), info)
    np.testing.assert_allclose(r["points"][:3], [[0.25, 15.5 / 40], [0.75, 15.5 / 40], [0.5, 22.5 / 40]])
    assert r["point_mask"].tolist() == [1, 1, 1, 0, 0] and r["color_mask"].tolist() == [0, 0, 0, 0]


def test_keypoint_filter_reasons():
    f = builder.KeypointFilter()
    good = {"left_eye": (20, 26), "right_eye": (44, 26), "nose": (32, 36), "mouth": (32, 44), "chin": (32, 55)}
    assert f.check(good, 64, "anime") is None
    assert f.check({k: v for k, v in good.items() if k != "left_eye"}, 64) == "missing_left_eye"
    assert f.check({**good, "left_eye": (50, 26), "right_eye": (14, 26)}, 64) == "eyes_swapped"
    assert f.check({**good, "chin": (32, 90)}, 64) == "point_outside_crop"
    # face outline larger than the drawn face: the chin 2.4x as deep as the mouth ("double jaw")
    assert f.check({**good, "chin": (32, 70)}, 100, "anime") == "chin_too_low"
    assert f.check({**good, "chin": (32, 46)}, 64) == "chin_too_high"
    # a long face in eye distances (or a strongly turned head) but chin/mouth fine
    long_face = {**good, "left_eye": (26, 14), "right_eye": (38, 14), "nose": (32, 30),
                 "mouth": (32, 38), "chin": (32, 54)}
    assert f.check(long_face, 64, "anime") == "face_too_long"
    assert f.check(long_face, 64, "photo") is None
    assert f.check({**good, "nose": (32, 50), "mouth": (32, 40)}, 64) == "point_order"
    assert f.check({**good, "chin": (54, 55)}, 64) == "chin_off_axis"
    assert f.check({"left_eye": (31, 26), "right_eye": (33, 26)}, 64) == "eye_distance"


def test_filter_rejects_are_counted(tmp_path):
    jsonl = make_faces(str(tmp_path), 6, seed=6)
    make_faces(str(tmp_path), 2, seed=7, prefix="noeye", drop_points=("right_eye",))
    info = builder.build(cfg(tmp_path, [jsonl]), log=lambda s: None)
    assert info["rejects"]["missing_right_eye"] == 2 and info["counts"]["total"] == 6


def test_cyclegan_build_has_both_domains(tmp_path):
    a = make_faces(str(tmp_path / "a"), 5, seed=8)
    p = make_faces(str(tmp_path / "p"), 7, domain="photo", seed=9, prefix="Person",
                   sources=[f"P{i // 2}_{i:02d}.jpg" for i in range(7)])
    info = builder.build(cfg(tmp_path, [a, p], task="cyclegan", group_regex=r"^(.+)_\d+\.",
                             test_fraction=0.3), log=lambda s: None)
    assert set(info["splits"]["train"]) == {"photo", "anime"}
    assert info["counts"]["total"] == 12
    got = read_all(str(tmp_path / "out"), info)
    photo_groups = {}
    for s, d, r in got:
        if d == "photo":
            photo_groups.setdefault(r["group_id"], set()).add(s)
    assert len(photo_groups) == 4 and all(len(v) == 1 for v in photo_groups.values())


# ----------------------------------------------------------------------------- errors
@pytest.mark.parametrize("case", ["missing", "empty", "invalid", "no_crop_file", "all_filtered",
                                  "no_photos", "exists"])
def test_build_errors(tmp_path, case):
    jsonl = str(tmp_path / "faces.jsonl")
    if case == "missing":
        expect = "no such input file"
    elif case == "empty":
        open(jsonl, "w").close()
        expect = "no faces (empty JSONL)"
    elif case == "invalid":
        open(jsonl, "w").write('{"box": [1, 2]}\n')
        expect = "faces.jsonl:1"
    elif case == "no_crop_file":
        make_faces(str(tmp_path), 3, seed=1)
        os.remove(tmp_path / "crops/img001.png")
        expect = "missing on disk"
    elif case == "all_filtered":
        make_faces(str(tmp_path), 3, seed=1, drop_points=("left_eye",))
        expect = "no faces left after filtering"
    elif case == "no_photos":
        make_faces(str(tmp_path), 3, seed=1)
        expect = "needs photo faces"
    else:
        make_faces(str(tmp_path), 3, seed=1)
        builder.build(cfg(tmp_path, [jsonl]), log=lambda s: None)
        expect = "pass --overwrite"
    task = "cyclegan" if case == "no_photos" else "pix2pix"
    with pytest.raises(builder.BuildError, match=re.escape(expect)):
        builder.build(cfg(tmp_path, [jsonl], task=task), log=lambda s: None)
    if case != "exists":
        assert not os.path.exists(tmp_path / "out" / "dataset.json")


def test_cli_error_is_one_line_exit_1(tmp_path):
    empty = tmp_path / "faces.jsonl"
    empty.write_text("")
    r = subprocess.run([sys.executable, os.path.join(ROOT, "tools/build_tfrecords.py"), "--task=pix2pix",
                        f"--input={empty}", f"--output_dir={tmp_path / 'out'}"],
                       capture_output=True, text=True, timeout=120,
                       env={**os.environ, "PYTHONPATH": ROOT, "TF_CPP_MIN_LOG_LEVEL": "3"})
    assert r.returncode == 1
    assert "Traceback" not in r.stderr
    assert "error:" in r.stderr and "empty JSONL" in r.stderr


def test_cluster_needs_both_hash_and_thumbnail_agreement():
    hashes = [0b1011, 0b1011, 0b1010, 0xFFFF0000]
    rng = np.random.default_rng(0)
    t = rng.normal(size=(4, 12)).astype(np.float32)
    t /= np.linalg.norm(t, axis=1, keepdims=True)
    same = np.stack([t[0], t[0], t[0], t[3]])
    assert dedup.cluster(hashes, 1) == [0, 0, 0, 3]  # hash alone
    assert dedup.cluster(hashes, 1, same, 0.97) == [0, 0, 0, 3]
    assert dedup.cluster(hashes, 1, t, 0.97) == [0, 1, 2, 3]  # same layout, different pictures
    # same light/dark layout (correlation 1) but other colours: not the same picture
    raw = np.stack([t[0] * 40 + 100, t[0] * 40 + 100, t[0] * 40 + 130, t[3] * 40 + 100])
    assert dedup.cluster(hashes, 1, raw, 0.97) == [0, 0, 0, 3]
    assert dedup.cluster(hashes, 1, raw, 0.97, max_color_diff=6.0) == [0, 0, 2, 3]


def test_other_formats_are_reencoded_as_png(tmp_path):
    from PIL import Image
    jsonl = make_faces(str(tmp_path), 3, seed=21)
    Image.open(tmp_path / "crops/img001.png").convert("RGBA").save(tmp_path / "crops/img001.png")
    Image.open(tmp_path / "crops/img002.png").save(tmp_path / "crops/img002.webp")
    text = open(jsonl).read().replace("crops/img002.png", "crops/img002.webp")
    open(jsonl, "w").write(text)
    info = builder.build(cfg(tmp_path, [jsonl], test_fraction=0.0), log=lambda s: None)
    got = read_all(str(tmp_path / "out"), info)
    assert len(got) == 3
    for _, _, r in got:
        img = Image.open(io.BytesIO(r["image"]))
        assert img.format.lower() == r["format"] and img.mode == "RGB" and img.size == (64, 64)


def test_split_by_image_reports_shared_groups(tmp_path):
    jsonl = make_faces(str(tmp_path), 12, seed=22, sources=[f"P{i // 4}_{i:02d}.jpg" for i in range(12)])
    info = builder.build(cfg(tmp_path, [jsonl], group_regex=r"^(.+)_\d+\.", split_by="image",
                             test_fraction=0.5), log=lambda s: None)
    assert info["split"]["split_by"] == "image" and info["counts"]["test"] == 6
    assert info["groups"]["shared_between_splits"] >= 1  # the leaky split says so


def test_mirrored_copy_is_a_duplicate(tmp_path):
    from PIL import Image
    from translate.faces.schema import read_faces
    jsonl = make_faces(str(tmp_path), 5, seed=23)
    Image.open(tmp_path / "crops/img003.png").transpose(Image.Transpose.FLIP_LEFT_RIGHT).save(
        tmp_path / "crops/mirror.png")
    face = list(read_faces(jsonl))[3]
    face.source, face.crop.path = "mirror.jpg", "crops/mirror.png"
    face.crop.points = {"left_eye": (64 - 1 - face.crop.points["right_eye"][0], face.crop.points["right_eye"][1]),
                        "right_eye": (64 - 1 - face.crop.points["left_eye"][0], face.crop.points["left_eye"][1])}
    with open(jsonl, "a") as f:
        f.write(face.to_line())
    info = builder.build(cfg(tmp_path, [jsonl], test_fraction=0.4), log=lambda s: None)
    assert info["rejects"]["duplicate"] == 1 and info["counts"]["total"] == 5


def _cli(*args, timeout=180):
    return subprocess.run([sys.executable, os.path.join(ROOT, "tools/build_tfrecords.py"), *args],
                          capture_output=True, text=True, timeout=timeout,
                          env={**os.environ, "PYTHONPATH": ROOT, "TF_CPP_MIN_LOG_LEVEL": "3"})


def test_cli_help_and_build(tmp_path):
    r = _cli("--help")
    assert r.returncode == 0 and "--task" in r.stdout and "--test_fraction" in r.stdout and "Traceback" not in r.stderr
    a = make_faces(str(tmp_path / "a"), 6, seed=31)
    p = make_faces(str(tmp_path / "p"), 6, domain="photo", seed=32, sources=[f"P{i // 2}_{i}.jpg" for i in range(6)])
    out = tmp_path / "ds"
    r = _cli("--task=cyclegan", f"--input={a},{p}", f"--output_dir={out}", "--group_regex=photo:^(.+)_\\d+\\.",
             "--test_fraction=0.34", "--num_shards=2", "--noprogress")
    assert r.returncode == 0, r.stderr
    assert "train" in r.stdout and "rejected: none" in r.stdout
    info = records.read_info(str(out), "cyclegan")
    assert info["counts"]["total"] == 12 and info["groups"]["source"] == "group_regex"
    assert info["command"].startswith("python ") and "--task=cyclegan" in info["command"]
    assert info["splits"]["test"]["photo"]["groups"] == 1  # one person of three, both photos
