"""A GPT checkpoint folder: ``config.json`` + ``model.safetensors`` + ``tokenizer.json``.

What ``genlab generate``, ``chat`` and ``serve`` open, and what pretraining and fine-tuning
write. The tokenizer travels with the weights, because token ids mean nothing without it.
"""

from __future__ import annotations

import os
from pathlib import Path

import torch

from genlab.core.checkpoint import load_model_weights, read_model_config, save_model_folder
from genlab.core.errors import GenlabError
from genlab.data.tokenizer import Tokenizer
from genlab.nets.gpt import GPT, GPTConfig

KIND = "gpt"
TOKENIZER_FILE = "tokenizer.json"


def save_gpt(folder: str | os.PathLike, model: GPT, tokenizer: Tokenizer) -> Path:
    """Write the model and its tokenizer so that ``load_gpt`` restores both."""
    folder = Path(folder)
    tokenizer.save(folder / TOKENIZER_FILE)
    return save_model_folder(folder, model, KIND, model.config.to_dict())


def load_gpt(
    folder: str | os.PathLike, device: str | torch.device = "cpu"
) -> tuple[GPT, Tokenizer]:
    """Open a GPT checkpoint folder (checking kind, shapes and vocabulary) in eval mode."""
    folder = Path(folder)
    meta = read_model_config(folder, KIND)
    config = GPTConfig.from_dict(meta["config"])
    if not (folder / TOKENIZER_FILE).is_file():
        raise GenlabError(f"{folder} has no {TOKENIZER_FILE}; it is needed to read and write text")
    tokenizer = Tokenizer.load(folder / TOKENIZER_FILE)
    if tokenizer.vocab_size > config.vocab_size:
        raise GenlabError(
            f"{folder}: the tokenizer has {tokenizer.vocab_size} tokens but the model only "
            f"{config.vocab_size}; they do not belong together"
        )
    model = GPT(config)
    load_model_weights(folder, model)
    return model.to(device).eval(), tokenizer
