"""The unlearning losses: values worked by hand, NPO's gradient becoming gradient ascent's as
beta -> 0, and NPO bounded below where gradient ascent is not."""

from __future__ import annotations

import math

import pytest
import torch

from genlab.research.unlearning_losses import gradient_ascent, gradient_difference, npo, retain_nll


def test_gradient_ascent_and_difference_values() -> None:
    forget = torch.tensor([-1.0, -3.0])
    retain = torch.tensor([-0.5, -1.5, -4.0])
    assert gradient_ascent(forget).item() == pytest.approx(-2.0)
    assert retain_nll(retain).item() == pytest.approx(2.0)
    # -2 + 0.5 * 2
    assert gradient_difference(forget, retain, 0.5).item() == pytest.approx(-1.0)
    assert gradient_difference(forget, retain, 0.0).item() == pytest.approx(-2.0)


def test_npo_values_by_hand() -> None:
    # at the reference: -(2/beta) log sigmoid(0) = (2/beta) log 2
    same = torch.tensor([-2.0, -7.0])
    assert npo(same, same, 0.1).item() == pytest.approx(20 * math.log(2), rel=1e-6)
    # one pair, log ratio -2, beta 0.5: -(4) log sigmoid(1)
    got = npo(torch.tensor([-3.0]), torch.tensor([-1.0]), 0.5).item()
    assert got == pytest.approx(-4 * math.log(1 / (1 + math.exp(-1.0))), rel=1e-6)
    # a mean over pairs: log ratios +1 and -1, beta 1
    pair = npo(torch.tensor([0.0, -2.0]), torch.tensor([-1.0, -1.0]), 1.0).item()
    expected = -(math.log(1 / (1 + math.e)) + math.log(1 / (1 + math.exp(-1.0))))
    assert pair == pytest.approx(expected, rel=1e-6)


def test_npo_gradient_tends_to_gradient_ascent_as_beta_goes_to_zero() -> None:
    ref = torch.tensor([-1.0, -2.0, -0.5])
    logp = torch.tensor([-3.0, -1.0, -2.5])

    def grad(loss_fn) -> torch.Tensor:
        x = logp.clone().requires_grad_(True)
        loss_fn(x).backward()
        return x.grad

    ga = grad(gradient_ascent)
    assert torch.allclose(ga, torch.full((3,), 1 / 3))
    gaps = [(grad(lambda x, b=b: npo(x, ref, b)) - ga).abs().max().item() for b in (1.0, 0.1, 1e-3)]
    assert gaps[0] > 0.05  # far from it at beta 1
    assert gaps[0] > gaps[1] > gaps[2]
    assert gaps[2] < 1e-3
    # exact: 2 sigmoid(beta * log ratio) / B
    b = 0.7
    assert torch.allclose(grad(lambda x: npo(x, ref, b)), 2 * torch.sigmoid(b * (logp - ref)) / 3)


def test_npo_is_bounded_where_gradient_ascent_is_not() -> None:
    ref = torch.tensor([-1.0])
    far = torch.tensor([-1e4])
    assert gradient_ascent(far).item() == pytest.approx(-1e4)  # falls without end
    for beta in (0.05, 0.5, 5.0):
        losses = [npo(torch.tensor([v]), ref, beta).item() for v in (0.0, -1.0, -10.0, -1e4)]
        assert all(loss >= 0.0 for loss in losses)
        assert losses == sorted(losses, reverse=True)
        assert losses[-1] < 1e-6  # saturates at 0 ...
        # ... and so does its gradient: an already-forgotten answer stops pulling
        x = far.clone().requires_grad_(True)
        npo(x, ref, beta).backward()
        assert x.grad.item() < 1e-6
