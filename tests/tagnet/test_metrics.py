"""tagnet.metrics against scikit-learn (which tagnet itself does not import)."""
import numpy as np
import pytest

# scikit-learn is a test-only reference (setup.cfg's dev extra should list it).
skm = pytest.importorskip("sklearn.metrics", reason="scikit-learn is needed as the reference")

from tagnet import metrics


def _data(seed=0, n=200, t=12, ties=False):
    rng = np.random.default_rng(seed)
    y = (rng.random((n, t)) < rng.uniform(0.05, 0.5, t)).astype(int)
    s = np.clip(0.35 * y + rng.random((n, t)) * 0.8, 0, 1)
    if ties:
        s = np.round(s, 1)  # many tied scores
    y[:, 0] = 0  # a tag with no positive
    return y, s


@pytest.mark.parametrize("ties", [False, True])
def test_average_precision_matches_sklearn(ties):
    y, s = _data(ties=ties)
    ap = metrics.per_tag_average_precision(y, s)
    assert np.isnan(ap[0])
    for j in range(1, y.shape[1]):
        assert ap[j] == pytest.approx(skm.average_precision_score(y[:, j], s[:, j]), abs=1e-12)
    cols = y.sum(0) > 0
    assert metrics.mean_average_precision(y, s) == pytest.approx(
        skm.average_precision_score(y[:, cols], s[:, cols], average="macro"), abs=1e-12)


def test_f1_matches_sklearn_at_any_threshold():
    y, s = _data(1)
    cols = y.sum(0) > 0
    for t in (0.2, 0.5, 0.77):
        f = metrics.f1_scores(y, s, t)
        pred = (s >= t).astype(int)
        assert f["micro_f1"] == pytest.approx(skm.f1_score(y, pred, average="micro"))
        assert f["macro_f1"] == pytest.approx(
            skm.f1_score(y[:, cols], pred[:, cols], average="macro", zero_division=0))
        assert f["precision"] == pytest.approx(skm.precision_score(y, pred, average="micro"))
        assert f["recall"] == pytest.approx(skm.recall_score(y, pred, average="micro"))


def test_best_micro_threshold_is_the_optimum():
    y, s = _data(2, ties=True)
    t, f1 = metrics.best_micro_threshold(y, s)
    assert metrics.f1_scores(y, s, t)["micro_f1"] == pytest.approx(f1)
    # No threshold on a fine grid does better.
    grid = max(skm.f1_score(y, (s >= g).astype(int), average="micro") for g in np.linspace(0, 1, 401))
    assert f1 >= grid - 1e-12
    assert f1 > skm.f1_score(y, (s >= 0.5).astype(int), average="micro") - 1e-12


def test_per_tag_thresholds_beat_the_global_one_per_tag():
    y, s = _data(3)
    g, _ = metrics.best_micro_threshold(y, s)
    th = metrics.per_tag_thresholds(y, s, fallback=g)
    assert th[0] == g  # no positives: fallback
    for j in range(1, y.shape[1]):
        mine = skm.f1_score(y[:, j], (s[:, j] >= th[j]).astype(int), zero_division=0)
        glob = skm.f1_score(y[:, j], (s[:, j] >= g).astype(int), zero_division=0)
        assert mine >= glob - 1e-12


def test_precision_at_k_and_top_k_accuracy():
    rng = np.random.default_rng(4)
    y, s = _data(4)
    for k in (1, 3, 5):
        top = np.argsort(-s, axis=1)[:, :k]
        want = np.mean([y[i, top[i]].sum() / k for i in range(len(y))])
        assert metrics.precision_at_k(y, s, k) == pytest.approx(want)
    labels = rng.integers(0, 7, 300)
    scores = rng.random((300, 7))
    scores[np.arange(300), labels] += rng.random(300) * 0.5
    for k in (1, 5):
        assert metrics.top_k_accuracy(labels, scores, k) == pytest.approx(
            skm.top_k_accuracy_score(labels, scores, k=k, labels=np.arange(7)))


def test_perfect_and_reversed_scores():
    y, s = _data(5)
    y = y[:, 1:]
    assert metrics.mean_average_precision(y, y + 0.0) == pytest.approx(1.0)
    res = metrics.evaluate(y, y * 0.9 + 0.05)
    assert res["micro_f1"] == pytest.approx(1.0) and res["mAP"] == pytest.approx(1.0)
    assert metrics.mean_average_precision(y, 1.0 - y) < 0.6


def test_report_rows(tmp_path):
    y, s = _data(6)
    th = metrics.per_tag_thresholds(y, s, 0.5)
    rows = metrics.per_tag_report(y, s, [f"t{j}" for j in range(y.shape[1])], th)
    assert rows[0]["average_precision"] == "" and rows[0]["support"] == 0
    assert rows[3]["support"] == int(y[:, 3].sum())
    metrics.write_report_csv(str(tmp_path / "r.csv"), rows)
    assert (tmp_path / "r.csv").read_text().splitlines()[0].startswith("tag,support")
