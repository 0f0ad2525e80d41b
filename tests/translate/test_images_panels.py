"""Robust image reading (modes, EXIF, corrupt files) and webtoon panel splitting."""
import os
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


def test_decompression_bombs_are_refused_from_the_header(tmp_path):
    from tests.helpers import bomb_png

    huge = bomb_png(tmp_path / "huge.png", 30000, 30000)  # over Pillow's own limit too
    with pytest.raises(ImageReadError, match="too large"):
        load_rgb(huge)
    mid = bomb_png(tmp_path / "mid.png", 8000, 8000)  # 64 Mpx: over the 40 Mpx default
    with pytest.raises(ImageReadError, match=r"too large: 8000x8000 = 64000000 pixels"):
        load_rgb(mid)
    with pytest.raises(ImageReadError, match="over the limit of 100"):
        load_rgb(_save(tmp_path / "small.png", Image.new("RGB", (20, 20))), max_pixels=100)
    assert load_rgb(_save(tmp_path / "ok.png", Image.new("RGB", (20, 20))), max_pixels=400).shape == (20, 20, 3)


def test_list_images_records_unreadable_folders(tmp_path, monkeypatch):
    (tmp_path / "ok").mkdir()
    (tmp_path / "locked").mkdir()
    for folder in ("ok", "locked"):
        _save(tmp_path / folder / "a.png", Image.new("RGB", (8, 8)))
    real_scandir = os.scandir

    def scandir(path="."):  # root can read any folder: refuse one as chmod 000 would
        if os.path.basename(os.fspath(path)) == "locked":
            raise PermissionError(13, "Permission denied", os.fspath(path))
        return real_scandir(path)

    monkeypatch.setattr(os, "scandir", scandir)
    bad = {}
    assert list_images(str(tmp_path), bad) == ["ok/a.png"]
    assert list(bad) == ["locked"] and "Permission denied" in bad["locked"]
    assert list_images(str(tmp_path)) == ["ok/a.png"]  # without the dict: skipped as before


def test_translate_all_skips_a_bomb(tmp_path):
    from tests.helpers import bomb_png
    from translate.inference import pipeline

    bomb_png(tmp_path / "bomb.png")

    class Runner:
        image_size = 64

    lines = []
    summary = pipeline.translate_all(Runner(), None, str(tmp_path), ["bomb.png"], str(tmp_path / "out"),
                                     None, progress=False, log=lines.append)
    assert summary["photos"] == 1 and summary["unreadable"] == 1 and summary["written"] == []
