"""FID and KID between two sets of images, from InceptionV3 pool features.

* Features: `keras.applications.InceptionV3(include_top=False, pooling="avg", weights=None)` with
  weights from a LOCAL file the user gives (no downloads at run time). Images in [-1, 1] (our
  models' range, which is also InceptionV3's own preprocessing) are resized to 299 x 299
  (bilinear, in-graph) and run in batches: 2048 features per image.
* FID (Heusel et al. 2017): |mu1 - mu2|^2 + Tr(S1 + S2 - 2 (S1 S2)^(1/2)), the trace of the
  square root taken exactly from the covariances' factors (see `fid`).
* KID (Binkowski et al. 2018): the unbiased MMD^2 with the kernel k(x, y) = (x.y / d + 1)^3, over
  `num_subsets` random subsets of `subset_size` per set (as in the paper and StyleGAN2-ADA);
  mean and standard deviation over subsets.

Keras' ImageNet InceptionV3 is not the TF `inception-2015-12-05` graph that published FIDs use,
and FID is strongly biased at small N: compare numbers only within one setup and one N.
"""
from __future__ import annotations

import os
from typing import Tuple

import numpy as np

INCEPTION_SIZE = 299
FEATURE_DIM = 2048


class WeightsError(ValueError):
    """The Inception weights file is missing or does not fit InceptionV3 (no top, avg pool)."""


class InceptionFeatures:
    """Callable: images [N, H, W, 3] in [-1, 1] -> pool features [N, 2048] float64."""

    def __init__(self, weights_path: str, batch_size: int = 16, progress: bool = False):
        import keras

        if not weights_path or not os.path.isfile(weights_path):
            raise WeightsError(f"{weights_path}: Inception weights file not found (give a local "
                               "InceptionV3 no-top weights file, e.g. "
                               "inception_v3_weights_tf_dim_ordering_tf_kernels_notop.h5)")
        self.model = keras.applications.InceptionV3(
            include_top=False, pooling="avg", weights=None,
            input_shape=(INCEPTION_SIZE, INCEPTION_SIZE, 3))
        try:
            self.model.load_weights(weights_path)
        except Exception as e:  # h5py/keras raise many types for a wrong or corrupt file
            first = str(e).splitlines()[0] if str(e) else type(e).__name__
            raise WeightsError(f"{weights_path}: not InceptionV3 no-top weights ({first})") from None
        self.batch_size = batch_size
        self.progress = progress

    def _features(self, x):
        """Eager on purpose: tracing InceptionV3 costs ~10 s, more than it saves on a test split
        of a few hundred images (the convolutions dominate either way)."""
        import tensorflow as tf

        x = tf.image.resize(tf.cast(x, tf.float32), [INCEPTION_SIZE, INCEPTION_SIZE])
        return self.model(tf.clip_by_value(x, -1.0, 1.0), training=False)

    def __call__(self, images) -> np.ndarray:
        images = np.asarray(images)
        starts = range(0, len(images), self.batch_size)
        if self.progress:
            from tqdm import tqdm
            starts = tqdm(starts, desc="inception features", unit="batch", leave=False)
        out = [self._features(images[i:i + self.batch_size]).numpy() for i in starts]
        if not out:
            return np.zeros([0, FEATURE_DIM])
        return np.concatenate(out).astype(np.float64)


def statistics(features) -> Tuple[np.ndarray, np.ndarray]:
    """(mean [D], covariance [D, D]) of features [N, D], N >= 2."""
    f = np.asarray(features, np.float64)
    if f.ndim != 2 or len(f) < 2:
        raise ValueError(f"need at least 2 feature vectors of shape [N, D], got {f.shape}")
    return f.mean(0), np.cov(f, rowvar=False)


def frechet_distance(mu1, sigma1, mu2, sigma2, eps: float = 1e-6) -> float:
    """|mu1 - mu2|^2 + Tr(S1 + S2 - 2 sqrtm(S1 S2)); an eps ridge when the product is singular
    (as pytorch-fid does), and the numerically imaginary part of sqrtm dropped."""
    from scipy import linalg

    mu1, mu2 = np.atleast_1d(mu1).astype(np.float64), np.atleast_1d(mu2).astype(np.float64)
    s1, s2 = np.atleast_2d(sigma1).astype(np.float64), np.atleast_2d(sigma2).astype(np.float64)
    covmean = linalg.sqrtm(s1.dot(s2))
    if not np.isfinite(covmean).all():
        offset = np.eye(len(s1)) * eps
        covmean = linalg.sqrtm((s1 + offset).dot(s2 + offset))
    if np.iscomplexobj(covmean):
        covmean = covmean.real
    diff = mu1 - mu2
    return float(diff.dot(diff) + np.trace(s1) + np.trace(s2) - 2.0 * np.trace(covmean))


def _cov_factor(features) -> np.ndarray:
    """A with A A^T = the covariance of features [N, D]: the centred data / sqrt(N - 1) ([D, N])
    when N <= D, else V sqrt(w) from the covariance's eigendecomposition ([D, D])."""
    f = np.asarray(features, np.float64)
    x = (f - f.mean(0)).T / np.sqrt(len(f) - 1)
    if x.shape[1] <= x.shape[0]:
        return x
    w, v = np.linalg.eigh(x @ x.T)
    return v * np.sqrt(np.clip(w, 0.0, None))


def fid(features1, features2) -> float:
    """FID between two feature sets [N1, D], [N2, D] (N >= 2 each).

    Tr((S1 S2)^(1/2)) is computed exactly as the nuclear norm of A1^T A2 for covariance factors
    S = A A^T (S1 S2 and (A1^T A2)(A1^T A2)^T share their non-zero eigenvalues): an SVD of at
    most min(N, D) square, no 2048 x 2048 sqrtm (tens of seconds on a CPU) and no imaginary
    round-off to drop. `frechet_distance` is the textbook sqrtm form for given statistics.
    """
    mu1, s1 = statistics(features1)
    mu2, s2 = statistics(features2)
    a1, a2 = _cov_factor(features1), _cov_factor(features2)
    tr_covmean = np.linalg.svd(a1.T @ a2, compute_uv=False).sum()
    diff = mu1 - mu2
    return float(diff.dot(diff) + np.trace(s1) + np.trace(s2) - 2.0 * tr_covmean)


def mmd2_unbiased(x, y) -> float:
    """Unbiased MMD^2 between x [m, D] and y [n, D] with k(a, b) = (a.b / D + 1)^3."""
    x, y = np.asarray(x, np.float64), np.asarray(y, np.float64)
    d = x.shape[1]
    m, n = len(x), len(y)
    kxx = (x @ x.T / d + 1.0) ** 3
    kyy = (y @ y.T / d + 1.0) ** 3
    kxy = (x @ y.T / d + 1.0) ** 3
    return float((kxx.sum() - np.trace(kxx)) / (m * (m - 1))
                 + (kyy.sum() - np.trace(kyy)) / (n * (n - 1))
                 - 2.0 * kxy.mean())


def kid(features1, features2, num_subsets: int = 100, subset_size: int = 1000,
        seed: int = 0) -> Tuple[float, float]:
    """(mean, std) of the unbiased MMD^2 over random subsets of min(subset_size, N1, N2) per set,
    drawn without replacement within a subset (seeded)."""
    f1, f2 = np.asarray(features1, np.float64), np.asarray(features2, np.float64)
    m = min(subset_size, len(f1), len(f2))
    if m < 2:
        raise ValueError(f"KID needs at least 2 samples per set, got {len(f1)} and {len(f2)}")
    rng = np.random.default_rng(seed)
    values = [mmd2_unbiased(f1[rng.choice(len(f1), m, replace=False)],
                            f2[rng.choice(len(f2), m, replace=False)])
              for _ in range(num_subsets)]
    return float(np.mean(values)), float(np.std(values))


def fid_kid(features1, features2, num_subsets: int = 100, subset_size: int = 1000,
            seed: int = 0) -> dict:
    """{"fid", "kid", "kid_std", "n1", "n2", "kid_subset_size"} for two feature sets."""
    f1, f2 = np.asarray(features1), np.asarray(features2)
    k, k_std = kid(f1, f2, num_subsets, subset_size, seed)
    return {"fid": fid(f1, f2), "kid": k, "kid_std": k_std, "n1": int(len(f1)), "n2": int(len(f2)),
            "kid_subset_size": int(min(subset_size, len(f1), len(f2))), "kid_subsets": int(num_subsets)}
