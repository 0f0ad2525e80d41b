"""Operating points on hand-made scores: the P = R threshold and F1 there (micro and macro, per
category) against brute force; MCut, rating as one choice and per-category thresholds in the
selection that predict.py and the export share; thresholds.json old and new."""
import json
from fractions import Fraction

import numpy as np
import pytest

from tagnet import operating_points, thresholds

# 6 images x 4 tags, ties included (0.7 twice in tag 0, 0.4 across tags).
Y = np.array([[1, 0, 1, 0], [1, 1, 0, 0], [0, 0, 1, 1], [1, 0, 0, 0], [0, 1, 0, 0], [0, 0, 0, 1]])
S = np.array([[0.9, 0.2, 0.8, 0.1], [0.7, 0.6, 0.4, 0.3], [0.7, 0.1, 0.5, 0.45],
              [0.3, 0.4, 0.2, 0.05], [0.2, 0.35, 0.6, 0.4], [0.1, 0.5, 0.3, 0.8]])


def brute_micro(y, s):
    """Every distinct score as a cut, in exact fractions: min |P - R| over cuts with a true
    positive, ties to the highest cut."""
    y, s = y.ravel(), s.ravel()
    npos, best = int(y.sum()), None
    for t in sorted(set(s.tolist()), reverse=True):
        pred = s >= t
        tp = int((pred & (y == 1)).sum())
        if tp == 0:
            continue
        p, r = Fraction(tp, int(pred.sum())), Fraction(tp, npos)
        if best is None or abs(p - r) < best[0]:
            best = (abs(p - r), t, p, r, 2 * p * r / (p + r))
    return best


def brute_macro(y, s):
    keep = y.sum(0) > 0
    y, s = y[:, keep], s[:, keep]
    best = None
    for t in sorted(set(s.ravel().tolist()), reverse=True):
        ps, rs, fs = [], [], []
        for j in range(y.shape[1]):
            pred = s[:, j] >= t
            tp, npred, npos = int((pred & (y[:, j] == 1)).sum()), int(pred.sum()), int(y[:, j].sum())
            ps.append(tp / npred if npred else 0.0)
            rs.append(tp / npos)
            fs.append(2 * tp / (npred + npos))
        p, r = np.mean(ps), np.mean(rs)
        if r > 0 and (best is None or abs(p - r) < best[0] - 1e-12):
            best = (abs(p - r), t, p, r, np.mean(fs))
    return best


@pytest.mark.parametrize("seed", [None, 0, 1, 2])
def test_precision_equals_recall_against_brute_force(seed):
    y, s = (Y, S) if seed is None else (
        np.random.default_rng(seed).random((30, 5)) < 0.3,
        np.round(np.random.default_rng(seed + 10).random((30, 5)), 1))  # coarse: many ties
    y = np.asarray(y, int)
    micro = operating_points.micro_breakeven(y, s)
    gap, cut, p, r, f1 = brute_micro(y, s)
    assert micro["precision"] == pytest.approx(float(p)) and micro["recall"] == pytest.approx(float(r))
    assert micro["f1"] == pytest.approx(float(f1))
    # The reported threshold (midway to the next lower score) predicts what the cut predicts.
    np.testing.assert_array_equal(s >= micro["threshold"], s >= cut)
    macro = operating_points.macro_breakeven(y, s)
    gap, cut, p, r, f1 = brute_macro(y, s)
    assert (macro["precision"], macro["recall"], macro["f1"]) == pytest.approx((p, r, f1))
    np.testing.assert_array_equal(s >= macro["threshold"], s >= cut)


def test_hand_computed_micro_point():
    # Tag 0 alone: positives 0.9, 0.7, 0.3; negatives 0.7, 0.2, 0.1. At 0.7: 3 predicted, 2 true
    # -> P = R = 2/3, F1 2/3; the threshold sits between 0.7 and 0.3.
    r = operating_points.micro_breakeven(Y[:, 0], S[:, 0])
    assert r["precision"] == r["recall"] == pytest.approx(2 / 3) and r["f1"] == pytest.approx(2 / 3)
    assert r["threshold"] == pytest.approx(0.5)
    assert np.isnan(operating_points.micro_breakeven(np.zeros(3), [0.1, 0.2, 0.3])["threshold"])


def test_report_per_category_and_rating_accuracy():
    cats = ["general", "general", "character", "rating"]
    rep = operating_points.report(Y, S, cats)
    assert list(rep) == ["all", "general", "character", "rating"]
    assert rep["general"]["tags"] == 2 and rep["character"]["tags"] == 1
    assert rep["general"]["micro"] == operating_points.micro_breakeven(Y[:, :2], S[:, :2])
    # Rating: one tag here, so its best tag is always that one; images 2 and 5 have it.
    assert rep["rating"]["accuracy"] == 1.0
    assert operating_points.rating_accuracy([[1, 0], [0, 1], [0, 0]], [[0.2, 0.1], [0.9, 0.3], [0, 1]]) == 0.5
    assert "P=R micro threshold" in operating_points.describe("general", rep["general"])


def test_mcut_on_hand_made_scores():
    tf = pytest.importorskip("tensorflow")
    from tagnet import selection
    s = tf.constant([[0.9, 0.85, 0.3, 0.2], [0.6, 0.1, 0.55, 0.5]])
    # Sorted: 0.9 0.85 | 0.3 0.2 -> largest gap 0.85-0.3, cut 0.575; 0.6 0.55 0.5 | 0.1 -> 0.3.
    np.testing.assert_allclose(selection.mcut_threshold(s).numpy(), [0.575, 0.3], atol=1e-6)
    picked = selection.select(s, ["general"] * 4, [0.99] * 4, mcut=True).numpy()
    assert picked.tolist() == [[True, True, False, False], [True, False, True, True]]
    # Per category: character cut on its own scores; rating one choice; a lone tag keeps its threshold.
    s = tf.constant([[0.9, 0.8, 0.1, 0.7, 0.65, 0.05, 0.3, 0.2, 0.6]])
    cats = ["general", "general", "general", "character", "character", "character",
            "rating", "rating", "copyright"]
    picked = selection.select(s, cats, [0.5] * 9, mcut=True).numpy()[0]
    assert np.flatnonzero(picked).tolist() == [0, 1, 3, 4, 6, 8]


def test_selection_thresholds_per_category_rating_one_choice_and_grouped_outputs():
    tf = pytest.importorskip("tensorflow")
    from tagnet import selection
    tags = ["1girl", "smile", "gawr_gura", "ina", "rating:s", "rating:q"]
    cats = ["general", "general", "character", "character", "rating", "rating"]
    th, how = thresholds.resolve(tags, cats, None, threshold=0.3,
                                 category_thresholds={"character": 0.85})
    assert th.tolist() == [0.3, 0.3, 0.85, 0.85, 0.3, 0.3] and "character 0.85" in how
    s = tf.constant([[0.9, 0.4, 0.8, 0.1, 0.2, 0.1],     # gawr_gura 0.8 < 0.85: no character
                     [0.2, 0.35, 0.95, 0.9, 0.05, 0.3]])  # rating below every threshold: still one
    picked = selection.select(s, cats, th)
    assert picked.numpy().tolist() == [[True, True, False, False, True, False],
                                       [False, True, True, True, False, True]]
    out = {k: v.numpy() for k, v in selection.grouped(s, picked, tags, cats).items()}
    assert out["general_tags"].astype(str).tolist() == [["1girl", "smile"], ["smile", ""]]
    np.testing.assert_allclose(out["general_scores"], [[0.9, 0.4], [0.35, 0.0]])
    assert out["character_tags"].astype(str).tolist() == [["", ""], ["gawr_gura", "ina"]]
    assert out["rating_tags"].astype(str).tolist() == [["rating:s"], ["rating:q"]]
    assert out["artist_tags"].shape == (2, 0) and out["meta_scores"].shape == (2, 0)
    # Single-label models always give their top class.
    assert selection.select(tf.constant([[0.4, 0.6]]), ["character"] * 2, [1.01] * 2,
                            softmax=True).numpy().tolist() == [[False, True]]


def test_thresholds_tune_save_load_and_old_files(tmp_path):
    cats = ["general", "general", "character", "rating"]
    tags = ["a", "b", "c", "r"]
    th = thresholds.tune(Y, S, tags, cats, min_positives=3)
    assert th.per_category["general"] == operating_points.micro_breakeven(Y[:, :2], S[:, :2])["threshold"]
    # Tags with fewer than 3 positives take their category's threshold.
    assert th.per_tag["b"] == th.per_category["general"] and th.per_tag["r"] == th.per_category["rating"]
    thresholds.save(str(tmp_path), th)
    back = thresholds.load(str(tmp_path))
    assert back.per_category == pytest.approx(th.per_category) and back.per_tag == pytest.approx(th.per_tag)
    v, how = thresholds.resolve(tags, cats, back, per_tag=False)
    assert v.tolist() == pytest.approx([th.per_category[c] for c in cats]) and "per-category" in how
    # A file from before categories: global + per-tag only.
    (tmp_path / "thresholds.json").write_text(json.dumps({"global": 0.4, "source": "old",
                                                          "per_tag": {"a": 0.2}}))
    old = thresholds.load(str(tmp_path))
    assert thresholds.resolve(tags, cats, old)[0].tolist() == [0.2, 0.4, 0.4, 0.4]
    assert thresholds.resolve(tags, cats, old, per_tag=False)[0].tolist() == [0.4] * 4
    assert thresholds.resolve(tags, cats, None, softmax=True)[0].tolist() == [1.01] * 4
    assert thresholds.parse_category_thresholds(["character=0.85", "general=.3"]) == {
        "character": 0.85, "general": 0.3}
    for bad in (["characters=0.8"], ["character"], ["character=high"]):
        with pytest.raises(ValueError):
            thresholds.parse_category_thresholds(bad)
