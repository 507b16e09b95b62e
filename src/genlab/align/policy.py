"""PPO's model: the policy (a GPT) and its value head in one module, scored by the one scorer.

The value function is a linear head on the policy's final hidden states, not a second network:
one forward pass gives both log-probabilities and values, which halves the cost of every PPO
step on a laptop CPU, and the features it reads already encode prompt and answer. The head
starts at zero and its loss is weighted by ``vf_coef``; its gradient also trains the shared
trunk (keeping the trunk out of it was tried on TinyWorld and did no better). InstructGPT uses a
separate value model initialised from the reward model; that doubles the compute and ties PPO to
the reward model's internals.

One container means one ``model.safetensors`` (keys ``policy.*`` and ``value_head.*``) of kind
``ppo``; ``genlab chat`` opens its policy, the registry knows how (``generator="policy"``).
"""

from __future__ import annotations

from torch import Tensor, nn

from genlab.core.registry import Kind, register
from genlab.methods.autoregressive.checkpoint import TOKENIZER
from genlab.methods.autoregressive.scoring import token_logprobs
from genlab.nets.gpt import GPT, GPTConfig
from genlab.nets.heads import ValueHead

KIND = "ppo"


def answer_logprobs(
    model: nn.Module,
    ids: Tensor,
    attention_mask: Tensor,
    start: int,
    temperature: float = 1.0,
    hidden: bool = False,
) -> tuple[Tensor, Tensor, Tensor | None]:
    """Log-probabilities (B, T), entropies and (with ``hidden``) the hidden states that predict
    the answer tokens ``ids[:, start:]``, which follow left-padded prompts ending at ``start``.
    Logits are divided by ``temperature``: the sampling policy is the one optimised."""
    scores = token_logprobs(
        model,
        ids[:, :-1],
        ids[:, 1:],
        attention_mask=attention_mask[:, :-1],
        temperature=temperature,
        entropy=True,
        hidden=hidden,
    )
    assert scores.entropy is not None
    states = scores.hidden[:, start - 1 :] if scores.hidden is not None else None
    return scores.logprobs[:, start - 1 :], scores.entropy[:, start - 1 :], states


class PolicyValue(nn.Module):
    """A GPT policy and a value head on its final hidden states.

    Dropout stays off in training mode too: PPO's probability ratio must be exactly 1 before the
    first update of each rollout.
    """

    def __init__(self, config: GPTConfig) -> None:
        super().__init__()
        self.config = config
        self.policy = GPT(config)
        self.value_head = ValueHead(config.n_embd)

    @classmethod
    def from_gpt(cls, gpt: GPT) -> PolicyValue:
        """A policy starting from ``gpt``'s weights (the SFT model) and a zero value head."""
        model = cls(gpt.config)
        model.policy.load_state_dict(gpt.state_dict())
        return model.to(gpt.wte.weight.device)

    def train(self, mode: bool = True) -> PolicyValue:
        super().train(mode)
        self.policy.eval()
        return self

    def forward(
        self, ids: Tensor, attention_mask: Tensor, start: int, temperature: float = 1.0
    ) -> tuple[Tensor, Tensor, Tensor]:
        """Answer log-probabilities, entropies and values (each (B, T)), one forward pass."""
        logprobs, entropy, hidden = answer_logprobs(
            self.policy, ids, attention_mask, start, temperature, hidden=True
        )
        assert hidden is not None
        return logprobs, entropy, self.value_head(hidden)


register(Kind(KIND, GPTConfig, PolicyValue, (TOKENIZER,), generator="policy"))
