"""tf.data pipelines: shapes, scaling, augmentation geometry, determinism, shard/schema errors."""
import json
import os

import numpy as np
import pytest

tf = pytest.importorskip("tensorflow")

from tests.helpers import MARK_COLORS, face_image, make_faces  # noqa: E402
from translate.datasets import builder, pipelines as data, landmarks, records  # noqa: E402
from translate.faces.schema import POINT_NAMES  # noqa: E402

S = 32


@pytest.fixture(scope="module")
def p2p_dir(tmp_path_factory):
    root = tmp_path_factory.mktemp("p2p")
    jsonl = make_faces(str(root), 10, size=64, seed=11)
    cfg = builder.BuildConfig(task="pix2pix", inputs=[jsonl], output_dir=str(root / "ds"),
                              test_fraction=0.2, num_shards=2, progress=False)
    builder.build(cfg, log=lambda s: None)
    return str(root / "ds")


@pytest.fixture(scope="module")
def cyc_dir(tmp_path_factory):
    root = tmp_path_factory.mktemp("cyc")
    a = make_faces(str(root / "a"), 4, size=48, seed=12)
    p = make_faces(str(root / "p"), 7, domain="photo", size=64, seed=13, fmt="jpg")
    cfg = builder.BuildConfig(task="cyclegan", inputs=[a, p], output_dir=str(root / "ds"),
                              test_fraction=0.0, num_shards=2, progress=False)
    builder.build(cfg, log=lambda s: None)
    return str(root / "ds")


def _mark_centre(img01, rgb):
    """Centroid (x, y) in pixels of the pixels close to an RGB mark colour (img in [-1, 1])."""
    target = np.array(rgb, np.float32) / 127.5 - 1.0
    d = np.abs(img01 - target).max(-1)
    ys, xs = np.nonzero(d < 0.35)
    assert len(xs), f"mark {rgb} not found"
    return xs.mean() + 0.5, ys.mean() + 0.5


@pytest.mark.parametrize("condition,channels", [("keypoints", 1), ("keypoints_colors", 13),
                                                ("keypoints_colors_noise", 14)])
def test_pix2pix_shapes_and_scaling(p2p_dir, condition, channels):
    ds = data.pix2pix_dataset(p2p_dir, "train", condition, image_size=S, augment=True, batch_size=4,
                              drop_remainder=True)
    assert ds.element_spec[0].shape.as_list() == [4, S, S, channels]
    assert ds.element_spec[1].shape.as_list() == [4, S, S, 3]
    inputs, target = next(iter(ds))
    assert inputs.dtype == tf.float32 and target.dtype == tf.float32
    x, y = inputs.numpy(), target.numpy()
    assert -1.0 <= y.min() and y.max() <= 1.0 and y.std() > 0.05
    assert -1.0 <= x.min() and x.max() <= 1.0
    layer = x[..., 0]
    assert (layer == 0.0).mean() > 0.3  # background exactly 0
    assert layer.max() > 0.6  # the left-eye peak (sub-pixel position, sigma 0.7 px at 32 px)
    if channels > 1:
        planes = x[..., 1:13]
        assert np.all(planes == planes[:, :1, :1, :])  # constant planes
        skin = planes[:, 0, 0, 3:6]
        np.testing.assert_allclose(skin, np.tile(np.array([240, 200, 180]) / 127.5 - 1, (4, 1)),
                                   atol=0.11 if condition.endswith("noise") else 1e-5)
    if channels == 14:
        noise = x[..., 13]
        assert noise.std() > 0.4 and len(np.unique(noise)) > 100


def test_deterministic_with_seed(p2p_dir):
    def first(seed):
        ds = data.pix2pix_dataset(p2p_dir, "train", "keypoints_colors_noise", image_size=S,
                                  augment=True, batch_size=8, seed=seed)
        return [t.numpy() for t in next(iter(ds))]

    a, b, c = first(5), first(5), first(6)
    for u, v in zip(a, b):
        np.testing.assert_array_equal(u, v)
    assert not all(np.array_equal(u, v) for u, v in zip(a, c))


def test_augment_moves_points_with_pixels_and_flip_swaps_eyes():
    size, load = 64, 80
    rng = np.random.default_rng(0)
    pix = {"left_eye": (20.0, 26.0), "right_eye": (44.0, 26.0), "nose": (32.0, 36.0),
           "mouth": (32.0, 44.0), "chin": (32.0, 54.0)}
    img = face_image(rng, 64, pix).astype(np.float32)
    pts, mask = landmarks.points_from_dict(pix, 64)
    colors = np.array([[1, 1, 1], [0.5, 0.5, 0.5], [1, 0, 0], [0, 1, 0]], np.float32)  # L red, R green
    flips = set()
    for k in range(12):
        out = data.augment(tf.constant(img), pts, mask, colors, np.ones(4, np.float32),
                           tf.constant([k, 99], tf.int64), size, load)
        im, p, m, c, _ = [t.numpy() for t in out]
        im = im / 127.5 - 1.0
        red, green = _mark_centre(im, MARK_COLORS["left_eye"]), _mark_centre(im, MARK_COLORS["right_eye"])
        flipped = red[0] > green[0]
        flips.add(flipped)
        # the point named left_eye is always on the image's left mark; its colour moved with it
        left_mark, right_mark = (green, red) if flipped else (red, green)
        np.testing.assert_allclose(p[0] * size, left_mark, atol=1.0)
        np.testing.assert_allclose(p[1] * size, right_mark, atol=1.0)
        np.testing.assert_allclose(p[2] * size, _mark_centre(im, MARK_COLORS["nose"]), atol=1.0)
        np.testing.assert_allclose(c[2], [0, 1, 0] if flipped else [1, 0, 0])
        # and the rendered layer peaks there
        layer = landmarks.render(p, m, size).numpy()[..., 0]
        yy, xx = np.unravel_index(np.argmax(layer), layer.shape)
        assert abs(xx + 0.5 - left_mark[0]) <= 1.5 and abs(yy + 0.5 - left_mark[1]) <= 1.5
    assert flips == {True, False}


def test_pipeline_layer_follows_target_pixels(p2p_dir):
    ds = data.pix2pix_dataset(p2p_dir, "train", "keypoints", image_size=64, augment=True,
                              batch_size=1, seed=3)
    for inputs, target in ds.take(6):
        layer, im = inputs.numpy()[0, ..., 0], target.numpy()[0]
        red, green = _mark_centre(im, MARK_COLORS["left_eye"]), _mark_centre(im, MARK_COLORS["right_eye"])
        left = min(red, green)  # whichever mark is on the image's left
        yy, xx = np.unravel_index(np.argmax(layer), layer.shape)
        assert layer[yy, xx] > 0.7  # sub-pixel position: the nearest pixel is below the peak
        assert abs(xx + 0.5 - left[0]) <= 2.0 and abs(yy + 0.5 - left[1]) <= 2.0


def test_test_split_without_augmentation(p2p_dir):
    info = records.read_info(p2p_dir)
    ds = data.pix2pix_dataset(p2p_dir, "test", "keypoints", image_size=S, batch_size=1)
    n = sum(1 for _ in ds)
    assert n == info["counts"]["test"] == 2


@pytest.mark.parametrize("landmark_channel", [False, True])
def test_cyclegan_unpaired_batches(cyc_dir, landmark_channel):
    ds = data.cyclegan_dataset(cyc_dir, "train", image_size=S, landmark_channel=landmark_channel,
                               augment=True, batch_size=1)
    c = 4 if landmark_channel else 3
    batches = list(ds)
    assert len(batches) == 7  # the larger domain (photos); anime cycles
    photo, anime = batches[0]
    assert photo.shape == (1, S, S, c) and anime.shape == (1, S, S, c)
    if landmark_channel:
        assert (photo.numpy()[..., 3] == 0).mean() > 0.3 and photo.numpy()[..., 3].max() > 0.6


def _copy(src, dst):
    import shutil
    shutil.copytree(src, dst)
    return str(dst)


def test_truncated_and_corrupt_shard_errors_name_the_file(p2p_dir, tmp_path):
    d = _copy(p2p_dir, tmp_path / "trunc")
    info = records.read_info(d)
    shard = os.path.join(d, info["splits"]["train"]["anime"]["shards"][0]["file"])
    with open(shard, "r+b") as f:
        f.truncate(os.path.getsize(shard) - 100)
    with pytest.raises(records.ShardError, match=os.path.basename(shard) + ".*truncated"):
        data.pix2pix_dataset(d, "train", "keypoints", image_size=S)
    d2 = _copy(p2p_dir, tmp_path / "corrupt")
    shard = os.path.join(d2, info["splits"]["train"]["anime"]["shards"][1]["file"])
    raw = bytearray(open(shard, "rb").read())
    raw[len(raw) // 2] ^= 0xFF  # same size, one flipped byte
    open(shard, "wb").write(bytes(raw))
    with pytest.raises(records.ShardError, match=os.path.basename(shard) + ".*corrupt"):
        data.pix2pix_dataset(d2, "train", "keypoints", image_size=S)
    os.remove(shard)
    with pytest.raises(records.ShardError, match="missing"):
        data.pix2pix_dataset(d2, "train", "keypoints", image_size=S)


def test_schema_mismatch_and_wrong_task(p2p_dir, tmp_path):
    d = _copy(p2p_dir, tmp_path / "schema")
    path = os.path.join(d, "dataset.json")
    info = json.load(open(path))
    info["schema_version"] = 99
    json.dump(info, open(path, "w"))
    with pytest.raises(records.SchemaMismatchError, match="dataset.json.*version 99"):
        data.pix2pix_dataset(d, "train", "keypoints", image_size=S)
    with pytest.raises(records.DatasetError, match="task 'pix2pix', not 'cyclegan'"):
        data.cyclegan_dataset(p2p_dir, "train", image_size=S)
    with pytest.raises(records.DatasetError, match="not a built dataset"):
        data.pix2pix_dataset(str(tmp_path), "train", "keypoints", image_size=S)


def test_each_pass_draws_anew_but_reproducibly(p2p_dir):
    def passes(ds, k=2):
        return [np.concatenate([x.numpy() for x, _ in ds]) for _ in range(k)]

    a1, a2 = passes(data.pix2pix_dataset(p2p_dir, "train", "keypoints", image_size=S, augment=True, seed=9))
    b1, b2 = passes(data.pix2pix_dataset(p2p_dir, "train", "keypoints", image_size=S, augment=True, seed=9))
    assert not np.array_equal(a1, a2)  # a new epoch: new shuffle / crops / flips
    np.testing.assert_array_equal(a1, b1)  # ... and the same in every run
    np.testing.assert_array_equal(a2, b2)


@pytest.mark.parametrize("batch_size,jit", [(1, False), (3, True)])
def test_pipeline_condition_is_pix2pix_condition(p2p_dir, batch_size, jit):
    """Per example or assembled after batching, compiled with XLA or not: the pipeline's inputs
    are `pix2pix_condition` of each example's augmented points, colours and seed."""
    cond = "keypoints_colors_noise"
    inputs = next(iter(data.pix2pix_dataset(p2p_dir, "train", cond, S, True, batch_size, seed=4,
                                            shuffle=False, jit_compile=jit)))[0].numpy()
    examples, _ = data.examples(p2p_dir, "train", "anime", info=records.read_info(p2p_dir),
                                image_size=S, augment=True, seed=4, shuffle=False, shuffle_buffer=1,
                                repeat=False, load_size=None, verify=False, num_parallel_calls=1)
    want = np.stack([data.pix2pix_condition(ex["points"], ex["point_mask"], ex["colors"],
                                            ex["color_mask"], S, cond, ex["seed"]).numpy()
                     for ex in examples.take(batch_size)])
    np.testing.assert_allclose(inputs, want, atol=2e-5 if jit else 1e-6)
    assert np.abs(want[..., 0]).max() > 0.5 and want[..., 13].std() > 0.4  # layer and noise there


def test_cyclegan_batched_landmark_channel(cyc_dir):
    photo, anime = next(iter(data.cyclegan_dataset(cyc_dir, "train", image_size=S, batch_size=3,
                                                   landmark_channel=True, drop_remainder=True)))
    assert photo.shape == (3, S, S, 4) and anime.shape == (3, S, S, 4)
    for x in (photo.numpy(), anime.numpy()):
        assert -1.0 <= x.min() and x.max() <= 1.0 and x[..., :3].std() > 0.05
        assert (x[..., 3] == 0.0).mean() > 0.3 and x[..., 3].max(axis=(1, 2)).min() > 0.6


@pytest.mark.parametrize("task", ["pix2pix", "cyclegan"])
def test_cached_pipeline_gives_the_uncached_values(p2p_dir, cyc_dir, task):
    """The in-memory cache of decoded images changes where the work happens, not the values:
    three passes of each (new draws every pass) are equal, cached or not, and reproducible.
    (CycleGAN's later passes once depended on how far the pipeline had read ahead.)"""
    def passes(cache, k=3):
        if task == "pix2pix":
            ds = data.pix2pix_dataset(p2p_dir, "train", "keypoints_colors", S, True, 2, seed=5,
                                      cache=cache)
        else:  # one pass = the larger domain once; the smaller one cycles through its cache
            ds = data.cyclegan_dataset(cyc_dir, "train", S, False, True, 2, seed=5, cache=cache)
        return [np.concatenate([np.concatenate([t.numpy() for t in batch], -1) for batch in ds])
                for _ in range(k)]

    plain, cached = passes(False), passes(True)
    assert not np.array_equal(cached[0], cached[1])  # new crops and flips every pass
    for a, b in zip(plain, cached):
        np.testing.assert_array_equal(a, b)
    for a, b in zip(cached, passes(True)):
        np.testing.assert_array_equal(a, b)


def test_cache_auto_decision(monkeypatch):
    """Auto: only repeating pipelines, and only when the decoded split fits the budget."""
    monkeypatch.setattr(data, "CACHE_AUTO_BYTES", 286 * 286 * 3 * 100)
    assert data.cache_decoded(None, 100, 286, repeat=True)
    assert not data.cache_decoded(None, 101, 286, repeat=True)
    assert not data.cache_decoded(None, 10, 286, repeat=False)
    assert data.cache_decoded(True, 10_000, 286, repeat=False)
    assert not data.cache_decoded(False, 1, 286, repeat=True)
