"""A tagger's thresholds.json (no TensorFlow): tuning it on labelled scores, reading and writing it,
and resolving one threshold per tag for prediction and export.

  {"global": t, "per_category": {category: t}, "per_tag": {tag: t}, "source": "...", "rules": {...}}

`global` maximises micro F1 over all tags; `per_category` is each category's threshold where
precision equals recall (micro over its tags, tagnet.operating_points); `per_tag` maximises each
tag's F1, or is its category's threshold when the tag has too few positives. Files without
`per_category` (written before categories) still load: their categories use `global`.
"""
from __future__ import annotations

import dataclasses
import json
import os
from typing import Dict, List, Mapping, Optional, Sequence, Tuple

import numpy as np

from tagnet import metrics, operating_points
from tagnet.contract import CATEGORIES, THRESHOLDS

DEFAULT = 0.5          # sigmoid models without saved thresholds
SOFTMAX_DEFAULT = 1.01  # single-label: nothing passes, the top class is taken
RULES = {"global": "max micro F1", "per_category": "precision = recall (micro over the category)",
         "per_tag": "max F1 (too few positives: the category's threshold)"}


@dataclasses.dataclass
class Thresholds:
    global_: float
    per_category: Dict[str, float]
    per_tag: Dict[str, float]
    source: str = ""

    def to_json(self) -> Dict:
        return {"global": float(self.global_), "source": self.source, "rules": RULES,
                "per_category": {c: float(v) for c, v in self.per_category.items()},
                "per_tag": {t: float(v) for t, v in self.per_tag.items()}}


def tune(y, scores, tags: Sequence[str], categories: Sequence[str], min_positives: int = 2,
         source: str = "") -> Thresholds:
    """Thresholds from labels y [N, T] and scores [N, T] (see the module docstring)."""
    y, s = np.asarray(y), np.asarray(scores, np.float64)
    g, _ = metrics.best_micro_threshold(y, s)
    g = float(g) if np.isfinite(g) else DEFAULT
    cats = np.asarray(categories)
    per_category = {}
    for c in CATEGORIES:
        idx = np.flatnonzero(cats == c)
        if len(idx):
            t = operating_points.micro_breakeven(y[:, idx], s[:, idx])["threshold"]
            per_category[c] = float(t) if np.isfinite(t) else g
    fallback = np.array([per_category.get(c, g) for c in categories])
    per_tag = metrics.per_tag_thresholds(y, s, 0.0, min_positives)
    few = (y > 0.5).sum(0) < max(min_positives, 1)
    per_tag = np.where(few, fallback, per_tag)
    return Thresholds(g, per_category, dict(zip(tags, per_tag.tolist())), source)


def save(model_dir: str, th: Thresholds) -> str:
    path = os.path.join(model_dir, THRESHOLDS)
    tmp = path + ".tmp"
    with open(tmp, "w", encoding="utf-8") as f:
        json.dump(th.to_json(), f, indent=1)
    os.replace(tmp, path)
    return path


def load(model_dir: str) -> Optional[Thresholds]:
    """thresholds.json of a tagger folder (any version), or None."""
    path = os.path.join(model_dir, THRESHOLDS)
    if not os.path.isfile(path):
        return None
    with open(path, encoding="utf-8") as f:
        d = json.load(f)
    return Thresholds(float(d.get("global", DEFAULT)),
                      {c: float(v) for c, v in (d.get("per_category") or {}).items()},
                      {t: float(v) for t, v in (d.get("per_tag") or {}).items()}, d.get("source", ""))


def parse_category_thresholds(values: Optional[Sequence[str]]) -> Dict[str, float]:
    """["character=0.85", "general=0.35"] -> {category: threshold}; ValueError when malformed."""
    out = {}
    for v in values or []:
        cat, sep, num = str(v).partition("=")
        cat = cat.strip()
        if not sep or cat not in CATEGORIES:
            raise ValueError(f"category threshold {v!r}: expected CATEGORY=VALUE with CATEGORY one "
                             f"of {', '.join(CATEGORIES)}")
        try:
            out[cat] = float(num)
        except ValueError:
            raise ValueError(f"category threshold {v!r}: {num!r} is not a number") from None
    return out


def resolve(tags: Sequence[str], categories: Sequence[str], saved: Optional[Thresholds], *,
            threshold: Optional[float] = None, category_thresholds: Optional[Mapping[str, float]] = None,
            per_tag: bool = True, softmax: bool = False) -> Tuple[np.ndarray, str]:
    """One threshold per tag and a one-line account of where they came from. Precedence for each
    tag: `category_thresholds[its category]`, `threshold`, the saved per-tag value (`per_tag`),
    the saved value of its category, the saved global one, 0.5 (softmax models: 1.01, i.e. only
    the top class)."""
    category_thresholds = dict(category_thresholds or {})
    out: List[float] = []
    used = set()
    for tag, cat in zip(tags, categories):
        if cat in category_thresholds:
            v, why = category_thresholds[cat], f"{cat} {category_thresholds[cat]:g}"
        elif threshold is not None:
            v, why = threshold, f"threshold {threshold:g}"
        elif saved is not None and per_tag and tag in saved.per_tag:
            v, why = saved.per_tag[tag], "saved per-tag thresholds"
        elif saved is not None and cat in saved.per_category:
            v, why = saved.per_category[cat], "saved per-category thresholds"
        elif saved is not None:
            v, why = saved.global_, f"saved global {saved.global_:.3f}"
        else:
            v = SOFTMAX_DEFAULT if softmax else DEFAULT
            why = "no saved thresholds: top class" if softmax else f"no saved thresholds: {DEFAULT}"
        out.append(float(v))
        used.add(why)
    text = ", ".join(sorted(used))
    if saved is not None and saved.source and any(w.startswith("saved") for w in used):
        text += f" ({saved.source})"
    return np.asarray(out, np.float64), text
