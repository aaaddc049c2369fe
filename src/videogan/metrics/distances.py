"""Distances between two sets of video features: Fréchet distance (FVD) and kernel MMD (KVD). Pure numpy.

FVD (Unterthiner et al. 2018) fits a Gaussian to each set of I3D features and reports
    ||mu_r - mu_f||^2 + Tr(S_r + S_f - 2 (S_r S_f)^(1/2)).
KVD is the unbiased squared MMD with the polynomial kernel k(x, y) = (x.y / d + 1)^3, as KID (Binkowski
et al. 2018) and the FVD paper's KVD.
"""
from __future__ import annotations

import numpy as np


def gaussian(features: np.ndarray) -> tuple[np.ndarray, np.ndarray]:
    """(mean [D], covariance [D, D]) of features [N, D], in float64 (unbiased covariance, N - 1)."""
    x = np.asarray(features, dtype=np.float64)
    assert x.ndim == 2 and len(x) >= 2, f"expected features [N >= 2, D], got {list(x.shape)}"
    return x.mean(0), np.cov(x, rowvar=False)


def _psd_sqrt(s: np.ndarray) -> np.ndarray:
    """The symmetric square root of a symmetric positive semi-definite matrix (tiny negative eigenvalues,
    rounding noise of a singular covariance, are clipped to 0)."""
    values, vectors = np.linalg.eigh((s + s.T) / 2)
    return (vectors * np.sqrt(np.clip(values, 0, None))) @ vectors.T


def frechet_distance(mu1: np.ndarray, sigma1: np.ndarray, mu2: np.ndarray, sigma2: np.ndarray) -> float:
    """Fréchet distance between N(mu1, sigma1) and N(mu2, sigma2).

    Tr((S1 S2)^(1/2)) is computed as the sum of the square roots of the eigenvalues of the symmetric PSD
    matrix S1^(1/2) S2 S1^(1/2) (it has the same eigenvalues as S1 S2). Unlike scipy's sqrtm of the
    non-symmetric S1 S2 (the usual FID/FVD code), this needs no complex parts discarded and no diagonal
    offset, and stays exact when the covariances are singular (fewer samples than feature dimensions) or
    ill-conditioned.
    """
    mu1, mu2 = np.asarray(mu1, np.float64), np.asarray(mu2, np.float64)
    sigma1, sigma2 = np.asarray(sigma1, np.float64), np.asarray(sigma2, np.float64)
    assert mu1.shape == mu2.shape and sigma1.shape == sigma2.shape == (len(mu1), len(mu1)), \
        "shapes do not match"
    root1 = _psd_sqrt(sigma1)
    cross = np.linalg.eigvalsh(root1 @ sigma2 @ root1)
    trace_sqrt = np.sqrt(np.clip(cross, 0, None)).sum()
    distance = float(np.sum((mu1 - mu2) ** 2) + np.trace(sigma1) + np.trace(sigma2) - 2 * trace_sqrt)
    return max(distance, 0.0)  # a distance; rounding can leave -1e-12 for identical inputs


def fvd_from_features(real: np.ndarray, fake: np.ndarray) -> float:
    """FVD between two feature sets [N, D] (each set summarised by its Gaussian)."""
    return frechet_distance(*gaussian(real), *gaussian(fake))


def polynomial_kernel(x: np.ndarray, y: np.ndarray, degree: int = 3, coef0: float = 1.0) -> np.ndarray:
    """k(x, y) = (x.y / d + coef0)^degree for rows of x [N, D] and y [M, D] -> [N, M]."""
    return (x @ y.T / x.shape[1] + coef0) ** degree


def kernel_distance(real: np.ndarray, fake: np.ndarray, degree: int = 3) -> float:
    """Unbiased estimate of the squared MMD between two feature sets [N, D] and [M, D] (N, M >= 2) with the
    polynomial kernel: the diagonal terms k(x_i, x_i) are left out of the within-set means. Its expectation
    is 0 for two samples of one distribution, so small negative values happen and are kept (clipping would
    bias it)."""
    x, y = np.asarray(real, np.float64), np.asarray(fake, np.float64)
    assert x.ndim == y.ndim == 2 and x.shape[1] == y.shape[1] and len(x) >= 2 and len(y) >= 2, \
        "bad feature shapes"
    n, m = len(x), len(y)
    kxx, kyy = polynomial_kernel(x, x, degree), polynomial_kernel(y, y, degree)
    kxy = polynomial_kernel(x, y, degree)
    within_x = (kxx.sum() - np.trace(kxx)) / (n * (n - 1))
    within_y = (kyy.sum() - np.trace(kyy)) / (m * (m - 1))
    return float(within_x + within_y - 2 * kxy.mean())
