"""Reading user images robustly: any common format and mode becomes an upright RGB uint8 array.

Real folders hold CMYK JPEGs, palette PNGs with transparency, 16-bit greyscale, phone photos whose
pixels are stored sideways with an EXIF orientation tag, and files that are not images at all.
`load_rgb` turns the good ones into the same thing and raises `ImageReadError` with a reason for
the rest, so callers can report and skip them.
"""
from __future__ import annotations

import os
import warnings
from typing import Iterator, List

import numpy as np
from PIL import Image, ImageOps, UnidentifiedImageError

IMAGE_EXTENSIONS = (".jpg", ".jpeg", ".png", ".webp", ".bmp")
# Decompression-bomb guard: refuse images above this many pixels (a 16k x 16k image).
MAX_PIXELS = 16384 * 16384


class ImageReadError(Exception):
    """A file that cannot be used as an image; the message says why."""


def list_images(root: str) -> List[str]:
    """Image files below `root` (recursive), as sorted paths relative to `root`."""
    found = []
    for dirpath, dirnames, filenames in os.walk(root):
        dirnames.sort()
        for name in filenames:
            if name.lower().endswith(IMAGE_EXTENSIONS) and not name.startswith("."):
                found.append(os.path.relpath(os.path.join(dirpath, name), root))
    return sorted(found)


def to_rgb(image: Image.Image, background=(255, 255, 255)) -> Image.Image:
    """Upright RGB: applies EXIF orientation, flattens alpha onto `background`, converts CMYK/L/P/I."""
    image = ImageOps.exif_transpose(image)
    if image.mode in ("I;16", "I;16B", "I;16L", "I"):
        arr = np.asarray(image, dtype=np.float64)
        peak = arr.max() if arr.size and arr.max() > 255 else 255.0
        image = Image.fromarray((arr * (255.0 / peak)).clip(0, 255).astype(np.uint8), "L")
    if image.mode == "P" and "transparency" in image.info:
        image = image.convert("RGBA")
    if image.mode in ("RGBA", "LA", "PA"):
        rgba = image.convert("RGBA")
        flat = Image.new("RGB", rgba.size, background)
        flat.paste(rgba, mask=rgba.getchannel("A"))
        return flat
    return image.convert("RGB")


def load_rgb(path: str) -> np.ndarray:
    """An upright RGB uint8 array [H, W, 3]; ImageReadError for anything unusable."""
    try:
        with warnings.catch_warnings():
            warnings.simplefilter("error", Image.DecompressionBombWarning)
            with Image.open(path) as im:
                if im.width * im.height > MAX_PIXELS:
                    raise ImageReadError(f"too large: {im.width}x{im.height} pixels")
                im.load()
                rgb = to_rgb(im)
    except ImageReadError:
        raise
    except FileNotFoundError:
        raise ImageReadError("file not found") from None
    except UnidentifiedImageError:
        raise ImageReadError("not an image (unrecognised format)") from None
    except (OSError, SyntaxError, ValueError, Image.DecompressionBombWarning) as e:
        raise ImageReadError(f"corrupt or truncated image: {e}") from None
    if rgb.width < 8 or rgb.height < 8:
        raise ImageReadError(f"too small: {rgb.width}x{rgb.height} pixels")
    return np.asarray(rgb, dtype=np.uint8)


def iter_readable(root: str, relpaths: List[str]) -> Iterator[tuple]:
    """(relpath, array or None, error or None) for each path; never raises on a bad file."""
    for rel in relpaths:
        try:
            yield rel, load_rgb(os.path.join(root, rel)), None
        except ImageReadError as e:
            yield rel, None, str(e)
