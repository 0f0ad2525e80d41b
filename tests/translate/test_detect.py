"""Detectors on data the project makes or a package ships: skimage's astronaut, synthetic faces."""
import numpy as np
import PIL
import pytest
from skimage import data

from translate.faces import quality
from translate.faces.detect import AnimeFaceDetector, MtcnnDetector, estimate_chin, frame_image
from translate.faces.synthetic import render_face, render_negative


def test_pillow_is_below_12():
    """animeface silently finds no faces with Pillow 12+ (BUILD.md); the detection tests below prove it works."""
    assert int(PIL.__version__.split(".")[0]) < 12


@pytest.fixture(scope="module")
def mtcnn():
    return MtcnnDetector()


@pytest.fixture(scope="module")
def anime():
    return AnimeFaceDetector()


def test_mtcnn_finds_the_astronaut(mtcnn):
    faces = mtcnn.detect(data.astronaut())
    assert len(faces) == 1
    face = faces[0]
    assert quality.check(face) is None
    assert face.detector == "mtcnn" and face.domain == "photo" and face.image_size == (512, 512)
    # Her eyes are near (204, 100) and (245, 102) (checked by eye); image-left eye first.
    np.testing.assert_allclose(face.points["left_eye"], (204, 100), atol=6)
    np.testing.assert_allclose(face.points["right_eye"], (245, 102), atol=6)
    assert "chin" not in face.points, "MTCNN gives no chin; it is never invented silently"


def test_mtcnn_chin_estimate_is_flagged():
    faces = MtcnnDetector(estimate_chin=True).detect(data.astronaut())
    face = faces[0]
    assert face.estimated == ["chin"]
    assert face.points["chin"] == pytest.approx(estimate_chin(face.points))
    assert face.points["chin"][1] > face.points["mouth"][1]


def test_mtcnn_finds_nothing_in_blank_and_noise(mtcnn):
    rng = np.random.default_rng(0)
    for kind in ("blank", "noise", "gradient", "shapes"):
        image = np.asarray(render_negative(rng, 256, kind))
        assert mtcnn.detect(image) == [], kind


def _synthetic(n, seed=0, size=256):
    rng = np.random.default_rng(seed)
    return [render_face(rng, size) for _ in range(n)]


def test_animeface_finds_synthetic_faces_where_they_are(anime):
    found, errors = 0, []
    for image, truth in _synthetic(20):
        faces = anime.detect(np.asarray(image))
        if faces and quality.check(faces[0]) is None:
            found += 1
            face = faces[0]
            assert face.points["left_eye"][0] < face.points["right_eye"][0]
            for eye in ("left_eye", "right_eye"):
                errors.append(np.linalg.norm(np.subtract(face.points[eye], truth.points[eye])) / truth.eye_distance)
            assert set(face.colors) == {"hair", "skin", "left_eye", "right_eye"}
    assert found >= 14, f"only {found}/20 synthetic faces found"
    assert np.median(errors) < 0.15, f"median eye error {np.median(errors):.3f} of the eye distance"


def test_animeface_finds_nothing_in_negatives(anime):
    rng = np.random.default_rng(1)
    for kind in ("blank", "noise", "gradient", "shapes"):
        for _ in range(3):
            faces = anime.detect(np.asarray(render_negative(rng, 256, kind)))
            assert not [f for f in faces if quality.check(f) is None], kind


def test_framing_maps_points_back():
    """frame_image's (scale, offset) maps an original pixel onto the same content."""
    image = PIL.Image.new("RGB", (100, 60), (0, 0, 0))
    image.putpixel((30, 20), (255, 0, 0))
    framed, scale, offset = frame_image(image, 0.25, 300)
    x, y = (30 + 0.5 + offset) * scale, (20 + 0.5 + offset) * scale
    arr = np.asarray(framed).astype(float)
    arr = arr[..., 0] - arr[..., 1]  # red minus green: zero on the white border and black image
    peak = np.unravel_index(arr.argmax(), arr.shape)
    assert abs(peak[1] - x) <= scale and abs(peak[0] - y) <= scale


def test_webtoon_strip_gives_one_face_per_panel(anime):
    faces = _synthetic(6, seed=3)
    singles = [bool(anime.detect(np.asarray(im))) for im, _ in faces]
    chosen = [f for f, ok in zip(faces, singles) if ok][:3]
    assert len(chosen) == 3
    gutter = np.full((40, 256, 3), 255, np.uint8)
    parts = []
    for image, _ in chosen:
        parts += [np.asarray(image), gutter]
    strip = np.concatenate(parts[:-1])
    found = anime.detect(strip)
    assert len(found) == 3, "the strip is split into panels and each panel detected"
    tops = sorted(f.points["left_eye"][1] for f in found)
    for k, y in enumerate(tops):
        assert 296 * k <= y < 296 * k + 256, "points are mapped back into the strip"
    assert AnimeFaceDetector(split_strips=False).detect(strip).__len__() <= 1


def test_colours_match_the_drawn_ones():
    from translate.faces.colors import estimate_colors

    errors = {k: [] for k in ("hair", "skin", "left_eye", "right_eye")}
    for image, truth in _synthetic(30, seed=5):
        got = estimate_colors(np.asarray(image), truth.points)
        for k in errors:
            errors[k].append(np.linalg.norm(np.subtract(got[k], truth.colors[k])))
    for k, e in errors.items():
        assert np.median(e) < 12, f"{k}: median RGB error {np.median(e):.1f}"


def test_detection_is_reproducible(anime):
    """animeface's own colours change between calls; ours must not."""
    images = [np.asarray(im) for im, _ in _synthetic(3, seed=9)]
    first = [[f.to_json() for f in anime.detect(im)] for im in images]
    again = [[f.to_json() for f in anime.detect(im)] for im in reversed(images)][::-1]
    assert first == again
