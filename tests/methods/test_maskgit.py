"""MaskGIT: the cosine schedule, the decoding loop on planted predictors (with N = T steps and no
noise it is greedy left-to-right decoding; decided tokens never change), the training mask, a
tiny model that learns captioned codes, guidance through the null caption, shapes, run folders."""

from __future__ import annotations

import math

import pytest
import torch

from genlab.core.errors import GenlabError
from genlab.core.registry import load, save
from genlab.methods.masked.maskgit import (
    KIND,
    MaskGIT,
    MaskGITConfig,
    MaskGITLoss,
    cosine_schedule,
    decode,
    decode_tokens,
)

pytestmark = pytest.mark.usefixtures("one_thread")

K, GRID, VOCAB, LENGTH = 6, (4, 4), 5, 3
MASK = 7  # the planted predictors' vocabulary: 0..6, MASK = 7


def config(**kw) -> MaskGITConfig:
    sizes = {"n_layer": 2, "n_head": 2, "n_embd": 32}
    return MaskGITConfig(
        **{"num_codes": K, "grid": GRID, "cond_vocab": VOCAB, "cond_length": LENGTH, **sizes, **kw}
    )


def test_cosine_schedule_falls_from_all_hidden_to_none() -> None:
    fractions = [cosine_schedule(t, 8) for t in range(9)]
    assert fractions[0] == 1.0 and abs(fractions[-1]) < 1e-12
    assert all(a > b for a, b in zip(fractions, fractions[1:], strict=False))
    assert cosine_schedule(1, 2) == pytest.approx(math.sqrt(0.5))
    with pytest.raises(GenlabError, match="steps >= 1"):
        cosine_schedule(0, 0)


def recording(predict, seen: list[torch.Tensor]):
    def wrapped(tokens: torch.Tensor) -> torch.Tensor:
        seen.append(tokens.clone())
        return predict(tokens)

    return wrapped


def random_predictor(vocab: int = 7, seed: int = 0):
    g = torch.Generator().manual_seed(seed)
    return lambda tokens: torch.randn(*tokens.shape, vocab, generator=g) * 2


@pytest.mark.parametrize("steps", [1, 3, 8, 100])
def test_hidden_counts_follow_the_schedule_and_end_at_zero(steps: int) -> None:
    seen: list[torch.Tensor] = []
    start = torch.full((2, 64), MASK)
    g = torch.Generator().manual_seed(0)
    out = decode_tokens(recording(random_predictor(), seen), start, MASK, steps, g)
    assert (out != MASK).all() and (out < 7).all()
    counts = [int((s == MASK).sum(1)[0]) for s in seen]
    assert all(int((s == MASK).sum(1)[1]) == c for s, c in zip(seen, counts, strict=True))
    if steps == 100:  # at least one token per step: done after 64 steps
        assert counts == list(range(64, 0, -1))
    else:
        assert counts == [math.floor(64 * math.cos(math.pi / 2 * t / steps)) for t in range(steps)]
    assert len(seen) == min(steps, 64)  # one step decodes all at once


def test_decided_and_given_tokens_never_change() -> None:
    seen: list[torch.Tensor] = []
    start = torch.full((3, 20), MASK)
    start[:, 5] = 2  # given context
    g = torch.Generator().manual_seed(1)
    out = decode_tokens(recording(random_predictor(seed=1), seen), start, MASK, 6, g, 4.5)
    for before, after in zip(seen, [*seen[1:], out], strict=True):
        decided = before != MASK
        assert torch.equal(after[decided], before[decided])
    assert (out[:, 5] == 2).all() and (out != MASK).all()


def chain_predictor(offset: torch.Tensor):
    """Logits (B, N, 7) whose argmax at i is ``(offset + i + 2 * sum of the tokens left of i)
    mod 7`` (a hidden token counts 0), with a confidence that falls with i: the leftmost
    hidden position is always the most confident."""

    def predict(tokens: torch.Tensor) -> torch.Tensor:
        B, N = tokens.shape
        known = tokens.masked_fill(tokens == MASK, 0)
        left = torch.cumsum(known, 1) - known
        best = (offset[:, None] + torch.arange(N) + 2 * left) % 7
        logits = torch.zeros(B, N, 7)
        logits.scatter_(2, best[..., None], (8.0 - 0.5 * torch.arange(N)).expand(B, N)[..., None])
        return logits

    return predict


def greedy_left_to_right(predict, B: int, N: int) -> torch.Tensor:
    tokens = torch.full((B, N), MASK)
    for i in range(N):
        tokens[:, i] = predict(tokens)[:, i].argmax(-1)
    return tokens


def test_one_token_per_step_without_noise_is_greedy_left_to_right_decoding() -> None:
    B, N = 4, 12
    predict = chain_predictor(torch.arange(B))
    greedy = greedy_left_to_right(predict, B, N)
    start = torch.full((B, N), MASK)
    g = torch.Generator().manual_seed(0)
    got = decode_tokens(predict, start, MASK, N, g, temperature=0.0, token_temperature=0.0)
    assert torch.equal(got, greedy)
    one_shot = decode_tokens(predict, start, MASK, 1, g, temperature=0.0, token_temperature=0.0)
    assert not torch.equal(one_shot, greedy)  # the planted model needs its left context
    assert torch.equal(one_shot[:, 0], greedy[:, 0])


def test_infinite_choice_temperature_decides_in_a_random_order() -> None:
    """At temperature inf the planted model's confidence (highest on the left) is ignored: one
    token per step goes to a random hidden slot, filled as greedy decoding in that order would."""
    B, N = 3, 12
    predict = chain_predictor(torch.arange(B))
    seen: list[torch.Tensor] = []

    def recording(tokens: torch.Tensor) -> torch.Tensor:
        seen.append(tokens.clone())
        return predict(tokens)

    start = torch.full((B, N), MASK)
    g = torch.Generator().manual_seed(0)
    got = decode_tokens(recording, start, MASK, N, g, temperature=math.inf, token_temperature=0.0)
    seen.append(got)
    orders = torch.stack([(b != MASK).sum(1) for b in seen[1:]])  # one more slot per step
    assert torch.equal(orders, torch.arange(1, N + 1)[:, None].expand(N, B))
    decided = torch.stack(
        [(after != before).int().argmax(1) for before, after in zip(seen, seen[1:], strict=False)]
    )
    by_hand = torch.full((B, N), MASK)
    for step in decided:  # greedy decoding in the order the sampler chose
        rows = torch.arange(B)
        by_hand[rows, step] = predict(by_hand)[rows, step].argmax(-1)
    assert torch.equal(got, by_hand)
    left_to_right = torch.arange(N)[:, None].expand(N, B)
    assert not torch.equal(decided, left_to_right)
    assert all(sorted(decided[:, b].tolist()) == list(range(N)) for b in range(B))
    again = decode_tokens(
        predict, start, MASK, N, torch.Generator().manual_seed(1), math.inf, token_temperature=0.0
    )
    assert not torch.equal(again, got)  # another seed, another order (the chain's tokens differ)


def test_training_mask_hides_a_cosine_fraction_and_scores_only_hidden_codes() -> None:
    class Oracle(torch.nn.Module):
        """Knows every code: sure of it where hidden, sure of a wrong code where visible."""

        def __init__(self, codes: torch.Tensor) -> None:
            super().__init__()
            self.config, self.codes, self.inputs = config(), codes.reshape(len(codes), -1), []

        def forward(self, codes, captions):
            self.inputs.append(codes.clone())
            hidden = codes.reshape(len(codes), -1) == K
            answer = torch.where(hidden, self.codes, (self.codes + 1) % K)
            return torch.nn.functional.one_hot(answer, K).float() * 30.0

    codes = torch.randint(0, K, (4000, 8, 8), generator=torch.Generator().manual_seed(0))
    oracle = Oracle(codes)
    loss, metrics = MaskGITLoss(torch.Generator().manual_seed(0))(oracle, (codes, None))
    assert loss.item() < 1e-6 and metrics["masked_accuracy"] == 1.0
    hidden = (oracle.inputs[0] == K).reshape(4000, -1)
    assert torch.equal(
        oracle.inputs[0].reshape(4000, -1)[~hidden], codes.reshape(4000, -1)[~hidden]
    )
    count = hidden.sum(1)
    assert count.min() >= 1 and count.max() == 64
    # E[ceil(64 cos(pi/2 u))] / 64 = 2/pi + about 1/128
    assert abs(count.float().mean().item() / 64 - (2 / math.pi + 1 / 128)) < 0.01
    assert metrics["masked_fraction"] == pytest.approx(count.float().mean().item() / 64)


def captioned_codes(n: int, seed: int) -> tuple[torch.Tensor, torch.Tensor]:
    """Captions "<cls> w" (w = 3 or 4): stripes of codes 0/1 by row, or a chequerboard of 2/3."""
    g = torch.Generator().manual_seed(seed)
    word = torch.randint(3, 5, (n,), generator=g)
    rows = torch.arange(4)[:, None].expand(4, 4)
    chequer = (rows + torch.arange(4)[None, :]) % 2
    codes = torch.where((word == 3)[:, None, None], rows % 2, 2 + chequer)
    return codes, torch.stack((torch.ones(n, dtype=torch.long), word), dim=1)


@pytest.fixture(scope="module")
def trained() -> tuple[MaskGIT, list[float]]:
    """150 AdamW steps on captioned codes (a few seconds)."""
    threads = torch.get_num_threads()
    torch.set_num_threads(1)
    torch.manual_seed(0)
    model = MaskGIT(config())
    opt = torch.optim.AdamW(model.parameters(), lr=3e-3)
    step_fn, losses = MaskGITLoss(torch.Generator().manual_seed(0)), []
    for step in range(150):
        loss, _ = step_fn(model, captioned_codes(32, step))
        opt.zero_grad()
        loss.backward()
        opt.step()
        losses.append(loss.item())
    torch.set_num_threads(threads)
    return model.eval(), losses


def test_loss_falls_and_decoding_draws_the_captioned_image(trained) -> None:
    model, losses = trained
    assert abs(losses[0] - math.log(K)) < 0.3
    assert sum(losses[-10:]) / 10 < losses[0] / 10
    codes, captions = captioned_codes(8, 999)
    drawn = decode(model, 8, captions, torch.Generator().manual_seed(0), steps=4)
    assert (drawn == codes).float().mean() >= 0.95  # drawn at temperature 1: a rare slip
    greedy = decode(
        model, 8, captions, torch.Generator(), steps=4, temperature=0, token_temperature=0
    )
    assert torch.equal(greedy, codes)


def test_captions_change_predictions(trained) -> None:
    model, _ = trained
    hidden = torch.full((2, *GRID), K)
    with torch.no_grad():
        stripes = model(hidden, torch.tensor([[1, 3], [1, 3]])).argmax(-1)
        chequer = model(hidden, torch.tensor([[1, 4], [1, 4]])).argmax(-1)
        padded = model(hidden, torch.tensor([[1, 3, 0], [1, 3, 0]])).argmax(-1)
    assert (stripes < 2).all() and (chequer >= 2).all()
    assert torch.equal(stripes, padded)


def test_guidance_runs_the_null_caption_beside_each_row(trained) -> None:
    model, _ = trained
    _, captions = captioned_codes(3, 1)
    calls: list[torch.Tensor] = []
    hook = model.register_forward_pre_hook(lambda m, args: calls.append(args[1].clone()))
    try:
        got = decode(model, 3, captions, torch.Generator().manual_seed(5), steps=3, guidance=2.0)
    finally:
        hook.remove()
    assert len(calls) == 3
    for seen in calls:
        assert torch.equal(seen[:3], captions) and (seen[3:] == 0).all()

    def by_hand(tokens: torch.Tensor) -> torch.Tensor:  # two separate passes
        codes = tokens.view(3, *GRID)
        cond, uncond = model(codes, captions), model(codes, None)
        return cond + 2.0 * (cond - uncond)

    start = torch.full((3, 16), K)
    g = torch.Generator().manual_seed(5)
    want = decode_tokens(by_hand, start, K, 3, g)
    assert torch.equal(got.view(3, -1), want)


@pytest.mark.parametrize("side", [8, 16])
def test_shapes_of_8x8_and_16x16_grids(side: int) -> None:
    torch.manual_seed(0)
    cfg = MaskGITConfig(num_codes=16, grid=(side, side), n_layer=1, n_head=2, n_embd=16)
    model = MaskGIT(cfg)
    codes = torch.randint(0, 16, (3, side, side))
    assert model(codes).shape == (3, side * side, 16)
    loss, _ = MaskGITLoss()(model, (codes, None))
    assert abs(loss.item() - math.log(16)) < 0.2
    drawn = decode(model, 2, None, torch.Generator().manual_seed(0), steps=4)
    assert drawn.shape == (2, side, side) and drawn.min() >= 0 and drawn.max() < 16
    again = decode(model, 2, None, torch.Generator().manual_seed(0), steps=4)
    assert torch.equal(drawn, again)


def test_run_folder_round_trip(trained, tmp_path) -> None:
    model, _ = trained
    save(tmp_path, model, KIND, model.config)
    loaded = load(tmp_path, KIND)
    assert loaded.config == model.config
    codes, captions = captioned_codes(2, 3)
    with torch.no_grad():
        torch.testing.assert_close(loaded.model(codes, captions), model(codes, captions))


def test_errors_name_the_problem(trained) -> None:
    model, _ = trained
    with pytest.raises(GenlabError, match=r"codes must lie in \[0, 7\)"):
        model(torch.full((1, *GRID), K + 1), None)
    with pytest.raises(GenlabError, match="at least 1 step"):
        decode(model, 1, None, torch.Generator(), steps=0)
    plain = MaskGIT(config(cond_vocab=0, cond_length=0))
    with pytest.raises(GenlabError, match="needs a captioned model"):
        decode(plain, 1, None, torch.Generator(), guidance=1.0)
