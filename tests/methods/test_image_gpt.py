"""Image GPT over image tokens: the likelihood is exactly the sum of per-token log-probs (checked
one position at a time) and the training loss; KV-cache sampling equals recomputing the whole
sequence, guidance included; a tiny model learns captioned codes; shapes, run folders, errors."""

from __future__ import annotations

import math

import pytest
import torch
import torch.nn.functional as F

from genlab.core.errors import GenlabError
from genlab.core.registry import load, save
from genlab.methods.autoregressive.image_gpt import (
    KIND,
    ImageGPT,
    ImageGPTConfig,
    ImageGPTLoss,
    bits_per_token,
    log_likelihood,
    sample,
)

pytestmark = pytest.mark.usefixtures("one_thread")

K, GRID, VOCAB, LENGTH = 6, (4, 4), 5, 3


def config(**kw) -> ImageGPTConfig:
    sizes = {"n_layer": 2, "n_head": 2, "n_embd": 32}
    return ImageGPTConfig(
        **{"num_codes": K, "grid": GRID, "cond_vocab": VOCAB, "cond_length": LENGTH, **sizes, **kw}
    )


def captioned_codes(n: int, seed: int) -> tuple[torch.Tensor, torch.Tensor]:
    """Captions "<cls> w" (w = 3 or 4); the image of w = 3 is stripes of codes 0/1 by row,
    that of w = 4 a chequerboard of 2/3 with one random code (the last) per image."""
    g = torch.Generator().manual_seed(seed)
    word = torch.randint(3, 5, (n,), generator=g)
    rows = torch.arange(4)[:, None].expand(4, 4)
    chequer = (rows + torch.arange(4)[None, :]) % 2
    codes = torch.where((word == 3)[:, None, None], rows % 2, 2 + chequer).clone()
    codes[:, -1, -1] = torch.randint(0, K, (n,), generator=g)
    captions = torch.stack((torch.ones(n, dtype=torch.long), word), dim=1)
    return codes, captions


@pytest.fixture(scope="module")
def trained() -> tuple[ImageGPT, list[float]]:
    """120 AdamW steps on captioned codes (about a second)."""
    threads = torch.get_num_threads()
    torch.set_num_threads(1)
    torch.manual_seed(0)
    model = ImageGPT(config())
    opt = torch.optim.AdamW(model.parameters(), lr=3e-3)
    step_fn, losses = ImageGPTLoss(), []
    for step in range(120):
        loss, metrics = step_fn(model, captioned_codes(32, step))
        assert metrics["bits_per_token"] == pytest.approx(loss.item() / math.log(2))
        opt.zero_grad()
        loss.backward()
        opt.step()
        losses.append(loss.item())
    torch.set_num_threads(threads)
    return model.eval(), losses


def test_loss_falls_and_the_model_draws_the_captioned_image(trained) -> None:
    model, losses = trained
    assert abs(losses[0] - math.log(K)) < 0.2  # uniform over the codes at the start
    # 15 of 16 codes are determined by the caption, the last is uniform: log(6) / 16 = 0.11
    assert sum(losses[-10:]) / 10 < 0.25 < losses[0] / 5
    codes, captions = captioned_codes(8, 999)
    drawn = sample(model, 8, captions, torch.Generator().manual_seed(0), temperature=0.0)
    assert torch.equal(drawn.view(8, -1)[:, :-1], codes.view(8, -1)[:, :-1])


def reference_log_likelihood(model: ImageGPT, codes, captions) -> torch.Tensor:
    """Sum over positions i of log p(code_i | caption, BOS, codes < i), one forward per i,
    the ids laid out by hand: captions at K + 1 + word, BOS = K."""
    B = len(codes)
    flat = codes.reshape(B, -1)
    padded = F.pad(captions, (0, LENGTH - captions.shape[1]))
    prompt = torch.cat((padded + K + 1, torch.full((B, 1), K)), dim=1)
    total = torch.zeros(B, dtype=torch.float64)
    with torch.no_grad():
        for i in range(flat.shape[1]):
            logits, _ = model.gpt(torch.cat((prompt, flat[:, :i]), dim=1))
            logp = logits[:, -1, :K].double().log_softmax(-1)
            total += logp[torch.arange(B), flat[:, i]]
    return total


def test_likelihood_is_the_sum_of_per_token_log_probs_and_the_loss(trained) -> None:
    model, _ = trained
    codes, captions = captioned_codes(5, 7)
    codes[2] = torch.randint(0, K, GRID, generator=torch.Generator().manual_seed(0))  # unlikely
    ll = log_likelihood(model, codes, captions)
    assert ll.shape == (5,)
    want = reference_log_likelihood(model, codes, captions)
    torch.testing.assert_close(ll, want.float(), rtol=1e-6, atol=1e-5)  # float32 logits
    assert ll[2] < ll[0] - 10
    loss, _ = ImageGPTLoss()(model, (codes, captions))
    torch.testing.assert_close(-ll.sum(), loss.detach() * codes.numel())
    bpt = bits_per_token(model, codes, captions)
    torch.testing.assert_close(bpt, -ll / (16 * math.log(2)))


def reference_sample(model, n, captions, seed, temperature, top_k, guidance) -> torch.Tensor:
    """Sampling without a cache: the whole sequence recomputed for every code."""
    g = torch.Generator().manual_seed(seed)
    padded = F.pad(captions, (0, LENGTH - captions.shape[1]))
    prompt = torch.cat((padded + K + 1, torch.full((n, 1), K)), dim=1)
    null = torch.cat((torch.full((n, LENGTH), K + 1), torch.full((n, 1), K)), dim=1)
    codes = torch.zeros(n, 0, dtype=torch.long)
    with torch.no_grad():
        for _ in range(16):
            logits = model.gpt(torch.cat((prompt, codes), 1))[0][:, -1, :K]
            if guidance:
                uncond = model.gpt(torch.cat((null, codes), 1))[0][:, -1, :K]
                logits = logits + guidance * (logits - uncond)
            logits = logits / temperature
            if top_k is not None:
                kth = logits.topk(top_k, dim=-1).values[:, -1:]
                logits = logits.masked_fill(logits < kth, -math.inf)
            u = torch.rand(logits.shape, generator=g)  # the Gumbel-max draw, as sample's
            code = (logits.log_softmax(-1) - torch.log(-torch.log(u))).argmax(-1, keepdim=True)
            codes = torch.cat((codes, code), dim=1)
    return codes.view(n, *GRID)


@pytest.mark.parametrize(
    ("temperature", "top_k", "guidance"), [(1.0, None, 0.0), (0.8, 3, 0.0), (1.3, None, 2.5)]
)
def test_kv_cache_sampling_equals_recomputing_the_sequence(
    trained, temperature, top_k, guidance
) -> None:
    model, _ = trained
    torch.manual_seed(1)
    untrained = ImageGPT(config()).eval()  # a flatter distribution: draws vary more
    for net in (model, untrained):
        _, captions = captioned_codes(6, 3)
        g = torch.Generator().manual_seed(11)
        got = sample(net, 6, captions, g, temperature, top_k, guidance)
        want = reference_sample(net, 6, captions, 11, temperature, top_k, guidance)
        assert torch.equal(got, want)
    again = sample(untrained, 6, captions, torch.Generator().manual_seed(11), temperature)
    other = sample(untrained, 6, captions, torch.Generator().manual_seed(12), temperature)
    g = torch.Generator().manual_seed(11)
    assert torch.equal(again, sample(untrained, 6, captions, g, temperature))
    assert not torch.equal(again, other)


def test_captions_change_predictions_and_short_captions_are_padded(trained) -> None:
    model, _ = trained
    codes, _ = captioned_codes(2, 0)
    with torch.no_grad():
        three = model(codes, torch.tensor([[1, 3], [1, 3]]))
        four = model(codes, torch.tensor([[1, 4], [1, 4]]))
        null = model(codes, None)
        padded = model(codes, torch.tensor([[1, 3, 0], [1, 3, 0]]))
    assert (three - four).abs().max() > 1.0 and (three - null).abs().max() > 0.1
    torch.testing.assert_close(three, padded)
    assert torch.equal(null, model(codes, torch.zeros(2, LENGTH, dtype=torch.long)))


@pytest.mark.parametrize("side", [8, 16])
def test_shapes_of_8x8_and_16x16_grids(side: int) -> None:
    torch.manual_seed(0)
    cfg = ImageGPTConfig(num_codes=16, grid=(side, side), n_layer=1, n_head=2, n_embd=16)
    model = ImageGPT(cfg)
    assert cfg.gpt().block_size == side * side and cfg.gpt().vocab_size == 17
    codes = torch.randint(0, 16, (3, side, side))
    assert model(codes).shape == (3, side * side, 16)
    loss, _ = ImageGPTLoss()(model, (codes, None))
    assert abs(loss.item() - math.log(16)) < 0.1
    drawn = sample(model, 2, None, torch.Generator().manual_seed(0), top_k=4)
    assert drawn.shape == (2, side, side) and drawn.dtype == torch.int64
    assert drawn.min() >= 0 and drawn.max() < 16
    assert log_likelihood(model, codes).shape == (3,)


def test_run_folder_round_trip(trained, tmp_path) -> None:
    model, _ = trained
    save(tmp_path, model, KIND, model.config)
    loaded = load(tmp_path, KIND)
    assert loaded.config == model.config and loaded.config.grid == GRID
    codes, captions = captioned_codes(3, 5)
    torch.testing.assert_close(
        log_likelihood(loaded.model, codes, captions), log_likelihood(model, codes, captions)
    )


def test_errors_name_the_problem(trained) -> None:
    model, _ = trained
    codes, captions = captioned_codes(2, 0)
    with pytest.raises(GenlabError, match=r"codes must lie in \[0, 6\)"):
        model(torch.full((2, 4, 4), K), captions)
    with pytest.raises(GenlabError, match="do not fit the model's grid"):
        model(torch.zeros(2, 8, 8, dtype=torch.long), captions)
    with pytest.raises(GenlabError, match="model reads 3"):
        model(codes, torch.ones(2, 4, dtype=torch.long))
    with pytest.raises(GenlabError, match=r"caption ids must lie in \[0, 5\)"):
        model(codes, torch.full((2, 2), VOCAB))
    plain = ImageGPT(config(cond_vocab=0, cond_length=0))
    with pytest.raises(GenlabError, match="needs a captioned model"):
        sample(plain, 1, None, torch.Generator(), guidance=1.0)
    with pytest.raises(GenlabError, match="cond_length >= 1"):
        config(cond_length=0)
    with pytest.raises(GenlabError, match="unknown ImageGPTConfig field 'depth'"):
        ImageGPTConfig.from_dict({"depth": 3})
