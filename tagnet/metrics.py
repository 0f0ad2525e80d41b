"""Tag metrics in numpy (no scikit-learn at run time; the tests check these against it).

Conventions: ``y_true`` is multi-hot [N, T] (0/1), ``scores`` are probabilities [N, T]. A tag
counts as predicted when score >= threshold. Averages over tags (mAP, macro F1) use only tags
with at least one positive in ``y_true``: a tag absent from the evaluation split says nothing.
"""
from __future__ import annotations

import csv
from typing import Dict, List, Optional, Sequence, Tuple

import numpy as np


def _check(y_true, scores) -> Tuple[np.ndarray, np.ndarray]:
    y = np.asarray(y_true)
    s = np.asarray(scores, dtype=np.float64)
    if y.ndim == 1:
        y, s = y[:, None], s[:, None] if s.ndim == 1 else s
    if y.shape != s.shape:
        raise ValueError(f"labels {y.shape} and scores {s.shape} differ in shape")
    return (y > 0.5).astype(np.int64), s


def average_precision(y_true, scores) -> float:
    """AP of one tag, as sklearn.metrics.average_precision_score (ties grouped); nan when the
    tag has no positive."""
    y = (np.asarray(y_true).ravel() > 0.5).astype(np.int64)
    s = np.asarray(scores, dtype=np.float64).ravel()
    npos = y.sum()
    if npos == 0:
        return float("nan")
    order = np.argsort(-s, kind="mergesort")
    s, y = s[order], y[order]
    last = np.r_[np.flatnonzero(np.diff(s)), len(s) - 1]
    tps = np.cumsum(y)[last]
    precision = tps / (last + 1)
    recall = tps / npos
    return float(np.sum(np.diff(np.r_[0.0, recall]) * precision))


def per_tag_average_precision(y_true, scores) -> np.ndarray:
    y, s = _check(y_true, scores)
    return np.array([average_precision(y[:, j], s[:, j]) for j in range(y.shape[1])])


def mean_average_precision(y_true, scores) -> float:
    ap = per_tag_average_precision(y_true, scores)
    return float(np.nanmean(ap)) if np.isfinite(ap).any() else float("nan")


def confusion(y_true, scores, threshold) -> Tuple[np.ndarray, np.ndarray, np.ndarray]:
    """Per-tag TP, FP, FN; threshold is a scalar or one value per tag."""
    y, s = _check(y_true, scores)
    pred = s >= np.asarray(threshold, dtype=np.float64)
    tp = (pred & (y == 1)).sum(0)
    fp = (pred & (y == 0)).sum(0)
    fn = (~pred & (y == 1)).sum(0)
    return tp, fp, fn


def _f1(tp, fp, fn):
    tp, fp, fn = (np.asarray(a, dtype=np.float64) for a in (tp, fp, fn))
    denom = 2 * tp + fp + fn
    return np.divide(2 * tp, denom, out=np.zeros_like(denom), where=denom > 0)


def f1_scores(y_true, scores, threshold) -> Dict[str, float]:
    """micro and macro F1 (macro over tags with a positive), micro precision and recall."""
    y, _ = _check(y_true, scores)
    tp, fp, fn = confusion(y_true, scores, threshold)
    has_pos = y.sum(0) > 0
    micro = float(_f1(tp.sum(), fp.sum(), fn.sum()))
    macro = float(_f1(tp, fp, fn)[has_pos].mean()) if has_pos.any() else float("nan")
    p = tp.sum() / max(tp.sum() + fp.sum(), 1)
    r = tp.sum() / max(tp.sum() + fn.sum(), 1)
    return {"micro_f1": micro, "macro_f1": macro, "precision": float(p), "recall": float(r)}


def _best_cut(y: np.ndarray, s: np.ndarray) -> Tuple[float, float]:
    """Exact threshold (one of the scores) maximising F1 of `s >= t` against `y` (1-D)."""
    npos = y.sum()
    if npos == 0 or len(s) == 0:
        return float("nan"), 0.0
    order = np.argsort(-s, kind="mergesort")
    s, y = s[order], y[order]
    last = np.r_[np.flatnonzero(np.diff(s)), len(s) - 1]
    tp = np.cumsum(y)[last]
    npred = last + 1
    f1 = 2 * tp / (npred + npos)
    best = int(np.argmax(f1))
    # Put the threshold midway to the next lower score so that near-ties generalise.
    t = s[last[best]]
    if best + 1 < len(last):
        t = 0.5 * (t + s[last[best] + 1])
    return float(t), float(f1[best])


def best_micro_threshold(y_true, scores) -> Tuple[float, float]:
    """The global threshold maximising micro F1, and that F1."""
    y, s = _check(y_true, scores)
    return _best_cut(y.ravel(), s.ravel())


def per_tag_thresholds(y_true, scores, fallback: float, min_positives: int = 1) -> np.ndarray:
    """The threshold maximising each tag's F1; ``fallback`` for tags with fewer than
    ``min_positives`` positives (too little evidence to tune)."""
    y, s = _check(y_true, scores)
    out = np.full(y.shape[1], float(fallback))
    for j in range(y.shape[1]):
        if y[:, j].sum() >= min_positives:
            t, _ = _best_cut(y[:, j], s[:, j])
            if np.isfinite(t):
                out[j] = t
    return out


def precision_at_k(y_true, scores, k: int) -> float:
    """Mean over images of the share of the k top-scored tags that are true."""
    y, s = _check(y_true, scores)
    k = min(k, y.shape[1])
    top = np.argsort(-s, axis=1, kind="mergesort")[:, :k]
    return float(np.take_along_axis(y, top, axis=1).sum(1).mean() / k)


def top_k_accuracy(labels, scores, k: int) -> float:
    """Single-label: share of images whose class is among the k top scores."""
    labels = np.asarray(labels)
    if labels.ndim == 2:
        labels = labels.argmax(1)
    s = np.asarray(scores, dtype=np.float64)
    k = min(k, s.shape[1])
    top = np.argsort(-s, axis=1, kind="mergesort")[:, :k]
    return float((top == labels[:, None]).any(1).mean())


def evaluate(y_true, scores, multi_label: bool = True,
             thresholds: Optional[np.ndarray] = None) -> Dict[str, float]:
    """The summary numbers: mAP, best global threshold and its micro/macro F1, F1 with per-tag
    thresholds (tuned here unless given), precision@1/5; top-1/top-5 accuracy when single-label."""
    y, s = _check(y_true, scores)
    out: Dict[str, float] = {"examples": int(y.shape[0]), "tags": int(y.shape[1]),
                             "tags_with_positives": int((y.sum(0) > 0).sum())}
    out["mAP"] = mean_average_precision(y, s)
    t, _ = best_micro_threshold(y, s)
    out["threshold"] = t
    out.update(f1_scores(y, s, t if np.isfinite(t) else 0.5))
    if thresholds is None:
        thresholds = per_tag_thresholds(y, s, fallback=t if np.isfinite(t) else 0.5)
    per_tag = f1_scores(y, s, thresholds)
    out["per_tag_threshold_micro_f1"] = per_tag["micro_f1"]
    out["per_tag_threshold_macro_f1"] = per_tag["macro_f1"]
    for k in (1, 5):
        out[f"precision@{k}"] = precision_at_k(y, s, k)
    if not multi_label:
        out["top1_accuracy"] = top_k_accuracy(y, s, 1)
        out["top5_accuracy"] = top_k_accuracy(y, s, 5)
    return out


def per_tag_report(y_true, scores, tags: Sequence[str], thresholds: np.ndarray,
                   train_counts: Optional[Sequence[int]] = None,
                   categories: Optional[Sequence[str]] = None) -> List[Dict]:
    y, s = _check(y_true, scores)
    ap = per_tag_average_precision(y, s)
    tp, fp, fn = confusion(y, s, thresholds)
    f1 = _f1(tp, fp, fn)
    rows = []
    for j, tag in enumerate(tags):
        rows.append({
            "tag": tag, **({"category": categories[j]} if categories is not None else {}),
            "support": int(y[:, j].sum()),
            "train_count": int(train_counts[j]) if train_counts is not None else "",
            "average_precision": "" if np.isnan(ap[j]) else round(float(ap[j]), 5),
            "threshold": round(float(thresholds[j]), 5),
            "precision": round(float(tp[j] / max(tp[j] + fp[j], 1)), 5),
            "recall": round(float(tp[j] / max(tp[j] + fn[j], 1)), 5),
            "f1": round(float(f1[j]), 5),
        })
    return rows


def write_report_csv(path: str, rows: List[Dict]) -> None:
    with open(path, "w", newline="", encoding="utf-8") as f:
        w = csv.DictWriter(f, fieldnames=list(rows[0]) if rows else ["tag"])
        w.writeheader()
        w.writerows(rows)
