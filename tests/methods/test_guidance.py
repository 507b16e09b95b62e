"""Classifier-free guidance: the combination rule, condition dropout and the batched guided pass."""

import pytest
import torch

from genlab.core.errors import GenlabError
from genlab.methods.diffusion.guidance import cfg_combine, condition_dropout, guided_model_output
from genlab.methods.diffusion.samplers import DDIMScheduler, sample_loop
from genlab.nets.unet import UNet, UNetConfig


def make(**overrides) -> UNet:
    torch.manual_seed(0)
    model = UNet(UNetConfig.preset("tiny", **overrides)).eval()
    with torch.no_grad():
        for p in model.parameters():
            if not p.any():  # the zero-initialised output layers: as if trained
                p.normal_(0.0, 0.05)
    return model


def test_cfg_combine_interpolates_and_extrapolates():
    uncond, cond = torch.tensor([1.0, 2.0]), torch.tensor([3.0, 1.0])
    torch.testing.assert_close(cfg_combine(uncond, cond, 0.0), uncond)
    torch.testing.assert_close(cfg_combine(uncond, cond, 1.0), cond)
    torch.testing.assert_close(cfg_combine(uncond, cond, 3.0), torch.tensor([7.0, -1.0]))


def test_condition_dropout_keeps_its_rate_and_its_seed():
    g = torch.Generator().manual_seed(0)
    drop = condition_dropout(20_000, 0.1, generator=g)
    assert drop.dtype == torch.bool and drop.shape == (20_000,)
    assert drop.float().mean().item() == pytest.approx(0.1, abs=0.01)
    again = condition_dropout(20_000, 0.1, generator=torch.Generator().manual_seed(0))
    assert torch.equal(drop, again)
    assert not condition_dropout(100, 0.0).any()
    assert condition_dropout(100, 1.0).all()
    with pytest.raises(GenlabError, match="condition dropout"):
        condition_dropout(4, 1.5)


@pytest.mark.parametrize("kind", ["class", "context"])
@pytest.mark.parametrize("scale", [0.0, 1.0, 2.5, 7.5])
@torch.no_grad()
def test_guided_output_is_the_combination_of_separate_passes(kind, scale):
    g = torch.Generator().manual_seed(1)
    x = torch.randn(3, 3, 16, 16, generator=g)
    if kind == "class":
        model = make(num_classes=4)
        cond = {"class_labels": torch.tensor([0, 2, 3])}
    else:
        model = make(context_dim=8)
        mask = torch.ones(3, 5, dtype=torch.bool)
        mask[1, 2:] = False
        cond = {"context": torch.randn(3, 5, 8, generator=g), "context_mask": mask}
    t = torch.tensor(400)
    expected = cfg_combine(model(x, t), model(x, t, **cond), scale)
    got = guided_model_output(model, x, t, cond, scale)
    # the batched pass differs from the separate ones by float rounding, amplified by the scale
    torch.testing.assert_close(got, expected, rtol=0, atol=1e-5 * (1 + scale))


@torch.no_grad()
def test_guidance_moves_samples_with_the_scale():
    """A guided DDIM loop runs end to end; the scale changes where the samples land."""
    model = make(num_classes=2)
    scheduler = DDIMScheduler("cosine")
    scheduler.set_timesteps(5)
    noise = torch.randn(2, 3, 16, 16, generator=torch.Generator().manual_seed(2))
    cond = {"class_labels": torch.tensor([0, 1])}
    samples = {
        s: sample_loop(
            lambda x, t, s=s: guided_model_output(model, x, t, cond, s), scheduler, noise
        )
        for s in (1.0, 4.0)
    }
    assert samples[1.0].shape == noise.shape
    assert not torch.allclose(samples[1.0], samples[4.0], atol=1e-4)
