"""Mask-predict: the training mask, the re-masking schedule, the decoding loop on a planted
predictor (exact with N = T, one token settled per pass), and a tiny CMLM trained in seconds
whose length predictor is exact and whose mask-predict decodes a copy task exactly."""

from __future__ import annotations

import random

import pytest
import torch

from genlab.core.errors import GenlabError
from genlab.data.translation import WordVocab
from genlab.methods.autoregressive.padding import pad_right
from genlab.methods.masked.cmlm import CMLMBatchSource, CMLMLoss, translate
from genlab.methods.masked.mask_predict import mask_predict
from genlab.methods.masked.masking import linear_count, lowest, training_mask
from genlab.nets.cmlm import CMLM, CMLMConfig
from genlab.nets.gpt import IGNORE_INDEX

pytestmark = pytest.mark.usefixtures("one_thread")
MASK = 2


def test_training_mask_hides_between_one_and_all_real_tokens() -> None:
    lengths = torch.tensor([1, 3, 7, 7] * 250)
    hidden = training_mask(lengths, 9, torch.Generator().manual_seed(0))
    counts = hidden.sum(1)
    assert (hidden & (torch.arange(9) >= lengths[:, None])).sum() == 0  # never padding
    assert ((counts >= 1) & (counts <= lengths)).all()
    sevens = counts[lengths == 7]
    assert set(sevens.tolist()) == set(range(1, 8))  # every count occurs...
    assert abs(sevens.float().mean().item() - 4.0) < 0.3  # ...uniformly: mean (1 + 7) / 2
    again = training_mask(lengths, 9, torch.Generator().manual_seed(0))
    assert torch.equal(hidden, again)


def test_linear_schedule_settles_one_token_per_pass_when_n_equals_t() -> None:
    T = torch.tensor([6])
    assert [int(linear_count(T, t, 6)) for t in range(1, 6)] == [5, 4, 3, 2, 1]
    assert [int(linear_count(torch.tensor([10]), t, 4)) for t in range(1, 4)] == [7, 5, 2]


def test_lowest_picks_the_least_confident_of_the_allowed_slots() -> None:
    scores = torch.tensor([[-0.1, -3.0, -2.0, -9.0], [-1.0, -1.0, -1.0, 0.0]])
    among = torch.tensor([[True, True, True, False], [True, True, True, True]])
    got = lowest(scores, torch.tensor([2, 2]), among)
    assert got.tolist() == [[False, True, True, False], [True, True, False, False]]


def chain_predictor(answer: torch.Tensor, vocab_size: int = 10):
    """Knows slot i only once slot i - 1 is settled (slot 0 always): then it is sure of the
    answer; otherwise it guesses a wrong word, unsure. Only left-to-right settling, one token
    per pass, can decode it all."""

    def predict(tokens: torch.Tensor) -> torch.Tensor:
        B, T = tokens.shape
        known = torch.ones(B, T, dtype=torch.bool)
        known[:, 1:] = tokens[:, :-1] != MASK
        wrong = (answer + 1) % vocab_size
        choice = torch.where(known, answer, wrong)
        logp = torch.full((B, T, vocab_size), -20.0)
        logp.scatter_(2, choice[..., None], torch.where(known, -0.01, -2.0)[..., None])
        return logp

    return predict


def test_mask_predict_with_t_iterations_decodes_a_planted_chain_exactly() -> None:
    answer = torch.tensor([[5, 6, 7, 8, 9, 5, 6]])
    start = torch.full_like(answer, MASK)
    one_pass, _ = mask_predict(chain_predictor(answer), start, MASK, iterations=1)
    assert one_pass[0, 0] == 5 and (one_pass[0, 1:] != answer[0, 1:]).all()
    tokens, scores = mask_predict(chain_predictor(answer), start, MASK, iterations=7)
    assert torch.equal(tokens, answer)
    assert torch.allclose(scores, torch.full_like(scores, -0.01))
    too_few, _ = mask_predict(chain_predictor(answer), start, MASK, iterations=4)
    assert not torch.equal(too_few, answer)


def test_given_tokens_are_context_and_never_change() -> None:
    answer = torch.tensor([[5, 6, 7, 8]])
    start = torch.tensor([[5, 6, MASK, MASK]])  # a prefix another model wrote
    seen = []

    def predict(tokens: torch.Tensor) -> torch.Tensor:
        seen.append(tokens.clone())
        return chain_predictor(answer)(tokens)

    tokens, scores = mask_predict(predict, start, MASK, iterations=2)
    assert torch.equal(tokens, answer) and scores[0, :2].tolist() == [0.0, 0.0]
    assert all(torch.equal(s[0, :2], answer[0, :2]) for s in seen)
    with pytest.raises(GenlabError, match="at least 1 iteration"):
        mask_predict(predict, start, MASK, iterations=0)


# ---------------------------------------------------------------------------------------------
# A tiny CMLM on a toy copy task


def toy(n: int, seed: int, vocab: WordVocab) -> list[list[int]]:
    rng = random.Random(seed)
    return [[rng.randrange(5, vocab.size) for _ in range(rng.randint(1, 6))] for _ in range(n)]


@pytest.fixture(scope="module")
def copier() -> tuple[CMLM, WordVocab]:
    """A one-layer CMLM trained 150 steps (a few seconds) to copy 1-6 words."""
    threads = torch.get_num_threads()
    torch.set_num_threads(1)
    torch.manual_seed(0)
    vocab = WordVocab.from_texts(["a b c d e f g h"])
    src = toy(256, 0, vocab)
    model = CMLM(
        CMLMConfig(
            vocab_size=vocab.size, max_source=8, max_target=8, n_layer=1, n_head=2, n_embd=32
        )
    )
    batches = CMLMBatchSource(src, src, vocab, seed=0)
    opt = torch.optim.AdamW(model.parameters(), lr=3e-3)
    step_fn = CMLMLoss(length_weight=1.0)
    for step in range(150):
        loss, _ = step_fn(model, batches.get_batch(step, 0, 64, 64))
        opt.zero_grad()
        loss.backward()
        opt.step()
    torch.set_num_threads(threads)
    return model.eval(), vocab


def test_length_predictor_predicts_exact_lengths(copier: tuple[CMLM, WordVocab]) -> None:
    model, vocab = copier
    held_out = toy(60, 1, vocab)
    ids = pad_right(held_out, vocab.pad_id)
    with torch.no_grad():
        _, _, length_logits = model.encode(ids, (ids != vocab.pad_id).long())
    assert length_logits.argmax(-1).tolist() == [len(s) for s in held_out]


def test_mask_predict_one_token_per_pass_copies_exactly(copier: tuple[CMLM, WordVocab]) -> None:
    model, vocab = copier
    for length in range(1, 7):
        sources = [s for s in toy(200, 2, vocab) if len(s) == length][:5]
        out = translate(model, sources, vocab, iterations=length, length_beam=1)
        assert [t.ids for t in out] == sources
        assert all(t.score > -0.5 for t in out)


def test_batches_are_a_function_of_seed_and_step_whatever_the_split() -> None:
    vocab = WordVocab.from_texts(["a b c d e f g h"])
    src = toy(50, 0, vocab)
    tgt = [s[::-1] for s in src]
    batches = CMLMBatchSource(src, tgt, vocab, seed=3)
    whole = batches.get_batch(7, 0, 8, 8)
    half = batches.get_batch(7, 4, 8, 8)
    for key, value in half.items():
        assert torch.equal(
            value, whole[key][4:8, : value.shape[1]] if value.dim() > 1 else whole[key][4:8]
        )
    hidden = whole["target"] == vocab.mask_id
    assert torch.equal(hidden, whole["labels"] != IGNORE_INDEX)
    assert (hidden.sum(1) >= 1).all()
    with pytest.raises(GenlabError, match="at least one token"):
        CMLMBatchSource([[5]], [[]], vocab)


# ---------------------------------------------------------------------------------------------
# The hybrid's half: mask-predict after a prefix another model wrote


class TwoWayCMLM(torch.nn.Module):
    """A planted CMLM whose every source has two translations of two words, "a b" and "b a",
    slightly preferring "a" in each slot while the other slot is hidden: one-shot decoding
    writes "a a", which is neither (the multi-modality problem). Once a slot is known, the
    other is sure to be the other word."""

    def __init__(self, vocab: WordVocab) -> None:
        super().__init__()
        self.config = CMLMConfig(vocab_size=vocab.size, max_source=4, max_target=4)
        self.weight = torch.nn.Parameter(torch.zeros(1))  # a device to read
        self.a, self.b, self.vocab = vocab.index["a"], vocab.index["b"], vocab

    def encode(self, source, source_mask):
        lengths = torch.full((source.shape[0], self.config.max_target + 1), -9.0)
        lengths[:, 2] = 0.0  # two words
        return source[..., None].float(), source_mask, lengths

    def decode(self, memory, memory_mask, target, target_mask):
        B, T = target.shape
        logits = torch.full((B, T, self.vocab.size), -20.0)
        for row in range(B):
            for slot in range(min(T, 2)):
                other = int(target[row, 1 - slot])
                if other == MASK:
                    logits[row, slot, self.a], logits[row, slot, self.b] = -0.6, -0.8
                else:
                    logits[row, slot, self.b if other == self.a else self.a] = -0.1
        return logits


def test_a_prefix_settles_what_one_shot_decoding_gets_wrong() -> None:
    vocab = WordVocab.from_texts(["a b c"])
    model = TwoWayCMLM(vocab)
    source = [[vocab.index["c"]]]
    alone = translate(model, source, vocab, iterations=1, length_beam=1)
    assert vocab.decode(alone[0].ids) == "a a"  # each slot alone prefers "a": incoherent
    given_b = translate(model, source, vocab, iterations=1, length_beam=1,
                        prefixes=[[vocab.index["b"]]])  # fmt: skip
    assert vocab.decode(given_b[0].ids) == "b a"  # the prefix is kept, the rest agrees with it
    assert given_b[0].score > -0.2  # the mean over the one word it wrote, sure of it
    both = translate(model, source * 2, vocab, iterations=2, length_beam=1,
                     prefixes=[[vocab.index["a"]], [vocab.index["b"]]])  # fmt: skip
    assert [vocab.decode(t.ids) for t in both] == ["a b", "b a"]
    with pytest.raises(GenlabError, match="1 prefixes for 2 sources"):
        translate(model, source * 2, vocab, prefixes=[[5]])
    with pytest.raises(GenlabError, match="leaves nothing to fill"):
        translate(model, source, vocab, prefixes=[[5, 5, 5, 5]])


def test_prefixes_are_kept_by_a_trained_cmlm(copier: tuple[CMLM, WordVocab]) -> None:
    model, vocab = copier
    sources = [s for s in toy(100, 3, vocab) if len(s) >= 3][:8]
    # a first word it would not write
    wrong = [[(s[0] + 1 - 5) % (vocab.size - 5) + 5] for s in sources]
    out = translate(model, sources, vocab, iterations=3, length_beam=2, prefixes=wrong)
    assert all(t.ids[:1] == w and len(t.ids) > 1 for t, w in zip(out, wrong, strict=True))
    right = translate(model, sources, vocab, iterations=3, length_beam=1,
                      prefixes=[s[:2] for s in sources])  # fmt: skip
    assert [t.ids for t in right] == sources
