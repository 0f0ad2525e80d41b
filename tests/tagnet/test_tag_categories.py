"""Tag categories flow from Danbooru metadata through dataset.json, a short training run (its
backbone weights from a local file, as --weights=PATH does offline) and thresholds.json to
predict.py's JSON and the exported `with_labels` signature: grouped by category, thresholds per
category, rating one choice. Tiny: MobileNet 0.25 at 32 px, 3 steps."""
import json
import os
import subprocess
import sys

import numpy as np
import pytest

from tagnet import backbones, build, exporting, model_dir, predicting, records, synthetic, training
from tests.helpers import ROOT

ENV = {**os.environ, "PYTHONPATH": ROOT, "TF_CPP_MIN_LOG_LEVEL": "2"}
S = 32


def _danbooru(tmp, n=32):
    """Posts in both dump formats: shapes are general tags, colours characters, every post is
    hololive (copyright) with an artist (not kept) and rating s or q."""
    root, posts = tmp / "512px", []
    for i in range(n):
        pid = 1000 + i
        img, tags = synthetic.draw(np.random.default_rng(i), S)
        os.makedirs(root / f"{pid % 1000:04d}", exist_ok=True)
        img.save(str(root / f"{pid % 1000:04d}" / f"{pid}.png"))
        shapes = [t for t in tags if t in synthetic.SHAPES]
        chars = [f"char_{t}" for t in tags if t in synthetic.COLOURS]
        post = {"id": pid, "file_ext": "png", "rating": "sq"[i % 2]}
        if i % 2:
            post["tags"] = ([{"name": t, "category": "0"} for t in shapes]
                            + [{"name": t, "category": "4"} for t in chars]
                            + [{"name": "hololive", "category": "3"}, {"name": "artist_a", "category": "1"}])
        else:
            post.update(tag_string_general=" ".join(shapes), tag_string_character=" ".join(chars),
                        tag_string_copyright="hololive", tag_string_artist="artist_a")
        posts.append(post)
    (tmp / "meta.jsonl").write_text("".join(json.dumps(p) + "\n" for p in posts))
    return str(tmp / "meta.jsonl"), str(root)


@pytest.fixture(scope="module")
def trained(tmp_path_factory):
    import keras
    tmp = tmp_path_factory.mktemp("cats")
    meta, root = _danbooru(tmp)
    items, _ = build.items_from_danbooru([meta], root)  # default: general, character, copyright, rating
    ds = str(tmp / "ds")
    build.write_dataset(items, ds, image_size=S, validation_fraction=0.25, progress=False)
    # The backbone's weights from a local 'notop' file (what --weights=PATH does offline).
    keras.utils.set_random_seed(0)
    notop = str(tmp / "notop.weights.h5")
    backbones.backbone_of(backbones.build_model("mobilenet_v1_025", 2, S, weights="none")).save_weights(notop)
    run = tmp / "run"
    training.train(training.TrainConfig(
        dataset_dir=ds, train_dir=str(run), backbone="mobilenet_v1_025", weights=notop, image_size=S,
        batch_size=8, max_number_of_steps=3, save_interval_secs=1e9, progress=False,
        handle_signals=False, batch_norm_recalibration_steps=2), log=lambda *_: None)
    images = tmp / "images"
    images.mkdir()
    for i in range(3):
        synthetic.draw(np.random.default_rng(100 + i), S)[0].save(str(images / f"{i}.png"))
    return {"ds": ds, "run": run, "images": images, "tmp": tmp}


def test_categories_reach_dataset_model_and_thresholds(trained):
    info = records.load_dataset_info(trained["ds"])
    cat = dict(zip(info.tags, info.tag_categories))
    assert cat["hololive"] == "copyright" and cat["rating:s"] == cat["rating:q"] == "rating"
    assert {cat[t] for t in info.tags if t in synthetic.SHAPES} == {"general"}
    assert {cat[t] for t in info.tags if t.startswith("char_")} == {"character"}
    assert "artist_a" not in cat
    meta = json.load(open(os.path.join(trained["ds"], "dataset.json")))
    assert meta["tag_categories"] == info.tag_categories and meta["schema_version"] == 2
    lines = open(os.path.join(trained["ds"], "tags.txt")).read().splitlines()
    assert lines[info.tags.index("hololive")].split("\t") == ["hololive", "32", "copyright"]
    cfg = model_dir.read_config(str(trained["run"] / "best"))
    assert cfg["tag_categories"] == info.tag_categories
    th = json.load(open(trained["run"] / "best" / "thresholds.json"))
    assert set(th["per_category"]) == {"general", "character", "copyright", "rating"}
    assert set(th["per_tag"]) == set(info.tags)


def test_predict_cli_groups_by_category_with_rating_one_choice(trained):
    out = trained["tmp"] / "tags.jsonl"
    r = subprocess.run([sys.executable, "tagnet/predict.py", f"--model_dir={trained['run']}",
                        f"--input={trained['images']}", f"--output={out}", "--progress=false",
                        "--category_thresholds=general=0,character=1.01"],
                       capture_output=True, text=True, env=ENV, cwd=ROOT, timeout=300)
    assert r.returncode == 0, r.stderr[-2000:]
    info = records.load_dataset_info(trained["ds"])
    general = {t for t, c in zip(info.tags, info.tag_categories) if c == "general"}
    for rec in map(json.loads, out.read_text().splitlines()):
        groups = rec["by_category"]
        assert list(groups) == ["general", "character", "copyright", "rating"]
        assert set(groups["general"]) == general            # threshold 0: every general tag
        assert groups["character"] == {}                     # threshold above any score
        assert len(groups["rating"]) == 1                    # one choice, whatever its score
        assert rec["tags"] == {t: v for g in groups.values() for t, v in g.items()}  # flat view
    assert "thresholds: character 1.01, general 0" in r.stderr  # the description line


def test_export_with_labels_matches_predict(trained):
    tf = pytest.importorskip("tensorflow")
    strict = {"character": 0.6}
    base = trained["tmp"] / "models" / "tagger"
    path = exporting.export(str(trained["run"]), str(base), verify=False,
                            category_thresholds=strict, log=lambda *_: None)
    m = tf.saved_model.load(path)
    files = sorted(str(p) for p in trained["images"].iterdir())
    out = m.signatures["with_labels"](image=tf.constant([open(f, "rb").read() for f in files]))
    out = {k: v.numpy() for k, v in out.items()}
    assert {f"{c}_{k}" for c in ("general", "character", "copyright", "artist", "meta", "rating")
            for k in ("tags", "scores")} <= set(out)
    assert out["artist_tags"].shape == (3, 0)
    labels = m.signatures["labels"]()
    info = records.load_dataset_info(trained["ds"])
    assert labels["categories"].numpy().astype(str).tolist() == info.tag_categories
    assert out["categories"].astype(str).tolist() == [info.tag_categories] * 3
    tagger = predicting.Tagger(str(trained["run"]), category_thresholds=strict)
    np.testing.assert_allclose(labels["thresholds"].numpy(), tagger.thresholds, rtol=1e-6)
    assert all(v == 0.6 for v, c in zip(tagger.thresholds, info.tag_categories) if c == "character")
    for i, rec in enumerate(tagger.tag_files(files)):
        for cat, got in rec["by_category"].items():
            names = [t for t in out[f"{cat}_tags"][i].astype(str) if t]
            assert names == list(got), cat
            np.testing.assert_allclose(out[f"{cat}_scores"][i][:len(names)], list(got.values()), atol=2e-4)
        assert out["rating_tags"][i].astype(str).tolist()[0] in ("rating:s", "rating:q")
