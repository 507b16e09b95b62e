"""Toolformer end to end: a pretrained GPT teaches itself to call tools (Schick et al., 2023).

``toolformer(cfg)`` writes into ``cfg.out``:

1. ``annotator/``: the base fine-tuned briefly on demonstrations of the call syntax mixed with
   questions answered without a call. The paper shows a 6.7B model a few examples in a prompt;
   a model of a million parameters does not learn in context, so it sees them in training. It
   proposes the calls and scores the filter's losses (the paper's M does both); it is not the
   model that is kept.
2. ``annotations.jsonl``: every call the annotator proposed and the tools executed on TinyWorld
   text (solved questions and prose where a tool helps), with the three losses of the filter
   (``genlab.tools.toolformer``); ``annotation.json``: calls proposed, executed and kept per
   tool, and the keep rate at several ``tau_f``.
3. The run folder itself: the *base* fine-tuned on the annotated text, each text with its kept
   call inserted (the others unchanged), the results' tokens without loss. ``tools.json`` names
   the tools and the world, so ``genlab generate RUN --tools`` can run its calls.
"""

from __future__ import annotations

import json
import random
from collections import Counter
from dataclasses import asdict, dataclass, field, replace
from pathlib import Path

from genlab.align.sft import pack, sft_step
from genlab.align.stage import fine_tuning, stage_trainer
from genlab.core.device import pick_device
from genlab.core.errors import GenlabError
from genlab.core.io import atomic_write_bytes
from genlab.core.rng import seed_everything
from genlab.core.train_config import TrainConfig
from genlab.data.tinyworld import World
from genlab.data.tinyworld.tool_text import tool_text
from genlab.data.tinyworld.tool_uses import TOOL_FAMILIES, tool_questions
from genlab.data.tokenizer import Tokenizer
from genlab.methods.autoregressive.checkpoint import load_gpt
from genlab.prompting.layout import direct, qa_text
from genlab.tools.inserted import with_calls
from genlab.tools.reference_calls import reference_call
from genlab.tools.toolbox import toolbox
from genlab.tools.toolformer import AnnotateConfig, Candidate, annotate, keep_rate, kept_calls

ANNOTATOR = "annotator"
ANNOTATIONS = "annotations.jsonl"
SUMMARY = "annotation.json"
TOOLS_FILE = "tools.json"
TAUS = (0.0, 0.25, 0.5, 1.0, 1.5, 2.0, 3.0)


@dataclass
class ToolformerConfig:
    """Which base, which tools, the data to annotate and how to train."""

    base: str = "runs/pretrain"  # a GPT run folder pretrained on TinyWorld text
    out: str = "runs/toolformer"  # run folder to write
    tools: str = "calculator,calendar,lookup"  # the tools the model learns to call
    world: int = 0  # the TinyWorld the lookup answers from and the text is drawn from
    questions: int = 1200  # solved train questions per tool to annotate
    prose: int = 600  # paragraphs of tool-shaped prose to annotate
    demonstrations: int = 100  # examples of the call syntax per tool (the paper's prompt)
    annotator_steps: int = 300  # the annotator's training on the demonstrations
    annotate: AnnotateConfig = field(default_factory=AnnotateConfig)
    train: TrainConfig = field(default_factory=lambda: fine_tuning(500, 1e-3, 30))

    def tool_names(self) -> list[str]:
        names = [t.strip() for t in self.tools.split(",") if t.strip()]
        unknown = [t for t in names if t not in TOOL_FAMILIES]
        if not names or unknown:
            raise GenlabError(
                f"--tools takes a comma-separated list of: {', '.join(TOOL_FAMILIES)}"
                + (f" (not {unknown[0]!r})" if unknown else "")
            )
        return names


def demonstrations(
    world: World, tools: list[str], n: int, seed: int
) -> list[tuple[str, str, str, str]]:
    """``n`` solved train questions per tool with the call before the answer, as
    ``(before, call, result, after)`` texts: the syntax the annotator learns."""
    out = []
    for tool in tools:
        for e in tool_questions(world, tool, n, "train", seed + 101):
            before = qa_text(e.prompt, direct(e.answer))
            cut = before.rindex(f" {e.answer}.")
            out.append((before[:cut], reference_call(e), e.answer, before[cut:]))
    return out


def document(tokenizer: Tokenizer, text: str) -> list[int]:
    """A text's ids and ``<|eos|>``: each text is a document, and a model that learns where one
    ends stops after its answer (packed without it, it learns to run on into the next text)."""
    return [*tokenizer.encode(text), tokenizer.eos_id]


def annotator_examples(
    world: World, tools: list[str], cfg: ToolformerConfig, tokenizer: Tokenizer
) -> list[tuple[list[int], list[int]]]:
    """What the annotator learns from: the demonstrations, and as many solved questions of the
    same tools answered without a call (other questions than those annotated). The annotator
    also scores the filter's losses, and the plain answers keep its loss without a call what
    the base's is: trained on demonstrations alone it expects a call before every answer, its
    loss without one (and with an empty result) is then large whatever it can compute, and the
    filter keeps wrong results too (on the l rung at tau_f = 2, 64% of the kept calculator calls
    were right, 77% with the plain answers; lookup 79% and 94%)."""
    demos = [
        with_calls(tokenizer, document(tokenizer, b + a), [(len(tokenizer.encode(b)), c, r)])
        for b, c, r, a in demonstrations(world, tools, cfg.demonstrations, cfg.train.seed)
    ]
    plain = [
        with_calls(tokenizer, document(tokenizer, qa_text(e.prompt, direct(e.answer))), [])
        for tool in tools
        for e in tool_questions(world, tool, cfg.demonstrations, "train", cfg.train.seed + 202)
    ]
    return demos + plain


def annotation_texts(world: World, tools: list[str], cfg: ToolformerConfig) -> list[str]:
    """What Toolformer annotates: solved train questions of each tool (answered bare, as
    pretraining saw them) and paragraphs of prose where a tool helps, shuffled."""
    texts = [
        qa_text(e.prompt, direct(e.answer))
        for tool in tools
        for e in tool_questions(world, tool, cfg.questions, "train", cfg.train.seed)
    ]
    texts += tool_text(world, cfg.prose, seed=cfg.train.seed)
    random.Random(cfg.train.seed).shuffle(texts)
    return texts


def _train(
    base: str,
    out: Path,
    examples: list[tuple[list[int], list[int]]],
    tokenizer: Tokenizer,
    train: TrainConfig,
    extra: dict[str, bytes] | None = None,
) -> dict[str, float]:
    """Fine-tune ``base`` on packed ``examples`` (a tenth held out; those longer than the
    context dropped) into ``out``."""
    model, _ = load_gpt(base, device=pick_device(train.device))
    seed_everything(train.seed)
    block = model.config.block_size
    examples = [e for e in examples if len(e[0]) <= block]
    if len(examples) < 2:
        raise GenlabError(f"fewer than two texts fit in the model's context of {block} tokens")
    random.Random(train.seed).shuffle(examples)
    n_held = max(1, len(examples) // 10)
    trainer = stage_trainer(
        model.train(),
        sft_step,
        pack(examples[n_held:], block, tokenizer.pad_id),
        pack(examples[:n_held], block, tokenizer.pad_id),
        train,
        out,
        "gpt",
        tokenizer,
        block,
        extra,
    )
    return trainer.fit()


def summary(candidates: list[Candidate], tau_f: float) -> dict[str, object]:
    """Calls proposed, executed and kept per tool, and the keep rate at each of ``TAUS``."""
    per_tool: dict[str, Counter[str]] = {}
    for c in candidates:
        count = per_tool.setdefault(c.tool, Counter())
        count["proposed"] += 1
        count["executed"] += c.executed
        count["kept"] += c.executed and c.gain >= tau_f
    executed = [c for c in candidates if c.executed]
    return {
        "tau_f": tau_f,
        "per_tool": {t: dict(c) for t, c in sorted(per_tool.items())},
        "keep_rate": {str(t): keep_rate(executed, t) for t in TAUS},
    }


def toolformer(cfg: ToolformerConfig) -> dict[str, object]:
    """Annotator, annotation and the fine-tuned model (module docstring); a step whose output
    exists is not redone. Returns the annotation summary and the training metrics."""
    names = cfg.tool_names()
    world = World(cfg.world)
    out = Path(cfg.out)
    _, tokenizer = load_gpt(cfg.base)
    tools = toolbox(names, world=world)

    annotator = out / ANNOTATOR
    if not (annotator / "model.safetensors").is_file():
        steps = cfg.annotator_steps
        train = replace(
            cfg.train, max_steps=steps, warmup_steps=min(cfg.train.warmup_steps, steps // 5)
        )
        _train(
            cfg.base, annotator, annotator_examples(world, names, cfg, tokenizer), tokenizer, train
        )

    texts = [tokenizer.encode(t) for t in annotation_texts(world, names, cfg)]
    path = out / ANNOTATIONS
    if path.is_file():
        candidates = [_candidate(json.loads(line)) for line in path.read_text().splitlines()]
    else:
        model, _ = load_gpt(annotator, device=pick_device(cfg.train.device))
        candidates = annotate(model, tokenizer, texts, tools, cfg.annotate, cfg.train.seed)
        lines = "".join(json.dumps(c.to_dict()) + "\n" for c in candidates)
        atomic_write_bytes(path, lines.encode())
    result = summary(candidates, cfg.annotate.tau_f)
    atomic_write_bytes(out / SUMMARY, json.dumps(result, indent=2).encode())

    kept = kept_calls(candidates, cfg.annotate.tau_f)
    examples = [
        with_calls(tokenizer, [*ids, tokenizer.eos_id], [kept[t]] if t in kept else [])
        for t, ids in enumerate(texts)
    ]
    about = {"tools": names, "world": cfg.world, "settings": asdict(cfg.annotate)}
    metrics: dict[str, float] = {}
    if not (out / "model.safetensors").is_file():
        extra = {TOOLS_FILE: json.dumps(about).encode()}
        metrics = _train(cfg.base, out, examples, tokenizer, cfg.train, extra)
    return {**result, "texts_with_calls": len(kept), "texts": len(texts), **metrics}


def _candidate(row: dict[str, object]) -> Candidate:
    row = dict(row)
    row.pop("gain", None)
    return Candidate(**row)  # type: ignore[arg-type]
