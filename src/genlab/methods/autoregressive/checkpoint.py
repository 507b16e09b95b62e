"""The ``gpt`` kind: ``config.json`` + ``model.safetensors`` + ``tokenizer.json`` (+
``tokenizer_config.json``, its roles and chat template, which older folders lack).

What ``genlab generate``, ``chat`` and ``serve`` open, and what pretraining and fine-tuning
write. The tokenizer travels with the weights, because token ids mean nothing without it; its
files are the ones transformers' ``AutoTokenizer`` reads.
"""

from __future__ import annotations

import os
from pathlib import Path

import torch

from genlab.core import registry
from genlab.core.errors import GenlabError
from genlab.core.registry import ExtraFile, Kind, Loaded, load, register, save
from genlab.data.tokenizer import TOKENIZER_FILE, Tokenizer
from genlab.nets.gpt import GPT, GPTConfig

KIND = "gpt"


def check_vocabulary(loaded: Loaded) -> None:
    """The tokenizer's ids must all have a row in the model's embedding."""
    tokenizer = loaded.files["tokenizer"]
    if tokenizer.vocab_size > loaded.config.vocab_size:
        raise GenlabError(
            f"{loaded.path}: the tokenizer has {tokenizer.vocab_size} tokens but the model only "
            f"{loaded.config.vocab_size}; they do not belong together"
        )


TOKENIZER = ExtraFile(
    TOKENIZER_FILE, "tokenizer", Tokenizer.load, "it is needed to read and write text"
)
register(Kind(KIND, GPTConfig, GPT, (TOKENIZER,), check_vocabulary, generator=""))


def save_gpt(folder: str | os.PathLike, model: GPT, tokenizer: Tokenizer) -> Path:
    """Write the model and its tokenizer so that ``load_gpt`` restores both."""
    files = tokenizer.files(model_max_length=model.config.block_size)
    return save(folder, model, KIND, model.config, files)


def load_gpt(
    folder: str | os.PathLike, device: str | torch.device = "cpu"
) -> tuple[GPT, Tokenizer]:
    """Open the text generator of a model folder (a GPT, or a PPO run's policy) in eval mode,
    checking kind, shapes and vocabulary."""
    loaded = load(folder, device=device)
    part = registry.kind(loaded.kind).generator
    if part is None:
        raise GenlabError(
            f"{folder} holds a '{loaded.kind}' model, which does not generate text: give a GPT "
            "run folder (pretraining, SFT, PPO or DPO)"
        )
    model = loaded.model.get_submodule(part)
    return model, loaded.files["tokenizer"]  # type: ignore[return-value]
