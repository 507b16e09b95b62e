"""CLIP's symmetric InfoNCE loss, checked by hand, and its trainer step."""

from __future__ import annotations

import math

import pytest
import torch

from genlab.core.errors import GenlabError
from genlab.data.images import to_uint8
from genlab.methods.contrastive import ContrastiveStep, clip_loss, retrieval_accuracy
from genlab.nets.clip import CLIP, CLIPConfig
from genlab.nets.text_encoder import TextEncoderConfig

pytestmark = pytest.mark.usefixtures("one_thread")


def test_loss_is_the_mean_of_the_row_and_column_cross_entropies_by_hand():
    s = [[2.0, 0.5, -1.0], [0.3, 1.5, 0.2], [-0.4, 2.5, 0.1]]

    def ce(row: list[float], label: int) -> float:
        return math.log(sum(math.exp(v) for v in row)) - row[label]

    rows = sum(ce(s[i], i) for i in range(3)) / 3
    cols = sum(ce([s[j][i] for j in range(3)], i) for i in range(3)) / 3
    assert clip_loss(torch.tensor(s)).item() == pytest.approx((rows + cols) / 2, abs=1e-6)
    # not symmetric in general: the two directions differ here
    assert rows != pytest.approx(cols)


def test_a_perfect_sharp_matrix_has_almost_no_loss_and_full_retrieval():
    logits = 100 * torch.eye(4) - 50
    assert clip_loss(logits).item() < 1e-6
    assert [t.item() for t in retrieval_accuracy(logits)] == [1.0, 1.0]
    swapped = logits[[1, 0, 2, 3]]  # images 0 and 1 match each other's captions
    i2t, t2i = retrieval_accuracy(swapped)
    assert (i2t.item(), t2i.item()) == (0.5, 0.5)
    with pytest.raises(GenlabError, match="square"):
        clip_loss(torch.zeros(2, 3))


def test_retrieval_directions_differ_when_one_caption_wins_every_image():
    logits = torch.tensor([[1.0, 0.0, 0.0], [2.0, 1.0, 0.0], [2.0, 0.0, 1.0]])
    i2t, t2i = retrieval_accuracy(logits)
    assert i2t.item() == pytest.approx(1 / 3)  # every image picks caption 0
    assert t2i.item() == pytest.approx(2 / 3)  # caption 0 picks image 1; 1 and 2 their own


def test_a_few_steps_on_a_tiny_batch_lower_the_loss():
    torch.manual_seed(0)
    text = TextEncoderConfig(vocab_size=12, max_length=4, dim=16, num_layers=1, num_heads=2)
    net = CLIP(CLIPConfig(text, image_size=16, width=8, image_dim=16, embed_dim=8))
    pixels = to_uint8(torch.rand(6, 3, 16, 16) * 2 - 1)
    ids = torch.tensor([[1, 3 + i, 3 + (i + 2) % 9, 0] for i in range(6)])
    mask = ids != 0
    step = ContrastiveStep(noise=0.0)
    opt = torch.optim.AdamW(net.parameters(), lr=3e-3)
    losses = []
    for _ in range(15):
        loss, metrics = step(net, (pixels, ids, mask))
        opt.zero_grad()
        loss.backward()
        opt.step()
        losses.append(loss.item())
    assert losses[-1] < 0.3 * losses[0], losses
    assert metrics["samples"] == 6 and metrics["acc_i2t"].item() == 1.0
    assert metrics["logit_scale"].item() != pytest.approx(1 / 0.07)  # the temperature is learnt


def test_step_noise_is_drawn_per_image():
    torch.manual_seed(0)
    text = TextEncoderConfig(vocab_size=12, max_length=4, dim=16, num_layers=1, num_heads=2)
    net = CLIP(CLIPConfig(text, image_size=16, width=8, image_dim=16, embed_dim=8)).eval()
    pixels = to_uint8(torch.rand(4, 3, 16, 16) * 2 - 1)
    ids = torch.tensor([[1, 3, 4, 0]] * 4)
    batch = (pixels, ids, ids != 0)
    clean = ContrastiveStep(noise=0.0)(net, batch)[0]
    assert ContrastiveStep(noise=0.0)(net, batch)[0].item() == clean.item()
    assert ContrastiveStep(noise=0.1)(net, batch)[0].item() != clean.item()
