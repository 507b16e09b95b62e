"""The UNet's image condition (``cond_channels``, ``cond_image``) and ``extra_embedding``: a UNet
without them is the UNet it was, old configs load, and each reaches the output."""

from __future__ import annotations

import json

import pytest
import torch

from genlab.core.errors import GenlabError
from genlab.nets.unet import UNet, UNetConfig

pytestmark = pytest.mark.usefixtures("one_thread")
CTX = 8


def config(**overrides) -> UNetConfig:
    return UNetConfig.preset("tiny", base_channels=16, num_heads=2, context_dim=CTX, **overrides)


def randomized(cfg: UNetConfig, seed: int = 0) -> UNet:
    """A UNet whose zero-initialised output layers are random, so every input shows."""
    torch.manual_seed(seed)
    model = UNet(cfg).eval()
    with torch.no_grad():
        for p in model.parameters():
            if not p.any():
                p.normal_(0.0, 0.05)
    return model


def inputs(B: int = 2, size: int = 16):
    g = torch.Generator().manual_seed(1)
    x = torch.randn(B, 3, size, size, generator=g)
    t = torch.randint(0, 1000, (B,), generator=g)
    context = torch.randn(B, 5, CTX, generator=g)
    return x, t, context


def test_no_cond_channels_is_the_unet_it_was():
    """cond_channels=0 is the default: same parameters, same first layer (3 image + 2
    coordinate channels), the same weights from the same seed."""
    plain, explicit = UNetConfig.preset("tiny"), UNetConfig.preset("tiny", cond_channels=0)
    assert plain == explicit and plain.cond_channels == 0
    torch.manual_seed(0)
    a = UNet(plain)
    torch.manual_seed(0)
    b = UNet(explicit)
    assert a.conv_in.weight.shape == (32, 5, 3, 3)
    sa, sb = a.state_dict(), b.state_dict()
    assert list(sa) == list(sb) and all(torch.equal(sa[k], sb[k]) for k in sa)


def test_old_config_without_the_field_loads_and_round_trips():
    old = UNetConfig(context_dim=CTX).to_dict()
    del old["cond_channels"]
    assert UNetConfig.from_dict(old).cond_channels == 0
    cfg = config(cond_channels=3)
    back = UNetConfig.from_dict(json.loads(json.dumps(cfg.to_dict())))
    assert back == cfg and back.cond_channels == 3
    assert UNet(back).conv_in.weight.shape == (16, 3 + 3 + 2, 3, 3)
    with pytest.raises(GenlabError, match="cond_channels must be 0"):
        config(cond_channels=-1)


@torch.no_grad()
def test_cond_image_goes_after_the_image_and_before_the_coordinates():
    """A conditioned UNet whose first-layer weights on the condition are zero, the others
    copied from a plain UNet, computes exactly what the plain UNet computes."""
    plain = randomized(config())
    cond = randomized(config(cond_channels=3), seed=1)
    state = plain.state_dict()
    w = state["conv_in.weight"]  # (out, 3 image + 2 coordinates, 3, 3)
    zeros = torch.zeros(w.shape[0], 3, *w.shape[2:])
    state["conv_in.weight"] = torch.cat([w[:, :3], zeros, w[:, 3:]], dim=1)
    cond.load_state_dict(state)
    x, t, context = inputs()
    image = torch.randn(2, 3, 16, 16)
    expected = plain(x, t, context=context)
    torch.testing.assert_close(cond(x, t, context=context, cond_image=image), expected)


@torch.no_grad()
def test_cond_image_and_extra_embedding_change_the_output_and_are_never_dropped():
    model = randomized(config(cond_channels=3))
    x, t, context = inputs()
    a, b = torch.randn(2, 3, 16, 16), torch.randn(2, 3, 16, 16)
    y = model(x, t, context=context, cond_image=a)
    assert not torch.allclose(y, model(x, t, context=context, cond_image=b), atol=1e-5)
    zero = torch.zeros(2, model.config.time_embed_dim)
    torch.testing.assert_close(model(x, t, context=context, cond_image=a, extra_embedding=zero), y)
    extra = torch.randn(2, model.config.time_embed_dim)
    moved = model(x, t, context=context, cond_image=a, extra_embedding=extra)
    assert not torch.allclose(y, moved, atol=1e-5)
    # the null caption (classifier-free guidance) keeps the image and the embedding
    drop = torch.ones(2, dtype=torch.bool)
    nulls = [
        model(x, t, context=context, cond_image=img, extra_embedding=e, drop_cond=drop)
        for img, e in ((a, zero), (b, zero), (a, extra))
    ]
    assert not torch.allclose(nulls[0], nulls[1], atol=1e-5)
    assert not torch.allclose(nulls[0], nulls[2], atol=1e-5)


def test_missing_extra_or_misshapen_conditions_are_one_line_errors():
    x, t, context = inputs()
    with pytest.raises(GenlabError, match="reads a 3-channel cond_image"):
        UNet(config(cond_channels=3))(x, t, context=context)
    with pytest.raises(GenlabError, match="cond_channels=0"):
        UNet(config())(x, t, context=context, cond_image=torch.zeros(2, 3, 16, 16))
    with pytest.raises(GenlabError, match=r"expected \(2, 3, 16, 16\)"):
        UNet(config(cond_channels=3))(x, t, context=context, cond_image=torch.zeros(2, 3, 8, 8))
    with pytest.raises(GenlabError, match="extra_embedding has shape"):
        UNet(config())(x, t, context=context, extra_embedding=torch.zeros(2, 5))
