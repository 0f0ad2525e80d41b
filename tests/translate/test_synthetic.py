"""The synthetic faces are the tests' ground truth, so their keypoints and colours must be right."""
import os
import pathlib
import subprocess
import sys

import numpy as np
import pytest

from translate.faces import synthetic
from translate.faces.schema import read_faces
from tests.helpers import ROOT_PATH as ROOT

SEEDS = range(12)


def _render(seed, size=256):
    image, face = synthetic.render_face(synthetic.face_rng(seed, 0), size)
    return np.asarray(image), face


def _axes(face):
    """Unit vectors along the eye line (towards image-right) and down the face."""
    e = np.subtract(face.points["right_eye"], face.points["left_eye"])
    e = e / np.linalg.norm(e)
    return e, np.array([-e[1], e[0]])


def _disc(pixels, center, radius):
    y, x = np.mgrid[: pixels.shape[0], : pixels.shape[1]]
    return pixels[(x - center[0]) ** 2 + (y - center[1]) ** 2 <= radius ** 2].astype(int)


def _matches(pixels, color, tol=10):
    return np.abs(pixels - np.asarray(color)).max(axis=1) <= tol


def test_same_seed_same_pixels_and_face():
    (a, fa), (b, fb) = _render(3), _render(3)
    assert np.array_equal(a, b)
    assert fa.to_line() == fb.to_line()
    c, fc = _render(4)
    assert not np.array_equal(a, c)
    assert fa.to_line() != fc.to_line()


@pytest.mark.parametrize("size", [64, 256])
def test_face_contract_fields(size):
    image, face = _render(1, size)
    assert image.shape == (size, size, 3)
    assert (face.detector, face.domain, face.score, face.image_size) == ("synthetic", "anime", 1.0, (size, size))
    assert set(face.points) == {"left_eye", "right_eye", "nose", "mouth", "chin"}
    assert set(face.colors) == {"hair", "skin", "left_eye", "right_eye"}
    assert face.crop.points == face.points and face.crop.size == size
    x, y, w, h = face.box
    for px, py in face.points.values():
        assert x - 1 <= px <= x + w + 1 and y - 1 <= py <= y + h + 1


@pytest.mark.parametrize("seed", SEEDS)
def test_points_inside_and_ordered(seed):
    _, face = _render(seed)
    p = {k: np.asarray(v) for k, v in face.points.items()}
    assert all(0 <= c < 256 for v in p.values() for c in v)
    assert p["left_eye"][0] < p["right_eye"][0]
    _, down = _axes(face)
    mid_eyes = (p["left_eye"] + p["right_eye"]) / 2
    depth = [np.dot(q, down) for q in (mid_eyes, p["nose"], p["mouth"], p["chin"])]
    assert depth == sorted(depth) and len(set(depth)) == 4
    assert 0.25 * face.box[2] < face.eye_distance < 0.75 * face.box[2]


@pytest.mark.parametrize("seed", SEEDS)
def test_eye_points_are_the_drawn_pupils(seed):
    """The darkest quarter of a small disc around each eye point is the pupil, centred on it."""
    pixels, face = _render(seed)
    lum = pixels.astype(float).mean(axis=2)
    y, x = np.mgrid[:256, :256]
    for eye in ("left_eye", "right_eye"):
        cx, cy = face.points[eye]
        disc = (x - cx) ** 2 + (y - cy) ** 2 <= (0.12 * face.eye_distance) ** 2
        dark = disc & (lum < np.percentile(lum[disc], 25))
        assert np.hypot(x[dark].mean() - cx, y[dark].mean() - cy) < 0.04 * face.eye_distance, eye


@pytest.mark.parametrize("seed", SEEDS)
def test_colors_are_the_drawn_ones(seed):
    pixels, face = _render(seed)
    flat = pixels.reshape(256, 256, 3)
    iod = face.eye_distance
    for eye in ("left_eye", "right_eye"):  # the iris ring around the pupil
        assert _matches(_disc(flat, face.points[eye], 0.3 * iod), face.colors[eye]).sum() >= 4, eye
    mid = np.add(face.points["left_eye"], face.points["right_eye"]) / 2
    _, down = _axes(face)
    hair = _disc(flat, mid - 1.1 * iod * down, 0.12 * iod)  # the fringe above the eyes
    assert _matches(hair, face.colors["hair"]).mean() > 0.5
    skin = _disc(flat, (mid + np.asarray(face.points["nose"])) / 2, 0.05 * iod + 1)  # between the eyes
    assert _matches(skin, face.colors["skin"], tol=4).mean() > 0.8


def test_left_and_right_iris_colours_not_swapped():
    """Heterochromia faces show that image-left colour belongs to the image-left eye."""
    for seed in range(200):
        pixels, face = _render(seed)
        left, right = face.colors["left_eye"], face.colors["right_eye"]
        if np.abs(np.subtract(left, right)).max() > 40:
            break
    else:
        pytest.fail("no heterochromia face in 200 seeds")
    disc = _disc(pixels, face.points["left_eye"], 0.3 * face.eye_distance)
    assert _matches(disc, left).sum() > _matches(disc, right).sum()


def test_write_dataset_reads_back_and_is_deterministic(tmp_path):
    a, b = tmp_path / "a", tmp_path / "b"
    assert synthetic.write_dataset(str(a), 3, size=96, seed=5, negatives=4) == {"faces": 3, "negatives": 4}
    synthetic.write_dataset(str(b), 3, size=96, seed=5, negatives=4)
    faces = list(read_faces(str(a / "faces.jsonl")))
    assert [f.source for f in faces] == [f"images/face_{i:05d}.png" for i in range(3)]
    for f in faces:
        assert f.crop.path == f.source and (a / f.crop.path).is_file()
    assert len(list((a / "negatives").glob("*.png"))) == 4
    for path in sorted(p.relative_to(a) for p in a.rglob("*") if p.is_file()):
        assert (a / path).read_bytes() == (b / path).read_bytes(), path


def test_negatives_contain_no_face():
    animeface = pytest.importorskip("animeface")
    for kind in synthetic.NEGATIVE_KINDS:
        for i in range(3):
            image = synthetic.render_negative(np.random.default_rng(i), 256, kind)
            assert image.size == (256, 256) and image.mode == "RGB"
            assert animeface.detect(image) == [], (kind, i)
    with pytest.raises(ValueError):
        synthetic.render_negative(np.random.default_rng(0), 64, "faces")


def test_animeface_finds_most_synthetic_faces():
    """Not a quality gate (see the report for rates): guards against drawing regressions."""
    animeface = pytest.importorskip("animeface")
    found = sum(bool(animeface.detect(synthetic.render_face(synthetic.face_rng(0, i))[0])) for i in range(20))
    assert found >= 14


def _cli(*args):
    env = dict(os.environ, PYTHONPATH=str(ROOT))
    return subprocess.run([sys.executable, str(ROOT / "tools" / "make_synthetic_faces.py"), *args],
                          capture_output=True, text=True, env=env, cwd=str(ROOT), timeout=60)


def test_cli_writes_files(tmp_path):
    r = _cli(f"--output_dir={tmp_path}", "--count=2", "--size=64", "--negatives=1")
    assert r.returncode == 0, r.stderr
    assert "wrote 2 faces" in r.stdout
    assert len(list(read_faces(str(tmp_path / "faces.jsonl")))) == 2
    assert (tmp_path / "images" / "face_00001.png").is_file()
    assert len(list((tmp_path / "negatives").glob("*.png"))) == 1


@pytest.mark.parametrize("flag", ["--count=0", "--size=32", "--negatives=-1"])
def test_cli_refuses_bad_flags(tmp_path, flag):
    r = _cli(f"--output_dir={tmp_path}", flag)
    assert r.returncode == 1
    assert "Traceback" not in r.stderr and flag.split("=")[0] in r.stderr
    assert not (tmp_path / "faces.jsonl").exists()
