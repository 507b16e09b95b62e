"""Loss-based membership inference: answer NLLs equal the hand-computed per-token loss, and a
model that memorised its members gives them lower losses than pairs it never saw."""

from __future__ import annotations

import pytest
import torch
import torch.nn.functional as F

from genlab.core.errors import GenlabError
from genlab.nets.gpt import GPT, GPTConfig
from genlab.research.membership import answer_nll, membership_losses
from genlab.research.unlearning import pack

pytestmark = pytest.mark.usefixtures("one_thread")

VOCAB = 40


def _pairs(seed: int, n: int) -> list[tuple[list[int], list[int]]]:
    g = torch.Generator().manual_seed(seed)
    ids = torch.randint(1, VOCAB, (n, 7), generator=g).tolist()
    return [(row[:4], row[4:]) for row in ids]


MEMBERS, NON_MEMBERS = _pairs(0, 8), _pairs(1, 8)


def _tiny() -> GPT:
    torch.manual_seed(0)
    return GPT(GPTConfig.preset("tiny", vocab_size=VOCAB, block_size=16))


def test_answer_nll_is_the_mean_token_loss_of_the_answer_alone() -> None:
    model = _tiny().eval()
    context, answer = [3, 7, 1], [9, 2]
    logits = model(torch.tensor([context + answer[:-1]]))[0][0]
    by_hand = F.cross_entropy(logits[-2:], torch.tensor(answer))
    nll = answer_nll(model.train(), [(context, answer), ([5], [6, 7, 8])])
    assert nll.shape == (2,)
    assert nll[0].item() == pytest.approx(by_hand.item(), rel=1e-5)
    assert model.training  # the mode is given back


def test_members_have_lower_losses_than_non_members() -> None:
    model = _tiny()
    inputs, targets = pack(MEMBERS, 16)
    opt = torch.optim.AdamW(model.parameters(), lr=3e-3, weight_decay=0.0)
    for _ in range(150):
        loss = model(inputs, targets)[1]
        opt.zero_grad()
        loss.backward()
        opt.step()
    members, non_members = membership_losses(model, MEMBERS, NON_MEMBERS)
    assert members.shape == non_members.shape == (8,)
    assert members.max() < 0.1 < 2.0 < non_members.min()  # the attack separates them all


def test_bad_input_is_one_line() -> None:
    model = _tiny()
    with pytest.raises(GenlabError, match="at least one member and one non-member"):
        membership_losses(model, MEMBERS, [])
    with pytest.raises(GenlabError, match="empty answer"):
        answer_nll(model, [([1, 2], [])])
    assert answer_nll(model, []).shape == (0,)
