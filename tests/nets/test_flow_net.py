"""Glow's network: every layer and the whole flow invert exactly, and their log-determinants
equal the brute-force log|det| of the Jacobian."""

from __future__ import annotations

import pytest
import torch
from torch import Tensor, nn
from torch.autograd.functional import jacobian

from genlab.core.errors import GenlabError
from genlab.nets.flow import (
    ActNorm,
    AffineCoupling,
    FlowConfig,
    FlowStep,
    Glow,
    InvConv1x1,
    squeeze,
    unsqueeze,
)

pytestmark = pytest.mark.usefixtures("one_thread")


def jitter(module: nn.Module, scale: float = 0.1) -> None:
    """Move every weight off its initial value (the couplings start as the identity)."""
    with torch.no_grad():
        for p in module.parameters():
            p.add_(scale * torch.randn_like(p))


def brute_logdet(fn, x: Tensor) -> Tensor:
    """log|det| of the Jacobian of ``fn`` (one image -> same number of outputs) at ``x``."""
    flat = lambda v: fn(v.reshape(x.shape)).reshape(-1)  # noqa: E731
    jac = jacobian(flat, x.reshape(-1))
    return torch.linalg.slogdet(jac).logabsdet


def test_squeeze_moves_each_2x2_patch_into_channels() -> None:
    x = torch.arange(2 * 3 * 4 * 6, dtype=torch.float32).reshape(2, 3, 4, 6)
    y = squeeze(x)
    assert y.shape == (2, 12, 2, 3)
    for c, i, j, h, w in [(0, 0, 0, 0, 0), (1, 0, 1, 1, 2), (2, 1, 0, 0, 1), (2, 1, 1, 1, 0)]:
        assert y[1, 4 * c + 2 * i + j, h, w] == x[1, c, 2 * h + i, 2 * w + j]
    assert torch.equal(unsqueeze(y), x)
    one = x[:1].double()
    assert brute_logdet(squeeze, one).abs() < 1e-12  # a permutation


def test_actnorm_initialises_on_the_first_training_batch_only() -> None:
    torch.manual_seed(0)
    norm = ActNorm(3)
    x = 3 + 2 * torch.randn(8, 3, 4, 4)
    norm.eval()
    y, logdet = norm(x)
    assert torch.equal(y, x) and not norm.initialized and torch.equal(logdet, torch.zeros(8))
    norm.train()
    y, logdet = norm(x)
    assert norm.initialized
    assert torch.allclose(y.mean((0, 2, 3)), torch.zeros(3), atol=1e-5)
    assert torch.allclose(y.std((0, 2, 3), unbiased=False), torch.ones(3), atol=1e-4)
    assert torch.allclose(logdet, 16 * norm.log_scale.sum().expand(8))
    before = norm.state_dict()
    norm(torch.randn(8, 3, 4, 4))  # a second batch changes nothing
    assert all(torch.equal(before[k], v) for k, v in norm.state_dict().items())
    assert "initialized" in before


def check_layer(layer: nn.Module, x: Tensor, *cond: Tensor) -> None:
    """Round trip in float32 within 1e-4, log-determinant against the Jacobian in float64."""
    y, logdet = layer(x, *cond)
    assert y.shape == x.shape and logdet.shape == (x.shape[0],)
    assert (layer.inverse(y, *cond) - x).abs().max() < 1e-4
    layer64 = layer.double()
    for row in range(x.shape[0]):
        one = x[row : row + 1].double()
        args = [c[row : row + 1].double() for c in cond]
        expected = brute_logdet(lambda v, args=args: layer64(v, *args)[0], one)
        assert torch.allclose(layer64(one, *args)[1], expected[None], atol=1e-9)
    layer.float()


def test_actnorm_inverts_and_its_logdet_is_exact() -> None:
    torch.manual_seed(0)
    norm = ActNorm(2)
    norm(torch.randn(16, 2, 4, 4) * 3 + 1)
    assert norm.log_scale.abs().min() > 0.5  # initialised away from the identity
    check_layer(norm.eval(), torch.randn(2, 2, 4, 4))


def test_invconv_starts_as_a_rotation_and_its_logdet_is_exact() -> None:
    torch.manual_seed(0)
    conv = InvConv1x1(4)
    w = conv.weight()
    assert torch.allclose(w @ w.T, torch.eye(4), atol=1e-5)
    assert conv.log_s.sum().abs() < 1e-5
    jitter(conv, 0.3)
    assert conv(torch.randn(1, 4, 2, 2))[1].abs().item() > 0.1
    check_layer(conv, torch.randn(2, 4, 2, 2))


def test_coupling_starts_as_the_identity() -> None:
    torch.manual_seed(0)
    coupling = AffineCoupling(4, 8, cond_dim=3)
    x = torch.randn(2, 4, 4, 4)
    y, logdet = coupling(x, torch.randn(2, 3))
    assert torch.equal(y, x) and torch.equal(logdet, torch.zeros(2))


@pytest.mark.parametrize("cond_dim", [0, 3])
def test_coupling_inverts_and_its_logdet_is_exact(cond_dim: int) -> None:
    torch.manual_seed(0)
    coupling = AffineCoupling(4, 8, cond_dim)
    jitter(coupling, 0.3)
    x = torch.randn(2, 4, 2, 2)
    cond = (torch.randn(2, 3),) if cond_dim else ()
    y, logdet = coupling(x, *cond)
    assert torch.equal(y[:, :2], x[:, :2]) and not torch.allclose(y[:, 2:], x[:, 2:])
    assert logdet.abs().min() > 1e-3
    check_layer(coupling, x, *cond)


def test_flow_step_inverts_and_its_logdet_is_exact() -> None:
    torch.manual_seed(0)
    step = FlowStep(4, 8, cond_dim=3)
    step(torch.randn(8, 4, 2, 2), torch.randn(8, 3))  # actnorm initialisation
    jitter(step)
    check_layer(step.eval(), torch.randn(2, 4, 2, 2), torch.randn(2, 3))


TINY = FlowConfig(
    image_channels=2,
    image_size=4,
    num_scales=2,
    steps_per_scale=2,
    hidden_channels=8,
    cond_vocab=6,
    cond_dim=4,
)


def trained_like(config: FlowConfig) -> Glow:
    """A Glow with initialised actnorms and every weight moved off its start (not so far that
    its latents grow to hundreds, where float32 loses the 1e-4 of a round trip)."""
    torch.manual_seed(0)
    glow = Glow(config)
    glow(torch.randn(16, config.image_channels, config.image_size, config.image_size))
    jitter(glow, 0.03)
    return glow.eval()


def test_latent_shapes_cover_the_image() -> None:
    glow = Glow(FlowConfig(image_channels=3, image_size=16, num_scales=3, steps_per_scale=1))
    assert glow.z_shapes() == [(6, 8, 8), (12, 4, 4), (48, 2, 2)]
    zs, logdet = glow(torch.randn(2, 3, 16, 16))
    assert [tuple(z.shape[1:]) for z in zs] == glow.z_shapes()
    assert sum(z[0].numel() for z in zs) == 3 * 16 * 16 == glow.config.dims
    assert logdet.shape == (2,)


def test_glow_inverts_within_float32_precision() -> None:
    config = FlowConfig(image_channels=3, image_size=8, num_scales=2, steps_per_scale=3)
    glow = trained_like(config)
    x = torch.rand(4, 3, 8, 8) * 2 - 1
    zs, _ = glow(x)
    assert (glow.inverse(zs) - x).abs().max() < 1e-4


def test_glow_logdet_equals_the_jacobian_logdet() -> None:
    glow = trained_like(TINY).double()
    x = torch.randn(2, 2, 4, 4, dtype=torch.float64)
    captions = torch.tensor([[1, 3, 4, 0], [1, 5, 0, 0]])
    zs, logdet = glow(x, captions)
    assert logdet.abs().min() > 0.1
    for row in range(2):
        cap = captions[row : row + 1]
        flat = lambda v, cap=cap: torch.cat([z.flatten(1) for z in glow(v, cap)[0]], 1)  # noqa: E731
        expected = brute_logdet(flat, x[row : row + 1])
        assert torch.allclose(logdet[row], expected, atol=1e-8)
    assert (glow.inverse(zs, captions) - x).abs().max() < 1e-10


def test_captions_change_the_map_and_none_is_no_caption() -> None:
    glow = trained_like(TINY)
    x = torch.randn(2, 2, 4, 4)
    a = glow(x, torch.tensor([[1, 3], [1, 3]]))[1]
    b = glow(x, torch.tensor([[1, 4], [1, 4]]))[1]
    assert not torch.allclose(a, b)
    assert torch.equal(glow(x, None)[1], glow(x, torch.zeros(2, 5, dtype=torch.long))[1])
    unconditional = Glow(FlowConfig(image_channels=2, image_size=4, num_scales=1))
    assert unconditional.caption_bag is None
    assert torch.equal(unconditional(x, None)[1], unconditional(x, torch.ones(2, 3).long())[1])


def test_config_round_trip_and_checks() -> None:
    assert FlowConfig.from_dict(TINY.to_dict()) == TINY
    with pytest.raises(GenlabError, match="multiple of 8"):
        FlowConfig(image_size=12, num_scales=3)
    with pytest.raises(GenlabError, match="steps_per_scale=0"):
        FlowConfig(steps_per_scale=0)
    with pytest.raises(GenlabError, match="unknown flow setting 'depth'"):
        FlowConfig.from_dict({"depth": 3})
    with pytest.raises(GenlabError, match=r"shape \(2, 4, 4\)"):
        Glow(TINY)(torch.randn(1, 3, 4, 4))
