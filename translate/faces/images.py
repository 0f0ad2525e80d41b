"""Reading user images robustly: any common format and mode becomes an upright RGB uint8 array.

Real folders hold CMYK JPEGs, palette PNGs with transparency, 16-bit greyscale, phone photos whose
pixels are stored sideways with an EXIF orientation tag, and files that are not images at all.
`load_rgb` turns the good ones into the same thing and raises `ImageReadError` with a reason for
the rest, so callers can report and skip them.
"""
from __future__ import annotations

import os
import warnings
from typing import Iterator, List, Optional

import numpy as np
from PIL import Image, ImageOps, UnidentifiedImageError

IMAGE_EXTENSIONS = (".jpg", ".jpeg", ".png", ".webp", ".bmp")
# Decompression-bomb guard: refuse images above this many pixels, width x height as read from the
# header before decoding (the default of the CLIs' --max_image_pixels and of tools/serve.py's).
MAX_PIXELS = 40_000_000


class ImageReadError(Exception):
    """A file that cannot be used as an image; the message says why."""


def list_images(root: str, unreadable: Optional[dict] = None) -> List[str]:
    """Image files below `root` (recursive), as sorted paths relative to `root`.

    Folders that cannot be listed are skipped; with `unreadable` (a dict) each is recorded there as
    {path relative to root: reason}.
    """
    def onerror(e: OSError) -> None:
        if unreadable is not None:
            rel = os.path.relpath(e.filename, root) if e.filename else "."
            unreadable[rel] = f"folder not readable: {e.strerror or e}"

    found = []
    for dirpath, dirnames, filenames in os.walk(root, onerror=onerror):
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


def too_large(width: int, height: int, max_pixels: int) -> Optional[str]:
    """The reason to refuse a width x height image over `max_pixels`, else None."""
    if width * height > max_pixels:
        return (f"too large: {width}x{height} = {width * height} pixels is over the limit of "
                f"{max_pixels} (--max_image_pixels)")
    return None


def load_rgb(path: str, max_pixels: int = MAX_PIXELS) -> np.ndarray:
    """An upright RGB uint8 array [H, W, 3]; ImageReadError for anything unusable.

    Images over `max_pixels` (width x height from the header) are refused before decoding.
    """
    try:
        with warnings.catch_warnings():
            warnings.simplefilter("ignore", Image.DecompressionBombWarning)  # checked below
            with Image.open(path) as im:
                reason = too_large(im.width, im.height, max_pixels)
                if reason:
                    raise ImageReadError(reason)
                im.load()
                rgb = to_rgb(im)
    except ImageReadError:
        raise
    except Image.DecompressionBombError as e:  # over Pillow's own limit: refused while opening
        raise ImageReadError(f"too large (decompression bomb): {e}") from None
    except FileNotFoundError:
        raise ImageReadError("file not found") from None
    except UnidentifiedImageError:
        raise ImageReadError("not an image (unrecognised format)") from None
    except (OSError, SyntaxError, ValueError) as e:
        raise ImageReadError(f"corrupt or truncated image: {e}") from None
    if rgb.width < 8 or rgb.height < 8:
        raise ImageReadError(f"too small: {rgb.width}x{rgb.height} pixels")
    return np.asarray(rgb, dtype=np.uint8)


def iter_readable(root: str, relpaths: List[str], max_pixels: int = MAX_PIXELS) -> Iterator[tuple]:
    """(relpath, array or None, error or None) for each path; never raises on a bad file."""
    for rel in relpaths:
        try:
            yield rel, load_rgb(os.path.join(root, rel), max_pixels), None
        except ImageReadError as e:
            yield rel, None, str(e)
