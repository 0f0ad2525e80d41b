"""Operating points in numpy: the threshold where precision equals recall and F1 there, micro and
macro, over all tags and per category (the figures WD / DeepDanbooru taggers publish).

Conventions (y multi-hot [N, T], scores [N, T]; a tag is predicted when score >= threshold):
* micro: all (image, tag) pairs pooled. Among the cuts between distinct scores, the one with the
  smallest |P - R|, cuts with no true positive excluded (there P = R = 0 says nothing), ties to the
  highest threshold; F1 at that cut.
* macro: one threshold for every tag; P and R are means over tags with a positive (a tag with no
  prediction has precision 0), F1 the mean of their F1s. Candidates are the distinct scores, or
  `max_candidates` quantiles of them when there are more.
A threshold is reported midway to the next lower candidate, so it predicts the same pairs.
"""
from __future__ import annotations

from typing import Dict, Sequence

import numpy as np

from tagnet import metrics
from tagnet.contract import CATEGORIES, RATING

NAN_POINT = {"threshold": float("nan"), "precision": 0.0, "recall": 0.0, "f1": 0.0}


def _point(t: float, p: float, r: float, f1: float) -> Dict[str, float]:
    return {"threshold": float(t), "precision": float(p), "recall": float(r), "f1": float(f1)}


def micro_breakeven(y_true, scores) -> Dict[str, float]:
    """{threshold, precision, recall, f1} at the micro P = R cut (exact)."""
    y = (np.asarray(y_true).ravel() > 0.5).astype(np.int64)
    s = np.asarray(scores, np.float64).ravel()
    npos = int(y.sum())
    if npos == 0:
        return dict(NAN_POINT)
    order = np.argsort(-s, kind="mergesort")
    s, y = s[order], y[order]
    last = np.r_[np.flatnonzero(np.diff(s)), len(s) - 1]   # last index of each distinct score
    tp = np.cumsum(y)[last]
    npred = last + 1
    valid = tp > 0
    # |P - R| * npos = tp * |npos - npred| / npred: one division of integers, so equal gaps are
    # equal floats and ties resolve by position (highest threshold first).
    gap = np.where(valid, tp * np.abs(npos - npred) / npred, np.inf)
    i = int(np.argmin(gap))
    cut = s[last[i]]
    t = 0.5 * (cut + s[last[i] + 1]) if i + 1 < len(last) else cut
    return _point(t, tp[i] / npred[i], tp[i] / npos, 2 * tp[i] / (npred[i] + npos))


def _candidates(s: np.ndarray, max_candidates: int) -> np.ndarray:
    c = np.unique(s)[::-1]                                  # descending
    if len(c) > max_candidates:
        c = np.unique(np.quantile(s, np.linspace(0, 1, max_candidates)))[::-1]
    return c


def macro_breakeven(y_true, scores, max_candidates: int = 2048) -> Dict[str, float]:
    """{threshold, precision, recall, f1} at the global threshold where mean precision equals
    mean recall over the tags with a positive."""
    y = np.asarray(y_true) > 0.5
    s = np.asarray(scores, np.float64)
    if y.ndim == 1:
        y, s = y[:, None], s[:, None]
    keep = y.sum(0) > 0
    if not keep.any():
        return dict(NAN_POINT)
    y, s = y[:, keep], s[:, keep]
    cand = _candidates(s, max_candidates)
    n_tags = y.shape[1]
    tp = np.empty((len(cand), n_tags))
    npred = np.empty((len(cand), n_tags))
    neg_c = -cand                                           # ascending, for searchsorted
    for j in range(n_tags):
        all_j = np.sort(-s[:, j])
        pos_j = np.sort(-s[y[:, j], j])
        npred[:, j] = np.searchsorted(all_j, neg_c, side="right")   # scores >= c
        tp[:, j] = np.searchsorted(pos_j, neg_c, side="right")
    npos = y.sum(0)
    p = np.divide(tp, npred, out=np.zeros_like(tp), where=npred > 0).mean(1)
    r = (tp / npos).mean(1)
    f1 = (2 * tp / (npred + npos)).mean(1)
    gap = np.where(r > 0, np.abs(p - r), np.inf)
    i = int(np.argmin(gap))
    t = 0.5 * (cand[i] + cand[i + 1]) if i + 1 < len(cand) else cand[i]
    return _point(t, p[i], r[i], f1[i])


def rating_accuracy(y_true, scores) -> float:
    """Share of images with a rating label whose best-scored rating tag is a true one."""
    y = np.asarray(y_true) > 0.5
    s = np.asarray(scores, np.float64)
    has = y.any(1)
    if not has.any():
        return float("nan")
    best = s.argmax(1)
    return float(y[np.arange(len(y)), best][has].mean())


def summary(y_true, scores) -> Dict:
    y = np.asarray(y_true)
    return {"tags": int(y.shape[1]), "tags_with_positives": int(((y > 0.5).sum(0) > 0).sum()),
            "mAP": metrics.mean_average_precision(y, scores),
            "micro": micro_breakeven(y, scores), "macro": macro_breakeven(y, scores)}


def report(y_true, scores, categories: Sequence[str]) -> Dict[str, Dict]:
    """{"all": summary, <category>: summary (+ "accuracy" for rating), ...} for the categories
    present in `categories` (one per tag)."""
    y, s = np.asarray(y_true), np.asarray(scores, np.float64)
    cats = np.asarray(categories)
    out = {"all": summary(y, s)}
    for c in CATEGORIES:
        idx = np.flatnonzero(cats == c)
        if len(idx):
            out[c] = summary(y[:, idx], s[:, idx])
            if c == RATING:
                out[c]["accuracy"] = rating_accuracy(y[:, idx], s[:, idx])
    return out


def describe(name: str, r: Dict) -> str:
    """One line: `name (T tags): mAP, P=R micro threshold / F1, macro threshold / F1`."""
    line = (f"{name} ({r['tags']} tags): mAP {r['mAP']:.4f}, P=R micro threshold "
            f"{r['micro']['threshold']:.4f} F1 {r['micro']['f1']:.4f}, macro threshold "
            f"{r['macro']['threshold']:.4f} F1 {r['macro']['f1']:.4f}")
    if "accuracy" in r:
        line += f", accuracy of the one choice {r['accuracy']:.4f}"
    return line
