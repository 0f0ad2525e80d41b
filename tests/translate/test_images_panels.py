"""Robust image reading (modes, EXIF, corrupt files) and webtoon panel splitting."""
import io

import numpy as np
import pytest
from PIL import Image

from translate.faces.images import ImageReadError, list_images, load_rgb
from translate.faces.panels import is_strip, split_panels


def _save(path, image, **kw):
    image.save(path, **kw)
    return str(path)


def test_modes_become_rgb(tmp_path):
    rgb = Image.new("RGB", (40, 30), (10, 200, 30))
    cases = {
        "grey.png": rgb.convert("L"),
        "palette.png": rgb.convert("P"),
        "cmyk.jpg": rgb.convert("CMYK"),
        "alpha.png": rgb.convert("RGBA"),
        "grey16.png": Image.fromarray(np.full((30, 40), 40000, np.uint16)),
        "plain.bmp": rgb,
        "plain.webp": rgb,
    }
    for name, im in cases.items():
        arr = load_rgb(_save(tmp_path / name, im))
        assert arr.shape == (30, 40, 3) and arr.dtype == np.uint8, name


def test_transparent_pixels_become_white(tmp_path):
    im = Image.new("RGBA", (20, 20), (255, 0, 0, 0))
    arr = load_rgb(_save(tmp_path / "t.png", im))
    assert (arr == 255).all()


def test_exif_orientation_is_applied(tmp_path):
    im = Image.new("RGB", (60, 20), (0, 0, 0))
    im.paste((255, 255, 255), (0, 0, 10, 20))  # white band on the left
    exif = Image.Exif()
    exif[0x0112] = 6  # stored pixels must be rotated 90 degrees clockwise to display
    arr = load_rgb(_save(tmp_path / "rot.jpg", im, exif=exif, quality=95))
    assert arr.shape == (60, 20, 3), "width and height swap"
    assert arr[:10].mean() > 200 and arr[-10:].mean() < 50, "the left band is now on top"


def test_bad_files_raise_with_a_reason(tmp_path):
    (tmp_path / "text.jpg").write_text("this is not an image")
    good = io.BytesIO()
    Image.new("RGB", (200, 200), (1, 2, 3)).save(good, "JPEG")
    (tmp_path / "cut.jpg").write_bytes(good.getvalue()[:300])
    with pytest.raises(ImageReadError, match="not an image"):
        load_rgb(str(tmp_path / "text.jpg"))
    with pytest.raises(ImageReadError, match="corrupt|truncated"):
        load_rgb(str(tmp_path / "cut.jpg"))
    with pytest.raises(ImageReadError, match="not found"):
        load_rgb(str(tmp_path / "missing.png"))


def test_list_images_is_recursive_and_sorted(tmp_path):
    (tmp_path / "b").mkdir()
    for rel in ("b/x.PNG", "a.jpg", "b/y.webp", "notes.txt", ".hidden.jpg"):
        (tmp_path / rel).write_bytes(b"")
    assert list_images(str(tmp_path)) == ["a.jpg", "b/x.PNG", "b/y.webp"]


def test_strip_splits_at_gutters():
    strip = np.full((1000, 200, 3), 255, np.uint8)
    rng = np.random.default_rng(0)
    spans = [(20, 300), (340, 620), (700, 980)]
    for top, bottom in spans:
        strip[top:bottom] = rng.integers(0, 255, (bottom - top, 200, 3))
    assert is_strip(strip)
    assert split_panels(strip) == spans


def test_no_gutter_means_one_panel():
    image = np.random.default_rng(1).integers(0, 255, (500, 100, 3)).astype(np.uint8)
    assert split_panels(image) == [(0, 500)]
    assert not is_strip(np.zeros((100, 100, 3), np.uint8))
