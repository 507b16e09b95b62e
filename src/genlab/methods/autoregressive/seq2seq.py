"""A decoder-only GPT as a translator: ``source <sep> target <eos>``, the source as a prefix.

The autoregressive baseline of mask-predict: the same words, the same vocabulary, one token per
step. Training is next-token prediction on the target (and its ``<eos>``) only; the source is
context, read causally like any GPT prompt. Decoding is greedy through the batched ``Decoder``
or beam search (:mod:`genlab.methods.autoregressive.beam`).

The ``gpt-translator`` kind: a GPT folder whose text side is ``vocab.json`` (words), not a BPE
tokenizer, so ``genlab generate`` does not open it and ``genlab nar translate`` does.
"""

from __future__ import annotations

import os
from collections.abc import Sequence
from pathlib import Path

import torch
from torch import Tensor, nn

from genlab.core.batches import TensorBatchSource
from genlab.core.errors import GenlabError
from genlab.core.registry import Kind, Loaded, load, register, save
from genlab.data.translation import VOCAB, VOCAB_FILE, Translation, WordVocab
from genlab.methods.autoregressive.beam import beam_search
from genlab.methods.autoregressive.decoding import generate
from genlab.methods.autoregressive.padding import pad_right
from genlab.nets.gpt import GPT, IGNORE_INDEX, GPTConfig

KIND = "gpt-translator"


def _check_vocabulary(loaded: Loaded) -> None:
    if loaded.files["vocab"].size > loaded.config.vocab_size:
        raise GenlabError(
            f"{loaded.path}: {VOCAB_FILE} has {loaded.files['vocab'].size} words but the model "
            f"only {loaded.config.vocab_size}; they do not belong together"
        )


register(Kind(KIND, GPTConfig, GPT, (VOCAB,), _check_vocabulary))


def save_translator(folder: str | os.PathLike, model: GPT, vocab: WordVocab) -> Path:
    return save(folder, model, KIND, model.config, {VOCAB_FILE: vocab.to_json().encode()})


def load_translator(
    folder: str | os.PathLike, device: str | torch.device = "cpu"
) -> tuple[GPT, WordVocab]:
    """A ``gpt-translator`` folder's model (eval mode) and its vocabulary."""
    loaded = load(folder, KIND, device)
    return loaded.model, loaded.files["vocab"]  # type: ignore[return-value]


def prefix_batches(
    sources: Sequence[Sequence[int]],
    targets: Sequence[Sequence[int]],
    vocab: WordVocab,
    seed: int = 0,
) -> TensorBatchSource:
    """``(inputs, labels)`` rows of ``source <sep> target <eos>`` for next-token training, the
    labels ``IGNORE_INDEX`` wherever the next token is still the source, or padding."""
    if not sources or len(sources) != len(targets):
        raise GenlabError("translation batches need as many (non-empty) sources as targets")
    seqs = [[*s, vocab.sep_id, *t, vocab.eos_id] for s, t in zip(sources, targets, strict=True)]
    inputs = pad_right([s[:-1] for s in seqs], vocab.pad_id)
    labels = pad_right([s[1:] for s in seqs], IGNORE_INDEX)
    for row, source in enumerate(sources):
        labels[row, : len(source)] = IGNORE_INDEX
    return TensorBatchSource((inputs, labels), seed=seed)


def prefix_step(model: nn.Module, batch: tuple[Tensor, Tensor]) -> tuple[Tensor, dict]:
    """The trainer's step: next-token loss on the target tokens."""
    inputs, labels = batch
    _, loss = model(inputs, labels)
    return loss, {"tokens": (labels != IGNORE_INDEX).sum()}


def translate_prefix(
    model: GPT,
    sources: Sequence[Sequence[int]],
    vocab: WordVocab,
    beam_size: int = 1,
    max_new_tokens: int = 64,
) -> list[Translation]:
    """Greedy decoding of all sources as one batch (``beam_size=1``), or beam search per
    source; the score is the mean log-prob per token, ``<eos>`` included."""
    if not sources or any(len(s) == 0 for s in sources):
        raise GenlabError("every source needs at least one token")
    prompts = [[*s, vocab.sep_id] for s in sources]
    room = model.config.block_size - max(len(p) for p in prompts)
    max_new = min(max_new_tokens, room)
    if beam_size > 1:
        out = []
        for prompt in prompts:
            best = beam_search(model, prompt, beam_size, max_new, eos_id=vocab.eos_id)[0]
            out.append(Translation(best.tokens, best.score(length_penalty=1.0)))
        return out
    results = generate(model, prompts, max_new, temperature=0.0, stop=[vocab.eos_id])
    return [
        Translation(
            [t for t in r.tokens if t != vocab.eos_id], sum(r.logprobs) / max(len(r.logprobs), 1)
        )
        for r in results
    ]
