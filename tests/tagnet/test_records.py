"""Tag records, dataset.json checks and the dataset builder (CSV, class folders, Danbooru)."""
import json
import os
import subprocess
import sys

import numpy as np
import pytest
from PIL import Image

from tagnet import build, data, records
from tests.helpers import ROOT



def _img(path, colour, size=(40, 20), mode="RGB"):
    os.makedirs(os.path.dirname(path), exist_ok=True)
    Image.new(mode, size, colour).save(path)


def _csv_set(tmp_path, n=20):
    d = tmp_path / "src"
    rows = ["file,tags"]
    for i in range(n):
        colour = (255, 0, 0) if i % 2 else (0, 0, 255)
        _img(str(d / f"a{i}-{i % 3}.png"), colour)
        tags = ("red" if i % 2 else "blue") + (" rare" if i == 0 else "") + " common"
        rows.append(f"a{i}-{i % 3}.png,{tags}")
    rows.append("missing.png,red")
    (d / "labels.csv").write_text("\n".join(rows) + "\n")
    return d / "labels.csv"


def test_csv_build_roundtrip(tmp_path):
    items, report = build.items_from_csv(str(_csv_set(tmp_path)))
    assert len(items) == 20 and report.missing == 1
    out = str(tmp_path / "ds")
    s = build.write_dataset(items, out, image_size=16, min_tag_count=2, validation_fraction=0.25,
                            progress=False, command=["x"])
    assert s["num_tags"] == 3  # 'rare' (1 image) dropped
    info = records.load_dataset_info(out)
    assert info.tags == ["common", "blue", "red"]
    assert info.tag_counts == [20, 10, 10]
    assert info.count("train") + info.count("validation") == 20
    assert info.info["command"] == ["x"] and info.info["schema_version"] == records.SCHEMA_VERSION
    x, y, ids = data.load_split_numpy(info, "train", 16)
    assert x.shape[1:] == (16, 16, 3) and len(ids) == info.count("train")
    # Pad-to-square on white: the 40x20 image fills the middle rows, the top and bottom are white.
    assert (x[:, 0, :, :] > 240).all() and (x[:, -1] > 240).all()
    for img, lab, sid in zip(x, y, ids):
        red = img[8, 8, 0] > img[8, 8, 2]
        assert lab[0] == 1 and lab[2] == red and lab[1] == (not red), sid


def test_group_pattern_keeps_groups_on_one_side(tmp_path):
    items, _ = build.items_from_csv(str(_csv_set(tmp_path)), group_pattern=r"-(\d)\.png$")
    assert {it.group_id for it in items} == {"0", "1", "2"}
    train, val = build.split_items(items, 0.3, seed=1)
    assert train and val
    assert not ({it.group_id for it in train} & {it.group_id for it in val})


def test_stratified_split_gives_every_class_validation():
    items = [build.Item(f"{c}{i}", [c], f"{c}{i}", f"{c}{i}") for c in "abcde" for i in range(10)]
    train, val = build.split_items(items, 0.2, seed=0, stratify=True)
    assert len(val) == 10 and sorted({it.tags[0] for it in val}) == list("abcde")


def test_class_folders_single_label(tmp_path):
    for cls, colour in (("ame", (250, 220, 0)), ("gura", (80, 120, 255))):
        for i in range(6):
            _img(str(tmp_path / "cls" / cls / f"{i}.jpg"), colour, (24, 24))
    items, _ = build.items_from_class_folders(str(tmp_path / "cls"))
    s = build.write_dataset(items, str(tmp_path / "ds"), task="single_label", image_size=16,
                            validation_fraction=0.34, progress=False)
    assert s["train"] == 8 and s["validation"] == 4
    info = records.load_dataset_info(str(tmp_path / "ds"))
    assert not info.multi_label
    x, y = next(iter(data.make_dataset(info, "validation", 8, 16, training=False)))
    assert y.dtype.name == "int32" and sorted(set(y.numpy().tolist())) == [0, 1]


def test_danbooru_both_tag_formats(tmp_path):
    root = tmp_path / "512px"
    posts = [
        {"id": 1001, "md5": "a", "file_ext": "png", "rating": "s", "parent_id": 0,
         "tags": [{"id": 1, "name": "1girl", "category": "0"}, {"id": 2, "name": "gawr_gura", "category": "4"},
                  {"id": 3, "name": "artist_x", "category": "1"}]},
        {"id": 2002, "md5": "b", "file_ext": "jpg", "rating": "q", "parent_id": 1001,
         "tag_string_general": "1girl smile", "tag_string_character": "gawr_gura",
         "tag_string_artist": "artist_y", "tag_string_copyright": "hololive"},
        {"id": 3003, "md5": "c", "file_ext": "jpg", "rating": "s", "tag_string_general": "smile"},
    ]
    _img(str(root / "0001" / "1001.png"), (10, 200, 10, 128), mode="RGBA")
    _img(str(root / "0002" / "2002.jpg"), (10, 10, 200))  # 3003 has no image
    meta = tmp_path / "meta.json"
    meta.write_text("\n".join(json.dumps(p) for p in posts) + "\nnot json\n")
    assert build.danbooru_tags(posts[0], ["general", "character"]) == ["1girl", "gawr_gura"]
    assert sorted(build.danbooru_tags(posts[1], build.DEFAULT_CATEGORIES)) == [
        "1girl", "gawr_gura", "hololive", "rating:q", "smile"]
    items, report = build.items_from_danbooru([str(meta)], str(root))
    assert report.rows == 4 and report.missing == 1 and report.skipped == 1
    assert [it.group_id for it in items] == ["1001", "1001"]  # parent/child stay together
    s = build.write_dataset(items, str(tmp_path / "ds"), image_size=16, validation_fraction=0.0,
                            progress=False)
    info = records.load_dataset_info(str(tmp_path / "ds"))
    assert "artist_x" not in info.tags and "rating:s" in info.tags and s["train"] == 2
    x, _, _ = data.load_split_numpy(info, "train", 16)
    # Transparency composited on white.
    greenish = [im for im in x if im[8, 8, 1] > im[8, 8, 2]]
    assert greenish and greenish[0][8, 8, 0] > 100


def test_danbooru_zero_images_is_a_clear_error(tmp_path):
    (tmp_path / "img").mkdir()
    meta = tmp_path / "m.jsonl"
    meta.write_text(json.dumps({"id": 5, "file_ext": "jpg", "tag_string_general": "a"}) + "\n")
    with pytest.raises(build.BuildError, match=r"none of the images exist.*0005/5.jpg"):
        build.items_from_danbooru([str(meta)], str(tmp_path / "img"))


def test_reader_checks(tmp_path):
    with pytest.raises(records.DatasetError, match="no dataset.json"):
        records.load_dataset_info(str(tmp_path))
    items, _ = build.items_from_csv(str(_csv_set(tmp_path)))
    out = tmp_path / "ds"
    build.write_dataset(items, str(out), image_size=16, validation_fraction=0.0, progress=False)
    info = records.load_dataset_info(str(out))
    with pytest.raises(records.DatasetError, match="'validation' has 0 examples"):
        info.require_split("validation")
    meta = json.loads((out / "dataset.json").read_text())
    (out / "dataset.json").write_text(json.dumps({**meta, "schema_version": 99}))
    with pytest.raises(records.DatasetError, match="schema version 99"):
        records.load_dataset_info(str(out))
    (out / "dataset.json").write_text(json.dumps({**meta, "num_tags": 7}))
    with pytest.raises(records.DatasetError, match="has 4 tags but"):
        records.load_dataset_info(str(out))
    (out / "dataset.json").write_text(json.dumps(meta))
    os.remove(out / meta["splits"]["train"]["shards"][0])
    with pytest.raises(records.DatasetError, match="missing shard"):
        records.load_dataset_info(str(out))
    with pytest.raises(build.BuildError, match="already holds a dataset"):
        build.write_dataset(items, str(out), image_size=16, progress=False)


def test_build_cli(tmp_path):
    csv_path = _csv_set(tmp_path)
    env = {**os.environ, "PYTHONPATH": ROOT}
    cmd = [sys.executable, os.path.join(ROOT, "tagnet", "build_dataset.py")]
    ok = subprocess.run(cmd + [f"--csv={csv_path}", f"--output_dir={tmp_path / 'ds'}", "--image_size=16",
                               "--progress=false"], capture_output=True, text=True, env=env)
    assert ok.returncode == 0, ok.stderr
    assert "20 images found, 1 missing" in ok.stdout and "wrote" in ok.stdout
    summary = json.loads(ok.stdout.strip().splitlines()[-1])
    assert summary["train"] + summary["validation"] == 20
    bad = subprocess.run(cmd + [f"--csv={tmp_path / 'nope.csv'}", f"--output_dir={tmp_path / 'x'}"],
                         capture_output=True, text=True, env=env)
    assert bad.returncode == 1 and "does not exist" in bad.stderr and "Traceback" not in bad.stderr


def test_build_tfrecords_task_tags_runs_the_tag_builder(tmp_path):
    """tools/build_tfrecords.py --task=tags takes tagnet's flags (not the face builder's)."""
    csv_path = _csv_set(tmp_path)
    env = {**os.environ, "PYTHONPATH": ROOT}
    cmd = [sys.executable, os.path.join(ROOT, "tools", "build_tfrecords.py"), "--task", "tags"]
    ok = subprocess.run(cmd + [f"--csv={csv_path}", f"--output_dir={tmp_path / 'ds'}", "--image_size=16",
                               "--label_type=multi_label", "--progress=false"],
                        capture_output=True, text=True, env=env)
    assert ok.returncode == 0, ok.stderr
    summary = json.loads(ok.stdout.strip().splitlines()[-1])
    assert summary["train"] + summary["validation"] == 20
    assert os.path.exists(tmp_path / "ds" / "tags.txt")
    bad = subprocess.run(cmd + [f"--output_dir={tmp_path / 'x'}"], capture_output=True, text=True, env=env)
    assert bad.returncode == 1 and "exactly one source" in bad.stderr and "Traceback" not in bad.stderr


def test_categories_from_csv_prefixes_and_class_folders_and_version_1_folders(tmp_path):
    assert build.split_category("character:gawr_gura") == ("gawr_gura", "character")
    assert build.split_category("rating:s") == ("rating:s", "rating")
    assert build.split_category("re:zero", "character") == ("re:zero", "character")
    assert build.split_category(":d") == (":d", "general")
    d = tmp_path / "src"
    _img(str(d / "a.png"), (255, 0, 0))
    _img(str(d / "b.png"), (0, 0, 255))
    (d / "labels.csv").write_text("a.png,smile character:gawr_gura rating:s\nb.png,smile ina rating:q\n")
    items, _ = build.items_from_csv(str(d / "labels.csv"), category="copyright")
    out = str(tmp_path / "ds")
    build.write_dataset(items, out, image_size=16, validation_fraction=0.0, progress=False)
    info = records.load_dataset_info(out)
    assert dict(zip(info.tags, info.tag_categories)) == {
        "smile": "copyright", "gawr_gura": "character", "ina": "copyright", "rating:q": "rating",
        "rating:s": "rating"}
    with pytest.raises(build.BuildError, match="unknown tag category 'characters'"):
        build.items_from_class_folders(str(d), category="characters")
    # A version 1 folder (tag<TAB>count, no tag_categories) loads with every tag general.
    meta = json.loads((tmp_path / "ds" / "dataset.json").read_text())
    del meta["tag_categories"]
    (tmp_path / "ds" / "dataset.json").write_text(json.dumps({**meta, "schema_version": 1}))
    vocab = tmp_path / "ds" / "tags.txt"
    vocab.write_text("".join("\t".join(l.split("\t")[:2]) + "\n" for l in vocab.read_text().splitlines()))
    old = records.load_dataset_info(out)
    assert old.tags == info.tags and old.tag_categories == ["general"] * len(info.tags)
    # Categories that disagree between tags.txt and dataset.json are refused.
    (tmp_path / "ds" / "dataset.json").write_text(json.dumps({**meta, "tag_categories": ["meta"] * 5}))
    with pytest.raises(records.DatasetError, match="categories .* differ"):
        records.load_dataset_info(out)
