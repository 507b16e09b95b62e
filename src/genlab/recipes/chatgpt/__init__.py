"""The ChatGPT recipe end to end on TinyWorld: pretrain, SFT, reward model, PPO and DPO, measured.

InstructGPT (Ouyang et al., 2022) builds an assistant in steps, and so does this recipe, each a
run folder under ``out``:

1. ``pretrain``: a GPT learns to continue text: TinyWorld's corpus (the world's facts, stories,
   worked sums, dialogues) plus task text (solved questions of the tuned families, train split,
   in a plain ``Question: ... Answer: ...`` layout), so it knows the world and the skills.
2. ``sft``: fine-tuned on demonstrations through the chat template (``genlab.align.sft``). The
   demonstrations are correct but of mixed style on purpose (terse, one sentence, worked steps,
   padded with pleasantries), so SFT imitates a mix.
3. ``reward``: a reward model learns the judge's preferences from comparisons with 10% of the
   labels flipped, as human raters disagree (``genlab.align.reward``).
4. ``ppo``: the SFT model is optimised against the reward model with PPO on a KL leash to the SFT
   model (``genlab.align.ppo``), and, as the alternative without a reward model,
   ``dpo``: direct preference optimisation on the same comparisons (``genlab.align.dpo``).
   Best-of-n (``genlab.align.best_of_n``: the reward model's pick of n SFT samples) is the
   baseline that trains nothing.

Then every model answers the same held-out prompts and is scored by TinyWorld's checkers and
judge (:mod:`genlab.recipes.chatgpt.evaluate`): the pretrained model few-shot prompted, SFT, PPO,
DPO and best-of-n in one table, with win rates against SFT, the KL to SFT and the reward model's
view. The run writes ``report.md``, ``report.json`` (with every per-item outcome),
``answers.jsonl`` (every answer) and plots; the goals are measured with 95% bootstrap intervals
and reported as met or not, never asserted. ``run_seeds`` runs several seeds and reports the
goals over them (:mod:`genlab.recipes.chatgpt.seeds`).

Presets: ``demo`` (about 15 minutes on 2 CPU cores) and ``smoke`` (well under a minute, for
tests). A run interrupted between stages continues with ``resume=True``: finished stages are
kept.

One module per part: ``presets`` (the settings), ``pipeline`` (the stages in order),
``evaluate`` (answers and scores), ``report`` (goals, plots, Markdown), ``run`` (all of it),
``seeds`` (several seeds, one report over them).
"""

from genlab.recipes.chatgpt.pipeline import STAGES, run_stages
from genlab.recipes.chatgpt.presets import PRESETS, ChatGPTConfig, preset_config
from genlab.recipes.chatgpt.run import EVALUATED_MODELS, demo_command, run_chatgpt
from genlab.recipes.chatgpt.seeds import (
    aggregate,
    benchmarks_section,
    run_seeds,
    seed_config,
    write_section,
)

__all__ = [
    "EVALUATED_MODELS",
    "PRESETS",
    "STAGES",
    "ChatGPTConfig",
    "aggregate",
    "benchmarks_section",
    "demo_command",
    "preset_config",
    "run_chatgpt",
    "run_seeds",
    "run_stages",
    "seed_config",
    "write_section",
]
