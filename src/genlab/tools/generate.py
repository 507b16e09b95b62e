"""Generation that runs the tools a model calls: Toolformer's inference (Schick et al., 2023).

The model decodes as usual until it writes ``<|/tool_call|>``; the text since ``<|tool_call|>``
is the call, the tool runs, and ``<|tool_result|>RESULT<|/tool_result|>`` is forced into the
sequence (``Decoder.force``) before the model goes on. The paper stops decoding at the call's
end, runs the API and resumes; forcing the result does the same inside one batched decode.
Without tools the call token is masked, so the same model answers on its own.
"""

from __future__ import annotations

from collections.abc import Mapping, Sequence
from dataclasses import dataclass, field

from torch import Tensor

from genlab.data.tokenizer import Tokenizer
from genlab.methods.autoregressive.decoding import Decoder, generate
from genlab.nets.gpt import GPT
from genlab.tools.base import Tool, format_call, parse_call
from genlab.tools.inserted import result_ids, strip_calls
from genlab.tools.toolbox import run_call


@dataclass
class ToolAnswer:
    """A generation with its calls: the text a reader sees (calls and results removed), each
    call with its result, and every generated id (calls included)."""

    text: str
    calls: list[tuple[str, str]] = field(default_factory=list)
    ids: list[int] = field(default_factory=list)


def generate_with_tools(
    model: GPT,
    tokenizer: Tokenizer,
    prompts: Sequence[Sequence[int]],
    tools: Mapping[str, Tool] | None,
    *,
    max_new_tokens: int = 48,
    stop: Sequence[str] = (),
    temperature: float = 0.0,
    seed: int = 0,
    max_calls: int = 2,
    after_result: Sequence[int] = (),
    spaced_result: bool = True,
    call_top_k: int = 1,
) -> list[ToolAnswer]:
    """Continue each prompt, running the calls it makes with ``tools`` (``None``: no calls;
    the call token is masked). Past ``max_calls`` calls a row's call gets an error result.
    ``after_result`` is forced after each result: a chat model's ``<|assistant|>``, which its
    template puts after a tool message. A result is led by a space as Toolformer's texts have
    it (``genlab.tools.inserted``); ``spaced_result=False`` writes it as a chat template does.
    ``call_top_k``: a row outside a call opens one whenever ``<|tool_call|>`` is among its
    ``call_top_k`` likeliest tokens (Toolformer's decoding, section 4.1, with k = 10; 1 is
    plain greedy)."""
    calls: list[list[tuple[str, str]]] = [[] for _ in prompts]
    open_at: dict[int, int] = {}  # row -> index of its open <|tool_call|> in its tokens
    inside: set[int] = set()  # rows from <|tool_call|> to the end of its result
    decoding: list[Decoder] = []  # the decoder, once its first step is seen

    def on_step(decoder: Decoder, emitted: list[tuple[int, int, float]]) -> None:
        decoding[:] = [decoder]
        for index, token, _ in emitted:
            tokens = decoder.results[index].tokens
            if token == tokenizer.tool_result_end_id:
                inside.discard(index)
            if token == tokenizer.tool_call_id:
                open_at[index] = len(tokens)
                inside.add(index)
            elif token == tokenizer.tool_call_end_id and index in open_at:
                text = tokenizer.decode(tokens[open_at.pop(index) : -1], skip_special=True)
                parsed = parse_call(text)
                text = format_call(parsed[0], parsed[1].strip()) if parsed else text
                if len(calls[index]) >= max_calls:
                    result = f"error: more than {max_calls} calls"
                else:
                    result = run_call(tools or {}, text)
                calls[index].append((text, result))
                body = result_ids(tokenizer, result) if spaced_result else tokenizer.encode(result)
                decoder.force(
                    index,
                    [tokenizer.tool_result_id, *body, tokenizer.tool_result_end_id, *after_result],
                )

    def no_calls(prev: Tensor, logits: Tensor) -> Tensor:
        logits = logits.clone()
        logits[:, tokenizer.tool_call_id] = float("-inf")
        return logits

    def call_opening(prev: Tensor, logits: Tensor) -> Tensor:
        """No call opens inside another; outside one, a call opens when its token is among a
        row's ``call_top_k`` likeliest (while the row has calls left)."""
        call = tokenizer.tool_call_id
        rank = (logits > logits[:, call : call + 1]).sum(-1)
        logits = logits.clone()
        rows = decoding[0].rows if decoding else range(len(prompts))
        for r, index in enumerate(rows):
            if index in inside:
                logits[r, call] = float("-inf")
            elif call_top_k > 1 and rank[r] < call_top_k and len(calls[index]) < max_calls:
                logits[r, call] = logits[r].max() + 1.0
        return logits

    gens = generate(
        model,
        prompts,
        max_new_tokens=max_new_tokens,
        temperature=temperature,
        stop=[*tokenizer.stop_ids, *stop],
        seed=seed,
        tokenizer=tokenizer,
        on_step=on_step if tools else None,
        logits_bias=call_opening if tools else no_calls,
    )
    out = []
    for gen, made in zip(gens, calls, strict=True):
        ids = gen.tokens
        if ids and ids[-1] in tokenizer.stop_ids:
            ids = ids[:-1]
        text = tokenizer.decode(strip_calls(tokenizer, ids), skip_special=True)
        for s in stop:
            cut = text.find(s)
            text = text[:cut] if cut >= 0 else text
        out.append(ToolAnswer(text, made, list(gen.tokens)))
    return out
