"""The GPT model: shapes, loss, KV-cache parity, padding, masking and size accounting."""

import math

import pytest
import torch

from genlab.core.errors import GenlabError
from genlab.nets.gpt import GPT, PRESETS, GPTConfig


def small(pos: str = "learned", **kw) -> GPT:
    torch.manual_seed(0)
    cfg = GPTConfig(vocab_size=97, block_size=64, n_layer=2, n_head=4, n_embd=32, pos=pos, **kw)
    return GPT(cfg).eval()


@pytest.mark.parametrize("pos", ["learned", "rope"])
def test_forward_shapes_and_initial_loss(pos):
    model = small(pos)
    idx = torch.randint(0, 97, (3, 17))
    logits, loss = model(idx, torch.randint(0, 97, (3, 17)))
    assert logits.shape == (3, 17, 97)
    # at initialisation the prediction is close to uniform
    assert abs(loss.item() - math.log(97)) < 0.3
    logits, loss = model(idx)
    assert loss is None and logits.shape == (3, 17, 97)
    last, _ = model(idx, last_only=True)
    torch.testing.assert_close(last[:, 0], logits[:, -1])


def test_ignore_index_masks_the_loss():
    model = small()
    idx = torch.randint(0, 97, (2, 10))
    targets = idx.clone()
    targets[:, :5] = -100
    _, masked = model(idx, targets)
    logits, _ = model(idx)
    ref = torch.nn.functional.cross_entropy(logits[:, 5:].reshape(-1, 97), idx[:, 5:].reshape(-1))
    torch.testing.assert_close(masked, ref)


@pytest.mark.parametrize("pos", ["learned", "rope"])
@pytest.mark.parametrize("prefill", [1, 5, 16])
def test_kv_cache_matches_full_forward(pos, prefill):
    model = small(pos)
    idx = torch.randint(0, 97, (2, 24))
    full, _ = model(idx)
    cache = model.new_cache(2)
    parts = [model(idx[:, :prefill], cache=cache)[0]]
    for t in range(prefill, 24):
        parts.append(model(idx[:, t : t + 1], cache=cache)[0])
    assert cache.length == 24
    torch.testing.assert_close(torch.cat(parts, 1), full, atol=1e-5, rtol=0)


@pytest.mark.parametrize("pos", ["learned", "rope"])
def test_left_padded_batch_with_cache_matches_each_prompt_alone(pos):
    model = small(pos)
    lengths = [20, 13, 6]
    seqs = [torch.randint(1, 97, (n,)) for n in lengths]
    T = max(lengths)
    ids = torch.zeros(3, T, dtype=torch.long)
    mask = torch.zeros(3, T, dtype=torch.long)
    for i, s in enumerate(seqs):
        ids[i, T - len(s) :] = s
        mask[i, T - len(s) :] = 1
    positions = (mask.cumsum(-1) - 1).clamp(min=0)
    cache = model.new_cache(3)
    prefill = 8
    parts = [
        model(
            ids[:, :prefill],
            attention_mask=mask[:, :prefill],
            positions=positions[:, :prefill],
            cache=cache,
        )[0]
    ]
    for t in range(prefill, T):
        parts.append(
            model(
                ids[:, t : t + 1],
                attention_mask=mask[:, : t + 1],
                positions=positions[:, t : t + 1],
                cache=cache,
            )[0]
        )
    batched = torch.cat(parts, 1)
    for i, s in enumerate(seqs):
        alone, _ = model(s[None])
        torch.testing.assert_close(batched[i, T - len(s) :], alone[0], atol=1e-5, rtol=0)
    assert not torch.isnan(batched).any()  # padded queries never see an all-masked row


def test_bidirectional_attention_sees_the_future():
    model = small()
    idx = torch.randint(0, 97, (1, 10))
    changed = idx.clone()
    changed[0, -1] = (idx[0, -1] + 1) % 97
    causal_a, _ = model(idx)
    causal_b, _ = model(changed)
    torch.testing.assert_close(causal_a[0, :-1], causal_b[0, :-1])  # causal: past unaffected
    bi_a, _ = model(idx, causal=False)
    bi_b, _ = model(changed, causal=False)
    assert (bi_a[0, 0] - bi_b[0, 0]).abs().max() > 1e-4  # bidirectional: first token sees last


def test_weight_tying_and_layer_names():
    model = small()
    assert model.lm_head.weight is model.wte.weight
    names = {n for n, _ in model.named_modules()}
    for part in ("attn.qkv", "attn.proj", "mlp.fc", "mlp.proj"):
        assert f"blocks.0.{part}" in names
    untied = small(tie_weights=False)
    assert untied.lm_head.weight is not untied.wte.weight


def test_num_params_and_flops():
    model = small()
    total = sum(p.numel() for p in model.parameters())
    assert model.num_params(non_embedding=False) == total
    assert model.num_params() == total - 64 * 32  # position embedding excluded
    c = model.config
    assert model.flops_per_token(16) == 6 * model.num_params() + 12 * c.n_layer * c.n_embd * 16
    assert model.flops_per_token(16, training=False) == model.flops_per_token(16) / 3


def test_gpt2_preset_has_124m_parameters():
    with torch.device("meta"):
        model = GPT(PRESETS["gpt2"])
    assert model.num_params(non_embedding=False) == 124_439_808


def test_context_overflow_and_bad_config_raise_one_line_errors():
    model = small()
    with pytest.raises(GenlabError, match="exceeds the model's context"):
        model(torch.zeros(1, 65, dtype=torch.long))
    with pytest.raises(GenlabError, match="not divisible"):
        GPTConfig(n_embd=30, n_head=4)
    with pytest.raises(GenlabError, match="unknown GPT preset"):
        GPTConfig.preset("huge")
    assert GPTConfig.from_dict(GPTConfig.preset("tiny").to_dict()) == PRESETS["tiny"]


def test_resize_vocab_keeps_old_tokens_and_ties():
    model = small()
    idx = torch.randint(0, 97, (1, 8))
    before, _ = model(idx)
    model.resize_vocab(100)
    assert model.config.vocab_size == 100 and model.lm_head.weight is model.wte.weight
    after, _ = model(idx)
    torch.testing.assert_close(after[..., :97], before)
    torch.testing.assert_close(model.wte.weight[99], model.wte.weight[:97].mean(0))


def test_packed_segments_do_not_attend_to_each_other():
    from genlab.nets.gpt import segment_positions

    model = small()
    a, b = torch.randint(0, 97, (1, 7)), torch.randint(0, 97, (1, 5))
    packed = torch.cat([a, b], 1)
    seg = torch.tensor([[0] * 7 + [1] * 5])
    pos = segment_positions(seg)
    assert pos.tolist() == [list(range(7)) + list(range(5))]
    logits, _ = model(packed, segment_ids=seg, positions=pos)
    torch.testing.assert_close(logits[:, :7], model(a)[0], atol=1e-5, rtol=0)
    torch.testing.assert_close(logits[:, 7:], model(b)[0], atol=1e-5, rtol=0)


def test_zero_dropout_keeps_the_state_dict_keys():
    assert small().state_dict().keys() == small(dropout=0.1).state_dict().keys()


def test_kv_cache_layers_follow_a_replaced_store():
    # serving points a cache at the first rows of a larger store; each layer's view follows
    model = small()
    store = model.new_cache(4, 16)
    cache = model.new_cache(0, 16)
    cache.k, cache.v = store.k[:, :2], store.v[:, :2]
    idx = torch.randint(0, 97, (2, 5))
    full, _ = model(idx)
    model(idx[:, :4], cache=cache)
    step, _ = model(idx[:, 4:], cache=cache)
    torch.testing.assert_close(step[:, 0], full[:, -1], atol=1e-5, rtol=0)
    assert store.k[:, :2, :, :5].abs().sum() > 0 and store.k[:, 2:].abs().sum() == 0


def test_a_bf16_kv_cache_stores_bf16_and_stays_close_to_float32():
    """A narrower cache rounds the keys and values, nothing else: the logits stay float32,
    differ from the float32 cache's (the bf16 cache is used) by no more than its rounding."""
    model = small()
    idx = torch.randint(0, 97, (2, 20))
    ref_cache, cache = model.new_cache(2), model.new_cache(2, dtype=torch.bfloat16)
    assert cache.k.dtype == cache.v.dtype == torch.bfloat16
    ref = [model(idx[:, :8], cache=ref_cache)[0]]
    got = [model(idx[:, :8], cache=cache)[0]]
    for t in range(8, 20):
        ref.append(model(idx[:, t : t + 1], cache=ref_cache)[0])
        got.append(model(idx[:, t : t + 1], cache=cache)[0])
    ref, got = torch.cat(ref, 1), torch.cat(got, 1)
    assert got.dtype == torch.float32
    assert 0 < (got - ref).abs().max() < 0.05 * ref.abs().max()
