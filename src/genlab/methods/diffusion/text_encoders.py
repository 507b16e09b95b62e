"""Which text encoder a text-to-image model reads its captions with: ``small`` (genlab's caption
encoder, trained with the UNet), ``minilm`` (all-MiniLM-L6-v2, frozen) or ``gpt:RUN`` (a genlab
GPT run's hidden states, frozen); see ``genlab.nets.frozen_text_encoder``.

The choice is a name in the model's config, so a run folder rebuilds its encoder when it is
opened. Opening a ``gpt:RUN`` needs the GPT run folders' kinds (``methods.autoregressive``),
which the networks' layer may not import: that is why the names become modules here.
"""

from __future__ import annotations

from collections.abc import Sequence
from pathlib import Path

from torch import nn

from genlab.core.checkpoint import read_model_config
from genlab.core.errors import GenlabError
from genlab.core.registry import kind
from genlab.methods.autoregressive.checkpoint import load_gpt
from genlab.nets.frozen_text_encoder import (
    GPT_PREFIX,
    SMALL,
    FrozenBackend,
    FrozenTextEncoder,
    GPTBackend,
    check_text_encoder,
    gpt_run,
    minilm,
)
from genlab.nets.gpt import GPT
from genlab.nets.text_encoder import TextEncoder, TextEncoderConfig


def resolve_text_encoder(name: str) -> str:
    """``name`` checked, a ``gpt:RUN``'s folder made absolute (the run folder that records it
    may be opened from anywhere)."""
    run = gpt_run(name)
    return name if run is None else f"{GPT_PREFIX}{Path(run).expanduser().resolve()}"


def frozen_backend(name: str) -> FrozenBackend:
    """The frozen network ``name`` (``minilm`` or ``gpt:RUN``) names, on the CPU."""
    run = gpt_run(name)
    if run is None:
        if name == SMALL:
            raise GenlabError("the small text encoder is trained with the UNet, not frozen")
        return minilm()
    try:
        meta = read_model_config(run)
        if kind(meta["kind"]).generator is None:  # rejected before its weights are read
            raise GenlabError(f"{run} holds a '{meta['kind']}' model, not a GPT")
        model, tokenizer = load_gpt(run)
        if not isinstance(model, GPT):
            raise GenlabError(f"{run} holds no genlab GPT")
    except GenlabError as e:
        raise GenlabError(
            f"text encoder '{name}': {e} (give gpt:RUN with a GPT run folder)"
        ) from None
    return GPTBackend(model, tokenizer, name)


def text_encoder_width(name: str) -> int:
    """The width of the states a frozen encoder ``name`` makes (the UNet's context width)."""
    return frozen_backend(name).dim


def build_text_encoder(name: str, text: TextEncoderConfig, vocab: Sequence[str]) -> nn.Module:
    """The caption encoder ``name``: a fresh :class:`TextEncoder` of ``text`` for ``small``, else
    the frozen encoder over captions of ``vocab``, whose width must be ``text.dim``."""
    if check_text_encoder(name) == SMALL:
        return TextEncoder(text)
    backend = frozen_backend(name)
    if backend.dim != text.dim:
        raise GenlabError(
            f"text encoder '{name}' makes {backend.dim}-d states but the model was built for "
            f"{text.dim}-d ones (was the GPT run replaced?)"
        )
    return FrozenTextEncoder(vocab, backend)
