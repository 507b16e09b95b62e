"""Evaluating chat models on TinyWorld: exact answers, the judge, win rates, KL, reward.

Every stage of the ChatGPT recipe answers the same held-out prompts (the test split of the tuned
task families: no training question among them; the validation split for tuning runs, so that
choices made by looking at results never see the test prompts) and is scored by TinyWorld's
programs instead of people, as InstructGPT's human evaluation (Ouyang et al., 2022, section 4)
would score them:

- **exact answers**: the family's checker accepts the final answer (``Example.check``);
- **judge score** in [0, 1] (correct 0.6, helpful 0.25, polite 0.15; ``tinyworld.judge``);
- **win rate against SFT**: the share of prompts where the judge scores this model's answer
  above the SFT model's, ties counted half (so a model equal to SFT gets 0.5);
- **KL to the reference** (the SFT model): ``E_y~pi [log pi(y|x) - log pi_ref(y|x)]`` in nats per
  answer, estimated on the sampled answers' own tokens;
- **reward**: the reward model's mean score of the sampled answers, beside the judge's, so that
  a policy that pleases the reward model without pleasing the judge (reward hacking) shows.

Every rate is the mean of per-item outcomes (one per prompt or per sampled answer), and
``summarize`` returns those outcomes too, so that the report can bootstrap an interval for each
figure over the prompts and, with several seeds, over the seeds (``genlab.metrics.bootstrap``).

Each model answers twice per protocol. **Greedy** (temperature 0): the model's single most likely
answer, the usual measure of exact-answer accuracy. **Sampled** (temperature 1, ``samples`` per
prompt): the policy as it is, the distribution RLHF optimises; SFT imitates demonstrations of
mixed style, and only sampling shows that mix. Win rates compare answer ``k`` of a model with
answer ``k`` of SFT to the same prompt.

Best-of-n (:mod:`genlab.align.best_of_n`) is evaluated as a model too: each of its ``samples``
answers is an independent best-of-n pick from the SFT model, so its win rate compares like with
like; it has no greedy decoding, and its first pick stands for its greedy answer.

The pretrained model has no chat template yet: it is prompted few-shot (Brown et al., 2020), with
solved examples of the same family from the train split ("The answer is X.") in the
``Question: ... Answer: ...`` layout of the task text it was pretrained on, and its answer ends
at the line break.
"""

from __future__ import annotations

from collections.abc import Mapping, Sequence
from dataclasses import dataclass, field
from typing import Any

import torch

from genlab.align.best_of_n import best_of_n, best_of_n_kl
from genlab.align.reward import RewardModel
from genlab.core.errors import GenlabError
from genlab.data.tinyworld import Example, make_examples, verdict
from genlab.data.tinyworld.world import World
from genlab.data.tokenizer import Tokenizer
from genlab.methods.autoregressive.decoding import Generation, generate
from genlab.methods.autoregressive.padding import pad_right
from genlab.methods.autoregressive.scoring import sequence_logprobs
from genlab.nets.gpt import GPT, IGNORE_INDEX
from genlab.prompting.layout import direct, qa_text, question, with_demos

EVAL_SPLITS = ("test", "validation")


def check_split(split: str) -> None:
    """Only held-out splits are evaluated: the train split's questions were trained on."""
    if split not in EVAL_SPLITS:
        raise GenlabError(f"unknown eval split {split!r}; choose {' or '.join(EVAL_SPLITS)}")


@dataclass
class EvalSettings:
    """How many prompts and answers, and how answers are decoded."""

    n_per_family: int = 50  # held-out prompts per task family
    samples: int = 2  # sampled answers per prompt (temperature 1)
    temperature: float = 1.0
    max_new_tokens: int = 96
    shots: int = 3  # solved examples in the pretrained model's few-shot prompt
    batch_size: int = 64  # prompts decoded together
    seed: int = 0
    split: str = "test"  # "validation" for tuning runs: the test split is read only to report
    best_of_n: int = 8  # SFT answers sampled per best-of-n pick

    def __post_init__(self) -> None:
        check_split(self.split)
        if self.best_of_n < 1:
            raise GenlabError(f"best_of_n must be >= 1, got {self.best_of_n}")


def heldout_examples(
    world_seed: int, families: Sequence[str], n_per_family: int, seed: int = 0, split: str = "test"
) -> list[Example]:
    """The held-out prompts: the ``split`` (test or validation) of each family, family by family."""
    check_split(split)
    world = World(world_seed)
    return [e for f in families for e in make_examples(world, f, n_per_family, split, seed)]


def few_shot_prompts(
    tokenizer: Tokenizer,
    examples: Sequence[Example],
    world_seed: int,
    shots: int,
    seed: int,
    max_len: int,
) -> list[list[int]]:
    """Few-shot prompts for a model without chat tuning: up to ``shots`` solved train-split
    examples of the same family (as many as fit in ``max_len`` tokens), then the question and
    ``Answer:``."""
    world = World(world_seed)
    solved: dict[str, list[str]] = {}
    prompts = []
    for ex in examples:
        if ex.family not in solved:
            found = make_examples(world, ex.family, shots, "train", seed + 1)
            solved[ex.family] = [qa_text(s.prompt, direct(s.answer)) for s in found]
        asked = question(ex.prompt)
        for k in range(len(solved[ex.family]), -1, -1):
            ids = [
                tokenizer.bos_id,
                *tokenizer.encode(with_demos(solved[ex.family][:k], asked)),
            ]
            if len(ids) <= max_len:
                break
        prompts.append(ids[-max_len:])
    return prompts


def chat_prompts(tokenizer: Tokenizer, examples: Sequence[Example]) -> list[list[int]]:
    """The chat template of each question, ending with ``<|assistant|>``."""
    return [tokenizer.render_prompt([{"role": "user", "content": e.prompt}]) for e in examples]


def decode(
    model: GPT,
    tokenizer: Tokenizer,
    prompts: Sequence[Sequence[int]],
    *,
    chat: bool,
    temperature: float,
    num_samples: int,
    settings: EvalSettings,
) -> list[list[Generation]]:
    """``num_samples`` answers per prompt, decoded in batches; a chat model stops at
    ``<|eot|>``, a few-shot prompted one at the end of its line."""
    stop: list[int | str] = list(tokenizer.stop_ids)
    if not chat:
        stop.append("\n")
    out: list[list[Generation]] = []
    for start in range(0, len(prompts), settings.batch_size):
        chunk = prompts[start : start + settings.batch_size]
        gens = generate(
            model,
            chunk,
            max_new_tokens=settings.max_new_tokens,
            temperature=temperature,
            stop=stop,
            seed=settings.seed + start,
            tokenizer=tokenizer,
            num_samples=num_samples,
        )
        out.extend(gens[i * num_samples : (i + 1) * num_samples] for i in range(len(chunk)))
    return out


@torch.no_grad()
def kl_to_reference(
    policy: GPT,
    reference: GPT,
    prompts: Sequence[Sequence[int]],
    answers: Sequence[Sequence[Generation]],
    batch_size: int = 64,
) -> list[float]:
    """``log pi(y|x) - log pi_ref(y|x)`` of every sampled answer (nats), in prompt order: their
    mean is the Monte Carlo estimate of KL(pi || pi_ref), on the answers' own tokens (sampled at
    temperature 1)."""
    rows, targets = [], []
    for prompt, gens in zip(prompts, answers, strict=True):
        for g in gens:
            seq = [*prompt, *g.tokens]
            rows.append(seq[:-1])
            targets.append([IGNORE_INDEX] * (len(prompt) - 1) + list(g.tokens))
    device = policy.wte.weight.device
    out: list[float] = []
    for i in range(0, len(rows), batch_size):
        x = pad_right(rows[i : i + batch_size], 0).to(device)
        y = pad_right(targets[i : i + batch_size], IGNORE_INDEX).to(device)
        out.extend((sequence_logprobs(policy, x, y) - sequence_logprobs(reference, x, y)).tolist())
    return out


@dataclass
class StageAnswers:
    """A model's answers to the held-out prompts: one greedy and ``samples`` sampled each."""

    greedy: list[str]
    sampled: list[list[str]]
    kl: list[float] | None = None  # to the reference per sampled answer (None: not measured)
    rewards: list[list[float]] = field(default_factory=list)  # reward model, sampled answers


def answer_all(
    model: GPT,
    tokenizer: Tokenizer,
    examples: Sequence[Example],
    settings: EvalSettings,
    *,
    few_shot_world: int | None = None,
    reference: GPT | None = None,
    reward_model: RewardModel | None = None,
) -> StageAnswers:
    """Answer every example greedily and by sampling; with ``few_shot_world`` the model is
    prompted few-shot (a pretrained model), else through the chat template."""
    model.eval()
    chat = few_shot_world is None
    if chat:
        prompts = chat_prompts(tokenizer, examples)
    else:
        room = min(settings.max_new_tokens, model.config.block_size // 4)
        prompts = few_shot_prompts(
            tokenizer,
            examples,
            few_shot_world,
            settings.shots,
            settings.seed,
            model.config.block_size - room,
        )
    common = {"chat": chat, "settings": settings}
    greedy = decode(model, tokenizer, prompts, temperature=0.0, num_samples=1, **common)
    sampled = decode(
        model,
        tokenizer,
        prompts,
        temperature=settings.temperature,
        num_samples=settings.samples,
        **common,
    )
    result = StageAnswers(
        greedy=[g[0].text.strip() for g in greedy],
        sampled=[[g.text.strip() for g in gens] for gens in sampled],
    )
    if chat and reference is not None and settings.temperature == 1.0:
        result.kl = kl_to_reference(model, reference, prompts, sampled, settings.batch_size)
    if reward_model is not None:
        flat_prompts = [
            e.prompt for e, gens in zip(examples, result.sampled, strict=True) for _ in gens
        ]
        flat = reward_model.score(flat_prompts, [a for gens in result.sampled for a in gens])
        k = settings.samples
        result.rewards = [flat[i * k : (i + 1) * k] for i in range(len(examples))]
    return result


def answer_best_of_n(
    sft: GPT,
    tokenizer: Tokenizer,
    examples: Sequence[Example],
    settings: EvalSettings,
    reward_model: RewardModel,
) -> StageAnswers:
    """Best-of-``settings.best_of_n`` answers from the SFT model, ``samples`` independent picks
    per prompt (the first stands for the greedy answer); the KL to SFT is the analytic bound."""
    n = settings.best_of_n
    picks = best_of_n(
        sft,
        tokenizer,
        [e.prompt for e in examples],
        reward_model.score,
        n,
        picks=settings.samples,
        temperature=settings.temperature,
        max_new_tokens=settings.max_new_tokens,
        seed=settings.seed,
        batch_size=settings.batch_size * settings.samples,
    )
    sampled = [[(p.generation.text or "").strip() for p in row] for row in picks]
    return StageAnswers(
        greedy=[row[0] for row in sampled],
        sampled=sampled,
        kl=[best_of_n_kl(n)] * sum(map(len, sampled)) if settings.temperature == 1.0 else None,
        rewards=[[p.reward for p in row] for row in picks],
    )


def pair_outcomes(model: RewardModel, pairs: Sequence[Mapping[str, Any]]) -> list[float]:
    """Per held-out comparison, 1 if the reward model scores the chosen answer higher, 0.5 on a
    tie, else 0: their mean is the pairwise accuracy, and the items give it an interval."""
    prompts = [p["prompt"] for p in pairs]
    chosen = model.score(prompts, [p["chosen"] for p in pairs])
    rejected = model.score(prompts, [p["rejected"] for p in pairs])
    return wins(chosen, rejected)


def _mean(values: Sequence[float]) -> float:
    return sum(values) / len(values) if values else float("nan")


def wins(scores: Sequence[float], baseline: Sequence[float]) -> list[float]:
    """Per paired answer, 1 if it scores above the baseline's, 0.5 on a tie, else 0."""
    return [1.0 if a > b else 0.5 if a == b else 0.0 for a, b in zip(scores, baseline, strict=True)]


def win_rate(scores: Sequence[float], baseline: Sequence[float]) -> float:
    """Share of paired answers the judge scores above the baseline's, ties counted half."""
    return _mean(wins(scores, baseline))


def summarize(
    examples: Sequence[Example], answers: StageAnswers, baseline: StageAnswers | None
) -> tuple[dict[str, Any], dict[str, list[float]]]:
    """The numbers of one stage and the per-item outcomes they are means of.

    The summary: accuracy and judge (greedy and sampled), by family, win rates against
    ``baseline`` (the SFT model), KL and reward. The outcomes, for bootstrap intervals:
    ``exact_greedy`` (per prompt), ``exact_sampled``, ``judge_sampled``, ``win_vs_sft_sampled``
    and ``kl_to_sft`` (per sampled answer, prompt by prompt).
    """
    greedy = [verdict(e, a) for e, a in zip(examples, answers.greedy, strict=True)]
    sampled = [
        [verdict(e, a) for a in gens] for e, gens in zip(examples, answers.sampled, strict=True)
    ]
    flat = [v for vs in sampled for v in vs]
    by_family: dict[str, list[bool]] = {}
    for e, v in zip(examples, greedy, strict=True):
        by_family.setdefault(e.family, []).append(v.correct)
    outcomes: dict[str, list[float]] = {
        "exact_greedy": [float(v.correct) for v in greedy],
        "exact_sampled": [float(v.correct) for v in flat],
        "judge_sampled": [v.score for v in flat],
    }
    if answers.kl is not None:
        outcomes["kl_to_sft"] = list(answers.kl)
    summary: dict[str, Any] = {
        "accuracy_greedy": _mean(outcomes["exact_greedy"]),
        "accuracy_sampled": _mean(outcomes["exact_sampled"]),
        "judge_greedy": _mean([v.score for v in greedy]),
        "judge_sampled": _mean(outcomes["judge_sampled"]),
        "accuracy_by_family": {f: _mean(c) for f, c in by_family.items()},
        "kl_to_sft": _mean(answers.kl) if answers.kl is not None else None,
        "reward_sampled": _mean([r for rs in answers.rewards for r in rs])
        if answers.rewards
        else None,
        "mean_words_sampled": _mean([len(a.split()) for gens in answers.sampled for a in gens]),
        # answers the judge cannot score higher: against them a better model can only tie
        "perfect_share_sampled": _mean([v.score == 1.0 for v in flat]),
    }
    if baseline is not None:
        base_greedy = [verdict(e, a).score for e, a in zip(examples, baseline.greedy, strict=True)]
        base_sampled = [
            verdict(e, a).score
            for e, gens in zip(examples, baseline.sampled, strict=True)
            for a in gens
        ]
        outcomes["win_vs_sft_sampled"] = wins(outcomes["judge_sampled"], base_sampled)
        summary["win_rate_vs_sft_greedy"] = win_rate([v.score for v in greedy], base_greedy)
        summary["win_rate_vs_sft_sampled"] = _mean(outcomes["win_vs_sft_sampled"])
    return summary, outcomes


def transcript(
    examples: Sequence[Example], stages: Mapping[str, StageAnswers], n: int
) -> list[dict[str, Any]]:
    """The first sampled answer of every stage to ``n`` prompts (one per family first)."""
    order, seen = [], set()
    for i, e in enumerate(examples):
        if e.family not in seen:
            seen.add(e.family)
            order.append(i)
    order += [i for i in range(len(examples)) if i not in order]
    return [
        {
            "family": examples[i].family,
            "prompt": examples[i].prompt,
            "reference": examples[i].answer,
            **{name: s.sampled[i][0] for name, s in stages.items()},
        }
        for i in order[:n]
    ]
