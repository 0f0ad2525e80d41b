"""Synthetic anime-style faces with exact keypoints and colours.

No real data set knows where an eye centre is to the sub-pixel, nor the exact RGB of the iris; this
generator does, because it draws them. It is the project's demo anime domain and the tests' ground
truth, and `render_negative` gives face-free images to check that detectors stay quiet.

Every shape is built as a polygon in a "face frame" (origin between the eyes, v pointing to the
chin, units of output pixels), mapped by the head's roll and position to the image, and drawn at
`_SCALE` times the output size, then downsampled with LANCZOS for anti-aliasing. Keypoints go
through the same mapping, so they are exact without any image resampling of the geometry.
"""
from __future__ import annotations

import dataclasses
import os
from typing import Dict, List, Optional, Sequence, Tuple

import numpy as np
from PIL import Image, ImageChops, ImageDraw

from translate.faces.schema import Crop, Face

_SCALE = 4  # supersampling factor
NEGATIVE_KINDS: Tuple[str, ...] = ("blank", "noise", "gradient", "shapes")

Color = Tuple[int, int, int]

# Natural and anime hair colours; each face jitters one of them slightly.
HAIR_PALETTE: Tuple[Color, ...] = (
    (28, 26, 34), (70, 45, 30), (120, 75, 45), (235, 205, 130), (230, 120, 50), (190, 40, 45),
    (245, 150, 190), (70, 110, 210), (40, 50, 110), (205, 205, 220), (245, 245, 240),
    (80, 170, 100), (140, 90, 190), (60, 170, 180),
)
SKIN_PALETTE: Tuple[Color, ...] = (
    (255, 232, 218), (252, 222, 200), (245, 210, 185), (232, 190, 160), (205, 160, 125),
    (165, 120, 90),
)
IRIS_PALETTE: Tuple[Color, ...] = (
    (60, 110, 210), (40, 150, 90), (200, 40, 60), (130, 60, 190), (120, 75, 40), (220, 160, 40),
    (230, 90, 150), (40, 170, 200), (90, 90, 100),
)
_LINE = (38, 24, 30)  # line-art colour for lashes and outlines


@dataclasses.dataclass
class _Style:
    """Every random choice for one face, drawn up front so the rng order never depends on drawing."""

    size: int
    background: Color
    hair: Color
    skin: Color
    iris: Tuple[Color, Color]  # image-left eye, image-right eye
    clothes: Color
    F: float  # face height, forehead to chin (the unit most proportions are fractions of)
    W: float  # face width at the cheeks
    top: float  # forehead top above the eye line
    chin: float  # chin tip below the eye line
    eye_w: float
    eye_h: float
    eye_u: float  # eye centre offset from the midline
    yaw: float  # feature shift as a fraction of W (slight head turn)
    roll: float  # radians, positive turns clockwise on screen
    center: Tuple[float, float]  # image position of the face-frame origin
    hair_len: float  # how far below the eye line the back hair reaches
    strands: np.ndarray  # bangs tip depths (fractions), one per strand
    open_mouth: bool
    blush: bool


def _rgb(values) -> Color:
    """Rounds and clips to a plain (r, g, b) tuple of ints, the form the Face contract stores."""
    r, g, b = (int(v) for v in np.clip(np.round(np.asarray(values, dtype=float)), 0, 255))
    return (r, g, b)


def _jitter(rng: np.random.Generator, palette: Sequence[Color], amount: int) -> Color:
    """A palette colour, nudged so that no two data sets share exact colours by accident."""
    base = np.asarray(palette[rng.integers(len(palette))], dtype=int)
    return _rgb(base + rng.integers(-amount, amount + 1, 3))


def _background(rng: np.random.Generator) -> Color:
    """White or a light pastel: plain, so that nothing in it competes with the face."""
    if rng.random() < 0.3:
        return (255, 255, 255)
    return _rgb(255 - rng.integers(0, 45, 3))


def _sample_style(rng: np.random.Generator, size: int) -> _Style:
    background = _background(rng)
    hair = _jitter(rng, HAIR_PALETTE, 12)
    skin = _jitter(rng, SKIN_PALETTE, 6)
    left_iris = _jitter(rng, IRIS_PALETTE, 15)
    right_iris = _jitter(rng, IRIS_PALETTE, 15) if rng.random() < 0.1 else left_iris
    clothes = _rgb(rng.integers(30, 230, 3))
    F = size * rng.uniform(0.40, 0.52)
    W = F * rng.uniform(0.80, 0.92)
    top = F * rng.uniform(0.47, 0.53)
    chin = F - top
    eye_w = W * rng.uniform(0.21, 0.26)
    eye_h = eye_w * rng.uniform(1.0, 1.25)
    eye_u = W * rng.uniform(0.22, 0.26)
    yaw = rng.uniform(-0.06, 0.06)
    roll = np.deg2rad(rng.uniform(-15, 15))
    shift = rng.uniform(-0.06, 0.06, 2) * size
    center = (size / 2 + shift[0], size * 0.5 - 0.02 * F + shift[1])
    hair_len = chin * rng.uniform(0.4, 2.5)
    strands = rng.uniform(0.0, 1.0, int(rng.integers(5, 9)))
    return _Style(size, background, hair, skin, (left_iris, right_iris), clothes,
                  F, W, top, chin, eye_w, eye_h, eye_u, yaw, roll, center, hair_len, strands,
                  bool(rng.random() < 0.4), bool(rng.random() < 0.5))


# ---------------------------------------------------------------- geometry in the face frame


def _ellipse(cu: float, cv: float, ru: float, rv: float, a0: float = 0.0, a1: float = 2 * np.pi,
             n: int = 96) -> np.ndarray:
    """Points of an ellipse arc; angle 0 points to +u, pi/2 to +v (down)."""
    t = np.linspace(a0, a1, n)
    return np.stack([cu + ru * np.cos(t), cv + rv * np.sin(t)], axis=1)


def _bezier(p0, p1, p2, n: int = 24) -> np.ndarray:
    t = np.linspace(0.0, 1.0, n)[:, None]
    p0, p1, p2 = (np.asarray(p, dtype=float) for p in (p0, p1, p2))
    return (1 - t) ** 2 * p0 + 2 * (1 - t) * t * p1 + t ** 2 * p2


def _shade(c: Color, k: float) -> Color:
    """Darker (k < 1) or mixed towards white (k > 1) version of a colour."""
    a = np.asarray(c, dtype=float)
    a = a * k if k <= 1 else a + (255 - a) * (k - 1)
    return _rgb(a)


def _mix(a: Color, b: Color, t: float) -> Color:
    return _rgb(np.add(a, np.subtract(b, a) * t))


class _Canvas:
    """Draws face-frame polygons and strokes on the supersampled image."""

    def __init__(self, st: _Style):
        self.st = st
        self.image = Image.new("RGB", (st.size * _SCALE,) * 2, st.background)
        self.draw = ImageDraw.Draw(self.image)
        c, s = np.cos(st.roll), np.sin(st.roll)
        self.rot = np.array([[c, -s], [s, c]])

    def to_image(self, pts: np.ndarray) -> np.ndarray:
        """Face frame -> output pixel coordinates (pixel i's centre is at i)."""
        return np.asarray(pts, dtype=float).reshape(-1, 2) @ self.rot.T + np.asarray(self.st.center)

    def _hires(self, pts: np.ndarray) -> List[Tuple[float, float]]:
        # PIL fills polygons in corner coordinates: output index x sits at hi-res (x + 0.5) * S.
        return [tuple(p) for p in (self.to_image(pts) + 0.5) * _SCALE]

    def polygon(self, pts: np.ndarray, fill: Color, outline: Optional[Color] = None, width: float = 0.0) -> None:
        """A filled shape, optionally with a line-art outline `width` output pixels wide."""
        self.draw.polygon(self._hires(pts), fill=fill)
        if outline is not None:
            self.stroke(np.concatenate([pts, pts[:1]]), outline, width)

    def clipped_polygon(self, pts: np.ndarray, clip: np.ndarray, fill: Color) -> None:
        """A shape drawn only inside another (a shadow that must stay on the skin)."""
        size = self.image.size
        mask, inside = Image.new("L", size, 0), Image.new("L", size, 0)
        ImageDraw.Draw(mask).polygon(self._hires(pts), fill=255)
        ImageDraw.Draw(inside).polygon(self._hires(clip), fill=255)
        self.image.paste(fill, (0, 0), ImageChops.multiply(mask, inside))

    def stroke(self, pts: np.ndarray, fill: Color, width: float) -> None:
        self.draw.line(self._hires(pts), fill=fill, width=max(1, int(round(width * _SCALE))),
                       joint="curve")

    def result(self) -> Image.Image:
        return self.image.resize((self.st.size,) * 2, Image.LANCZOS)


# ---------------------------------------------------------------- the face's parts


def _features(st: _Style) -> Dict[str, Tuple[float, float]]:
    """Keypoints in the face frame; a slight yaw shifts the lower features more than the eyes."""
    s = st.yaw * st.W
    return {
        "left_eye": (-st.eye_u + s, 0.0),
        "right_eye": (st.eye_u + s, 0.0),
        "nose": (1.6 * s, st.chin * 0.40),
        "mouth": (1.3 * s, st.chin * 0.64),
        "chin": (1.0 * s, st.chin),
    }


def _face_outline(st: _Style, pts: Dict[str, Tuple[float, float]]) -> np.ndarray:
    """Rounded skull top, straight cheeks, jaw lines meeting in a pointed chin at pts["chin"]."""
    half, tip, lift = st.W / 2, st.W * 0.05, st.chin * 0.02
    chin_u, chin_v = pts["chin"]
    skull = _ellipse(0.0, 0.0, half, st.top, np.pi, 2 * np.pi, 64)
    cheek_v = st.chin * 0.28
    right_jaw = _bezier((half, cheek_v), (half * 0.85 + chin_u * 0.3, st.chin * 0.80), (chin_u + tip, chin_v - lift))
    left_jaw = _bezier((chin_u - tip, chin_v - lift), (-half * 0.85 + chin_u * 0.3, st.chin * 0.80), (-half, cheek_v))
    # Control point as far below the tip as the ends are above: the curve's lowest point is the chin.
    chin_tip = _bezier((chin_u + tip, chin_v - lift), (chin_u, chin_v + lift), (chin_u - tip, chin_v - lift), 9)
    return np.concatenate([skull, right_jaw, chin_tip, left_jaw])


def _hair_line(st: _Style) -> Color:
    """Line art around hair: dark enough that pale hair still stands out from pale skin."""
    return _shade(st.hair, 0.45)


def _draw_back(cv: _Canvas, st: _Style) -> None:
    """Hair mass behind the head, then neck and shoulders."""
    hw = st.W * 0.64
    back = np.concatenate([_ellipse(0.0, -st.top * 0.2, hw, st.top * 1.32, np.pi, 2 * np.pi, 64),
                           np.array([(hw * 1.08, st.hair_len), (-hw * 1.08, st.hair_len)])])
    cv.polygon(back, st.hair, _hair_line(st), 0.9)
    neck = _shade(st.skin, 0.82)
    cv.polygon(np.array([(-st.W * 0.17, st.chin * 0.5), (st.W * 0.17, st.chin * 0.5),
                         (st.W * 0.19, st.chin * 1.7), (-st.W * 0.19, st.chin * 1.7)]), neck)
    shoulder = st.chin + st.F * 0.32
    body = np.concatenate([_ellipse(0.0, shoulder + st.F * 0.25, st.W * 0.95, st.F * 0.28, np.pi, 2 * np.pi, 48),
                           np.array([(st.W * 0.95, st.F * 3), (-st.W * 0.95, st.F * 3)])])
    cv.polygon(body, st.clothes)
    cv.polygon(np.array([(-st.W * 0.17, shoulder - st.F * 0.04), (0.0, shoulder + st.F * 0.12),
                         (st.W * 0.17, shoulder - st.F * 0.04)]), neck)


def _draw_head(cv: _Canvas, st: _Style, outline: np.ndarray, pts) -> None:
    cv.polygon(outline, st.skin, _shade(st.skin, 0.55), 0.9)
    if st.blush:
        pink = _mix(st.skin, (240, 110, 130), 0.35)
        for side in (-1, 1):
            u = pts["mouth"][0] * 0.5 + side * st.W * 0.30
            cv.polygon(_ellipse(u, st.chin * 0.28, st.W * 0.08, st.chin * 0.06), pink)


def _draw_eye(cv: _Canvas, st: _Style, center: Tuple[float, float], iris: Color, narrow: float) -> None:
    """Sclera, iris with a shaded top, pupil, highlights and a heavy upper lash line."""
    u, v = center
    rw, rh = st.eye_w / 2 * narrow, st.eye_h / 2
    cv.polygon(_ellipse(u, v, rw, rh), (255, 255, 255))
    iu, iv = rw * 0.74, rh * 0.88
    cv.polygon(_ellipse(u, v, iu, iv), iris)
    top = _ellipse(u, v, iu, iv)
    top[:, 1] = np.minimum(top[:, 1], v - iv * 0.35)
    cv.polygon(top, _shade(iris, 0.6))
    cv.stroke(_ellipse(u, v, iu, iv), _shade(iris, 0.45), st.eye_w * 0.03)
    cv.polygon(_ellipse(u, v, iu * 0.42, iv * 0.45), _shade(iris, 0.22))
    side = -1 if u < 0 else 1
    cv.polygon(_ellipse(u - side * iu * 0.38, v - iv * 0.42, iu * 0.30, iv * 0.22), (255, 255, 255))
    cv.polygon(_ellipse(u + side * iu * 0.35, v + iv * 0.25, iu * 0.12, iv * 0.09), (255, 255, 255))
    # Upper lash: a crescent over the top of the eye, thicker towards the outer corner.
    outer = _ellipse(u, v + rh * 0.05, rw * 1.12, rh * 1.1, np.pi * 1.02, np.pi * 1.98, 48)
    thick = rh * (0.20 + 0.14 * (np.linspace(0, 1, 48) if side > 0 else np.linspace(1, 0, 48)))
    inner = outer[::-1].copy()
    inner[:, 1] += thick[::-1]
    cv.polygon(np.concatenate([outer, inner]), _LINE)
    wing = (u + side * rw * 1.22, v - rh * 0.15)
    cv.polygon(np.array([(u + side * rw * 0.95, v - rh * 0.55), wing, (u + side * rw, v - rh * 0.05)]), _LINE)
    cv.stroke(_ellipse(u, v - rh * 0.05, rw * 0.95, rh * 1.02, np.pi * 0.25, np.pi * 0.75, 20),
              _shade(_LINE, 1.4), rh * 0.05)


def _draw_nose_mouth(cv: _Canvas, st: _Style, pts) -> None:
    nu, nv = pts["nose"]
    cv.stroke(np.array([(nu + st.W * 0.012, nv - st.chin * 0.07), (nu, nv)]), _shade(st.skin, 0.55), st.W * 0.012)
    mu, mv = pts["mouth"]
    w = st.W * 0.075
    if st.open_mouth:
        d = st.chin * 0.06
        cv.polygon(_ellipse(mu, mv - d, w, 2 * d, 0.0, np.pi, 24), (150, 40, 50))  # D shape, centred on mv
        cv.polygon(_ellipse(mu, mv + d * 0.6, w * 0.55, d * 0.45), (235, 120, 130))
    else:
        cv.stroke(_bezier((mu - w, mv - st.chin * 0.01), (mu, mv + st.chin * 0.02), (mu + w, mv - st.chin * 0.01)),
                  (120, 50, 55), st.W * 0.012)


def _draw_bangs(cv: _Canvas, st: _Style, outline: np.ndarray, pts) -> None:
    """Fringe with pointed strands casting a shadow on the forehead, side locks, eyebrows on top."""
    hw = st.W * 0.64
    crown = _ellipse(0.0, -st.top * 0.2, hw, st.top * 1.32, np.pi * 1.05, np.pi * 1.95, 48)
    n = len(st.strands)
    xs = np.linspace(hw * 0.97, -hw * 0.97, 2 * n + 1)
    edge = []
    for i, x in enumerate(xs):
        if i % 2:  # a strand tip: just above the eyes in the middle, lower at the sides
            side = abs(x) / hw
            depth = -st.eye_h * (0.95 - 0.3 * st.strands[i // 2]) + side ** 3 * st.eye_h * 1.2
        else:  # a notch between strands
            depth = -st.top * (0.45 + 0.1 * (i % 4 == 0))
        edge.append((x, depth))
    fringe = np.concatenate([crown, np.array(edge)])
    cv.clipped_polygon(fringe + (0.0, st.eye_h * 0.22), outline, _shade(st.skin, 0.86))
    cv.polygon(fringe, st.hair, _hair_line(st), 0.8)
    dark = _shade(st.hair, 0.7)
    for x, depth in edge[1::2]:
        cv.stroke(np.array([(x * 0.8, -st.top * 0.9), (x, depth)]), dark, st.W * 0.008)
    for side in (-1, 1):
        lock = np.array([(side * st.W * 0.62, -st.top * 0.5), (side * st.W * 0.40, -st.top * 0.3),
                         (side * st.W * 0.42, st.chin * 0.3), (side * st.W * 0.47, st.chin * 0.85),
                         (side * st.W * 0.58, st.chin * 0.5)])
        cv.polygon(lock, st.hair, _hair_line(st), 0.8)
    for u, _ in (pts["left_eye"], pts["right_eye"]):
        brow = _bezier((u - st.eye_w * 0.4, -st.eye_h * 0.82), (u, -st.eye_h * 0.98),
                       (u + st.eye_w * 0.4, -st.eye_h * 0.85), 12)
        cv.stroke(brow, _shade(st.hair, 0.5), st.eye_h * 0.05)


def render_face(rng: np.random.Generator, size: int = 256) -> Tuple[Image.Image, Face]:
    """Draws one anime-style face; returns the RGB image and its exact Face (crop = whole image)."""
    st = _sample_style(rng, size)
    cv = _Canvas(st)
    pts = _features(st)
    outline = _face_outline(st, pts)
    _draw_back(cv, st)
    _draw_head(cv, st, outline, pts)
    narrow = 1.0 - 2.5 * abs(st.yaw)  # the far eye looks a bit narrower
    for name, iris in zip(("left_eye", "right_eye"), st.iris):
        far = (name == "left_eye") == (st.yaw < 0)
        _draw_eye(cv, st, pts[name], iris, narrow if far else 1.0)
    _draw_nose_mouth(cv, st, pts)
    _draw_bangs(cv, st, outline, pts)
    image_pts = {k: (float(x), float(y)) for k, (x, y) in zip(pts, cv.to_image(np.array(list(pts.values()))))}
    ob = cv.to_image(outline)
    lo, hi = ob.min(axis=0), ob.max(axis=0)
    face = Face(
        box=(float(lo[0]), float(lo[1]), float(hi[0] - lo[0]), float(hi[1] - lo[1])),
        points=image_pts,
        colors={"hair": st.hair, "skin": st.skin, "left_eye": st.iris[0], "right_eye": st.iris[1]},
        score=1.0, detector="synthetic", domain="anime", image_size=(size, size),
        crop=Crop(path="", size=size, points=dict(image_pts), matrix=[[1.0, 0.0, 0.0], [0.0, 1.0, 0.0]]),
    )
    return cv.result(), face


# ---------------------------------------------------------------- negatives


def render_negative(rng: np.random.Generator, size: int = 256, kind: str = "blank") -> Image.Image:
    """An image with no face in it, so tests can check that detectors find none."""
    if kind == "blank":
        return Image.new("RGB", (size, size), _background(rng))
    if kind == "noise":
        small = rng.integers(0, 256, (size // 8, size // 8, 3), dtype=np.uint8)
        return Image.fromarray(small).resize((size, size), Image.BICUBIC)
    if kind == "gradient":
        a, b = rng.integers(0, 256, (2, 3))
        angle = rng.uniform(0, 2 * np.pi)
        y, x = np.mgrid[:size, :size] / max(size - 1, 1)
        t = (x * np.cos(angle) + y * np.sin(angle))
        t = (t - t.min()) / max(float(np.ptp(t)), 1e-6)
        return Image.fromarray((a + (b - a) * t[..., None]).astype(np.uint8))
    if kind == "shapes":
        image = Image.new("RGB", (size, size), _background(rng))
        draw = ImageDraw.Draw(image)
        for _ in range(int(rng.integers(4, 10))):
            x0, y0 = rng.uniform(0, size, 2)
            w, h = rng.uniform(size * 0.05, size * 0.4, 2)
            fill = _rgb(rng.integers(0, 256, 3))
            if rng.random() < 0.5:
                draw.rectangle([x0, y0, x0 + w, y0 + h], fill=fill)
            else:
                draw.line([x0, y0, x0 + w, y0 + h], fill=fill, width=int(rng.integers(2, 8)))
        return image
    raise ValueError(f"unknown negative kind {kind!r}; expected one of {NEGATIVE_KINDS}")


# ---------------------------------------------------------------- data sets


def face_rng(seed: int, index: int) -> np.random.Generator:
    """One independent stream per image: image i is the same whatever the data set's count."""
    return np.random.default_rng([seed, 0, index])


def write_dataset(out_dir: str, count: int, size: int = 256, seed: int = 0, negatives: int = 0) -> dict:
    """Writes images/face_NNNNN.png, faces.jsonl (rewritten whole) and negatives/*.png.

    Paths in the JSONL are relative to out_dir, which is also the JSONL's folder.
    The output is a pure function of (count, size, seed, negatives): same seed, same bytes.
    """
    if count < 0 or negatives < 0:
        raise ValueError("count and negatives must be >= 0")
    os.makedirs(os.path.join(out_dir, "images"), exist_ok=True)
    lines = []
    for i in _progress(range(count), count, "faces"):
        image, face = render_face(face_rng(seed, i), size)
        rel = f"images/face_{i:05d}.png"
        image.save(os.path.join(out_dir, rel))
        face.source = rel
        face.crop.path = rel  # type: ignore[union-attr]
        lines.append(face.to_line())
    jsonl = os.path.join(out_dir, "faces.jsonl")
    with open(jsonl + ".tmp", "w", encoding="utf-8") as f:
        f.writelines(lines)
    os.replace(jsonl + ".tmp", jsonl)
    if negatives:
        os.makedirs(os.path.join(out_dir, "negatives"), exist_ok=True)
    for i in _progress(range(negatives), negatives, "negatives"):
        kind = NEGATIVE_KINDS[i % len(NEGATIVE_KINDS)]
        render_negative(np.random.default_rng([seed, 1, i]), size, kind).save(
            os.path.join(out_dir, "negatives", f"{kind}_{i:05d}.png"))
    return {"faces": count, "negatives": negatives}


def _progress(it, total: int, what: str):
    """A tqdm bar only for runs long enough to want one."""
    if total < 500:
        return it
    from tqdm import tqdm
    return tqdm(it, total=total, desc=what, unit="img")
