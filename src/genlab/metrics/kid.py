"""Kernel Inception Distance (KID): an unbiased distance between two sets of features.

Bińkowski et al., 2018 ("Demystifying MMD GANs") measure generated images by the squared
maximum mean discrepancy (MMD) between their features and real ones, under the cubic
polynomial kernel

    k(x, y) = (x . y / d + 1)^3        (d: the feature size).

Its unbiased estimate on m features x_i of one set and m features y_j of the other,

    MMD^2 = sum_{i != j} k(x_i, x_j) / (m (m - 1)) + sum_{i != j} k(y_i, y_j) / (m (m - 1))
            - 2 sum_{i, j} k(x_i, y_j) / m^2,

has expectation zero when both sets come from one distribution, whatever m: unlike FID, whose
estimate is biased upwards at small n (so FIDs at different n are not comparable), KID's mean
does not depend on the number of images, and a small negative value is noise around zero. The
estimate is averaged over ``subsets`` random subsets of ``subset_size`` features of each set
(the paper's 100 of 1,000), which bounds the cost (the kernel matrices are m x m) and gives a
spread: the reported std is that of the subset estimates (population std, as torch-fidelity and
torchmetrics report it), a measure of the estimate's noise, not a confidence interval of it.

Like FID, KID is named for its features: "KID with Inception-v3 features" is the published
figure; "KID with genlab shapes features" is another one.
"""

from __future__ import annotations

from dataclasses import asdict, dataclass

import numpy as np
import torch
from torch import Tensor

from genlab.core.errors import GenlabError

SUBSETS = 100  # Bińkowski et al.'s number of subsets
SUBSET_SIZE = 1000  # and their size


def polynomial_kernel(x: Tensor, y: Tensor) -> Tensor:
    """k(x_i, y_j) = (x_i . y_j / d + 1)^3 for features x (n, d) and y (m, d): (n, m)."""
    return (x @ y.T / x.shape[1] + 1) ** 3


def mmd2_unbiased(x: Tensor, y: Tensor) -> Tensor:
    """The unbiased MMD^2 between equally many features x (m, d) and y (m, d) under the cubic
    polynomial kernel: the diagonals k(x_i, x_i) and k(y_i, y_i) are left out of the within-set
    means, which is what removes the bias."""
    m = x.shape[0]
    if y.shape[0] != m or m < 2:
        raise GenlabError(
            f"the unbiased MMD needs two sets of equally many (>= 2) features, got {x.shape[0]} "
            f"and {y.shape[0]}"
        )
    k_xx, k_yy, k_xy = polynomial_kernel(x, x), polynomial_kernel(y, y), polynomial_kernel(x, y)
    within = (k_xx.sum() - k_xx.diagonal().sum() + k_yy.sum() - k_yy.diagonal().sum()) / (
        m * (m - 1)
    )
    return within - 2 * k_xy.sum() / m**2


@dataclass
class KID:
    """The mean and (population) std of the subset estimates, and how they were drawn."""

    mean: float
    std: float
    subset_size: int
    subsets: int

    def to_dict(self, prefix: str = "kid") -> dict[str, float]:
        """``{"kid": mean, "kid_std": ..., "kid_subset_size": ..., "kid_subsets": ...}``."""
        return {
            (prefix if k == "mean" else f"{prefix}_{k}"): float(v) for k, v in asdict(self).items()
        }


def _float64(x: Tensor | np.ndarray) -> Tensor:
    t = torch.as_tensor(x).detach().cpu().double()
    if t.dim() != 2:
        raise GenlabError(f"KID reads features (N, D), got shape {tuple(t.shape)}")
    return t


def kid(
    features: Tensor | np.ndarray,
    reference: Tensor | np.ndarray,
    subset_size: int = SUBSET_SIZE,
    subsets: int = SUBSETS,
    seed: int = 0,
) -> KID:
    """KID between ``features`` (N, D) and ``reference`` (M, D), in float64.

    Each of ``subsets`` estimates draws ``subset_size`` rows of ``features``, then of
    ``reference``, without replacement (``torch.randperm`` on a generator seeded with ``seed``:
    the same seed gives the same figure). A ``subset_size`` above the smaller set's size is
    lowered to it (the returned ``subset_size`` says which was used)."""
    x, y = _float64(features), _float64(reference)
    if x.shape[1] != y.shape[1]:
        raise GenlabError(
            f"KID compares features of one size, got {x.shape[1]} and {y.shape[1]} dimensions"
        )
    if subsets < 1:
        raise GenlabError(f"KID needs at least one subset, got {subsets}")
    m = min(subset_size, x.shape[0], y.shape[0])
    if m < 2:
        raise GenlabError(
            f"KID needs at least 2 features on each side, got {x.shape[0]} and {y.shape[0]}"
        )
    g = torch.Generator().manual_seed(seed)
    estimates = []
    for _ in range(subsets):
        xs = x[torch.randperm(x.shape[0], generator=g)[:m]]
        ys = y[torch.randperm(y.shape[0], generator=g)[:m]]
        estimates.append(mmd2_unbiased(xs, ys))
    values = torch.stack(estimates)
    return KID(float(values.mean()), float(values.std(unbiased=False)), m, subsets)
