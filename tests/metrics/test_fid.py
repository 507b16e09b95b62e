"""The Fréchet distance and feature statistics, checked against torchmetrics and closed forms."""

import numpy as np
import pytest
import torch
from torchmetrics.image.fid import _compute_fid

from genlab.core.errors import GenlabError
from genlab.metrics.fid import extractor_statistics, feature_statistics, frechet_distance


def random_features(n, d, seed, shift=0.0):
    rng = np.random.default_rng(seed)
    mixing = rng.normal(size=(d, d)) / np.sqrt(d)
    return rng.normal(size=(n, d)) @ mixing + shift


@pytest.mark.parametrize("d", [1, 8, 64])
@pytest.mark.parametrize("seed", [0, 1, 2])
def test_matches_torchmetrics_on_random_statistics(d, seed):
    mu1, s1 = feature_statistics(random_features(500, d, seed))
    mu2, s2 = feature_statistics(random_features(400, d, seed + 100, shift=0.3))
    ours = frechet_distance(mu1, s1, mu2, s2)
    ref = _compute_fid(*(torch.from_numpy(a) for a in (mu1, s1, mu2, s2)))
    assert ours > 0
    assert abs(ours - ref.item()) / ref.item() < 1e-6


def test_identical_sets_are_at_distance_zero():
    mu, sigma = feature_statistics(random_features(300, 32, 3))
    assert abs(frechet_distance(mu, sigma, mu, sigma)) < 1e-6


def test_one_dimensional_gaussians_have_the_closed_form():
    # W2^2 between N(m1, s1^2) and N(m2, s2^2) is (m1 - m2)^2 + (s1 - s2)^2
    got = frechet_distance(np.array([1.0]), np.array([[4.0]]), np.array([-0.5]), np.array([[0.25]]))
    assert got == pytest.approx(1.5**2 + 1.5**2, rel=1e-12)


def test_accepts_tensors_and_computes_in_float64():
    mu1, s1 = feature_statistics(random_features(200, 6, 4))
    mu2, s2 = feature_statistics(random_features(200, 6, 5))
    as_f32 = [torch.tensor(a, dtype=torch.float32) for a in (mu1, s1, mu2, s2)]
    got = frechet_distance(*as_f32)
    assert isinstance(got, float)
    assert got == pytest.approx(frechet_distance(mu1, s1, mu2, s2), rel=1e-5)


def test_singular_covariances_give_a_finite_distance():
    # fewer samples than dimensions: both covariances are rank deficient
    mu1, s1 = feature_statistics(random_features(10, 40, 6))
    mu2, s2 = feature_statistics(random_features(10, 40, 7))
    got = frechet_distance(mu1, s1, mu2, s2)
    assert np.isfinite(got) and got > 0


def test_invalid_statistics_raise_a_clear_error():
    with pytest.raises(GenlabError, match="imaginary part"):
        frechet_distance(np.zeros(2), np.diag([1.0, -1.0]), np.zeros(2), np.eye(2))
    with pytest.raises(GenlabError, match="mismatched statistics"):
        frechet_distance(np.zeros(3), np.eye(3), np.zeros(2), np.eye(2))
    with pytest.raises(GenlabError, match="N >= 2"):
        feature_statistics(np.zeros((1, 4)))


def test_feature_statistics_are_the_mean_and_unbiased_covariance():
    f = random_features(50, 5, 8)
    mu, sigma = feature_statistics(torch.from_numpy(f).float())
    assert mu.dtype == np.float64 and sigma.shape == (5, 5)
    np.testing.assert_allclose(mu, f.mean(0), atol=1e-6)
    centred = f - f.mean(0)
    np.testing.assert_allclose(sigma, centred.T @ centred / 49, atol=1e-5)


def test_extractor_statistics_run_any_feature_network_over_batches():
    torch.manual_seed(0)
    net = torch.nn.Sequential(torch.nn.Conv2d(1, 4, 3), torch.nn.AdaptiveAvgPool2d(2))
    images = torch.randn(30, 1, 8, 8)
    mu, sigma = extractor_statistics(net, images.split(7))
    with torch.no_grad():
        ref_mu, ref_sigma = feature_statistics(net(images).flatten(1))
    np.testing.assert_allclose(mu, ref_mu, atol=1e-6)
    np.testing.assert_allclose(sigma, ref_sigma, atol=1e-6)
    with pytest.raises(GenlabError, match="no images"):
        extractor_statistics(net, [])
