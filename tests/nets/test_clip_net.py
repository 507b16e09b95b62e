"""genlab's small CLIP network: unit embeddings, CLIP's temperature, pooling over real tokens."""

from __future__ import annotations

import math

import pytest
import torch

from genlab.core.errors import GenlabError
from genlab.nets.clip import CLIP, CLIPConfig
from genlab.nets.text_encoder import TextEncoderConfig

pytestmark = pytest.mark.usefixtures("one_thread")


def tiny(pool: str = "mean", **kw) -> CLIP:
    torch.manual_seed(0)
    text = TextEncoderConfig(vocab_size=12, max_length=6, dim=16, num_layers=1, num_heads=2)
    return CLIP(CLIPConfig(text, width=8, image_dim=24, embed_dim=10, pool=pool, **kw)).eval()


def test_embeddings_are_unit_vectors_and_logits_are_scaled_cosines():
    net = tiny()
    images = torch.rand(5, 3, 32, 32) * 2 - 1
    ids = torch.randint(3, 12, (4, 6))
    mask = torch.ones(4, 6, dtype=torch.bool)
    img, txt = net.encode_image(images), net.encode_text(ids, mask)
    assert img.shape == (5, 10) and txt.shape == (4, 10)
    torch.testing.assert_close(img.norm(dim=-1), torch.ones(5))
    torch.testing.assert_close(txt.norm(dim=-1), torch.ones(4))
    logits = net(images, ids, mask)
    assert logits.shape == (5, 4)
    torch.testing.assert_close(logits, img @ txt.t() / 0.07)


def test_logit_scale_starts_at_one_over_007_and_is_clamped_at_100():
    net = tiny()
    assert net.logit_scale.item() == pytest.approx(math.log(1 / 0.07))
    assert net.scale().item() == pytest.approx(1 / 0.07)
    with torch.no_grad():
        net.logit_scale.fill_(10.0)
    assert net.scale().item() == pytest.approx(100.0)
    net.logit_scale.grad = None
    net.scale().backward()  # clamped: no gradient pushes it further
    assert net.logit_scale.grad.item() == 0.0


@pytest.mark.parametrize("pool", ["mean", "last"])
def test_padding_does_not_change_a_caption(pool):
    net = tiny(pool)
    ids = torch.tensor([[1, 5, 6, 7, 0, 0]])
    mask = ids != 0
    padded = ids.clone()
    padded[0, 4:] = 9  # garbage behind the mask
    torch.testing.assert_close(net.encode_text(ids, mask), net.encode_text(padded, mask))
    shorter = net.encode_text(ids[:, :4], mask[:, :4])
    torch.testing.assert_close(net.encode_text(ids, mask), shorter, atol=1e-5, rtol=1e-5)


def test_last_pooling_reads_the_last_real_token():
    net = tiny("last")
    ids = torch.tensor([[1, 5, 6, 0, 0, 0], [1, 5, 6, 7, 8, 0]])
    mask = ids != 0
    hidden = net.text_encoder(ids, mask)
    expected = torch.nn.functional.normalize(
        net.text_projection(torch.stack([hidden[0, 2], hidden[1, 4]])), dim=-1
    )
    torch.testing.assert_close(net.encode_text(ids, mask), expected)


def test_grey_and_other_sizes_are_fitted():
    net = tiny()
    grey = torch.rand(2, 1, 16, 16) * 2 - 1
    assert net.encode_image(grey).shape == (2, 10)
    with pytest.raises(GenlabError, match="3-channel"):
        net.encode_image(torch.rand(2, 2, 32, 32))


def test_config_round_trip_and_errors():
    cfg = tiny("last").config
    assert CLIPConfig.from_dict(cfg.to_dict()) == cfg
    assert cfg.to_dict()["text"]["dim"] == 16
    with pytest.raises(GenlabError, match="pooling"):
        CLIPConfig(cfg.text, pool="max")
    with pytest.raises(GenlabError, match="multiple of 8"):
        CLIPConfig(cfg.text, image_size=20)
    with pytest.raises(GenlabError, match="not a genlab CLIP config"):
        CLIPConfig.from_dict({"image_size": 32})
