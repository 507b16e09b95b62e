import math

import pytest
import torch
from torch import nn

from genlab.core.optim import build_adamw, param_groups, set_lr, warmup_cosine


def _model() -> nn.Module:
    return nn.Sequential(nn.Embedding(10, 4), nn.Linear(4, 4), nn.LayerNorm(4), nn.Linear(4, 2))


def test_weight_decay_only_on_matrices():
    model = _model()
    model[3].bias.requires_grad_(False)  # frozen parameters are left out
    decay, no_decay = param_groups(model, weight_decay=0.1)
    assert decay["weight_decay"] == 0.1 and no_decay["weight_decay"] == 0.0
    assert {id(p) for p in decay["params"]} == {
        id(model[0].weight),
        id(model[1].weight),
        id(model[3].weight),
    }
    assert {id(p) for p in no_decay["params"]} == {
        id(model[1].bias),
        id(model[2].weight),
        id(model[2].bias),
    }


def test_adamw_uses_fused_kernel_on_cpu_and_decays_matrices_only():
    model = _model()
    opt = build_adamw(model, lr=0.1, weight_decay=0.5, device_type="cpu")
    assert opt.defaults["fused"] is True
    # zero gradients: only decoupled weight decay moves the weights, and only the matrices
    before = {n: p.detach().clone() for n, p in model.named_parameters()}
    for p in model.parameters():
        p.grad = torch.zeros_like(p)
    opt.step()
    for name, p in model.named_parameters():
        if p.dim() >= 2:
            torch.testing.assert_close(p, before[name] * (1 - 0.1 * 0.5))
        else:
            torch.testing.assert_close(p, before[name])


def test_adamw_matches_unfused_reference():
    torch.manual_seed(0)
    a, b = _model(), _model()
    b.load_state_dict(a.state_dict())
    fused = build_adamw(a, lr=1e-2, device_type="cpu")
    plain = build_adamw(b, lr=1e-2, device_type="cpu", fused=False)
    assert plain.defaults["foreach"] is True
    x = torch.randint(0, 10, (5,))
    for _ in range(3):
        for model, opt in ((a, fused), (b, plain)):
            opt.zero_grad()
            model(x).square().mean().backward()
            opt.step()
    for pa, pb in zip(a.parameters(), b.parameters(), strict=True):
        torch.testing.assert_close(pa, pb, atol=1e-6, rtol=1e-5)


def test_warmup_then_cosine_to_floor():
    kw = dict(max_steps=110, warmup_steps=10, min_ratio=0.1)
    assert warmup_cosine(0, **kw) == pytest.approx(0.1)
    assert warmup_cosine(9, **kw) == pytest.approx(1.0)
    assert warmup_cosine(10, **kw) == pytest.approx(1.0)
    assert warmup_cosine(60, **kw) == pytest.approx(0.55)  # half way down the cosine
    assert warmup_cosine(110, **kw) == pytest.approx(0.1)
    assert warmup_cosine(500, **kw) == pytest.approx(0.1)  # extended runs keep the floor
    values = [warmup_cosine(s, **kw) for s in range(10, 111)]
    assert all(x >= y for x, y in zip(values, values[1:], strict=False))
    assert warmup_cosine(0, max_steps=10, warmup_steps=0, min_ratio=0.0) == 1.0
    mid = warmup_cosine(35, max_steps=60, warmup_steps=10, min_ratio=0.0)
    assert mid == pytest.approx(0.5 * (1 + math.cos(math.pi * 0.5)))


def test_set_lr_sets_every_group():
    opt = build_adamw(_model(), lr=1.0)
    set_lr(opt, 0.25)
    assert [g["lr"] for g in opt.param_groups] == [0.25, 0.25]
