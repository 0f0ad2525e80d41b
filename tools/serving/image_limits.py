"""The size of an encoded image as TensorFlow's decoders will see it, read from the format's header.

`image_pixels(data)` -> (width, height, frames) for the formats `tf.io.decode_image` documents
(JPEG, PNG, GIF, BMP, WebP), classified by the same magic bytes as TF's DecodeImage op. Anything
else (JPEG XL, TIFF, text) and any header that does not give a size raise UnsizableImage: a
server that checks sizes before decoding must refuse what it cannot size, or the check is
bypassed. The readers follow the decoders, not stricter libraries: libjpeg skips parameterless
markers (TEM, RST) and stray bytes between segments, libpng reads IHDR before any CRC of a later
chunk is checked, giflib reads every frame (so a GIF counts frames x canvas), TF's BMP reader takes
width and height at fixed offsets.

Animated WebP is refused: TensorFlow 2.21's WebP decoder corrupted the heap and aborted the
process on small animated files (Pillow-written, 40x40 px, 2-3 frames), with or without
expand_animations.
"""
from __future__ import annotations

import struct
from typing import Tuple

FORMATS = "JPEG, PNG, GIF, BMP or WebP"
PNG_MAGIC = b"\x89PNG\r\n\x1a\n"
JPEG_MAGIC = b"\xff\xd8\xff"
# SOFn markers: baseline, extended, progressive, lossless (Huffman and arithmetic); not DHT (C4),
# JPG (C8) or DAC (CC).
JPEG_SOF = {0xC0, 0xC1, 0xC2, 0xC3, 0xC5, 0xC6, 0xC7, 0xC9, 0xCA, 0xCB, 0xCD, 0xCE, 0xCF}
JPEG_PARAMLESS = {0x01} | set(range(0xD0, 0xD8))  # TEM, RST0..7
GIF_MAX_BLOCKS = 1 << 20


class UnsizableImage(ValueError):
    """Bytes whose decoded size cannot be read (or a format that is not accepted)."""


def image_format(data: bytes) -> str:
    """'jpeg' | 'png' | 'gif' | 'bmp' | 'webp' by magic bytes, as TF's DecodeImage classifies."""
    if data.startswith(JPEG_MAGIC):
        return "jpeg"
    if data.startswith(PNG_MAGIC):
        return "png"
    if data.startswith(b"GIF8"):
        return "gif"
    if data.startswith(b"BM"):
        return "bmp"
    if data.startswith(b"RIFF") and data[8:12] == b"WEBP":
        return "webp"
    raise UnsizableImage(f"not a {FORMATS} image")


def image_pixels(data: bytes) -> Tuple[int, int, int]:
    """-> (width, height, frames) from the header; UnsizableImage when they cannot be read."""
    fmt = image_format(data)
    try:
        w, h, frames = _READERS[fmt](data)
    except (struct.error, IndexError):
        w = h = frames = 0
    if w <= 0 or h <= 0 or frames <= 0:
        raise UnsizableImage(f"cannot read the size of this {fmt.upper()} image (damaged header)")
    return w, h, frames


def _jpeg(data: bytes) -> Tuple[int, int, int]:
    """The first SOFn segment's size, walking markers as libjpeg's read_markers does."""
    i, n = 2, len(data)
    while i < n:
        if data[i] != 0xFF:  # libjpeg skips stray bytes before a marker (with a warning)
            i = data.find(b"\xff", i)
            if i < 0:
                break
        while i < n and data[i] == 0xFF:  # fill bytes
            i += 1
        if i >= n:
            break
        marker = data[i]
        i += 1
        if marker in JPEG_PARAMLESS or marker == 0x00:
            continue
        if marker in (0xD9, 0xDA):  # EOI or SOS before any frame header
            break
        (length,) = struct.unpack(">H", data[i:i + 2])
        if marker in JPEG_SOF:
            h, w = struct.unpack(">HH", data[i + 3:i + 7])
            return w, h, 1
        if length < 2:
            break
        i += length
    return 0, 0, 0


def _png(data: bytes) -> Tuple[int, int, int]:
    if data[12:16] != b"IHDR":  # libpng requires IHDR first
        return 0, 0, 0
    w, h = struct.unpack(">II", data[16:24])
    if w > 0x7FFFFFFF or h > 0x7FFFFFFF:
        return 0, 0, 0
    return w, h, 1


def _gif(data: bytes) -> Tuple[int, int, int]:
    """Canvas size (or the largest frame's, when larger) and the number of frames."""
    cw, ch, packed = struct.unpack("<HHB", data[6:11])
    i = 13 + (3 << ((packed & 7) + 1) if packed & 0x80 else 0)
    frames, size, n = 0, (cw, ch), len(data)
    for _ in range(GIF_MAX_BLOCKS):
        if i >= n or data[i] == 0x3B:
            break
        kind = data[i]
        if kind == 0x2C:  # image descriptor
            fw, fh, fpacked = struct.unpack("<HHB", data[i + 5:i + 10])
            frames += 1
            if fw * fh > size[0] * size[1]:
                size = (fw, fh)
            i += 10 + (3 << ((fpacked & 7) + 1) if fpacked & 0x80 else 0) + 1  # + LZW code size
        elif kind == 0x21:  # extension: label, then sub-blocks
            i += 2
        else:
            break
        while i < n and data[i]:  # data sub-blocks
            i += data[i] + 1
        i += 1
    else:
        return 0, 0, 0  # more blocks than any real GIF: refuse rather than walk on
    return size[0], size[1], frames


def _bmp(data: bytes) -> Tuple[int, int, int]:
    w, h = struct.unpack("<ii", data[18:26])  # TF's decode_bmp reads these offsets
    return w, abs(h), 1


def _webp(data: bytes) -> Tuple[int, int, int]:
    i, n = 12, len(data)
    fourcc, size = data[i:i + 4], struct.unpack("<I", data[i + 4:i + 8])[0]
    body = data[i + 8:i + 8 + size]
    if fourcc == b"VP8 ":
        if body[3:6] != b"\x9d\x01\x2a":
            return 0, 0, 0
        w, h = struct.unpack("<HH", body[6:10])
        return w & 0x3FFF, h & 0x3FFF, 1
    if fourcc == b"VP8L":
        if body[:1] != b"\x2f":
            return 0, 0, 0
        (bits,) = struct.unpack("<I", body[1:5])
        return (bits & 0x3FFF) + 1, ((bits >> 14) & 0x3FFF) + 1, 1
    if fourcc == b"VP8X":
        w = int.from_bytes(body[4:7], "little") + 1
        h = int.from_bytes(body[7:10], "little") + 1
        animated = bool(body[0] & 0x02)
        j = i + 8 + size + (size & 1)
        while j + 8 <= n and not animated:  # ANIM / ANMF chunks without the flag
            animated = data[j:j + 4] in (b"ANIM", b"ANMF")
            j += 8 + struct.unpack("<I", data[j + 4:j + 8])[0]
            j += j & 1
        if animated:
            raise UnsizableImage("animated WebP is not accepted (TensorFlow's decoder is unsafe "
                                 "with it)")
        return w, h, 1
    return 0, 0, 0


_READERS = {"jpeg": _jpeg, "png": _png, "gif": _gif, "bmp": _bmp, "webp": _webp}
