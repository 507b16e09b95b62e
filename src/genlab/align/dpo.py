"""Direct preference optimisation: learn from comparisons without a reward model or RL.

Rafailov et al. (2023, "Direct Preference Optimization: Your Language Model is Secretly a Reward
Model") show that the policy maximising reward with a KL penalty ``beta`` to a reference has a
closed form, ``pi(y|x) ∝ pi_ref(y|x) exp(r(x, y) / beta)``, so the reward is implicit in the
policy: ``r(x, y) = beta * log(pi(y|x) / pi_ref(y|x))`` up to a term of ``x`` alone. Putting that
into the Bradley-Terry likelihood of the comparisons gives a plain classification loss on the
policy itself:

    loss = -log sigmoid(beta * [(log pi(y_w|x) - log pi_ref(y_w|x))
                               - (log pi(y_l|x) - log pi_ref(y_l|x))])

where ``log pi(y|x)`` sums the log-probabilities of the answer's tokens (its ``<|eot|>``
included). The reference (the SFT model) never changes, so its log-probabilities are computed
once, before training, and travel with the data: training runs one model, not two. At
initialisation the policy is the reference, every margin is 0 and the loss is exactly log 2.

DPO lowers the likelihood of the rejected answer, and with it of everything the rejected answer
shares with the chosen one (a hedge "X or Y" begins with the right answer "X"), so the chosen
answer's own likelihood can fall too. ``nll_weight`` adds the chosen answers' per-token negative
log-likelihood to the loss, as RPO does (Pang et al., 2024, "Iterative Reasoning Preference
Optimization"): the policy keeps saying what was preferred while it learns the preference.

``dpo(DPOConfig)`` trains through the shared ``Trainer``; the run folder is a GPT checkpoint, or
with ``tune`` an adapter around the policy (``genlab dpo --adapter lora``), whose reference is
then the frozen base with the adapter switched off: no second copy of the model.
"""

from __future__ import annotations

from collections.abc import Mapping, Sequence
from dataclasses import dataclass, field
from typing import Any

import torch
import torch.nn.functional as F
from torch import Tensor, nn

from genlab.align.stage import Tune, fine_tuning, stage_trainer, whole
from genlab.core.device import pick_device
from genlab.core.errors import GenlabError
from genlab.core.rng import seed_everything
from genlab.core.train_config import TrainConfig
from genlab.data.records import render_answer
from genlab.data.tokenizer import Tokenizer
from genlab.methods.autoregressive.checkpoint import load_gpt
from genlab.methods.autoregressive.padding import pad_right
from genlab.methods.autoregressive.scoring import sequence_logprobs
from genlab.nets.gpt import GPT, IGNORE_INDEX


def dpo_loss(
    policy_chosen: Tensor,
    policy_rejected: Tensor,
    ref_chosen: Tensor,
    ref_rejected: Tensor,
    beta: float,
) -> tuple[Tensor, Tensor, Tensor]:
    """The DPO loss (mean over pairs) and the implicit rewards ``beta * log(pi / pi_ref)`` of the
    chosen and rejected answers."""
    chosen_reward = beta * (policy_chosen - ref_chosen)
    rejected_reward = beta * (policy_rejected - ref_rejected)
    loss = -F.logsigmoid(chosen_reward - rejected_reward).mean()
    return loss, chosen_reward.detach(), rejected_reward.detach()


def answer_example(
    tokenizer: Tokenizer, prompt: str | Sequence[Mapping[str, Any]], answer: str
) -> tuple[list[int], list[int]]:
    """Inputs and targets of an answer to a prompt; targets are -100 except on the answer."""
    ids, start = render_answer(tokenizer, prompt, answer)
    targets = [t if i + 1 >= start else IGNORE_INDEX for i, t in enumerate(ids[1:])]
    return ids[:-1], targets


def encode_preference_pairs(
    tokenizer: Tokenizer, pairs: Sequence[Mapping[str, Any]], block_size: int
) -> tuple[tuple[Tensor, Tensor, Tensor, Tensor], int]:
    """Padded (chosen inputs, chosen targets, rejected inputs, rejected targets) of comparisons,
    and how many pairs were dropped for not fitting in the context."""
    rows: list[tuple[tuple[list[int], list[int]], tuple[list[int], list[int]]]] = []
    for pair in pairs:
        c = answer_example(tokenizer, pair["prompt"], pair["chosen"])
        r = answer_example(tokenizer, pair["prompt"], pair["rejected"])
        if len(c[0]) <= block_size and len(r[0]) <= block_size:
            rows.append((c, r))
    if not rows:
        raise GenlabError(f"every comparison is longer than the model's context of {block_size}")
    length = max(len(x) for pair in rows for x, _ in pair)
    pad = tokenizer.pad_id
    tensors = (
        pad_right([c[0] for c, _ in rows], pad, length),
        pad_right([c[1] for c, _ in rows], IGNORE_INDEX, length),
        pad_right([r[0] for _, r in rows], pad, length),
        pad_right([r[1] for _, r in rows], IGNORE_INDEX, length),
    )
    return tensors, len(pairs) - len(rows)


@torch.no_grad()
def reference_logprobs(
    reference: GPT, tensors: tuple[Tensor, Tensor, Tensor, Tensor], batch_size: int = 64
) -> tuple[Tensor, Tensor]:
    """log pi_ref of every chosen and rejected answer, computed once before training."""
    reference.eval()
    device = reference.wte.weight.device
    chosen_x, chosen_y, rejected_x, rejected_y = tensors
    out_c, out_r = [], []
    for i in range(0, len(chosen_x), batch_size):
        sl = slice(i, i + batch_size)
        out_c.append(sequence_logprobs(reference, chosen_x[sl].to(device), chosen_y[sl].to(device)))
        out_r.append(
            sequence_logprobs(reference, rejected_x[sl].to(device), rejected_y[sl].to(device))
        )
    return torch.cat(out_c).cpu(), torch.cat(out_r).cpu()


def make_dpo_step(beta: float, nll_weight: float = 0.0):
    """The trainer's step function: one forward over chosen and rejected; DPO's loss plus
    ``nll_weight`` times the chosen answers' mean per-token negative log-likelihood."""

    def dpo_step(model: nn.Module, batch: tuple[Tensor, ...]) -> tuple[Tensor, dict[str, Any]]:
        chosen_x, chosen_y, rejected_x, rejected_y, ref_chosen, ref_rejected = batch
        inputs, targets = torch.cat([chosen_x, rejected_x]), torch.cat([chosen_y, rejected_y])
        # rows are padded to the data set's longest answer: cut to this batch's
        end = int((targets != IGNORE_INDEX).any(0).nonzero().max()) + 1
        logps = sequence_logprobs(model, inputs[:, :end], targets[:, :end])
        policy_chosen, policy_rejected = logps.chunk(2)
        loss, r_chosen, r_rejected = dpo_loss(
            policy_chosen, policy_rejected, ref_chosen, ref_rejected, beta
        )
        chosen_tokens = (chosen_y[:, :end] != IGNORE_INDEX).sum()
        nll = -policy_chosen.sum() / chosen_tokens
        if nll_weight:
            loss = loss + nll_weight * nll
        return loss, {
            "chosen_nll": nll.detach(),
            "reward_accuracy": (r_chosen > r_rejected).float().mean(),
            "reward_margin": (r_chosen - r_rejected).mean(),
            "chosen_logp_change": (policy_chosen - ref_chosen).detach().mean(),
            "rejected_logp_change": (policy_rejected - ref_rejected).detach().mean(),
            "tokens": float(inputs[:, :end].numel()),
        }

    return dpo_step


@dataclass
class DPOConfig:
    """The policy to tune (an SFT run, also the frozen reference), and how."""

    policy: str = "runs/sft"  # GPT folder to tune (an SFT run); also the frozen reference
    out: str = "runs/dpo"  # run folder to write
    beta: float = 0.1  # strength of the implicit KL leash to the reference
    nll_weight: float = 0.0  # weight of the chosen answers' NLL (RPO); 0 is plain DPO
    train: TrainConfig = field(default_factory=lambda: fine_tuning(200, 3e-4, 10))


def dpo(
    cfg: DPOConfig,
    train: Sequence[Mapping[str, Any]],
    held_out: Sequence[Mapping[str, Any]],
    extra_files: Mapping[str, bytes] | None = None,
    resume: bool = False,
    tune: Tune = whole,
) -> dict[str, float]:
    """Tune ``cfg.policy`` by DPO on ``train`` comparisons (held-out loss on ``held_out``) into
    ``cfg.out`` (a GPT folder, or what ``tune`` trains)."""
    if cfg.beta <= 0:
        raise GenlabError(f"beta must be > 0, got {cfg.beta}")
    policy, tokenizer = load_gpt(cfg.policy, device=pick_device(cfg.train.device))
    seed_everything(cfg.train.seed)  # an adapter's initial weights follow the seed
    tuned = tune(policy, cfg.policy)
    block = policy.config.block_size
    data = []
    for pairs in (train, held_out):
        tensors, _ = encode_preference_pairs(tokenizer, pairs, block - policy.prefix_length)
        with tuned.reference():
            data.append((*tensors, *reference_logprobs(policy, tensors)))
    trainer = stage_trainer(
        tuned.module.train(),
        make_dpo_step(cfg.beta, cfg.nll_weight),
        data[0],
        data[1],
        cfg.train,
        cfg.out,
        tuned.kind,
        tokenizer,
        block,
        extra_files,
        resume,
        tuned.callbacks,
    )
    metrics = trainer.fit()
    metrics["trainable_parameters"] = float(
        sum(p.numel() for p in tuned.module.parameters() if p.requires_grad)
    )
    metrics["train_pairs"] = float(len(data[0][0]))
    metrics["beta"] = cfg.beta
    return metrics
