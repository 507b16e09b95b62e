"""Over-optimisation made visible during PPO, and a guard that stops a run gaming its reward.

Gao et al. (2022, "Scaling Laws for Reward Model Overoptimization") optimise a policy against a
proxy reward model and score it with a gold one: as the KL to the initial policy grows, the
proxy score keeps rising while the gold score rises, peaks and falls. PPO runs here that gamed
the reward model reached 22 nats and wrote gibberish.

:class:`HeldoutMonitor` draws that curve during the run. At iteration 0 (before any update),
every ``eval_every`` iterations and at the end, the current policy answers a fixed set of
held-out prompts, one sample each at temperature 1 with the same seed every time (common random
numbers: the curve moves with the policy, not with sampling noise), and the metrics log gets the
reward function's mean score (``heldout_reward``), the gold function's (``heldout_gold``;
TinyWorld's judge in the recipe) and the KL to the reference on those answers (``heldout_kl``,
nats per answer, the estimator of the rollouts); ``heldout.jsonl`` keeps every answer. Greedy
answers would double the cost and are not the distribution PPO optimises or Gao et al. score.

:class:`Guard` stops the run at an iteration boundary when the rollout's or the held-out KL
passes ``max_kl``, or when the held-out gold score has fallen more than ``max_gap`` below its
best while the reward's held-out score is at or above its value there (the reward is being
gamed). The run ends as if that iteration were its last (checkpoint, plots).

Whether it stops or completes, the run keeps (``keep="best"``, the default when there is a gold
score) the weights of its best held-out gold score, early stopping on validation: the held-out
prompts (TinyWorld's validation split by default) are not those that report the run, and
the best iteration may be 0 (the starting policy: PPO did not help). ``best_gold.safetensors``
holds those weights, so a resumed run still ends with them (a finished run extended with more
iterations goes on from them); ``keep="last"`` keeps the last iteration's policy.
``guard.json`` records why the run ended, where the gold score peaked and which iteration's
weights the run folder holds.
"""

from __future__ import annotations

import json
import logging
from collections.abc import Mapping, Sequence
from dataclasses import asdict, dataclass
from pathlib import Path
from statistics import fmean
from typing import Any

from torch import Tensor

from genlab.align.ppo_losses import kl_penalty
from genlab.align.rollout import (
    RewardFn,
    Rollouts,
    collect_rollout,
    iteration_seed,
    make_queries,
    trim_jsonl,
)
from genlab.core.callbacks import Callback
from genlab.core.errors import GenlabError
from genlab.core.io import atomic_save_tensors, atomic_write_json, load_tensors
from genlab.core.run import load_model_tensors, model_tensors
from genlab.core.trainer import Trainer
from genlab.data.records import Prompt

HELDOUT_FILE = "heldout.jsonl"
GUARD_FILE = "guard.json"
BEST_FILE = "best_gold.safetensors"
log = logging.getLogger(__name__)


@dataclass
class Best:
    """The held-out evaluation with the highest gold score so far."""

    iteration: int
    gold: float
    reward: float


class Guard:
    """PPO's stopping rules; ``max_kl`` or ``max_gap`` 0 turns a rule off."""

    def __init__(self, max_kl: float, max_gap: float) -> None:
        self.max_kl, self.max_gap = max_kl, max_gap
        self.best: Best | None = None

    def check_kl(self, kl: float, what: str) -> str | None:
        """Why to stop, if ``kl`` (nats per answer) passes ``max_kl``."""
        if self.max_kl > 0 and kl > self.max_kl:
            return f"{what} {kl:.1f} > max_kl {self.max_kl:g}"
        return None

    def check_gap(self, iteration: int, reward: float, gold: float) -> str | None:
        """Track the best gold score; why to stop, if gold has fallen more than ``max_gap``
        below it while the reward is at or above its value there."""
        best = self.best
        if best is None or gold > best.gold:
            self.best = Best(iteration, gold, reward)
            return None
        if self.max_gap > 0 and best.gold - gold > self.max_gap and reward >= best.reward:
            return (
                f"held-out gold score {gold:.3f} fell {best.gold - gold:.3f} > max_gap "
                f"{self.max_gap:g} below its best ({best.gold:.3f} at iteration {best.iteration}) "
                f"while the held-out reward went {best.reward:.3f} -> {reward:.3f}"
            )
        return None


class HeldoutMonitor(Callback):
    """Held-out evaluations and the guard: a callback of the PPO run placed after its
    :class:`Rollouts`, whose KL it reads at each iteration's end. ``gold_fn`` None: no gold score
    and no ``max_gap`` rule."""

    name = "ppo_monitor"

    def __init__(
        self,
        rollouts: Rollouts,
        prompts: Sequence[Prompt],
        gold_fn: RewardFn | None,
        run_dir: Path,
    ) -> None:
        self.rollouts, self.gold_fn, self.run_dir = rollouts, gold_fn, run_dir
        self.cfg = rollouts.cfg
        self.queries = make_queries(rollouts.tokenizer, prompts)
        self.guard = Guard(self.cfg.max_kl, self.cfg.max_gap)
        self.keep_best = self.cfg.keep == "best" and gold_fn is not None and bool(self.queries)
        self.best_weights: dict[str, Tensor] | None = None

    def on_start(self, trainer: Trainer) -> None:
        iteration = trainer.step // self.cfg.steps_per_iteration
        if trainer.info.is_main:
            trim_jsonl(self.run_dir / HELDOUT_FILE, "iteration", iteration)
        if trainer.step == 0:  # the curve's start; no rule can trip (KL 0, no best yet)
            self._evaluate(trainer, 0)
        elif self.keep_best and self.guard.best is not None:  # resumed: the best so far
            path = self.run_dir / BEST_FILE
            if not path.is_file():
                raise GenlabError(
                    f"{path} is missing, so the run cannot end with its best held-out weights; "
                    "resume with keep=last (--keep last)"
                )
            self.best_weights = load_tensors(path, "best held-out weights")

    def on_step_end(self, trainer: Trainer) -> None:
        """At an iteration's end: check the rollout's KL, evaluate when due, stop if tripped."""
        cfg = self.cfg
        if trainer.step % cfg.steps_per_iteration:
            return
        iteration = trainer.step // cfg.steps_per_iteration
        reasons = [self.guard.check_kl(self.rollouts.last["kl"], "rollout KL")]
        last = trainer.step == trainer.config.max_steps
        if reasons[0] or last or (cfg.eval_every and iteration % cfg.eval_every == 0):
            reasons += self._evaluate(trainer, iteration)
        reason = next((r for r in reasons if r), None)
        if reason is not None:
            trainer.request_stop()
            if trainer.info.is_main:
                log.warning("PPO stopped at iteration %d: %s", iteration, reason)
        if reason is not None or last:
            kept = iteration
            best = self.guard.best
            if self.keep_best and best is not None and best.iteration != iteration:
                assert self.best_weights is not None
                load_model_tensors(trainer.net, self.best_weights, str(self.run_dir / BEST_FILE))
                kept = best.iteration
            self._write_guard(trainer, iteration, reason, kept)

    def _evaluate(self, trainer: Trainer, iteration: int) -> list[str | None]:
        """Answer the held-out prompts, log the scores and KL, apply the held-out rules."""
        cfg, r = self.cfg, self.rollouts
        if not self.queries or not cfg.eval_every:
            return []
        answers = collect_rollout(
            r.model,
            r.reference,
            r.tokenizer,
            self.queries,
            r.reward_fn,
            max_new_tokens=cfg.max_new_tokens,
            seed=iteration_seed(cfg.seed, 0, 2),
            chunk_size=cfg.minibatch_size,
            precision=cfg.precision,
        )
        kl = kl_penalty(answers.logprobs, answers.ref_logprobs, answers.mask).sum(1).tolist()
        scores = {"reward": answers.scores.tolist(), "kl": kl}
        if self.gold_fn is not None:
            gold = [float(g) for g in self.gold_fn(answers.prompts, answers.responses)]
            if len(gold) != len(answers):
                raise GenlabError(
                    f"the gold function returned {len(gold)} scores for {len(answers)} answers"
                )
            scores["gold"] = gold
        record = {f"heldout_{key}": fmean(values) for key, values in scores.items()}
        trainer.logger.log(trainer.step, {"iteration": iteration, **record})
        if trainer.info.is_main:
            path = self.run_dir / HELDOUT_FILE
            _append_answers(path, iteration, answers.prompts, answers.responses, scores)
        reasons = [self.guard.check_kl(record["heldout_kl"], "held-out KL")]
        if "heldout_gold" in record:
            gap = self.guard.check_gap(iteration, record["heldout_reward"], record["heldout_gold"])
            reasons.append(gap)
            best = self.guard.best
            if self.keep_best and best is not None and best.iteration == iteration:
                self._remember(trainer)
        return reasons

    def _remember(self, trainer: Trainer) -> None:
        """Keep the current weights as the best so far, in memory and (for a resume) on disk."""
        weights = {
            k: v.detach().to("cpu", copy=True) for k, v in model_tensors(trainer.net).items()
        }
        self.best_weights = weights
        if trainer.info.is_main:
            atomic_save_tensors(self.run_dir / BEST_FILE, weights)

    def _write_guard(self, trainer: Trainer, iteration: int, reason: str | None, kept: int) -> None:
        if not trainer.info.is_main:
            return
        best = self.guard.best
        atomic_write_json(
            self.run_dir / GUARD_FILE,
            {
                "stopped": reason is not None,
                "iteration": iteration,
                "iterations": self.cfg.iterations,
                "reason": reason,
                "kept_iteration": kept,
                "best_gold_iteration": best.iteration if best else None,
                "best_gold": best.gold if best else None,
                "max_kl": self.cfg.max_kl,
                "max_gap": self.cfg.max_gap,
            },
        )

    def state_dict(self) -> dict[str, Any]:
        return {"best": asdict(self.guard.best) if self.guard.best else None}

    def load_state_dict(self, state: Mapping[str, Any]) -> None:
        self.guard.best = Best(**state["best"]) if state["best"] else None


def _append_answers(
    path: Path,
    iteration: int,
    prompts: Sequence[Prompt],
    responses: Sequence[str],
    scores: Mapping[str, list[float]],
) -> None:
    """Append each held-out answer with its scores to ``heldout.jsonl``."""
    with path.open("a") as f:
        for i, (prompt, response) in enumerate(zip(prompts, responses, strict=True)):
            line = {"iteration": iteration, "prompt": prompt, "response": response}
            line.update({key: round(values[i], 4) for key, values in scores.items()})
            f.write(json.dumps(line) + "\n")
