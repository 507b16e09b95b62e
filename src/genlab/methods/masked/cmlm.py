"""Training and decoding the conditional masked LM (Ghazvininejad et al., 2019), and its kind.

Training: each target gets a uniform number of hidden tokens (:func:`training_mask`); the loss
is the cross-entropy of the hidden tokens plus ``length_weight`` times that of the length read
from the source (0.1, fairseq's ``length_loss_factor``). Everything random about an example is a
function of ``(seed, step)`` (:class:`CMLMBatchSource`), so resume and many processes see the
batches of one process.

Decoding: the ``length_beam`` most likely lengths each start a candidate of that many
``<mask>`` tokens; mask-predict fills all candidates as one batch, and the candidate with the
highest mean log-prob per token wins.

The ``cmlm`` kind: ``config.json`` + ``model.safetensors`` + ``vocab.json``.
"""

from __future__ import annotations

import os
from collections.abc import Sequence
from dataclasses import dataclass
from pathlib import Path

import numpy as np
import torch
import torch.nn.functional as F
from torch import Tensor

from genlab.core.batches import TensorBatchSource
from genlab.core.errors import GenlabError
from genlab.core.registry import Kind, Loaded, load, register, save
from genlab.data.translation import SPECIALS, VOCAB, VOCAB_FILE, Translation, WordVocab
from genlab.methods.autoregressive.padding import pad_right
from genlab.methods.masked.mask_predict import mask_predict
from genlab.methods.masked.masking import training_mask
from genlab.nets.cmlm import CMLM, CMLMConfig
from genlab.nets.gpt import IGNORE_INDEX

KIND = "cmlm"


def _check_vocabulary(loaded: Loaded) -> None:
    if loaded.files["vocab"].size != loaded.config.vocab_size:
        raise GenlabError(
            f"{loaded.path}: {VOCAB_FILE} has {loaded.files['vocab'].size} words but the model "
            f"{loaded.config.vocab_size}; they do not belong together"
        )


register(Kind(KIND, CMLMConfig, CMLM, (VOCAB,), _check_vocabulary))


def save_cmlm(folder: str | os.PathLike, model: CMLM, vocab: WordVocab) -> Path:
    return save(folder, model, KIND, model.config, {VOCAB_FILE: vocab.to_json().encode()})


def load_cmlm(
    folder: str | os.PathLike, device: str | torch.device = "cpu"
) -> tuple[CMLM, WordVocab]:
    """A CMLM run folder's model (eval mode) and its vocabulary."""
    loaded = load(folder, KIND, device)
    return loaded.model, loaded.files["vocab"]  # type: ignore[return-value]


def _lengths(seqs: Sequence[Sequence[int]]) -> Tensor:
    return torch.tensor([len(s) for s in seqs], dtype=torch.long)


def _padded(seqs: Sequence[Sequence[int]], pad_id: int) -> tuple[Tensor, Tensor]:
    """Right-padded ids and their mask (1 real, 0 padding), both (N, longest)."""
    ids = pad_right(seqs, pad_id)
    return ids, (torch.arange(ids.shape[1])[None, :] < _lengths(seqs)[:, None]).long()


class CMLMBatchSource:
    """Rows of (source, target) id lists with each target's hidden tokens drawn from
    ``(seed, step)`` for the whole global batch, then sliced: independent of how rows are split.

    A batch: ``source``, ``source_mask``, ``target`` (hidden tokens replaced by ``<mask>``),
    ``target_mask``, ``labels`` (the hidden tokens' ids, ``IGNORE_INDEX`` elsewhere), ``length``.
    """

    def __init__(
        self,
        sources: Sequence[Sequence[int]],
        targets: Sequence[Sequence[int]],
        vocab: WordVocab,
        seed: int = 0,
    ) -> None:
        if not sources or len(sources) != len(targets):
            raise GenlabError("CMLM batches need as many (non-empty) sources as targets")
        if min(len(t) for t in targets) < 1:
            raise GenlabError("every target needs at least one token")
        self.vocab = vocab
        self.seed = seed
        src, src_mask = _padded(sources, vocab.pad_id)
        tgt, tgt_mask = _padded(targets, vocab.pad_id)
        self.rows = TensorBatchSource((src, src_mask, tgt, tgt_mask), seed=seed)

    def get_batch(self, step: int, start: int, stop: int, batch_size: int) -> dict[str, Tensor]:
        src, src_mask, tgt, tgt_mask = self.rows.get_batch(step, 0, batch_size, batch_size)
        seed = int(np.random.SeedSequence([self.seed, step]).generate_state(1)[0])
        length = tgt_mask.sum(dim=1)
        hidden = training_mask(length, tgt.shape[1], torch.Generator().manual_seed(seed))
        rows = slice(start, stop)
        # trim the columns no row of this slice uses
        s, t = int(src_mask[rows].sum(1).max()), int(length[rows].max())
        return {
            "source": src[rows, :s],
            "source_mask": src_mask[rows, :s],
            "target": tgt.masked_fill(hidden, self.vocab.mask_id)[rows, :t],
            "target_mask": tgt_mask[rows, :t],
            "labels": tgt.masked_fill(~hidden, IGNORE_INDEX)[rows, :t],
            "length": length[rows],
        }


@dataclass(frozen=True)
class CMLMLoss:
    """The trainer's step: hidden-token cross-entropy + ``length_weight`` x length cross-entropy."""

    length_weight: float = 0.1

    def __call__(self, model: CMLM, batch: dict[str, Tensor]) -> tuple[Tensor, dict]:
        logits, length_logits = model(
            batch["source"], batch["source_mask"], batch["target"], batch["target_mask"]
        )
        labels = batch["labels"]
        token_loss = F.cross_entropy(
            logits.float().flatten(0, 1), labels.flatten(), ignore_index=IGNORE_INDEX
        )
        length_loss = F.cross_entropy(length_logits.float(), batch["length"])
        length_acc = (length_logits.argmax(-1) == batch["length"]).float().mean()
        metrics = {
            "token_loss": token_loss.detach(),
            "length_loss": length_loss.detach(),
            "length_accuracy": length_acc,
            "tokens": (labels != IGNORE_INDEX).sum(),
        }
        return token_loss + self.length_weight * length_loss, metrics


@torch.no_grad()
def translate(
    model: CMLM,
    sources: Sequence[Sequence[int]],
    vocab: WordVocab,
    iterations: int = 10,
    length_beam: int = 3,
    prefixes: Sequence[Sequence[int]] | None = None,
) -> list[Translation]:
    """Mask-predict: ``length_beam`` length candidates per source, ``iterations`` passes each,
    the best candidate by mean log-prob. ``iterations=1`` is one-shot non-autoregressive.

    ``prefixes`` (one per source, possibly empty): target words already written, by an
    autoregressive model in the hybrid. They are context that mask-predict never changes; only
    lengths longer than the prefix are candidates, the re-masking schedule counts the slots
    after it, and a candidate's score is the mean log-prob of the words mask-predict wrote.
    """
    if length_beam < 1:
        raise GenlabError(f"length_beam must be at least 1, got {length_beam}")
    if not sources or any(len(s) == 0 for s in sources):
        raise GenlabError("every source needs at least one token")
    given = [list(p) for p in prefixes] if prefixes is not None else [[] for _ in sources]
    if len(given) != len(sources):
        raise GenlabError(f"{len(given)} prefixes for {len(sources)} sources: give one each")
    longest_given = max(len(p) for p in given)
    if longest_given >= model.config.max_target:
        raise GenlabError(
            f"a prefix of {longest_given} words leaves nothing to fill: the model writes at "
            f"most {model.config.max_target}"
        )
    was_training = model.training
    model.eval()
    device = next(model.parameters()).device
    try:
        src, src_mask = (t.to(device) for t in _padded(sources, vocab.pad_id))
        memory, memory_mask, length_logits = model.encode(src, src_mask)
        # a translation has at least one word, and at least one after its prefix
        given_len = torch.tensor([len(p) for p in given], device=device)
        too_short = torch.arange(length_logits.shape[1], device=device)[None, :]
        length_logits = length_logits.masked_fill(too_short <= given_len[:, None], float("-inf"))
        beam = min(length_beam, model.config.max_target - longest_given)
        lengths = length_logits.topk(beam, dim=-1).indices.flatten()  # (B * beam,)
        memory = memory.repeat_interleave(beam, dim=0)
        memory_mask = memory_mask.repeat_interleave(beam, dim=0)
        slots = torch.arange(int(lengths.max()), device=device)[None, :] < lengths[:, None]
        tokens = torch.where(slots, vocab.mask_id, vocab.pad_id)
        for row, prefix in enumerate(given):
            if prefix:
                rows = slice(row * beam, (row + 1) * beam)
                tokens[rows, : len(prefix)] = torch.tensor(prefix, device=device)
        filled = (lengths - given_len.repeat_interleave(beam)).clamp(min=1)
        banned = torch.zeros(vocab.size, dtype=torch.bool, device=device)
        banned[: len(SPECIALS)] = True  # only words are written

        def predict(tokens: Tensor) -> Tensor:
            logits = model.decode(memory, memory_mask, tokens, slots.long())
            return logits.float().masked_fill(banned, float("-inf")).log_softmax(-1)

        tokens, scores = mask_predict(predict, tokens, vocab.mask_id, iterations)
        mean = (scores.sum(1) / filled).view(-1, beam)
        best = mean.argmax(dim=1)
        picked = torch.arange(len(sources), device=device) * beam + best
        out = []
        for row, score in zip(picked.tolist(), mean.max(dim=1).values.tolist(), strict=True):
            out.append(Translation(tokens[row, : int(lengths[row])].tolist(), score))
        return out
    finally:
        model.train(was_training)
