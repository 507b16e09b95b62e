"""ROME: change one fact by a rank-one update of one MLP's output matrix.

Meng et al. (2022, "Locating and Editing Factual Associations in GPT") read an MLP's output
matrix ``W`` as a key-value memory: the key ``k`` is the MLP's hidden activation at the
subject's last token, the value ``W k`` what it writes into the residual stream. To make the
subject's key recall a new value ``v*`` while disturbing other keys as little as possible, they
solve ``min ||W' K - W K||`` subject to ``W' k* = v*``, whose closed form is one rank-one term:

    W' = W + (v* - W k*) (C^-1 k*)^T / ((C^-1 k*)^T k*),    C = E[k k^T] over ordinary text

Here ``k*`` is the subject's key averaged over a few prefixes (so the edit does not depend on
what came before), and ``v*`` is found by gradient descent on a vector added to the MLP's output
at the subject: it maximises the new object's likelihood, with a KL term that keeps the model's
answers about the subject's other facts, and a norm penalty.

The edit is stored as its two vectors, so it can be applied and undone exactly.
"""

from __future__ import annotations

from collections.abc import Sequence
from dataclasses import dataclass

import torch
import torch.nn.functional as F
from torch import Tensor

from genlab.core.errors import GenlabError
from genlab.nets.gpt import GPT


@dataclass
class RomeConfig:
    """How ``v*`` is found (ROME's GPT-2 settings, scaled to a small model)."""

    layer: int = 1  # the MLP edited (causal tracing locates it)
    steps: int = 40  # gradient steps on the added value vector
    lr: float = 0.05  # on delta / ||v||
    kl_weight: float = 1.0  # keeps the subject's other facts (ROME's "essence" term)
    weight_decay: float = 0.01  # on (||delta|| / ||v||)^2
    clamp_norm: float = 2.0  # ||delta|| <= clamp_norm * ||v||
    ridge: float = 1e-3  # added to C's diagonal, relative to its mean eigenvalue

    def check(self, model: GPT) -> None:
        if not 0 <= self.layer < len(model.blocks):
            raise GenlabError(f"layer must be in 0..{len(model.blocks) - 1}, got {self.layer}")
        if self.steps < 1 or self.lr <= 0:
            raise GenlabError("steps must be >= 1 and lr > 0")


@dataclass(frozen=True)
class Request:
    """One edit, as token ids: prompts with the subject's last token at ``subject_end - 1``.

    ``prompts`` are the edit prompt in several contexts (the first is the plain prompt);
    ``keep`` are prompts about the subject whose next-token distributions the KL term keeps.
    """

    prompts: list[tuple[list[int], int]]  # (ids, subject_end) per context
    target: list[int]  # the new object's ids
    keep: list[tuple[list[int], int]]


@dataclass
class RankOneUpdate:
    """``W += outer(right, left)`` on layer ``layer``'s MLP output matrix."""

    layer: int
    left: Tensor  # (4 * n_embd,): C^-1 k* / ((C^-1 k*)^T k_in)
    right: Tensor  # (n_embd,): v* - W k_in - b

    def delta(self) -> Tensor:
        return torch.outer(self.right, self.left)

    @torch.no_grad()
    def apply(self, model: GPT) -> None:
        weight = model.blocks[self.layer].mlp.proj.weight
        weight += self.delta().to(weight)

    @torch.no_grad()
    def revert(self, model: GPT) -> None:
        weight = model.blocks[self.layer].mlp.proj.weight
        weight -= self.delta().to(weight)


def _keys_hook(model: GPT, layer: int, store: list[Tensor]):
    """Record the MLP output matrix's input (the key) at every position."""
    return model.blocks[layer].mlp.proj.register_forward_hook(
        lambda _m, inputs, _out: store.append(inputs[0].detach())
    )


@torch.no_grad()
def second_moment(
    model: GPT, layer: int, texts: Sequence[Sequence[int]], batch: int = 64
) -> Tensor:
    """``C = E[k k^T]`` over every token of ``texts`` (ids): how keys are spread in ordinary text."""
    if not texts:
        raise GenlabError("the key statistics need some text")
    model.eval()
    device = model.wte.weight.device
    width = model.blocks[layer].mlp.proj.in_features
    total, count = torch.zeros(width, width, dtype=torch.float64), 0
    block = model.config.block_size
    for i in range(0, len(texts), batch):
        chunk = [list(t)[:block] for t in texts[i : i + batch]]
        longest = max(len(t) for t in chunk)
        ids = torch.zeros(len(chunk), longest, dtype=torch.long)
        real = torch.zeros(len(chunk), longest, dtype=torch.bool)
        for r, t in enumerate(chunk):
            ids[r, : len(t)] = torch.tensor(t)
            real[r, : len(t)] = True
        keys: list[Tensor] = []
        handle = _keys_hook(model, layer, keys)
        try:
            model(ids.to(device))  # right padding: a causal model never attends to it
        finally:
            handle.remove()
        k = keys[0][real.to(device)].double().cpu()
        total += k.T @ k
        count += k.size(0)
    return (total / count).float()


@torch.no_grad()
def _keys_at(model: GPT, layer: int, prompts: Sequence[tuple[list[int], int]]) -> Tensor:
    """The key at each prompt's subject's last token (P, 4 * n_embd)."""
    device = model.wte.weight.device
    out = []
    for ids, end in prompts:
        keys: list[Tensor] = []
        handle = _keys_hook(model, layer, keys)
        try:
            model(torch.tensor([ids], device=device))
        finally:
            handle.remove()
        out.append(keys[0][0, end - 1].float().cpu())
    return torch.stack(out)


def _batch(prompts: Sequence[tuple[list[int], int]], target: list[int]):
    """Right-padded rows of prompt + target, the targets' positions, and subject positions."""
    rows = [ids + target[:-1] for ids, _ in prompts] if target else [ids for ids, _ in prompts]
    width = max(len(r) for r in rows)
    ids = torch.zeros(len(rows), width, dtype=torch.long)
    for i, r in enumerate(rows):
        ids[i, : len(r)] = torch.tensor(r)
    lasts = torch.tensor([len(p) - 1 for p, _ in prompts])  # where the answer's first id is read
    subjects = torch.tensor([end - 1 for _, end in prompts])
    return ids, lasts, subjects


def compute_value(model: GPT, request: Request, cfg: RomeConfig) -> tuple[Tensor, dict[str, float]]:
    """``v*``: the MLP output at the subject that makes every context prompt say the target."""
    device = model.wte.weight.device
    model.eval()
    for p in model.parameters():
        p.requires_grad_(False)
    target = torch.tensor(request.target, device=device)
    ids, lasts, subjects = _batch(request.prompts, request.target)
    ids, lasts, subjects = ids.to(device), lasts.to(device), subjects.to(device)
    keep_ids, keep_lasts, keep_subjects = (t.to(device) for t in _batch(request.keep, []))
    n_t = len(request.target)
    offsets = torch.arange(n_t, device=device)

    mlp = model.blocks[cfg.layer].mlp
    with torch.no_grad():
        keep_logits = model(keep_ids)[0]
        plain: list[Tensor] = []
        handle = mlp.register_forward_hook(lambda _m, _i, out: plain.append(out.detach()))
        first_ids, first_end = request.prompts[0]
        model(torch.tensor([first_ids], device=device))
        handle.remove()
        v = plain[0][0, first_end - 1].float()  # the value the subject's key reads now
    keep_logp = keep_logits[torch.arange(len(request.keep)), keep_lasts].float().log_softmax(-1)

    # delta = |v| * eps: the step size and the penalties are relative to the value's norm, so
    # the same settings serve a 64-wide model and GPT-2 XL
    scale = v.norm()
    eps = torch.zeros_like(v, requires_grad=True)
    optimizer = torch.optim.Adam([eps], lr=cfg.lr)
    state: dict[str, Tensor] = {}

    def add_delta(_m, _i, out: Tensor) -> Tensor:
        out = out.clone()
        rows = torch.arange(out.size(0), device=out.device)
        out[rows, state["at"]] = out[rows, state["at"]] + (scale * eps).to(out.dtype)
        return out

    handle = mlp.register_forward_hook(add_delta)
    stats: dict[str, float] = {}
    try:
        for _ in range(cfg.steps):
            state["at"] = subjects
            logp = model(ids)[0].float().log_softmax(-1)
            at = lasts[:, None] + offsets  # the target's positions in each row
            picked = logp.gather(1, at[..., None].expand(-1, -1, logp.size(-1)))
            nll = -picked.gather(-1, target.expand(len(lasts), -1)[..., None]).mean()
            state["at"] = keep_subjects
            new_keep = model(keep_ids)[0][torch.arange(len(request.keep)), keep_lasts]
            kl = F.kl_div(
                new_keep.float().log_softmax(-1), keep_logp, log_target=True, reduction="batchmean"
            )
            decay = cfg.weight_decay * eps.norm() ** 2
            loss = nll + cfg.kl_weight * kl + decay
            optimizer.zero_grad()
            loss.backward()
            optimizer.step()
            with torch.no_grad():
                if eps.norm() > cfg.clamp_norm:
                    eps.mul_(cfg.clamp_norm / eps.norm())
            stats = {"nll": nll.item(), "kl": kl.item(), "relative_delta": eps.norm().item()}
    finally:
        handle.remove()
    return (v + scale * eps).detach(), stats


def rome_update(
    model: GPT, request: Request, second_moment_inv: Tensor, cfg: RomeConfig
) -> tuple[RankOneUpdate, dict[str, float]]:
    """The rank-one update that writes ``v*`` at the subject's key (not yet applied)."""
    cfg.check(model)
    if not request.target:
        raise GenlabError("the new object has no tokens")
    k_star = _keys_at(model, cfg.layer, request.prompts).mean(0)
    u = second_moment_inv @ k_star
    first_ids, first_end = request.prompts[0]
    k_in = _keys_at(model, cfg.layer, [(first_ids, first_end)])[0]
    mlp = model.blocks[cfg.layer].mlp
    with torch.no_grad():
        w = mlp.proj.weight.float().cpu()
        b = mlp.proj.bias.float().cpu() if mlp.proj.bias is not None else torch.zeros(w.size(0))
        current = w @ k_in + b
    v_star, stats = compute_value(model, request, cfg)
    left = u / (u @ k_in)
    return RankOneUpdate(cfg.layer, left, v_star.cpu() - current), stats


def inverse_second_moment(c: Tensor, ridge: float) -> Tensor:
    """``(C + ridge * mean eigenvalue * I)^-1``: C estimated from finite text may be singular."""
    eye = torch.eye(c.size(0), dtype=torch.float64)
    c = c.double() + ridge * c.diagonal().mean() * eye
    return torch.linalg.inv(c).float()
