"""The Face contract: one detected face, shared by every detector, writer and reader.

A face has a box (x, y, w, h in pixels of its source image), named keypoints and named colours.
"left" always means the image's left (smaller x), whatever a detector calls it. A point or colour
a detector does not give is absent from the dict, never invented: anything derived by geometry
rather than detected is listed in `estimated`.

On disk a face is one JSON object on one line (JSONL). Detection CLIs write one line per usable
face, with `source` relative to the input folder; when crops are written, `crop` holds the crop's
path (relative to the JSONL file's folder), its size, the keypoints in crop pixels and the 2x3
matrix that maps source pixels to crop pixels.
"""
from __future__ import annotations

import dataclasses
import json
import os
from typing import Dict, Iterator, List, Optional, Tuple

SCHEMA_VERSION = 1

POINT_NAMES: Tuple[str, ...] = ("left_eye", "right_eye", "nose", "mouth", "chin")
COLOR_NAMES: Tuple[str, ...] = ("hair", "skin", "left_eye", "right_eye")
DETECTORS: Tuple[str, ...] = ("mtcnn", "animeface", "synthetic", "dlib")
DOMAINS: Tuple[str, ...] = ("photo", "anime")

Point = Tuple[float, float]
Color = Tuple[int, int, int]


class FaceFormatError(ValueError):
    """A JSONL line that does not follow the Face contract."""


@dataclasses.dataclass
class Crop:
    """Where the aligned crop of a face lives and how it relates to the source image."""

    path: str
    size: int
    points: Dict[str, Point]
    matrix: List[List[float]]  # 2x3, source (x, y, 1) -> crop (x, y)

    def to_json(self) -> dict:
        return {
            "path": self.path,
            "size": self.size,
            "points": {k: [round(float(v[0]), 3), round(float(v[1]), 3)] for k, v in self.points.items()},
            "matrix": [[round(float(v), 6) for v in row] for row in self.matrix],
        }

    @classmethod
    def from_json(cls, d: dict) -> "Crop":
        return cls(
            path=str(d["path"]),
            size=int(d["size"]),
            points=_points_from_json(d.get("points", {})),
            matrix=[[float(v) for v in row] for row in d["matrix"]],
        )


@dataclasses.dataclass
class Face:
    """One face in one image. See the module docstring for conventions."""

    box: Tuple[float, float, float, float]
    points: Dict[str, Point]
    colors: Dict[str, Color] = dataclasses.field(default_factory=dict)
    score: float = 1.0
    detector: str = "mtcnn"
    source: str = ""
    domain: str = "photo"
    image_size: Optional[Tuple[int, int]] = None  # (width, height) of the source image
    estimated: List[str] = dataclasses.field(default_factory=list)
    crop: Optional[Crop] = None

    def __post_init__(self):
        if self.detector not in DETECTORS:
            raise FaceFormatError(f"unknown detector {self.detector!r}; expected one of {DETECTORS}")
        if self.domain not in DOMAINS:
            raise FaceFormatError(f"unknown domain {self.domain!r}; expected one of {DOMAINS}")
        bad = set(self.points) - set(POINT_NAMES)
        if bad:
            raise FaceFormatError(f"unknown point names {sorted(bad)}; expected {POINT_NAMES}")
        bad = set(self.colors) - set(COLOR_NAMES)
        if bad:
            raise FaceFormatError(f"unknown colour names {sorted(bad)}; expected {COLOR_NAMES}")

    @property
    def eye_distance(self) -> float:
        """Inter-ocular distance in source pixels (0 when an eye is missing)."""
        if "left_eye" not in self.points or "right_eye" not in self.points:
            return 0.0
        (x0, y0), (x1, y1) = self.points["left_eye"], self.points["right_eye"]
        return float(((x1 - x0) ** 2 + (y1 - y0) ** 2) ** 0.5)

    def to_json(self) -> dict:
        d = {
            "schema": SCHEMA_VERSION,
            "source": self.source,
            "domain": self.domain,
            "detector": self.detector,
            "score": round(float(self.score), 5),
            "box": [round(float(v), 2) for v in self.box],
            "points": {k: [round(float(v[0]), 2), round(float(v[1]), 2)] for k, v in self.points.items()},
            "colors": {k: [int(c) for c in v] for k, v in self.colors.items()},
        }
        if self.image_size is not None:
            d["image_size"] = [int(self.image_size[0]), int(self.image_size[1])]
        if self.estimated:
            d["estimated"] = list(self.estimated)
        if self.crop is not None:
            d["crop"] = self.crop.to_json()
        return d

    def to_line(self) -> str:
        return json.dumps(self.to_json(), separators=(",", ":")) + "\n"

    @classmethod
    def from_json(cls, d: dict) -> "Face":
        try:
            schema = int(d.get("schema", SCHEMA_VERSION))
            if schema != SCHEMA_VERSION:
                raise FaceFormatError(f"face schema {schema}, this code reads {SCHEMA_VERSION}")
            box = tuple(float(v) for v in d["box"])
            if len(box) != 4:
                raise FaceFormatError("box must be [x, y, w, h]")
            return cls(
                box=box,  # type: ignore[arg-type]
                points=_points_from_json(d.get("points", {})),
                colors={k: tuple(int(c) for c in v) for k, v in d.get("colors", {}).items()},  # type: ignore[misc]
                score=float(d.get("score", 1.0)),
                detector=str(d.get("detector", "mtcnn")),
                source=str(d.get("source", "")),
                domain=str(d.get("domain", "photo")),
                image_size=tuple(int(v) for v in d["image_size"]) if d.get("image_size") else None,  # type: ignore[arg-type]
                estimated=list(d.get("estimated", [])),
                crop=Crop.from_json(d["crop"]) if d.get("crop") else None,
            )
        except FaceFormatError:
            raise
        except (KeyError, TypeError, ValueError) as e:
            raise FaceFormatError(f"not a face record: {e!r}") from e


def _points_from_json(d: dict) -> Dict[str, Point]:
    return {k: (float(v[0]), float(v[1])) for k, v in d.items()}


def read_faces(path: str) -> Iterator[Face]:
    """Yields the faces of a JSONL file; a bad line raises FaceFormatError naming file and line."""
    with open(path, "r", encoding="utf-8") as f:
        for n, line in enumerate(f, 1):
            if not line.strip():
                continue
            try:
                yield Face.from_json(json.loads(line))
            except (json.JSONDecodeError, FaceFormatError) as e:
                raise FaceFormatError(f"{path}:{n}: {e}") from None


def append_lines(path: str, lines: List[str]) -> None:
    """Appends whole lines with one write, so an interrupted run never leaves half a line."""
    data = "".join(lines).encode("utf-8")
    if not data:
        return
    fd = os.open(path, os.O_WRONLY | os.O_APPEND | os.O_CREAT, 0o644)
    try:
        os.write(fd, data)
    finally:
        os.close(fd)


def drop_partial_last_line(path: str) -> None:
    """Cuts a trailing line without its newline (left by a killed writer), keeping whole lines."""
    if not os.path.exists(path):
        return
    with open(path, "rb+") as f:
        data = f.read()
        if data and not data.endswith(b"\n"):
            f.truncate(data.rfind(b"\n") + 1)
