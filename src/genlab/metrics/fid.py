"""The Fréchet distance between feature distributions, the measure behind FID.

Heusel et al., 2017 ("GANs Trained by a Two Time-Scale Update Rule Converge to a Local Nash
Equilibrium") compare generated and real images by fitting a Gaussian to each set's features
and taking the Fréchet (2-Wasserstein) distance between the two Gaussians:

    d^2 = |mu1 - mu2|^2 + Tr(sigma1 + sigma2 - 2 (sigma1 sigma2)^(1/2)).

FID proper uses Inception-v3 features; here the extractor is any callable from images to
feature vectors, so that genlab's datasets can be measured offline with a small network trained
on them. A number computed with other features is a different figure: name it for its features
("FID with genlab shapes features"), since it is not comparable with Inception-based FID.

The computation is in float64 with the guard of the reference implementation (pytorch-fid): if
the matrix square root of the product is not finite (a singular product, e.g. fewer samples
than feature dimensions), a small multiple of the identity is added to both covariances.
"""

from __future__ import annotations

from collections.abc import Callable, Iterable

import numpy as np
import scipy.linalg
import torch
from torch import Tensor

from genlab.core.errors import GenlabError


def _float64(x: Tensor | np.ndarray) -> np.ndarray:
    if isinstance(x, Tensor):
        x = x.detach().cpu().double().numpy()
    return np.asarray(x, dtype=np.float64)


def feature_statistics(features: Tensor | np.ndarray) -> tuple[np.ndarray, np.ndarray]:
    """Mean (D,) and unbiased covariance (D, D) of features (N, D), in float64."""
    f = _float64(features)
    if f.ndim != 2 or f.shape[0] < 2:
        raise GenlabError(
            f"feature statistics need a (N, D) array with N >= 2, got shape {f.shape}"
        )
    return f.mean(axis=0), np.cov(f, rowvar=False).reshape(f.shape[1], f.shape[1])


@torch.inference_mode()
def extractor_statistics(
    extractor: Callable[[Tensor], Tensor], batches: Iterable[Tensor]
) -> tuple[np.ndarray, np.ndarray]:
    """Feature statistics of all images in ``batches`` under any ``extractor`` (images ->
    features (B, ...), flattened per image)."""
    feats = [extractor(batch).flatten(1).double().cpu() for batch in batches]
    if not feats:
        raise GenlabError("no images to compute feature statistics from")
    return feature_statistics(torch.cat(feats))


def frechet_distance(
    mu1: Tensor | np.ndarray,
    sigma1: Tensor | np.ndarray,
    mu2: Tensor | np.ndarray,
    sigma2: Tensor | np.ndarray,
    eps: float = 1e-6,
) -> float:
    """The squared Fréchet distance between N(mu1, sigma1) and N(mu2, sigma2)."""
    mu1, mu2 = np.atleast_1d(_float64(mu1)), np.atleast_1d(_float64(mu2))
    sigma1, sigma2 = np.atleast_2d(_float64(sigma1)), np.atleast_2d(_float64(sigma2))
    d = mu1.shape[0]
    if mu1.shape != (d,) or mu2.shape != (d,) or sigma1.shape != (d, d) or sigma2.shape != (d, d):
        raise GenlabError(
            f"mismatched statistics: means {mu1.shape} and {mu2.shape}, covariances "
            f"{sigma1.shape} and {sigma2.shape}; both sets need features of the same size"
        )
    diff = mu1 - mu2
    covmean = scipy.linalg.sqrtm(sigma1 @ sigma2)
    if not np.isfinite(covmean).all():
        offset = np.eye(d) * eps
        covmean = scipy.linalg.sqrtm((sigma1 + offset) @ (sigma2 + offset))
    if np.iscomplexobj(covmean):
        imag = np.abs(np.diagonal(covmean).imag).max()
        if imag > 1e-3:
            raise GenlabError(
                f"the square root of the covariance product has an imaginary part of {imag:.3g}; "
                "the covariances are not valid (symmetric, positive semi-definite) statistics"
            )
        covmean = covmean.real
    return float(diff @ diff + np.trace(sigma1) + np.trace(sigma2) - 2 * np.trace(covmean))
