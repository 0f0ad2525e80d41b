"""Evaluation library: score a trained tagger on a dataset split, and the colour-histogram
nearest-neighbour baseline a tagger must beat (hair colour alone separates many characters)."""
from __future__ import annotations

import time
from typing import Dict, List, Optional, Tuple

import numpy as np

from tagnet import data, metrics, records


def predict_split(model, cfg: Dict, info: records.DatasetInfo, split: str, batch_size: int = 64,
                  limit: int = 0, progress: bool = False) -> Tuple[np.ndarray, np.ndarray, List[str]]:
    """-> (multi-hot labels [N, T], scores [N, T], source ids)."""
    import tensorflow as tf
    from tqdm import tqdm
    if list(cfg["tags"]) != list(info.tags):
        raise ValueError(f"the model's {len(cfg['tags'])} tags differ from the dataset's "
                         f"{info.num_tags} tags; evaluate on the dataset it was trained for")
    info.require_split(split)
    ds = data.make_dataset(info, split, batch_size, cfg["image_size"], training=False, with_ids=True)
    act = tf.sigmoid if cfg["activation"] == "sigmoid" else tf.nn.softmax

    @tf.function(reduce_retracing=True)
    def run(x):
        return act(tf.cast(model(x, training=False), tf.float32))

    ys, ss, ids = [], [], []
    total = info.count(split) if not limit else min(limit, info.count(split))
    with tqdm(total=total, desc=f"evaluate {split}", unit="img", disable=not progress) as bar:
        for x, y, sid in ds:
            ss.append(run(x).numpy())
            ys.append(data.labels_to_multi_hot(y.numpy(), info.num_tags, info.multi_label))
            ids += [v.decode("utf-8") for v in sid.numpy()]
            bar.update(len(x))
            if limit and len(ids) >= limit:
                break
    y, s = np.concatenate(ys), np.concatenate(ss)
    if limit:
        y, s, ids = y[:limit], s[:limit], ids[:limit]
    return y, s, ids


# --- colour-histogram nearest neighbours -----------------------------------------------------------
def rgb_to_hsv(images: np.ndarray) -> np.ndarray:
    """uint8/float RGB [..., 3] in [0, 255] -> HSV in [0, 1]."""
    x = np.asarray(images, np.float32) / 255.0
    r, g, b = x[..., 0], x[..., 1], x[..., 2]
    mx, mn = x.max(-1), x.min(-1)
    d = mx - mn
    safe = np.where(d > 0, d, 1.0)
    h = np.where(mx == r, ((g - b) / safe) % 6, np.where(mx == g, (b - r) / safe + 2, (r - g) / safe + 4))
    h = np.where(d > 0, h / 6.0, 0.0)
    s = np.where(mx > 0, d / np.where(mx > 0, mx, 1.0), 0.0)
    return np.stack([h, s, mx], -1)


def color_histograms(images: np.ndarray, hue_bins: int = 24, sat_bins: int = 4, val_bins: int = 4,
                     grey_bins: int = 6, size: int = 32) -> np.ndarray:
    """Per-image HSV histograms, L1-normalised, square-rooted (Hellinger embedding: Euclidean
    distance between these is the Hellinger distance between histograms). Unsaturated pixels go
    to `grey_bins` brightness bins, where hue means nothing; pure-white padding is ignored."""
    import tensorflow as tf
    x = np.asarray(images)
    if x.shape[1] != size:
        x = tf.image.resize(tf.cast(x, tf.float32), [size, size], antialias=True).numpy()
    hsv = rgb_to_hsv(x).reshape(len(x), -1, 3)
    h, s, v = hsv[..., 0], hsv[..., 1], hsv[..., 2]
    grey = s < 0.15
    white = grey & (v > 0.97)
    hi = np.minimum((h * hue_bins).astype(int), hue_bins - 1)
    si = np.minimum(((s - 0.15) / 0.85 * sat_bins).astype(int), sat_bins - 1).clip(0)
    vi = np.minimum((v * val_bins).astype(int), val_bins - 1)
    colour_bin = (hi * sat_bins + si) * val_bins + vi
    n_colour = hue_bins * sat_bins * val_bins
    grey_bin = n_colour + np.minimum((v * grey_bins).astype(int), grey_bins - 1)
    bins = np.where(grey, grey_bin, colour_bin)
    nb = n_colour + grey_bins
    feats = np.zeros((len(x), nb), np.float32)
    for i in range(len(x)):
        feats[i] = np.bincount(bins[i][~white[i]], minlength=nb)[:nb]
    feats /= np.maximum(feats.sum(1, keepdims=True), 1)
    return np.sqrt(feats)


def knn_scores(train_feats: np.ndarray, train_labels: np.ndarray, query_feats: np.ndarray,
               k: int = 10, exclude_self: bool = False) -> np.ndarray:
    """Scores [Q, T]: distance-weighted share of the k nearest training images carrying each tag
    (rank-1 neighbour weighted most, so top-1 matches the 1-NN decision in most cases)."""
    d = (np.square(query_feats).sum(1)[:, None] + np.square(train_feats).sum(1)[None]
         - 2 * query_feats @ train_feats.T)
    if exclude_self:
        np.fill_diagonal(d, np.inf)
    k = min(k, len(train_feats))
    nn = np.argsort(d, axis=1, kind="mergesort")[:, :k]
    w = 1.0 / (1.0 + np.arange(k))           # 1, 1/2, 1/3, ...
    w = w / w.sum()
    return np.einsum("qk,qkt->qt", np.broadcast_to(w, nn.shape), train_labels[nn])


def color_histogram_baseline(info: records.DatasetInfo, split: str = "validation",
                             train_split: str = "train", k: int = 10, size: int = 32) -> Dict:
    """Fits the baseline on `train_split` and scores `split` with the same metrics as a tagger.

    Defaults (24x4x4 HSV + 6 grey bins at 32px, k=10) were chosen by leave-one-out on the
    hololive *train* split, not on its validation split."""
    t0 = time.time()
    x_tr, y_tr, _ = data.load_split_numpy(info, train_split, min(info.image_size, 64))
    x_te, y_te, _ = data.load_split_numpy(info, split, min(info.image_size, 64))
    f_tr, f_te = color_histograms(x_tr, size=size), color_histograms(x_te, size=size)
    scores = knn_scores(f_tr, y_tr, f_te, k=k)
    res = metrics.evaluate(y_te, scores, multi_label=info.multi_label)
    res["seconds"] = time.time() - t0
    res["_y"], res["_s"] = y_te, scores
    return res
