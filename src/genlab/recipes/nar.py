"""Non-autoregressive translation end to end: train a mask-predict CMLM or its autoregressive
baseline on sentence pairs, and translate with either.

The data is TinyWorld's cipher (:mod:`genlab.data.tinyworld.translation`; the long, reordered
variant by default) or a JSONL file of ``{"source", "target"}`` pairs; one hash of the source
text splits a file into train/validation/test, as TinyWorld's keys split its questions. The two
models see the same pairs and vocabulary: ``model="cmlm"`` trains the conditional masked LM
(Ghazvininejad et al., 2019), ``model="ar"`` a decoder-only GPT with the source as prefix, of
twice ``n_layer`` layers so that both have about as many weights, with rotary positions
(``ar_pos="rope"``, the default: relative, so copying a source word from a fixed offset is easy
to learn; with GPT-2's learned absolute ones, ``"learned"``, the CPU-size run reached BLEU 33
where rotary reached 99). ``distill`` replaces the training targets by an AR run's
translations of the training sources (sequence-level knowledge distillation, Kim & Rush, 2016):
one consistent translation per source is what a model that writes every word at once finds
easiest to match. At the end, validation BLEU and exact match are measured with the run's own
decoding settings.
"""

from __future__ import annotations

import os
from collections.abc import Sequence
from dataclasses import dataclass, field

import torch
from torch import nn

from genlab.core.checkpoint import read_model_config
from genlab.core.device import pick_device
from genlab.core.errors import GenlabError, refuse_invalid
from genlab.core.rng import seed_everything
from genlab.core.train_config import TrainConfig
from genlab.core.trainer import Trainer
from genlab.data.tinyworld import World
from genlab.data.tinyworld.records import TINYWORLD
from genlab.data.tinyworld.tasks import split_of
from genlab.data.tinyworld.translation import TASKS, translation_pairs
from genlab.data.translation import VOCAB_FILE, Pair, Translation, WordVocab, read_pairs
from genlab.methods.autoregressive import seq2seq
from genlab.methods.masked import cmlm
from genlab.metrics.translation import bleu, exact_match, repeated_words
from genlab.nets.cmlm import CMLM, CMLMConfig
from genlab.nets.gpt import GPT, GPTConfig

MODELS = ("cmlm", "ar")
AR_POSITIONS = ("learned", "rope")  # the AR GPT's position encodings (GPTConfig.pos)


@dataclass
class NARConfig:
    """What to translate, which model, and how to decode it at the final evaluation."""

    out: str = "runs/nar"  # run folder to write
    model: str = "cmlm"  # cmlm (mask-predict) | ar (decoder-only GPT, the source as prefix)
    data: str = TINYWORLD  # "tinyworld" or a .jsonl file of {"source", "target"} pairs
    task: str = (
        "long_cipher_to"  # TinyWorld's: cipher_to | cipher_from | long_cipher_to | long_cipher_from
    )
    world_seed: int = 0  # the TinyWorld whose cipher is translated
    n_train: int = 20_000  # TinyWorld training pairs
    n_eval: int = 200  # validation pairs: loss during training, BLEU at the end
    max_length: int = 32  # longest source or target in words
    n_layer: int = 3  # CMLM: encoder and decoder layers each; AR: twice as many
    n_head: int = 4
    n_embd: int = 128
    dropout: float = 0.1  # dropout probability in the model
    ar_pos: str = "rope"  # AR: the GPT's positions, rope (rotary) | learned (GPT-2)
    length_weight: float = 0.1  # CMLM: weight of the length loss beside the token loss
    distill: str | None = None  # an AR run: train on its translations (Kim & Rush, 2016)
    distill_beam: int = 1  # the teacher's beam width (1: greedy, batched)
    iterations: int = 10  # CMLM: mask-predict passes at the final evaluation
    length_beam: int = 3  # CMLM: length candidates per sentence
    beam: int = 1  # AR: beam width at the final evaluation (1: greedy)
    train: TrainConfig = field(
        default_factory=lambda: TrainConfig(
            max_steps=3000,
            batch_size=64,
            lr=1e-3,
            warmup_steps=100,
            eval_every=250,
            checkpoint_every=500,
            weight_decay=0.01,
        )
    )

    def validate(self) -> None:
        if self.model not in MODELS:
            raise GenlabError(f"unknown model {self.model!r}; choose from: {', '.join(MODELS)}")
        if self.ar_pos not in AR_POSITIONS:
            raise GenlabError(
                f"unknown ar_pos {self.ar_pos!r}; choose from: {', '.join(AR_POSITIONS)}"
            )
        if self.data == TINYWORLD and self.task not in TASKS:
            raise GenlabError(f"unknown task {self.task!r}; choose from: {', '.join(TASKS)}")
        checks = {
            "n_train": self.n_train >= 1,
            "n_eval": self.n_eval >= 1,
            "max_length": self.max_length >= 1,
            "iterations": self.iterations >= 1,
            "length_beam": self.length_beam >= 1,
            "beam": self.beam >= 1,
            "distill_beam": self.distill_beam >= 1,
            "length_weight": self.length_weight >= 0,
            "dropout": 0 <= self.dropout < 1,
        }
        refuse_invalid(self, checks)


def load_pairs(cfg: NARConfig, split: str, n: int) -> list[Pair]:
    """``n`` pairs of ``split`` from TinyWorld, or every pair of the file in that split."""
    if cfg.data == TINYWORLD:
        return translation_pairs(World(cfg.world_seed), cfg.task, n, split, seed=cfg.train.seed)
    return [p for p in read_pairs(cfg.data) if split_of(p.source) == split]


# ---------------------------------------------------------------------------------------------
# Opening a run and translating with it


@dataclass
class Translator:
    """A trained run opened for translation: a CMLM (mask-predict) or a GPT (greedy, beam)."""

    model: nn.Module
    vocab: WordVocab

    @property
    def kind(self) -> str:
        return "cmlm" if isinstance(self.model, CMLM) else "ar"

    def translate_ids(
        self,
        sources: Sequence[Sequence[int]],
        iterations: int = 10,
        length_beam: int = 3,
        beam: int = 1,
    ) -> list[Translation]:
        model = self.model
        if isinstance(model, CMLM):
            return cmlm.translate(model, sources, self.vocab, iterations, length_beam)
        assert isinstance(model, GPT)
        # its context holds source, <sep>, target, <eos>: at most (block - 2) / 2 target words
        longest = (model.config.block_size - 2) // 2
        return seq2seq.translate_prefix(model, sources, self.vocab, beam, longest + 1)

    def translate(
        self,
        texts: Sequence[str],
        iterations: int = 10,
        length_beam: int = 3,
        beam: int = 1,
        batch_size: int = 64,
    ) -> list[str]:
        """Each text translated, in batches of ``batch_size`` sentences."""
        sources = [self.vocab.encode(t) for t in texts]
        out = []
        for i in range(0, len(sources), batch_size):
            chunk = sources[i : i + batch_size]
            out += self.translate_ids(chunk, iterations, length_beam, beam)
        return [self.vocab.decode(t.ids) for t in out]


@dataclass
class Hybrid(Translator):
    """The lecture's hybrid: an autoregressive model decides the direction, mask-predict
    finishes. The AR model ``ar`` writes the first ``prefix_tokens`` words (greedy, or beam
    search with ``beam``); the CMLM ``model`` fills every word after them, the written ones kept
    as context (only longer lengths are candidates). A sentence the AR model ends within the
    prefix is its translation as written. ``prefix_tokens=0`` is plain mask-predict; a prefix
    as long as the sentence is AR decoding.
    """

    ar: GPT | None = None
    prefix_tokens: int = 2

    @property
    def kind(self) -> str:
        return "hybrid"

    def translate_ids(
        self,
        sources: Sequence[Sequence[int]],
        iterations: int = 10,
        length_beam: int = 3,
        beam: int = 1,
    ) -> list[Translation]:
        assert isinstance(self.model, CMLM) and self.ar is not None
        k = self.prefix_tokens
        if k == 0:
            return cmlm.translate(self.model, sources, self.vocab, iterations, length_beam)
        written = seq2seq.translate_prefix(self.ar, sources, self.vocab, beam, k)
        todo = [i for i, w in enumerate(written) if len(w.ids) >= k]  # the others ended early
        if todo:
            filled = cmlm.translate(
                self.model,
                [sources[i] for i in todo],
                self.vocab,
                iterations,
                length_beam,
                prefixes=[written[i].ids for i in todo],
            )
            for i, translation in zip(todo, filled, strict=True):
                written[i] = translation
        return written


def open_hybrid(
    run: str | os.PathLike,
    ar_run: str | os.PathLike,
    prefix_tokens: int,
    device: str | torch.device = "cpu",
) -> Hybrid:
    """A CMLM run that fills in after the first ``prefix_tokens`` words of an AR run; both
    trained on the same data (one vocabulary)."""
    nar, ar = open_translator(run, device), open_translator(ar_run, device)
    if nar.kind != "cmlm" or ar.kind != "ar":
        raise GenlabError(
            f"the hybrid needs a CMLM run and an autoregressive one; {run} is '{nar.kind}', "
            f"{ar_run} is '{ar.kind}'"
        )
    if nar.vocab.words != ar.vocab.words:
        raise GenlabError(
            f"{run} and {ar_run} have different vocabularies: train both on the same data"
        )
    assert isinstance(nar.model, CMLM) and isinstance(ar.model, GPT)
    if not 0 <= prefix_tokens < nar.model.config.max_target:
        raise GenlabError(
            f"prefix_tokens={prefix_tokens}: give 0 to {nar.model.config.max_target - 1} (the "
            "CMLM writes at most that many words after it)"
        )
    return Hybrid(nar.model, nar.vocab, ar.model, prefix_tokens)


def open_translator(run: str | os.PathLike, device: str | torch.device = "cpu") -> Translator:
    """A ``cmlm`` or ``gpt-translator`` run folder, ready to translate."""
    kind = read_model_config(run)["kind"]
    if kind == cmlm.KIND:
        return Translator(*cmlm.load_cmlm(run, device))
    if kind == seq2seq.KIND:
        return Translator(*seq2seq.load_translator(run, device))
    raise GenlabError(
        f"{run} holds a '{kind}' model; give a run of 'genlab nar train' (cmlm or gpt-translator)"
    )


def score(hypotheses: Sequence[str], pairs: Sequence[Pair]) -> dict[str, float]:
    """BLEU, exact match and the repeated-word rate of translations of ``pairs``' sources."""
    references = [p.target for p in pairs]
    return {
        "bleu": bleu(hypotheses, references),
        "exact": exact_match(hypotheses, references),
        "repeats": repeated_words(hypotheses),
    }


# ---------------------------------------------------------------------------------------------
# Training


def distilled(
    teacher: str, pairs: Sequence[Pair], beam: int, device: str, max_length: int
) -> list[Pair]:
    """``pairs`` with each target replaced by the AR ``teacher``'s translation of its source;
    a pair whose translation is empty or longer than ``max_length`` words is left out."""
    translator = open_translator(teacher, device)
    if translator.kind != "ar":
        raise GenlabError(f"distill needs an autoregressive teacher; {teacher} is a CMLM run")
    outputs = translator.translate([p.source for p in pairs], beam=beam, batch_size=256)
    taught = [
        Pair(p.source, t)
        for p, t in zip(pairs, outputs, strict=True)
        if 0 < len(t.split()) <= max_length
    ]
    if not taught:
        raise GenlabError(f"the teacher {teacher} gave no usable translation: train it longer")
    return taught


def _encoded(vocab: WordVocab, pairs: Sequence[Pair], limit: int) -> tuple[list, list]:
    sources, targets = [], []
    for p in pairs:
        s, t = vocab.encode(p.source), vocab.encode(p.target)
        if max(len(s), len(t)) > limit:
            raise GenlabError(
                f"a pair of {len(s)} and {len(t)} words is longer than max_length={limit}: "
                "raise --max-length"
            )
        sources.append(s)
        targets.append(t)
    return sources, targets


def build_model(cfg: NARConfig, vocab_size: int) -> nn.Module:
    if cfg.model == "cmlm":
        return CMLM(
            CMLMConfig(
                vocab_size=vocab_size,
                max_source=cfg.max_length,
                max_target=cfg.max_length,
                n_layer=cfg.n_layer,
                n_head=cfg.n_head,
                n_embd=cfg.n_embd,
                dropout=cfg.dropout,
            )
        )
    return GPT(
        GPTConfig(
            vocab_size=vocab_size,
            block_size=2 * cfg.max_length + 2,  # source, <sep>, target, <eos>
            n_layer=2 * cfg.n_layer,
            n_head=cfg.n_head,
            n_embd=cfg.n_embd,
            dropout=cfg.dropout,
            pos=cfg.ar_pos,
        )
    )


def train_nar(cfg: NARConfig, resume: bool = False) -> dict[str, float]:
    """Train into ``cfg.out`` and measure validation BLEU; return the final metrics."""
    cfg.validate()
    device = str(pick_device(cfg.train.device))
    train_pairs = load_pairs(cfg, "train", cfg.n_train)
    val_pairs = load_pairs(cfg, "validation", cfg.n_eval)[: cfg.n_eval]
    if not train_pairs or not val_pairs:
        raise GenlabError(f"{cfg.data} gives no training or no validation pairs")
    # from the pairs themselves, also when distilling: every run on the same data then shares
    # one vocabulary (a teacher writes only words it was trained on)
    vocab = WordVocab.from_texts(t for p in train_pairs for t in (p.source, p.target))
    if cfg.distill:
        train_pairs = distilled(cfg.distill, train_pairs, cfg.distill_beam, device, cfg.max_length)
    known = [
        p for p in val_pairs if all(w in vocab.index for w in f"{p.source} {p.target}".split())
    ]
    if not known:
        raise GenlabError("no validation pair uses only words seen in training")
    src, tgt = _encoded(vocab, train_pairs, cfg.max_length)
    val_src, val_tgt = _encoded(vocab, known, cfg.max_length)
    seed = cfg.train.seed
    seed_everything(seed)  # the initial weights follow the seed too
    model = build_model(cfg, vocab.size)
    if cfg.model == "cmlm":
        step, kind = cmlm.CMLMLoss(cfg.length_weight), cmlm.KIND
        train_data = cmlm.CMLMBatchSource(src, tgt, vocab, seed)
        eval_data = cmlm.CMLMBatchSource(val_src, val_tgt, vocab, seed + 1)
    else:
        step, kind = seq2seq.prefix_step, seq2seq.KIND
        train_data = seq2seq.prefix_batches(src, tgt, vocab, seed)
        eval_data = seq2seq.prefix_batches(val_src, val_tgt, vocab, seed + 1)
    trainer = Trainer(
        model,
        step,
        train_data,
        cfg.train,
        cfg.out,
        eval_data=eval_data,
        model_kind=kind,
        model_config=model.config.to_dict(),
        extra_files={VOCAB_FILE: vocab.to_json().encode()},
        resume=resume,
    )
    metrics = trainer.fit()
    translator = Translator(model, vocab)  # trained in place, on the trainer's device
    hypotheses = translator.translate(
        [p.source for p in known], cfg.iterations, cfg.length_beam, cfg.beam
    )
    metrics.update({f"val_{k}": v for k, v in score(hypotheses, known).items()})
    metrics["params"] = float(sum(p.numel() for p in model.parameters()))
    return metrics
