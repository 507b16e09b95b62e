"""The adapter layers and their injection: exact merges, gradients only where they belong,
per-row adapters equal to one adapter at a time, PEFT's layer math, soft prompts under decoding."""

from __future__ import annotations

import pytest
import torch
from torch import nn

from genlab.adapt import inject
from genlab.adapt.adapted import Adapted, load_adapter
from genlab.adapt.config import AdapterConfig
from genlab.core import registry
from genlab.core.errors import GenlabError
from genlab.data.tokenizer import Tokenizer
from genlab.methods.autoregressive.checkpoint import save_gpt
from genlab.methods.autoregressive.decoding import generate
from genlab.nets.gpt import GPT, GPTConfig
from references import require

pytestmark = pytest.mark.usefixtures("one_thread")


def tiny(seed: int = 0, **overrides) -> GPT:
    torch.manual_seed(seed)
    return GPT(GPTConfig.preset("tiny", bias=True, **overrides)).eval()


def randomise(model: nn.Module, name: str, std: float = 0.2) -> None:
    """Give adapter ``name`` non-zero up-projections (they start at zero: no effect)."""
    with torch.no_grad():
        for n, p in inject.adapter_parameters(model, name).items():
            if "lora_B" in n or "adapter_up" in n:
                p.normal_(std=std)


def ids(batch: int = 3, length: int = 12, seed: int = 1) -> torch.Tensor:
    return torch.randint(0, 512, (batch, length), generator=torch.Generator().manual_seed(seed))


@pytest.mark.parametrize("method", ["lora", "bottleneck", "prompt"])
def test_a_new_adapter_starts_as_the_identity_except_the_prompt(method):
    model, x = tiny(), ids()
    base = model(x)[0]
    inject.add_adapter(model, AdapterConfig(method, prompt_tokens=4), "a")
    out = model(x)[0]
    if method == "prompt":  # a prompt is new context: it must change what follows it
        assert (out - base).abs().max() > 1e-3
    else:
        assert torch.equal(out, base)


def test_merge_then_unmerge_restores_the_base_and_merged_equals_unmerged():
    model, x = tiny(), ids()
    before = {n: p.clone() for n, p in model.state_dict().items()}
    inject.add_adapter(model, AdapterConfig("lora", rank=4, targets=("attn.qkv", "mlp.fc")), "a")
    randomise(model, "a")
    unmerged = model(x)[0]
    inject.merge(model)
    merged = model(x)[0]
    torch.testing.assert_close(merged, unmerged, atol=1e-5, rtol=0)
    qkv = model.blocks[0].attn.qkv
    assert not torch.equal(qkv.base_layer.weight, before["blocks.0.attn.qkv.weight"])
    inject.unmerge(model)
    for name, p in model.state_dict().items():
        key = name.replace(".base_layer", "")
        if key in before:
            assert (p - before[key]).abs().max() <= 1e-6, name
    torch.testing.assert_close(model(x)[0], unmerged, atol=1e-5, rtol=0)


def test_conv_lora_merges_exactly():
    torch.manual_seed(0)
    net = nn.Sequential(nn.Conv2d(3, 8, 3, padding=1), nn.SiLU(), nn.Conv2d(8, 4, 1))
    x = torch.randn(2, 3, 8, 8)
    before = net(x)
    inject.add_adapter(net, AdapterConfig("lora", rank=2, targets=("0", "2")), "a")
    assert torch.equal(net(x), before)
    randomise(net, "a")
    adapted = net(x)
    inject.merge(net)
    torch.testing.assert_close(net(x), adapted, atol=1e-5, rtol=0)
    inject.unmerge(net)
    inject.set_adapters(net, None)
    torch.testing.assert_close(net(x), before, atol=1e-6, rtol=0)


def test_only_adapter_parameters_receive_gradients():
    model, x = tiny(), ids()
    inject.add_adapter(model, AdapterConfig("lora", rank=4), "a")
    inject.add_adapter(model, AdapterConfig("lora", rank=4), "b")
    inject.set_adapters(model, "a")
    trained = inject.train_only(model, "a")
    model.train()
    _, loss = model(x, x)
    loss.backward()
    own = inject.adapter_parameters(model, "a")
    assert (
        trained == sum(p.numel() for p in own.values()) == 2 * (4 * 64 + 192 * 4 + 4 * 64 + 64 * 4)
    )
    for n, p in model.named_parameters():
        if n in own:
            assert p.grad is not None, n
        else:
            assert p.grad is None and not p.requires_grad, n
    # B starts at zero, so only B gets a gradient at first; A's is zero but present
    assert any(p.grad.abs().sum() > 0 for n, p in own.items() if "lora_B" in n)


def test_weighted_combination_adds_the_scaled_deltas():
    model, x = tiny(), ids()
    cfg = AdapterConfig("lora", rank=4, targets=("lm_head",))  # one linear layer: exact sums
    model.lm_head = nn.Linear(64, 512, bias=False)
    model.lm_head.weight.data.copy_(model.wte.weight)
    base = model(x)[0]
    inject.add_adapter(model, cfg, "a")
    inject.add_adapter(model, cfg, "b")
    randomise(model, "a")
    randomise(model, "b")
    inject.set_adapters(model, "a")
    da = model(x)[0] - base
    inject.set_adapters(model, "b")
    db = model(x)[0] - base
    inject.set_adapters(model, {"a": 0.5, "b": -2.0})
    torch.testing.assert_close(model(x)[0] - base, 0.5 * da - 2.0 * db, atol=1e-5, rtol=0)


@pytest.mark.parametrize("method", ["lora", "bottleneck"])
def test_rows_mix_adapters_in_one_batch_as_each_alone(method):
    model, x = tiny(), ids(batch=4)
    inject.add_adapter(model, AdapterConfig(method, rank=2, bottleneck_size=4), "a")
    inject.add_adapter(model, AdapterConfig(method, rank=6, bottleneck_size=8), "b")
    randomise(model, "a")
    randomise(model, "b")
    alone = {}
    for name in ("a", "b", None):
        inject.set_adapters(model, name)
        alone[name] = model(x)[0]
    per_row = ["b", None, "a", "b"]
    with inject.rows(model, per_row):
        mixed = model(x)[0]
    for r, name in enumerate(per_row):
        torch.testing.assert_close(mixed[r], alone[name][r], atol=1e-5, rtol=0)
    assert not torch.allclose(alone["a"], alone["b"])


def test_gathered_rows_equal_one_adapter_at_a_time():
    """The batched (Punica-style) path against the plain loop over adapters it replaces."""
    model = tiny()
    for name, rank in (("a", 2), ("b", 5)):
        inject.add_adapter(model, AdapterConfig("lora", rank=rank), name)
        randomise(model, name)
    inject.set_rows(model, ["a", "b", None, "b", "a"])
    layer = model.blocks[1].attn.qkv
    h = torch.randn(5, 3, 64)
    y = layer.base_layer(h)
    fast = layer.rows_delta(h, y)
    slow = inject.AdapterLayer.rows_delta(layer, h, y)
    torch.testing.assert_close(fast, slow, atol=1e-6, rtol=0)
    inject.set_rows(model, None)


def test_lora_layer_matches_peft():
    peft = require("peft")
    torch.manual_seed(0)
    reference = nn.Sequential(nn.Linear(16, 32), nn.ReLU(), nn.Conv2d(32, 8, 3, padding=1))
    ours = nn.Sequential(nn.Linear(16, 32), nn.ReLU(), nn.Conv2d(32, 8, 3, padding=1))
    ours.load_state_dict(reference.state_dict())
    cfg = peft.LoraConfig(r=4, lora_alpha=12, target_modules=["0", "2"])
    theirs = peft.get_peft_model(reference, cfg)
    inject.add_adapter(ours, AdapterConfig("lora", rank=4, alpha=12, targets=("0", "2")), "default")
    with torch.no_grad():
        for name, p in theirs.named_parameters():
            if "lora_" in name:
                p.normal_(std=0.3)
                key = name.removeprefix("base_model.model.")
                ours.get_parameter(key).copy_(p)
    x = torch.randn(2, 16)
    conv_in = torch.randn(2, 32, 5, 5)
    torch.testing.assert_close(ours[0](x), theirs.base_model.model[0](x), atol=1e-6, rtol=0)
    torch.testing.assert_close(
        ours[2](conv_in), theirs.base_model.model[2](conv_in), atol=1e-5, rtol=0
    )
    torch.testing.assert_close(
        ours[2].delta_weight("default"),
        theirs.base_model.model[2].get_delta_weight("default"),
        atol=1e-6,
        rtol=0,
    )


def test_an_adapter_saved_alone_loads_on_a_fresh_base(tmp_path):
    base = tiny()
    tok = _tokenizer()
    save_gpt(tmp_path / "base", base, tok)
    model = tiny()
    adapted = Adapted.around(model, tmp_path / "base", AdapterConfig("lora", rank=4), "task")
    randomise(adapted.model, "task")
    assert set(adapted.state_dict()) == {"model." + n for n in adapted._own}
    registry.save(tmp_path / "adapter", adapted, "adapter", adapted.config)
    size = (tmp_path / "adapter" / "model.safetensors").stat().st_size
    assert size < (tmp_path / "base" / "model.safetensors").stat().st_size / 10
    x = ids()
    loaded = load_adapter(tmp_path / "adapter")
    torch.testing.assert_close(loaded(x)[0], adapted(x)[0], atol=0, rtol=0)
    opened = registry.load(tmp_path / "adapter")
    assert opened.files["tokenizer"].vocab_size == tok.vocab_size
    # a GPT of other sizes is not its base: one line naming the layer
    save_gpt(tmp_path / "other", tiny(n_embd=32), tok)
    moved = dict(adapted.config.to_dict(), base=str(tmp_path / "other"))
    (tmp_path / "adapter" / "config.json").write_text(
        (tmp_path / "adapter" / "config.json")
        .read_text()
        .replace(str(tmp_path / "base"), moved["base"])
    )
    with pytest.raises(GenlabError, match=r"blocks\.0\.attn\.(qkv|proj)\.lora_A.*\(4, 32\)"):
        load_adapter(tmp_path / "adapter")


def _tokenizer() -> Tokenizer:
    return Tokenizer.train(["a small corpus of words for a tiny tokenizer"] * 20, vocab_size=300)


def test_soft_prompt_decoding_with_cache_equals_the_full_forward():
    model = tiny()
    inject.add_adapter(model, AdapterConfig("prompt", prompt_tokens=5), "p")
    prompts = [[5, 6, 7, 8, 9, 10], [11, 12, 13]]
    out = generate(model, prompts, max_new_tokens=6, temperature=0.0, seed=0)
    for prompt, gen in zip(prompts, out, strict=True):
        seq = list(prompt)
        for _ in range(6):  # greedy, recomputed from scratch without a cache
            logits = model(torch.tensor([seq]))[0]
            seq.append(int(logits[0, -1].argmax()))
        assert gen.tokens == seq[len(prompt) :]


def test_a_soft_prompt_takes_its_positions_from_the_generation_budget():
    model = tiny()
    inject.add_adapter(model, AdapterConfig("prompt", prompt_tokens=5), "p")
    room = model.config.block_size - 5
    prompt = list(range(3, 3 + room - 4))
    (gen,) = generate(model, [prompt], max_new_tokens=50, temperature=0.0, seed=0)
    assert len(gen.tokens) == 4 and gen.finish_reason == "length"  # context full, no error
    with pytest.raises(GenlabError, match="leaves no room"):
        generate(model, [list(range(3, 3 + room))], max_new_tokens=1)


def test_soft_prompt_switches_off_and_back():
    model, x = tiny(), ids()
    base = model(x)[0]
    inject.add_adapter(model, AdapterConfig("prompt", prompt_tokens=3), "p")
    prompted = model(x)[0]
    inject.set_adapters(model, None)
    assert torch.equal(model(x)[0], base)
    assert "prefix" not in "".join(model.state_dict())
    inject.set_adapters(model, "p")
    assert torch.equal(model(x)[0], prompted)
    assert inject.adapter_names(model) == ["p"]


def test_bad_adapter_requests_are_one_line_errors():
    model = tiny()
    with pytest.raises(GenlabError, match="no layer matches .*blocks.0.attn.qkv"):
        inject.add_adapter(model, AdapterConfig("lora", targets=("nothere",)), "a")
    inject.add_adapter(model, AdapterConfig("lora"), "a")
    with pytest.raises(GenlabError, match="already has an adapter named 'a'"):
        inject.add_adapter(model, AdapterConfig("lora"), "a")
    with pytest.raises(GenlabError, match="one adapter method per layer"):
        inject.add_adapter(model, AdapterConfig("bottleneck", targets=("attn.proj",)), "b")
    inject.add_adapter(model, AdapterConfig("bottleneck", targets=("mlp.proj",)), "b")
    with pytest.raises(GenlabError, match="cannot be merged"):
        inject.merge(model, "b")
    with pytest.raises(GenlabError, match="no adapter named 'zzz'"):
        inject.set_adapters(model, "zzz")
    inject.merge(model, "a")
    with pytest.raises(GenlabError, match="unmerge"):
        inject.set_rows(model, ["a"])
    inject.unmerge(model)
    inject.add_adapter(model, AdapterConfig("prompt", prompt_tokens=2), "p")
    with pytest.raises(GenlabError, match="soft prompt"):
        inject.set_rows(model, ["a", "p"])
    with pytest.raises(GenlabError, match="unknown adapter 'ia3'"):
        AdapterConfig("ia3")
    with pytest.raises(GenlabError, match="rank must be positive"):
        AdapterConfig("lora", rank=0)


def test_delete_returns_layers_to_their_base():
    model, x = tiny(), ids()
    base = model(x)[0]
    inject.add_adapter(model, AdapterConfig("lora"), "a")
    randomise(model, "a")
    inject.delete_adapter(model, "a")
    assert not list(inject.adapter_layers(model))
    assert isinstance(model.blocks[0].attn.qkv, nn.Linear)
    assert torch.equal(model(x)[0], base)
