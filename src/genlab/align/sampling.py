"""``k`` sampled answers to each chat prompt, a chunk of prompts decoded at a time.

Best-of-n and ranked comparisons both draw several answers per prompt from a chat model: each
prompt is rendered by the chat template, its ``k`` samples share one prefill, and at most
``batch_size`` sequences are decoded together. The same seed gives the same answers.
"""

from __future__ import annotations

from collections.abc import Iterator, Sequence

from genlab.data.records import Prompt, prompt_messages
from genlab.data.tokenizer import Tokenizer
from genlab.methods.autoregressive.decoding import Generation, generate
from genlab.nets.gpt import GPT


def sample_answers(
    model: GPT,
    tokenizer: Tokenizer,
    prompts: Sequence[Prompt],
    k: int,
    *,
    temperature: float = 1.0,
    max_new_tokens: int = 64,
    seed: int = 0,
    batch_size: int = 64,
) -> Iterator[tuple[list[Prompt], list[Generation]]]:
    """Chunks of ``prompts`` with their samples: prompt ``i`` of a chunk owns samples
    ``i * k`` to ``i * k + k - 1``."""
    step = max(1, batch_size // k)
    for start in range(0, len(prompts), step):
        chunk = list(prompts[start : start + step])
        yield (
            chunk,
            generate(
                model,
                [tokenizer.render_prompt(prompt_messages(p)) for p in chunk],
                max_new_tokens=max_new_tokens,
                temperature=temperature,
                stop=list(tokenizer.stop_ids),
                seed=seed + start,
                tokenizer=tokenizer,
                num_samples=k,
            ),
        )
