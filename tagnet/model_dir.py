"""A trained tagger on disk: what predict and evaluate load.

  tagnet.json        format version, backbone, image size, activation, task, tags and their
                     categories (`tag_categories`; absent in older folders: all general),
                     training step, validation metrics, library versions
  model.weights.h5   Keras weights (rebuilt through the backbone registry, so loading does not
                     depend on pickled Python or on the Keras version that wrote a full model file)
  tags.txt           the vocabulary (same format as a dataset's)
  thresholds.json    optional: global, per-category and per-tag thresholds (written by training
                     on validation data and by tagnet/evaluate.py; tagnet/thresholds.py)

A training directory holds `best/` (best validation mAP) and `model/` (last step); passing the
training directory picks `best/`, then `model/`.
"""
from __future__ import annotations

import json
import os
from typing import Dict, List, Optional

import numpy as np

from tagnet import records, thresholds
from tagnet.contract import BEST, DEFAULT_CATEGORY, LAST, MODEL_JSON, THRESHOLDS, WEIGHTS

FORMAT_VERSION = 1
CONFIG = MODEL_JSON


class ModelDirError(ValueError):
    pass


def categories_of(cfg: Dict) -> List[str]:
    """Each tag's category (general for folders written before categories)."""
    return list(cfg.get("tag_categories") or [DEFAULT_CATEGORY] * len(cfg["tags"]))


def write_config(path: str, *, backbone: str, image_size: int, tags: List[str], activation: str,
                 task: str, step: int = 0, metrics: Optional[Dict] = None,
                 dataset_dir: str = "", tag_categories: Optional[List[str]] = None,
                 extra: Optional[Dict] = None) -> Dict:
    import keras
    import tensorflow as tf
    cfg = {"format_version": FORMAT_VERSION, "backbone": backbone, "image_size": int(image_size),
           "activation": activation, "task": task, "num_tags": len(tags), "tags": list(tags),
           "tag_categories": records.check_categories(tag_categories or [DEFAULT_CATEGORY] * len(tags)),
           "step": int(step), "metrics": metrics or {}, "dataset_dir": dataset_dir,
           "keras_version": keras.__version__, "tensorflow_version": tf.__version__}
    if extra:
        cfg.update(extra)
    tmp = path + ".tmp"
    with open(tmp, "w", encoding="utf-8") as f:
        json.dump(cfg, f, indent=1)
    os.replace(tmp, path)
    return cfg


def save(model, out_dir: str, **config) -> Dict:
    """Writes weights, tagnet.json and tags.txt atomically enough for a reader (tmp + rename)."""
    os.makedirs(out_dir, exist_ok=True)
    tmp = os.path.join(out_dir, "tmp." + WEIGHTS)
    model.save_weights(tmp)
    os.replace(tmp, os.path.join(out_dir, WEIGHTS))
    tags = config["tags"]
    records.write_vocabulary(os.path.join(out_dir, records.TAGS_TXT), tags,
                             config.pop("tag_counts", None) or [0] * len(tags),
                             config.get("tag_categories"))
    return write_config(os.path.join(out_dir, CONFIG), **config)


def resolve(path: str) -> str:
    """A model folder, or a training folder (-> its best/ or model/)."""
    if not path or not os.path.isdir(path):
        raise ModelDirError(f"model directory {path!r} does not exist")
    if os.path.isfile(os.path.join(path, CONFIG)) and os.path.isfile(os.path.join(path, WEIGHTS)):
        return path
    for sub in (BEST, LAST):
        p = os.path.join(path, sub)
        if os.path.isfile(os.path.join(p, CONFIG)) and os.path.isfile(os.path.join(p, WEIGHTS)):
            return p
    raise ModelDirError(f"{path} holds no trained tagger ({CONFIG} + {WEIGHTS}, or best/ or model/ "
                        f"with them); train one with tagnet/train.py")


def read_config(model_dir: str) -> Dict:
    with open(os.path.join(model_dir, CONFIG), encoding="utf-8") as f:
        cfg = json.load(f)
    if cfg.get("format_version") != FORMAT_VERSION:
        raise ModelDirError(f"{model_dir}: format version {cfg.get('format_version')} is not "
                            f"{FORMAT_VERSION}")
    return cfg


def load(path: str):
    """-> (keras model, config). The model outputs logits; apply cfg['activation']."""
    from tagnet import backbones
    model_dir = resolve(path)
    cfg = read_config(model_dir)
    model = backbones.build_model(cfg["backbone"], cfg["num_tags"], cfg["image_size"], weights=None,
                                  dropout=cfg.get("dropout", 0.0))
    try:
        model.load_weights(os.path.join(model_dir, WEIGHTS))
    except Exception as e:  # noqa: BLE001 - report any loader failure in one line
        raise ModelDirError(f"{model_dir}: weights do not fit a {cfg['backbone']} with "
                            f"{cfg['num_tags']} tags ({type(e).__name__}: {e})") from None
    cfg["model_dir"] = model_dir
    return model, cfg


def save_thresholds(model_dir: str, global_threshold: float, per_tag: np.ndarray, tags: List[str],
                    source: str, per_category: Optional[Dict[str, float]] = None) -> str:
    """thresholds.json from plain values (tagnet.thresholds.tune + save compute them)."""
    return thresholds.save(model_dir, thresholds.Thresholds(
        float(global_threshold), dict(per_category or {}),
        {t: float(v) for t, v in zip(tags, per_tag)}, source))


def load_thresholds(model_dir: str, tags: List[str]) -> Optional[Dict]:
    """{"global", "per_tag": array in `tags` order, "source"}, or None (see tagnet.thresholds)."""
    th = thresholds.load(model_dir)
    if th is None:
        return None
    per = np.array([th.per_tag.get(t, th.global_) for t in tags])
    return {"global": th.global_, "per_tag": per, "source": th.source}
