"""KID: the unbiased MMD^2 by hand, against torchmetrics, and in ``genlab metrics fid``."""

from __future__ import annotations

import itertools
import json

import pytest
import torch

from genlab.cli import main
from genlab.core.checkpoint import save_model_folder
from genlab.core.errors import GenlabError
from genlab.data.images import ShapesConfig, ShapesDataset, export_images, from_uint8
from genlab.metrics.features import KIND, FeatureNet, FeatureNetConfig, load_feature_net
from genlab.metrics.kid import KID, kid, mmd2_unbiased, polynomial_kernel
from references import require

tm_kid = require("torchmetrics.image.kid")

pytestmark = [
    pytest.mark.usefixtures("one_thread"),
    pytest.mark.filterwarnings("ignore:Metric `Kernel Inception Distance`"),  # its memory note
]


def gaussian(n: int, d: int, seed: int, shift: float = 0.0) -> torch.Tensor:
    return (
        torch.randn(n, d, generator=torch.Generator().manual_seed(seed), dtype=torch.float64)
        + shift
    )


def test_mmd2_is_the_unbiased_estimate_written_out():
    x, y = gaussian(5, 3, 0), gaussian(5, 3, 1, shift=0.5)
    k = lambda a, b: (a @ b / 3 + 1) ** 3  # noqa: E731
    m = 5
    within = sum(k(x[i], x[j]) + k(y[i], y[j]) for i, j in itertools.permutations(range(m), 2))
    across = sum(k(x[i], y[j]) for i in range(m) for j in range(m))
    expected = within / (m * (m - 1)) - 2 * across / m**2
    assert mmd2_unbiased(x, y).item() == pytest.approx(expected.item(), rel=1e-12)
    assert polynomial_kernel(x, y).shape == (5, 5)
    assert mmd2_unbiased(x, y).item() == pytest.approx(tm_kid.poly_mmd(x, y).item(), rel=1e-12)


@pytest.mark.parametrize("seed", [0, 7])
def test_matches_torchmetrics_with_the_same_subset_draws(seed):
    real, fake = gaussian(60, 16, 2), gaussian(50, 16, 3, shift=0.2)
    metric = tm_kid.KernelInceptionDistance(feature=torch.nn.Identity(), subsets=20, subset_size=30)
    metric.update(real, real=True)
    metric.update(fake, real=False)
    torch.manual_seed(seed)  # torchmetrics draws from the global generator: real, then fake
    mean, std = metric.compute()
    ours = kid(real, fake, subset_size=30, subsets=20, seed=seed)
    assert ours.mean == pytest.approx(mean.item(), rel=1e-10)
    assert ours.std == pytest.approx(std.item(), rel=1e-10)
    assert ours.mean > 0 and ours.std > 0


def test_unbiased_around_zero_for_one_distribution_and_positive_apart():
    same = [kid(gaussian(40, 8, s), gaussian(40, 8, s + 100), 20, 10).mean for s in range(20)]
    spread = torch.tensor(same).std().item()
    assert abs(sum(same) / len(same)) < spread  # no bias: as often below zero as above
    assert min(same) < 0 < max(same)
    assert kid(gaussian(40, 8, 0), gaussian(40, 8, 1, shift=1.0), 20, 10).mean > 10 * spread


def test_subsets_are_seeded_clamped_and_reported():
    a, b = gaussian(12, 4, 0), gaussian(9, 4, 1)
    score = kid(a, b, subset_size=100, subsets=3, seed=5)
    assert isinstance(score, KID) and score.subset_size == 9 and score.subsets == 3
    assert score == kid(a, b, subset_size=100, subsets=3, seed=5)
    assert score.mean != kid(a, b, subset_size=5, subsets=3, seed=6).mean
    assert score.to_dict() == {
        "kid": score.mean,
        "kid_std": score.std,
        "kid_subset_size": 9.0,
        "kid_subsets": 3.0,
    }
    assert kid(a.float().numpy(), b.float().numpy(), 4, 2).subset_size == 4  # arrays, float32
    with pytest.raises(GenlabError, match="one size"):
        kid(a, gaussian(9, 5, 1))
    with pytest.raises(GenlabError, match="at least 2"):
        kid(a[:1], b)
    with pytest.raises(GenlabError, match="at least one subset"):
        kid(a, b, subsets=0)


def test_fid_cli_reports_kid_with_genlab_features(tmp_path, capsys):
    torch.manual_seed(0)
    config = FeatureNetConfig(width=8, feature_dim=8)
    net = tmp_path / "net"
    save_model_folder(net, FeatureNet(config), KIND, config.to_dict())
    one = ShapesConfig(two_shape_fraction=0.0)
    samples, real = ShapesDataset(24, 32, 1, one), ShapesDataset(24, 32, 2, one)
    export_images(samples, tmp_path / "samples")
    export_images(real, tmp_path / "real")
    out = tmp_path / "fid.json"
    main(
        ["metrics", "fid", str(tmp_path / "samples"), "--ref", str(tmp_path / "real")]
        + ["--features", str(net), "--n", "24", "--device", "cpu", "--json", str(out)]
    )
    lines = capsys.readouterr().out.splitlines()
    assert lines[0].startswith("FID with genlab shapes features: ")
    assert lines[1].startswith("KID with genlab shapes features: ")
    assert "100 subsets of 24" in lines[1]
    figures = json.loads(out.read_text())
    loaded = load_feature_net(net)
    feats = [loaded.extract(from_uint8(d.pixels)) for d in (samples, real)]
    expected = kid(*feats, subset_size=1000, subsets=100, seed=0)
    assert figures["kid"] == pytest.approx(expected.mean, rel=1e-9)
    assert figures["kid_std"] == pytest.approx(expected.std, rel=1e-9)
    assert figures["kid_metric"] == "KID with genlab shapes features"
    assert figures["metric"] == "FID with genlab shapes features" and figures["fid"] > 0
