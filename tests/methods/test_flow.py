"""Glow by maximum likelihood: bits per dimension by hand, training, exact inverses after
training, sampling, conditioning and the model folder."""

from __future__ import annotations

import math

import pytest
import torch
from torch import Tensor

from genlab.core.errors import GenlabError
from genlab.core.registry import load, save
from genlab.data.captions import CaptionTokenizer
from genlab.data.images import ShapesDataset, from_uint8, to_uint8
from genlab.methods.flow.flow import (
    BIN,
    KIND,
    FlowLoss,
    bits_per_dim,
    dequantize,
    sample,
)
from genlab.nets.flow import ActNorm, FlowConfig, Glow

pytestmark = pytest.mark.usefixtures("one_thread")

CAPTIONS = ["a small red circle on the left", "a large blue star at the top"]


def tiny(cond_vocab: int = 0) -> FlowConfig:
    return FlowConfig(
        image_channels=3,
        image_size=16,
        num_scales=2,
        steps_per_scale=2,
        hidden_channels=16,
        cond_vocab=cond_vocab,
        cond_dim=8,
    )


def shapes(n: int = 8, size: int = 16) -> Tensor:
    return from_uint8(ShapesDataset(n, size, seed=0).pixels)


def actnorms(model: Glow) -> list[ActNorm]:
    return [m for m in model.modules() if isinstance(m, ActNorm)]


def train(model: Glow, images: Tensor, captions: Tensor | None, steps: int) -> list[float]:
    torch.manual_seed(1)
    model.train()
    opt = torch.optim.Adam(model.parameters(), lr=3e-3)
    losses = []
    for _ in range(steps):
        loss, metrics = FlowLoss()(model, (images, captions))
        assert torch.equal(metrics["bpd"], loss.detach())
        opt.zero_grad()
        loss.backward()
        opt.step()
        losses.append(loss.item())
    return losses


def test_dequantisation_stays_in_each_pixels_bin() -> None:
    images = shapes(4)
    x = dequantize(images, torch.Generator().manual_seed(0))
    offset = (x - images) / BIN
    assert offset.min() >= 0 and offset.max() < 1 and offset.std() > 0.25
    assert torch.equal(to_uint8(x - BIN / 2), to_uint8(images))


def test_a_fresh_flow_gives_the_gaussian_bits_per_dim() -> None:
    """At initialisation every actnorm and coupling is the identity and every 1x1 convolution a
    rotation, so z is x rotated: bpd = (|x|^2 / 2 + D log(2 pi) / 2 + D log 127.5) / (D ln 2)
    for the dequantised x."""
    torch.manual_seed(0)
    model = Glow(tiny()).eval()
    images = shapes(3)
    bpd = bits_per_dim(model, images, None, torch.Generator().manual_seed(5))
    noise = torch.rand(images.shape, generator=torch.Generator().manual_seed(5))
    x = (images + noise / 127.5).double()
    d = 3 * 16 * 16
    nll = 0.5 * x.pow(2).flatten(1).sum(1) + 0.5 * d * math.log(2 * math.pi)
    expected = (nll + d * math.log(127.5)) / (d * math.log(2))
    assert bpd.shape == (3,)
    assert torch.allclose(bpd.double(), expected, atol=1e-5)
    assert not any(norm.initialized for norm in actnorms(model))


def test_the_loss_is_the_mean_bits_per_dim_of_its_batch() -> None:
    torch.manual_seed(0)
    model = Glow(tiny())
    images = shapes(4)
    train(model, images, None, 2)  # initialised and moved
    torch.manual_seed(7)
    loss, _ = FlowLoss()(model.eval(), (images, None))
    per_image = bits_per_dim(model, images, None, torch.Generator().manual_seed(7))
    assert torch.allclose(loss, per_image.mean(), atol=1e-5)
    assert per_image.std() > 0
    one = bits_per_dim(model, images[2:3], None, torch.Generator().manual_seed(3))
    again = bits_per_dim(model, images[2:3], None, torch.Generator().manual_seed(3))
    assert torch.equal(one, again)


def test_training_lowers_the_loss_and_keeps_the_flow_invertible() -> None:
    torch.manual_seed(0)
    model = Glow(tiny())
    images = shapes(8)
    losses = train(model, images, None, 30)
    assert all(norm.initialized for norm in actnorms(model))
    assert sum(losses[-5:]) / 5 < losses[0] - 0.5, losses
    model.eval()
    x = dequantize(images, torch.Generator().manual_seed(0))
    zs, _ = model(x)
    assert (model.inverse(zs) - x).abs().max() < 1e-4


def test_samples_have_the_image_shape_and_repeat_with_the_generator() -> None:
    torch.manual_seed(0)
    model = Glow(tiny())
    train(model, shapes(8), None, 3)
    model.eval()
    a = sample(model, 5, None, torch.Generator().manual_seed(0))
    b = sample(model, 5, None, torch.Generator().manual_seed(0))
    c = sample(model, 5, None, torch.Generator().manual_seed(1))
    assert a.shape == (5, 3, 16, 16) and torch.equal(a, b) and not torch.equal(a, c)
    assert a.min() >= -1 and a.max() <= 1
    hot = sample(model, 5, None, torch.Generator().manual_seed(0), temperature=1.0)
    assert (hot + 1).std() > (a + 1).std()
    with pytest.raises(GenlabError, match="temperature"):
        sample(model, 1, None, torch.Generator(), temperature=-1)


def test_captions_change_the_samples_for_the_same_noise() -> None:
    tokenizer = CaptionTokenizer.from_captions(CAPTIONS)
    ids, _ = tokenizer.encode(CAPTIONS)
    torch.manual_seed(0)
    model = Glow(tiny(tokenizer.vocab_size))
    images = shapes(2)
    train(model, images, ids, 5)
    model.eval()
    gen = lambda: torch.Generator().manual_seed(0)  # noqa: E731
    red = sample(model, 2, ids[[0, 0]], gen())
    blue = sample(model, 2, ids[[1, 1]], gen())
    assert not torch.allclose(red, blue, atol=1e-3)
    assert torch.equal(red, sample(model, 2, ids[[0, 0]], gen()))
    assert sample(model, 2, None, gen()).shape == red.shape  # "no caption"
    with pytest.raises(GenlabError, match="3 captions for 2 images"):
        sample(model, 2, ids[[0, 0, 1]], gen())


def test_save_and_load_keep_outputs_and_actnorm_initialisation(tmp_path) -> None:
    tokenizer = CaptionTokenizer.from_captions(CAPTIONS)
    ids, _ = tokenizer.encode(CAPTIONS)
    config = tiny(tokenizer.vocab_size)
    torch.manual_seed(0)
    model = Glow(config)
    images = shapes(2)
    train(model, images, ids, 2)
    model.eval()
    save(tmp_path / "flow", model, KIND, config)
    loaded = load(tmp_path / "flow", KIND).model
    assert isinstance(loaded, Glow) and loaded.config == config
    assert all(norm.initialized for norm in actnorms(loaded))
    for source in (model, loaded):
        source.eval()
    bpd = bits_per_dim(model, images, ids, torch.Generator().manual_seed(0))
    assert torch.equal(bpd, bits_per_dim(loaded, images, ids, torch.Generator().manual_seed(0)))
    assert torch.equal(
        sample(model, 2, ids, torch.Generator().manual_seed(0)),
        sample(loaded, 2, ids, torch.Generator().manual_seed(0)),
    )
    # resuming does not initialise again: a training-mode pass leaves every weight as it was
    before = {k: v.clone() for k, v in loaded.state_dict().items()}
    loaded.train()(shapes(4)[2:] * 0.5, ids)
    assert all(torch.equal(before[k], v) for k, v in loaded.state_dict().items())
