"""A tokenizer and tiny GPT folders shared by the alignment tests."""

from __future__ import annotations

import pytest
import torch

from genlab.core.train_config import TrainConfig
from genlab.data.tokenizer import Tokenizer
from genlab.methods.autoregressive.checkpoint import save_gpt
from genlab.nets.gpt import GPT, GPTConfig

TEXT = [
    "the answer is yes. the answer is no. hello there, how are you?\n",
    "what is two plus two? it is four. ugh, whatever, figure it out yourself.\n",
] * 20


@pytest.fixture(autouse=True)
def _one_thread(one_thread):
    """Every test in this folder runs on one thread (see ``one_thread``)."""


@pytest.fixture(scope="session")
def tok() -> Tokenizer:
    return Tokenizer.train(TEXT, vocab_size=300)


def tiny_gpt(tok: Tokenizer, seed: int = 0, block_size: int = 64) -> GPT:
    torch.manual_seed(seed)
    config = GPTConfig(
        vocab_size=tok.vocab_size, block_size=block_size, n_layer=1, n_head=2, n_embd=32
    )
    return GPT(config)


@pytest.fixture
def base(tmp_path, tok):
    """A GPT folder standing for a pretraining run."""
    return save_gpt(tmp_path / "base", tiny_gpt(tok), tok)


def quick_train(max_steps: int, lr: float = 3e-3, batch_size: int = 8) -> TrainConfig:
    """A short CPU training run with evaluation only at the end and nothing else written."""
    return TrainConfig(
        max_steps=max_steps,
        batch_size=batch_size,
        lr=lr,
        warmup_steps=1,
        weight_decay=0.0,
        eval_every=0,
        eval_batches=1,
        checkpoint_every=0,
        device="cpu",
        progress=False,
        tensorboard=False,
        plots=False,
    )


@pytest.fixture
def make_gpt(tok):
    """``make_gpt(seed=0, block_size=64)``: a tiny random GPT for ``tok``."""
    return lambda seed=0, block_size=64: tiny_gpt(tok, seed, block_size)


@pytest.fixture
def train_config():
    """``train_config(max_steps, lr, batch_size)``: see :func:`quick_train`."""
    return quick_train
