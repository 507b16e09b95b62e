"""The cascade: a base model's small samples, upsampled, one per caption, seeded."""

from __future__ import annotations

import pytest
import torch
import torch.nn.functional as F

from genlab.core.errors import GenlabError
from genlab.data.captions import CaptionTokenizer
from genlab.methods.diffusion.cascade import generate_cascade
from genlab.methods.diffusion.text_conditioned import DiffusionConfig, DiffusionModel
from genlab.methods.diffusion.upsampler import Upsampler, UpsamplerConfig
from genlab.nets.text_encoder import TextEncoderConfig
from genlab.nets.unet import UNetConfig

pytestmark = pytest.mark.usefixtures("one_thread")
CAPTIONS = ["a red square on the left", "a blue circle on the right", "a red circle"]


@torch.no_grad()
def speaking(model: torch.nn.Module) -> torch.nn.Module:
    """Zero-initialised layers made random, so that samples are not all alike."""
    for p in model.parameters():
        if not p.any():
            p.normal_(0.0, 0.05)
    return model.eval()


@pytest.fixture(scope="module")
def stages():
    """An untrained base model at 8x8 and upsampler 8 -> 16, each with its own vocabulary."""
    base_tok = CaptionTokenizer.from_captions(CAPTIONS)
    up_tok = CaptionTokenizer.from_captions(list(reversed(CAPTIONS)) + ["a green star"])

    def parts(tok, **unet):
        u = UNetConfig.preset("tiny", base_channels=16, num_heads=2, context_dim=16, **unet)
        return u, TextEncoderConfig(tok.vocab_size, tok.max_length, dim=16, num_layers=1)

    torch.manual_seed(0)
    unet, text = parts(base_tok)
    base = speaking(DiffusionModel(DiffusionConfig(unet, text, image_size=8, prediction="v")))
    unet, text = parts(up_tok, cond_channels=3)
    config = UpsamplerConfig(unet, text, image_size=16, low_res=8, prediction="v")
    up = speaking(Upsampler(config))
    return base, base_tok, up, up_tok


def schedulers(base, up, steps=2):
    out = []
    for model in (base, up):
        s = model.scheduler("ddim")
        s.set_timesteps(steps)
        out.append(s)
    return out


def test_cascade_draws_high_res_images_from_the_base_samples(stages):
    base, base_tok, up, up_tok = stages
    seen: list[torch.Tensor] = []
    hook = up.unet.conv_in.register_forward_hook(lambda m, a, o: seen.append(a[0]))
    try:
        images, low = generate_cascade(
            base, base_tok, up, up_tok, CAPTIONS, *schedulers(base, up), aug_level=0.0, seed=3
        )
    finally:
        hook.remove()
    assert images.shape == (3, 3, 16, 16) and low.shape == (3, 3, 8, 8)
    assert images.min() >= -1 and images.max() <= 1 and low.min() >= -1 and low.max() <= 1
    assert images.std() > 0 and not torch.allclose(images[0], images[1])
    # the upsampler read the base model's samples (at level 0, as they are), enlarged
    up_low = F.interpolate(low, size=(16, 16), mode="bilinear", align_corners=False)
    torch.testing.assert_close(seen[0][:, 3:6], up_low)


def test_cascade_follows_the_seed(stages):
    base, base_tok, up, up_tok = stages
    kw = {"base_guidance": 2.0, "up_guidance": 1.5, "aug_level": 0.1}
    a = generate_cascade(base, base_tok, up, up_tok, CAPTIONS, *schedulers(base, up), seed=1, **kw)
    b = generate_cascade(base, base_tok, up, up_tok, CAPTIONS, *schedulers(base, up), seed=1, **kw)
    c = generate_cascade(base, base_tok, up, up_tok, CAPTIONS, *schedulers(base, up), seed=2, **kw)
    assert torch.equal(a.images, b.images) and torch.equal(a.low_res, b.low_res)
    assert not torch.equal(a.images, c.images)


def test_cascade_refuses_stages_that_do_not_fit(stages):
    base, base_tok, up, up_tok = stages
    s = schedulers(base, up)
    with pytest.raises(GenlabError, match="never saw \\(green, star\\)"):
        generate_cascade(base, base_tok, up, up_tok, ["a green star"], *s)
    with pytest.raises(GenlabError, match="train the base with --size 8"):
        generate_cascade(up, up_tok, up, up_tok, CAPTIONS[:1], *s)
    with pytest.raises(GenlabError, match="no captions"):
        generate_cascade(base, base_tok, up, up_tok, [], *s)
