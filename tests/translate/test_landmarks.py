"""The landmark layer: background, peaks, missing points, batching, flips."""
import numpy as np
import pytest

tf = pytest.importorskip("tensorflow")

from translate.datasets import landmarks as L  # noqa: E402
from translate.faces.schema import POINT_NAMES  # noqa: E402

S = 64
# Points on pixel centres: pixel (col, row) -> normalised ((col + .5) / S, (row + .5) / S).
PIX = {"left_eye": (20, 26), "right_eye": (44, 26), "nose": (32, 36), "mouth": (32, 44), "chin": (32, 55)}


def pts_mask(drop=()):
    p = np.array([[(PIX[n][0] + 0.5) / S, (PIX[n][1] + 0.5) / S] for n in POINT_NAMES], np.float32)
    m = np.array([0.0 if n in drop else 1.0 for n in POINT_NAMES], np.float32)
    return p, m


def test_background_is_exactly_zero_and_127_as_uint8():
    p, m = pts_mask()
    layer = L.render(p, m, S).numpy()
    assert layer.shape == (S, S, 1) and layer.dtype == np.float32
    assert np.all(layer[:8] == 0.0) and np.all(layer[:, :6] == 0.0)  # far from the face
    assert (layer == 0.0).mean() > 0.5
    assert layer.min() >= -1.0 and layer.max() <= 1.0
    assert np.all(L.to_uint8(layer)[:8] == 127)
    assert np.all(L.render(p, np.zeros(5, np.float32), S).numpy() == 0.0)  # nothing present


def test_peak_at_each_point_with_its_own_value():
    p, m = pts_mask()
    layer = L.render(p, m, S).numpy()[..., 0]
    for i, name in enumerate(POINT_NAMES):
        col, row = PIX[name]
        assert layer[row, col] == pytest.approx(L.POINT_VALUES[i], abs=2e-3), name
        win = np.abs(layer[row - 2:row + 3, col - 2:col + 3])
        assert win.max() == pytest.approx(abs(layer[row, col]), abs=1e-6), name
    assert len(set(L.POINT_VALUES)) == len(POINT_NAMES)  # each point type is identifiable


def test_sketch_lines_drawn_between_points():
    p, m = pts_mask()
    layer = L.render(p, m, S).numpy()[..., 0]
    # midway between the eyes, on the eye line: a dark line, not background
    assert layer[26, 32] == pytest.approx(L.LINE_VALUE, abs=0.05)
    assert np.all(L.render(p, m, S, lines=False).numpy()[26, 32] == 0.0)


def test_missing_points_are_not_drawn():
    p, m = pts_mask(drop=("nose",))
    layer = L.render(p, m, S).numpy()[..., 0]
    col, row = PIX["nose"]
    assert np.all(layer[row - 2:row + 3, col - 2:col + 3] == 0.0)
    # the others are still there
    assert layer[PIX["mouth"][1], PIX["mouth"][0]] == pytest.approx(-0.75, abs=2e-3)
    # lines to a missing point are gone too: between left eye and the (missing) nose
    assert layer[31, 26] == 0.0


def test_batched_render_matches_single():
    p, m = pts_mask()
    p2, m2 = pts_mask(drop=("chin", "mouth"))
    batch = L.render(np.stack([p, p2]), np.stack([m, m2]), S).numpy()
    assert batch.shape == (2, S, S, 1)
    np.testing.assert_allclose(batch[0], L.render(p, m, S).numpy(), atol=1e-5)
    np.testing.assert_allclose(batch[1], L.render(p2, m2, S).numpy(), atol=1e-5)


def test_flip_swaps_eyes_and_mirrors_x():
    p, m = pts_mask(drop=("mouth",))
    fp, fm = L.flip_points(p, m)
    fp, fm = fp.numpy(), fm.numpy()
    li, ri = POINT_NAMES.index("left_eye"), POINT_NAMES.index("right_eye")
    assert fp[li, 0] == pytest.approx(1.0 - p[ri, 0]) and fp[ri, 0] == pytest.approx(1.0 - p[li, 0])
    assert fp[li, 0] < fp[ri, 0]  # "left" stays the image's left
    np.testing.assert_array_equal(fm, m)  # the mask follows the names (mouth stays missing)
    # rendered: the left-eye value sits at the mirrored right-eye pixel
    layer = L.render(fp, fm, S).numpy()[..., 0]
    col, row = PIX["right_eye"]
    assert layer[row, S - 1 - col] == pytest.approx(1.0, abs=2e-3)
    # apart from the eyes' values, the flipped layer is the mirror image of the original
    orig = L.render(p, m, S, lines=False).numpy()[..., 0]
    flipped = L.render(fp, fm, S, lines=False).numpy()[..., 0]
    nose_rows = slice(PIX["nose"][1] - 3, S)
    np.testing.assert_allclose(flipped[nose_rows], orig[nose_rows, ::-1], atol=1e-5)


def test_render_is_graph_friendly():
    f = tf.function(lambda p, m: L.render(p, m, 32),
                    input_signature=[tf.TensorSpec([None, 5, 2]), tf.TensorSpec([None, 5])])
    p, m = pts_mask()
    out = f(p[None], m[None])
    assert out.shape == (1, 32, 32, 1)


def _numpy_layer(p, m, size):
    """The layer the obvious way: full-grid blobs, a distance field per segment (max over them)."""
    sp, sl = L.sigmas_px(size)

    def g(d2, s):
        return np.maximum(np.exp(-d2 / (2 * s * s)) - L._E3, 0) / (1 - L._E3)

    yy, xx = np.mgrid[0:size, 0:size].astype(np.float64) + 0.5
    q = np.asarray(p, np.float64) * size
    blobs, cover, line = (np.zeros((size, size)) for _ in range(3))
    for k in range(5):
        if m[k]:
            b = g((xx - q[k, 0]) ** 2, sp) * g((yy - q[k, 1]) ** 2, sp)
            blobs, cover = blobs + L.POINT_VALUES[k] * b, cover + b
    for a, b in L.SEGMENTS:
        if m[a] and m[b]:
            v, dx, dy = q[b] - q[a], xx - q[a, 0], yy - q[a, 1]
            t = np.clip((dx * v[0] + dy * v[1]) / max(v @ v, 1e-6), 0, 1)
            line = np.maximum(line, g((dx - t * v[0]) ** 2 + (dy - t * v[1]) ** 2, sl))
    return np.clip(blobs + L.LINE_VALUE * line * (1 - np.minimum(cover, 1)), -1, 1)[..., None]


@pytest.mark.parametrize("size,drop", [(64, ()), (256, ("nose",))])
def test_matches_straightforward_numpy_rendering(size, drop):
    p, m = pts_mask(drop)
    p = (p * 0.5 + 0.25 + [0.013, -0.021]).astype(np.float32)  # off the pixel grid
    np.testing.assert_allclose(L.render(p, m, size).numpy(), _numpy_layer(p, m, size), atol=2e-5)


def test_xla_compiled_render_matches():
    """The pipelines compile render_graph with XLA: same layer, background still exactly 0."""
    p, m = pts_mask(drop=("mouth",))
    xla = tf.function(lambda p, m: L.render_graph(p, m, S), jit_compile=True)(p, m).numpy()
    ref = L.render(p, m, S).numpy()
    np.testing.assert_allclose(xla, ref, atol=2e-6)
    assert np.all(xla[ref == 0.0] == 0.0) and (ref == 0.0).mean() > 0.5
