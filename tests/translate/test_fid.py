"""FID / KID maths against a straightforward NumPy reference, their properties, and the
InceptionV3 feature extractor (random weights from a local file; no downloads)."""
import numpy as np
import pytest

from translate.evaluation import fid


def _sqrt_psd(a):
    w, v = np.linalg.eigh(a)
    return (v * np.sqrt(np.clip(w, 0, None))) @ v.T


def _reference_fid(x, y):
    """Tr((S1 S2)^1/2) = Tr((S1^1/2 S2 S1^1/2)^1/2), the latter symmetric PSD (eigh only)."""
    mu1, mu2 = x.mean(0), y.mean(0)
    s1 = (x - mu1).T @ (x - mu1) / (len(x) - 1)
    s2 = (y - mu2).T @ (y - mu2) / (len(y) - 1)
    r = _sqrt_psd(s1)
    tr_covmean = np.sqrt(np.clip(np.linalg.eigvalsh(r @ s2 @ r), 0, None)).sum()
    return np.sum((mu1 - mu2) ** 2) + np.trace(s1) + np.trace(s2) - 2 * tr_covmean


def _reference_mmd2(x, y):
    """Unbiased MMD^2, pair by pair."""
    d = x.shape[1]

    def k(a, b):
        return (np.dot(a, b) / d + 1.0) ** 3

    m, n = len(x), len(y)
    xx = sum(k(x[i], x[j]) for i in range(m) for j in range(m) if i != j) / (m * (m - 1))
    yy = sum(k(y[i], y[j]) for i in range(n) for j in range(n) if i != j) / (n * (n - 1))
    xy = sum(k(x[i], y[j]) for i in range(m) for j in range(n)) / (m * n)
    return xx + yy - 2 * xy


@pytest.mark.parametrize("n1,n2,d", [(200, 150, 16), (30, 25, 200)])  # N > D and N < D
def test_fid_matches_reference(n1, n2, d):
    rng = np.random.default_rng(d)
    x = rng.normal(size=(n1, d))
    y = rng.normal(size=(n2, d)) @ rng.normal(size=(d, d)) * 0.5 + 0.3
    want = _reference_fid(x, y)
    assert want > 1.0
    assert fid.fid(x, y) == pytest.approx(want, rel=1e-6)
    # the textbook sqrtm form on the statistics agrees
    assert fid.frechet_distance(*fid.statistics(x), *fid.statistics(y)) == pytest.approx(want, rel=1e-6)


def test_fid_properties():
    rng = np.random.default_rng(1)
    x = rng.normal(size=(300, 8))
    assert abs(fid.fid(x, x)) < 1e-6
    shifted = [fid.fid(x, x + s) for s in (0.5, 1.0, 2.0)]
    # a pure mean shift s in every dimension adds exactly d * s^2
    np.testing.assert_allclose(shifted, [8 * 0.25, 8 * 1.0, 8 * 4.0], rtol=1e-6, atol=1e-6)


def test_fid_singular_covariances_stay_finite():
    rng = np.random.default_rng(2)
    x, y = rng.normal(size=(5, 12)), rng.normal(size=(5, 12))  # rank 4 < 12
    v = fid.fid(x, y)
    assert np.isfinite(v) and v == pytest.approx(_reference_fid(x, y), rel=1e-6)
    w = fid.frechet_distance(*fid.statistics(x), *fid.statistics(y))  # sqrtm of a singular product
    assert np.isfinite(w) and w == pytest.approx(v, rel=1e-2)


def test_mmd2_matches_pairwise_reference():
    rng = np.random.default_rng(3)
    x, y = rng.normal(size=(12, 6)), rng.normal(size=(9, 6)) + 0.4
    assert fid.mmd2_unbiased(x, y) == pytest.approx(_reference_mmd2(x, y), rel=1e-9)


def test_kid_full_subsets_equal_the_full_mmd():
    rng = np.random.default_rng(4)
    x, y = rng.normal(size=(20, 6)), rng.normal(size=(20, 6)) + 0.3
    mean, std = fid.kid(x, y, num_subsets=3, subset_size=50)  # subset = whole set, permuted
    assert mean == pytest.approx(_reference_mmd2(x, y), rel=1e-9) and std < 1e-12


def test_kid_unbiased_and_grows_with_shift():
    rng = np.random.default_rng(5)
    d = 16
    same = [fid.mmd2_unbiased(rng.normal(size=(50, d)), rng.normal(size=(50, d)))
            for _ in range(200)]
    # unbiased: same-distribution estimates average ~0 (a biased V-statistic would sit > 0)
    se = np.std(same) / np.sqrt(len(same))
    assert abs(np.mean(same)) < 4 * se + 1e-4, (np.mean(same), se)
    x = rng.normal(size=(300, d))
    kids = [fid.kid(x, rng.normal(size=(300, d)) + s, num_subsets=10, subset_size=100)[0]
            for s in (0.0, 0.3, 1.0)]
    assert kids[0] < kids[1] < kids[2] and kids[1] > 0
    with pytest.raises(ValueError, match="at least 2"):
        fid.kid(x[:1], x)


def test_fid_kid_summary_keys():
    rng = np.random.default_rng(6)
    r = fid.fid_kid(rng.normal(size=(30, 4)), rng.normal(size=(20, 4)), num_subsets=5)
    assert set(r) >= {"fid", "kid", "kid_std", "n1", "n2", "kid_subset_size"}
    assert r["kid_subset_size"] == 20 and r["n1"] == 30


def test_inception_features_from_local_file(tmp_path):
    keras = pytest.importorskip("keras")
    tf = pytest.importorskip("tensorflow")
    with pytest.raises(fid.WeightsError, match="not found"):
        fid.InceptionFeatures(str(tmp_path / "missing.weights.h5"))
    bad = tmp_path / "bad.weights.h5"
    bad.write_bytes(b"not an h5 file")
    with pytest.raises(fid.WeightsError, match="not InceptionV3"):
        fid.InceptionFeatures(str(bad))

    keras.utils.set_random_seed(0)
    ref = keras.applications.InceptionV3(include_top=False, pooling="avg", weights=None,
                                         input_shape=(299, 299, 3))
    path = str(tmp_path / "inception.weights.h5")
    ref.save_weights(path)
    extractor = fid.InceptionFeatures(path, batch_size=2)
    for a, b in zip(ref.weights, extractor.model.weights):
        np.testing.assert_array_equal(a.numpy(), b.numpy())
    del ref
    rng = np.random.default_rng(0)
    images = rng.uniform(-1, 1, size=(3, 40, 40, 3)).astype("float32")
    feats = extractor(images)  # batches of 2 and 1, resized to 299 inside
    assert feats.shape == (3, fid.FEATURE_DIM) and np.isfinite(feats).all()
    assert np.abs(feats[0] - feats[1]).max() > 0  # different images, different features
    big = tf.image.resize(images[2:], [299, 299]).numpy()
    np.testing.assert_allclose(extractor(big), feats[2:], rtol=1e-4, atol=1e-5)
