import numpy as np
import pytest

from videogan.metrics.distances import frechet_distance, fvd_from_features, gaussian, kernel_distance


def random_covariance(rng, d: int, rank: int | None = None) -> np.ndarray:
    a = rng.normal(size=(d, rank or d))
    return a @ a.T / d


def test_identical_sets_are_at_distance_zero():
    x = np.random.default_rng(0).normal(size=(300, 20))
    assert fvd_from_features(x, x) == pytest.approx(0, abs=1e-8)
    mu, sigma = gaussian(x)
    assert frechet_distance(mu, sigma, mu, sigma) == pytest.approx(0, abs=1e-8)


def test_symmetric():
    rng = np.random.default_rng(1)
    a, b = rng.normal(size=(200, 16)), rng.normal(1.0, 2.0, size=(150, 16))
    assert fvd_from_features(a, b) == pytest.approx(fvd_from_features(b, a), rel=1e-9)
    assert kernel_distance(a, b) == pytest.approx(kernel_distance(b, a), rel=1e-9)


def test_closed_form_for_known_gaussians():
    rng = np.random.default_rng(2)
    d = 8
    mu1, mu2 = rng.normal(size=d), rng.normal(size=d)
    # Diagonal covariances: the distance is |mu1 - mu2|^2 + sum (s1 + s2 - 2 sqrt(s1 s2)) = ... + sum
    # (sqrt s1 - sqrt s2)^2.
    s1, s2 = rng.uniform(0.1, 3, d), rng.uniform(0.1, 3, d)
    expected = np.sum((mu1 - mu2) ** 2) + np.sum((np.sqrt(s1) - np.sqrt(s2)) ** 2)
    assert frechet_distance(mu1, np.diag(s1), mu2, np.diag(s2)) == pytest.approx(expected, rel=1e-10)
    # Commuting (same eigenvectors) full covariances: the same formula in their eigenbasis.
    q, _ = np.linalg.qr(rng.normal(size=(d, d)))
    full1, full2 = q @ np.diag(s1) @ q.T, q @ np.diag(s2) @ q.T
    assert frechet_distance(mu1, full1, mu2, full2) == pytest.approx(expected, rel=1e-9)
    # One-dimensional: (m1 - m2)^2 + (sd1 - sd2)^2.
    assert (frechet_distance(np.array([1.0]), np.array([[4.0]]), np.array([3.0]), np.array([[1.0]]))
            == pytest.approx(4 + 1))


def test_singular_and_ill_conditioned_covariances_stay_finite_and_right():
    rng = np.random.default_rng(3)
    d = 50
    s1, s2 = random_covariance(rng, d, rank=5), random_covariance(rng, d, rank=7)  # both singular
    value = frechet_distance(np.zeros(d), s1, np.zeros(d), s2)
    assert np.isfinite(value) and value > 0
    assert frechet_distance(np.zeros(d), s1, np.zeros(d), s1) == pytest.approx(0, abs=1e-8)
    # Fewer samples than dimensions (as with a small N on 400-d I3D features).
    a, b = rng.normal(size=(30, 100)), rng.normal(size=(30, 100))
    assert np.isfinite(fvd_from_features(a, b)) and fvd_from_features(a, a) == pytest.approx(0, abs=1e-7)
    # Against an independent computation (scipy-style sqrtm of S1 S2 via eigendecomposition) on
    # a well-posed case.
    w1, w2 = random_covariance(rng, 6), random_covariance(rng, 6)
    values = np.linalg.eigvals(w1 @ w2)
    expected = np.trace(w1) + np.trace(w2) - 2 * np.sqrt(values.real.clip(0)).sum()
    assert frechet_distance(np.zeros(6), w1, np.zeros(6), w2) == pytest.approx(expected, rel=1e-8)


def test_kvd_near_zero_for_one_distribution_and_positive_for_two():
    rng = np.random.default_rng(4)
    same = [kernel_distance(rng.normal(size=(400, 32)), rng.normal(size=(400, 32))) for _ in range(3)]
    different = kernel_distance(rng.normal(size=(400, 32)), rng.normal(0.5, 1.0, size=(400, 32)))
    assert max(abs(v) for v in same) < 0.01
    assert different > 20 * max(abs(v) for v in same) and different > 0.05


def test_kvd_is_unbiased():
    """The mean over many same-distribution draws approaches 0 (a biased estimate would sit at ~2/N above
    it)."""
    rng = np.random.default_rng(5)
    values = [kernel_distance(rng.normal(size=(20, 4)), rng.normal(size=(20, 4))) for _ in range(400)]
    x = rng.normal(size=(20, 4))
    biased_offset = 2 * np.mean((np.sum(x * x, 1) / 4 + 1) ** 3) / 20
    assert abs(np.mean(values)) < 0.2 * biased_offset
