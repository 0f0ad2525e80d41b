"""Alignment geometry and the usability filter, on synthetic points."""
import math

import numpy as np
import pytest

from translate.faces import quality
from translate.faces.align import GEOMETRY, align_face, similarity_matrix, transform_points
from translate.faces.schema import Face


def make_face(roll=0.0, iod=40.0, center=(100.0, 100.0), domain="photo", **overrides):
    """A level face rotated by `roll` degrees around `center`."""
    cx, cy = center
    base = {
        "left_eye": (-iod / 2, 0.0),
        "right_eye": (iod / 2, 0.0),
        "nose": (0.0, 0.6 * iod),
        "mouth": (0.0, 1.1 * iod),
        "chin": (0.0, 1.8 * iod),
    }
    a = math.radians(roll)
    rot = lambda p: (cx + p[0] * math.cos(a) - p[1] * math.sin(a), cy + p[0] * math.sin(a) + p[1] * math.cos(a))
    points = {k: rot(v) for k, v in base.items()}
    points.update(overrides.pop("points", {}))
    box = (cx - 1.1 * iod, cy - 0.9 * iod, 2.2 * iod, 2.9 * iod)
    kw = dict(box=box, points=points, score=0.99, detector="mtcnn" if domain == "photo" else "animeface", domain=domain)
    kw.update(overrides)
    return Face(**kw)


@pytest.mark.parametrize("roll", [-30.0, 0.0, 17.0])
@pytest.mark.parametrize("domain", ["photo", "anime"])
def test_eyes_land_on_canonical_positions(roll, domain):
    face = make_face(roll=roll, domain=domain)
    geo = GEOMETRY[domain]
    m = similarity_matrix(face.points["left_eye"], face.points["right_eye"], 256, geo)
    pts = transform_points(face.points, m)
    np.testing.assert_allclose(pts["left_eye"], ((0.5 - geo.eye_distance / 2) * 256, geo.eye_y * 256), atol=1e-6)
    np.testing.assert_allclose(pts["right_eye"], ((0.5 + geo.eye_distance / 2) * 256, geo.eye_y * 256), atol=1e-6)
    # A similarity keeps the face upright after alignment: nose straight below the eye centre.
    assert abs(pts["nose"][0] - 128) < 1e-6 and pts["nose"][1] > pts["left_eye"][1]
    # No shear: the two columns of the linear part are orthogonal and of equal length.
    a = np.asarray(m)[:, :2]
    assert abs(a[:, 0] @ a[:, 1]) < 1e-9 and abs(np.linalg.norm(a[:, 0]) - np.linalg.norm(a[:, 1])) < 1e-9


def test_points_move_with_pixels():
    """Paint a dot at each keypoint, align, and find the dots where the crop's points say."""
    image = np.full((300, 400, 3), 128, np.uint8)
    face = make_face(roll=20.0, iod=60.0, center=(210.0, 120.0))
    for x, y in face.points.values():
        image[int(round(y)) - 1:int(round(y)) + 2, int(round(x)) - 1:int(round(x)) + 2] = 255
    crop, meta = align_face(image, face, size=128)
    assert crop.shape == (128, 128, 3) and crop.dtype == np.uint8
    for name, (x, y) in meta.points.items():
        patch = crop[int(round(y)) - 2:int(round(y)) + 3, int(round(x)) - 2:int(round(x)) + 3, 0]
        assert patch.max() > 160, f"{name} not found at its transformed position"


def test_border_padding_for_faces_at_the_edge():
    image = np.zeros((120, 120, 3), np.uint8)
    image[:, :, 1] = 200
    face = make_face(iod=40.0, center=(20.0, 20.0))  # half the crop falls outside the image
    crop, _ = align_face(image, face, 64)
    assert (crop[..., 1] == 200).all(), "photo crops repeat edge pixels, never black"
    anime = make_face(iod=40.0, center=(20.0, 20.0), domain="anime")
    crop, _ = align_face(image, anime, 64)
    assert (crop[0, 0] == 255).all(), "anime crops are padded with white"


def test_large_images_are_shrunk_without_aliasing():
    """A fine stripe pattern averages to grey instead of aliasing into bold stripes."""
    image = np.zeros((2000, 2000, 3), np.uint8)
    image[:, ::2] = 255
    face = make_face(iod=1000.0, center=(1000.0, 800.0))
    crop, _ = align_face(image, face, 64)
    assert crop[..., 0].std() < 20 and abs(crop[..., 0].mean() - 127) < 20


def test_usable_face_passes():
    assert quality.check(make_face()) is None
    assert quality.check(make_face(roll=35.0)) is None


@pytest.mark.parametrize(
    "overrides, reason",
    [
        (dict(score=0.5), "low_score"),
        (dict(points={"right_eye": None}), "missing_eye"),
        (dict(box=(0, 0, 500, 500)), "eye_distance"),
        (dict(points={"chin": (400.0, 400.0)}), "point_outside_box"),
        (dict(points={"mouth": (100.0, 110.0)}), "point_order"),
    ],
)
def test_rejections_name_their_reason(overrides, reason):
    points = overrides.pop("points", {})
    face = make_face(**overrides)
    for k, v in points.items():
        if v is None:
            face.points.pop(k)
        else:
            face.points[k] = v
    assert quality.check(face) == reason


def test_small_and_tilted_faces_are_rejected():
    assert quality.check(make_face(iod=5.0)) == "small_face"
    assert quality.check(make_face(roll=60.0)) == "tilted"


def test_anime_threshold_differs_from_photo():
    face = make_face(domain="anime", score=0.6)
    assert quality.check(face) is None
    face.domain, face.detector = "photo", "mtcnn"
    assert quality.check(face) == "low_score"


def test_photo_to_anime_points_keeps_eyes_and_shortens_the_face():
    from translate.faces.align import GEOMETRY, photo_to_anime_points
    from translate.faces.schema import POINT_NAMES
    ph, an = GEOMETRY["photo"], GEOMETRY["anime"]
    eye_l, eye_r = (0.5 - ph.eye_distance / 2, ph.eye_y), (0.5 + ph.eye_distance / 2, ph.eye_y)
    chin_drop = 1.884 * ph.eye_distance  # a median photo chin
    pts = np.array([eye_l, eye_r, (0.5, ph.eye_y + 0.15), (0.5, ph.eye_y + 0.28), (0.52, ph.eye_y + chin_drop)])
    out = photo_to_anime_points(pts, POINT_NAMES)
    np.testing.assert_allclose(out[:2], [(0.5 - an.eye_distance / 2, an.eye_y), (0.5 + an.eye_distance / 2, an.eye_y)], atol=1e-6)
    # the chin lands about one anime eye distance below the eyes (hololive median 1.02)
    assert abs((out[4, 1] - an.eye_y) / an.eye_distance - 1.02) < 0.02
    assert out[4, 0] > 0.5 and np.all(np.diff(out[2:, 1]) > 0)  # order kept, sideways offset kept
