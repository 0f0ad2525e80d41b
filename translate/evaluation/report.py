"""Evaluation of trained runs on one split of a face-record dataset: metrics as a JSON dict,
image grids and one comparison table as an HTML page.

Which evaluation runs follows the run's networks (from `translate.inference.loading`):

The paired evaluation: translate/evaluation/paired.py; the unpaired one: unpaired.py.
"""
from __future__ import annotations

import html
import json
import os
from typing import Dict, List, Optional, Sequence, Tuple

import numpy as np
from translate.evaluation.common import Detector, EvalConfig, EvalError
from translate.evaluation.paired import evaluate_pix2pix
from translate.evaluation.unpaired import evaluate_unpaired


def family(translator) -> str:
    names = set(translator.networks)
    if "generator" in names:
        return "paired"
    if {"generator_ab", "generator_ba"} <= names:
        return "unpaired"
    raise EvalError(f"{translator.model}: no evaluation for networks {sorted(names)} "
                    "(need 'generator', or 'generator_ab' and 'generator_ba')")


def evaluate_run(translator, cfg: EvalConfig, detector: Optional[Detector] = None,
                 features=None) -> Tuple[dict, dict]:
    """(report dict, page images) of one loaded run."""
    kind = family(translator)
    if kind == "paired":
        metrics, images = evaluate_pix2pix(translator, cfg, detector, cfg.html_examples)
    else:
        metrics, images = evaluate_unpaired(translator, cfg, detector, features, cfg.html_examples)
    report = {"model": translator.model, "kind": kind, "step": translator.step,
              "checkpoint": translator.checkpoint_path, "image_size": translator.image_size,
              "flags": translator.flags, "dataset_dir": cfg.dataset_dir, "split": cfg.split,
              "seed": cfg.seed, "metrics": metrics}
    return report, images


def run_names(train_dirs: Sequence[str]) -> List[str]:
    """Unique short names: the folder names, the whole path where two collide, then a suffix."""
    base = [os.path.basename(os.path.normpath(d)) or "run" for d in train_dirs]
    names = [os.path.normpath(d).replace(os.sep, "_").strip("_") if base.count(b) > 1 else b
             for d, b in zip(train_dirs, base)]
    return [f"{n}_{i}" if names.count(n) > 1 else n for i, n in enumerate(names)]


# (column label, path in the report, format) for the comparison table
TABLE = (
    ("model", ("model",), "{}"),
    ("condition", ("flags", "condition"), "{}"),
    ("landmark ch.", ("flags", "landmark_channel"), "{}"),
    ("layer out", ("flags", "landmark_output"), "{}"),
    ("kp attention", ("flags", "keypoint_attention"), "{}"),
    ("light", ("flags", "light"), "{}"),
    ("step", ("step",), "{}"),
    ("L1", ("metrics", "l1"), "{:.4f}"),
    ("PSNR", ("metrics", "psnr"), "{:.2f}"),
    ("SSIM", ("metrics", "ssim"), "{:.3f}"),
    ("kp detected", ("metrics", "keypoint_fidelity", "detected_share"), "{:.0%}"),
    ("kp error (IOD)", ("metrics", "keypoint_fidelity", "mean_error"), "{:.3f}"),
    ("colour dist.", ("metrics", "color_fidelity", "mean_rgb_distance"), "{:.1f}"),
    ("closer to train", ("metrics", "memorisation", "closer_to_train_share"), "{:.0%}"),
    ("train/own dist.", ("metrics", "memorisation", "mean_train_to_own_ratio"), "{:.2f}"),
    ("(mean image)", ("metrics", "memorisation", "reference_mean_train_image",
                      "mean_train_to_own_ratio"), "{:.2f}"),
    ("kp sensitivity", ("metrics", "keypoint_sensitivity", "output_change_per_unit_move"), "{:.3f}"),
    ("vs layer", ("metrics", "keypoint_sensitivity", "relative_to_layer"), "{:.3f}"),
    ("eyes follow", ("metrics", "keypoint_sensitivity", "eye_follow"), "{:.2f}"),
    ("FID p→a", ("metrics", "fid_kid", "photo_to_anime", "fid"), "{:.1f}"),
    ("KID×100 p→a", ("metrics", "fid_kid", "photo_to_anime", "kid"), "{:.2f}", 100.0),
    ("± std", ("metrics", "fid_kid", "photo_to_anime", "kid_std"), "{:.2f}", 100.0),
    ("FID a→p", ("metrics", "fid_kid", "anime_to_photo", "fid"), "{:.1f}"),
    ("FID photos→anime (ref.)", ("metrics", "fid_kid", "reference_photos_vs_anime", "fid"), "{:.1f}"),
    ("landmarks detected", ("metrics", "landmark_fidelity", "detected_share"), "{:.0%}"),
    ("landmark error (IOD)", ("metrics", "landmark_fidelity", "mean_error"), "{:.3f}"),
    ("cycle L1 p→a→p", ("metrics", "cycle", "l1_photo_anime_photo"), "{:.4f}"),
    ("cycle L1 a→p→a", ("metrics", "cycle", "l1_anime_photo_anime"), "{:.4f}"),
    ("layer L1", ("metrics", "landmark_output", "l1_photo_to_anime"), "{:.4f}"),
)


def _get(report: dict, path):
    v = report
    for k in path:
        if not isinstance(v, dict) or k not in v:
            return None
        v = v[k]
    return v


def comparison_rows(reports: Dict[str, dict]) -> Tuple[List[str], List[List[str]]]:
    """(header, rows) over the columns any run has."""
    cols = [c for c in TABLE if any(_get(r, c[1]) is not None for r in reports.values())]
    header = ["run"] + [c[0] for c in cols]
    rows = []
    for name, r in reports.items():
        row = [name]
        for c in cols:
            v = _get(r, c[1])
            if v is None:
                row.append("–")
                continue
            if len(c) > 3:
                v = v * c[3]
            try:
                row.append(c[2].format(v))
            except (ValueError, TypeError):
                row.append(str(v))
        rows.append(row)
    return header, rows


def write_page(output_dir: str, reports: Dict[str, dict], images: Dict[str, dict]) -> str:
    """index.html: the comparison table, then per run an image grid (PNG files under images/)."""
    parts = ["<!doctype html><meta charset=utf-8><title>Translation evaluation</title>",
             "<style>body{font-family:sans-serif;margin:1em}table{border-collapse:collapse}"
             "td,th{border:1px solid #bbb;padding:2px 6px;font-size:12px;text-align:right}"
             "img{width:128px;image-rendering:pixelated}figure{display:inline-block;margin:2px;"
             "font-size:11px;vertical-align:top}.row{white-space:nowrap}</style>",
             "<h1>Translation evaluation</h1>"]
    header, rows = comparison_rows(reports)
    parts.append("<table><tr>" + "".join(f"<th>{html.escape(h)}</th>" for h in header) + "</tr>")
    for row in rows:
        parts.append("<tr>" + "".join(f"<td>{html.escape(v)}</td>" for v in row) + "</tr>")
    parts.append("</table>")
    from PIL import Image
    for name, imgs in images.items():
        r = reports[name]
        parts.append(f"<h2>{html.escape(name)}</h2><p>{html.escape(r['model'])} · step {r['step']} · "
                     f"{html.escape(r['split'])} split · skipped: "
                     f"{html.escape(json.dumps(r['metrics'].get('skipped', {})))}</p>")
        for part, grid in (("a", imgs), ("b", imgs.get("extra"))):
            if not grid:
                continue
            cols = grid["columns"]
            for i in range(len(cols[0][1])):
                cells = []
                for j, (label, arr) in enumerate(cols):
                    rel = os.path.join("images", name, f"{part}{i:03d}_{j}.png")
                    os.makedirs(os.path.join(output_dir, os.path.dirname(rel)), exist_ok=True)
                    Image.fromarray(np.asarray(arr[i], np.uint8)).save(os.path.join(output_dir, rel))
                    cells.append(f'<figure><img src="{html.escape(rel)}" alt="{html.escape(label)}">'
                                 f"<figcaption>{html.escape(label)}</figcaption></figure>")
                cap = grid["captions"][i] if i < len(grid["captions"]) else ""
                parts.append(f'<div class="row">{"".join(cells)} <small>{html.escape(cap)}</small></div>')
    path = os.path.join(output_dir, "index.html")
    with open(path, "w", encoding="utf-8") as f:
        f.write("\n".join(parts))
    return path


def write_reports(output_dir: str, reports: Dict[str, dict], images: Dict[str, dict]) -> dict:
    """Writes <run>/metrics.json per run, evaluation.json (all runs + the table) and index.html."""
    os.makedirs(output_dir, exist_ok=True)
    for name, r in reports.items():
        os.makedirs(os.path.join(output_dir, name), exist_ok=True)
        _dump(os.path.join(output_dir, name, "metrics.json"), r)
    header, rows = comparison_rows(reports)
    summary = {"runs": reports, "table": {"header": header, "rows": rows}}
    _dump(os.path.join(output_dir, "evaluation.json"), summary)
    page = write_page(output_dir, reports, images)
    return {"json": os.path.join(output_dir, "evaluation.json"), "html": page}


def _dump(path: str, obj) -> None:
    def default(o):
        if isinstance(o, np.generic):
            return o.item()
        if isinstance(o, np.ndarray):
            return o.tolist()
        return str(o)

    tmp = path + ".tmp"
    with open(tmp, "w", encoding="utf-8") as f:
        json.dump(obj, f, indent=1, default=default)
        f.write("\n")
    os.replace(tmp, path)
