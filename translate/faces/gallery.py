"""A static HTML page of face crops with their keypoints and colours drawn, for eyeballing data."""
from __future__ import annotations

import html
import os
from typing import Iterable, List, Optional

from PIL import Image, ImageDraw

from translate.faces.schema import Face

POINT_COLORS = {
    "left_eye": (0, 200, 255),
    "right_eye": (255, 60, 200),
    "nose": (255, 200, 0),
    "mouth": (255, 60, 60),
    "chin": (60, 220, 60),
}


def annotate(crop: Image.Image, face: Face) -> Image.Image:
    """The crop with each keypoint as a coloured ring (hollow ring = estimated point)."""
    out = crop.convert("RGB").copy()
    draw = ImageDraw.Draw(out)
    r = max(2, out.width // 64)
    for name, (x, y) in face.crop.points.items():
        color = POINT_COLORS[name]
        box = (x - r, y - r, x + r, y + r)
        if name in face.estimated:
            draw.ellipse(box, outline=color, width=max(1, r // 2))
        else:
            draw.ellipse(box, fill=color, outline=(0, 0, 0))
    return out


def _swatches(face: Face) -> str:
    cells = []
    for name, rgb in face.colors.items():
        hexa = "#%02x%02x%02x" % tuple(rgb)
        cells.append(f'<span class="sw" style="background:{hexa}" title="{name} {hexa}"></span>{name}')
    return " ".join(cells) or "no colours"


def write_gallery(
    path: str,
    title: str,
    sections: Iterable[tuple],
    notes: Optional[List[str]] = None,
    image_sections: Iterable[tuple] = (),
) -> None:
    """Writes `path` (HTML). sections: (heading, jsonl_dir, faces, summary_text);
    image_sections, after them: (heading, summary_text, [(image path, caption), ...]) for
    pictures that are not face crops (model outputs, side-by-side grids).

    Annotated copies of the crops are written next to the page under annotated/.
    """
    out_dir = os.path.dirname(os.path.abspath(path))
    parts = [
        "<!doctype html><meta charset=utf-8>",
        f"<title>{html.escape(title)}</title>",
        "<style>body{font-family:sans-serif;margin:1em}figure{display:inline-block;margin:4px;"
        "width:180px;font-size:11px;vertical-align:top}img{width:176px}.sw{display:inline-block;"
        "width:10px;height:10px;border:1px solid #333;margin:0 2px}figure.wide{width:auto}"
        "figure.wide img{width:auto;max-width:540px}</style>",
        f"<h1>{html.escape(title)}</h1>",
        "<p>Points: " + " ".join(
            f'<span class="sw" style="background:rgb{c}"></span>{n}' for n, c in POINT_COLORS.items()
        ) + " (a hollow ring is an estimated point)</p>",
    ]
    for note in notes or []:
        parts.append(f"<p>{html.escape(note)}</p>")
    for heading, jsonl_dir, faces, summary in sections:
        parts.append(f"<h2>{html.escape(heading)}</h2><p>{html.escape(summary)}</p>")
        for i, face in enumerate(faces):
            crop = Image.open(os.path.join(jsonl_dir, face.crop.path))
            rel = os.path.join("annotated", heading.split()[0].lower(), f"{i:04d}.png")
            os.makedirs(os.path.dirname(os.path.join(out_dir, rel)), exist_ok=True)
            annotate(crop, face).save(os.path.join(out_dir, rel))
            parts.append(
                f'<figure><img src="{html.escape(rel)}" alt="{html.escape(face.source)}">'
                f"<figcaption>{html.escape(face.source)} · {face.detector} {face.score:.2f}<br>"
                f"{_swatches(face)}</figcaption></figure>"
            )
    for heading, summary, images in image_sections:
        parts.append(f"<h2>{html.escape(heading)}</h2><p>{html.escape(summary)}</p>")
        for image, caption in images:
            rel = os.path.relpath(os.path.abspath(image), out_dir)
            parts.append(f'<figure class="wide"><img src="{html.escape(rel)}" alt="{html.escape(caption)}">'
                         f"<figcaption>{html.escape(caption)}</figcaption></figure>")
    with open(path, "w", encoding="utf-8") as f:
        f.write("\n".join(parts))
