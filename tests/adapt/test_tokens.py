"""Trainable token rows (``AdapterConfig.tokens``): they start as the identity, change only their
tokens' embeddings and (tied) logit columns, merge and unmerge exactly, alone get gradients,
mix per batch row, save and reload with their adapter, and refuse ids outside the vocabulary."""

from __future__ import annotations

import pytest
import torch
from torch import nn

from genlab.adapt import inject
from genlab.adapt.adapted import Adapted, attach, load_adapter
from genlab.adapt.config import AdapterConfig
from genlab.adapt.tokens import TiedTokenColumns, TokenRows
from genlab.core import registry
from genlab.core.errors import GenlabError
from genlab.core.io import load_tensors
from genlab.data.tokenizer import Tokenizer
from genlab.methods.autoregressive.checkpoint import save_gpt
from genlab.nets.gpt import GPT, GPTConfig

pytestmark = pytest.mark.usefixtures("one_thread")

CHOSEN = (7, 300, 42)  # unsorted on purpose: the config keeps them sorted
SORTED = tuple(sorted(CHOSEN))


def tiny(seed: int = 0, **overrides) -> GPT:
    torch.manual_seed(seed)
    return GPT(GPTConfig.preset("tiny", bias=True, **overrides)).eval()


def ids(
    batch: int = 3, length: int = 12, seed: int = 1, chosen: tuple[int, ...] = CHOSEN, vocab=512
) -> torch.Tensor:
    """Random ids with ``chosen`` written into every row, so the rows act."""
    x = torch.randint(0, vocab, (batch, length), generator=torch.Generator().manual_seed(seed))
    for b in range(batch):
        x[b, 1 + b : 1 + b + len(chosen)] = torch.tensor(chosen)
    return x


def without(chosen: tuple[int, ...], batch: int = 2, length: int = 10) -> torch.Tensor:
    """Random ids none of which is in ``chosen``."""
    x = torch.randint(0, 512, (batch, length), generator=torch.Generator().manual_seed(5))
    for t in chosen:
        x[x == t] = (t + 1) % 512 if (t + 1) % 512 not in chosen else (t + 2) % 512
    assert not torch.isin(x, torch.tensor(chosen)).any()
    return x


def lora(tokens: tuple[int, ...] = CHOSEN, **kw) -> AdapterConfig:
    return AdapterConfig("lora", rank=kw.pop("rank", 4), tokens=tokens, **kw)


def rows_of(model: GPT, name: str) -> torch.nn.Parameter:
    return model.wte.token_rows[name].weight


def randomise(model: nn.Module, name: str, std: float = 0.3) -> None:
    """New values for adapter ``name``'s LoRA up-projections and its token rows."""
    with torch.no_grad():
        for n, p in inject.adapter_parameters(model, name).items():
            if "lora_B" in n or "adapter_up" in n:
                p.normal_(std=std)
            elif "token_rows" in n:
                p.add_(torch.randn_like(p) * std)


def test_config_keeps_the_ids_sorted_and_once():
    config = AdapterConfig("lora", tokens=(9, 3, 9, 1))
    assert config.tokens == (1, 3, 9)
    assert AdapterConfig.from_dict(config.to_dict()) == config
    assert config.to_dict()["tokens"] == [1, 3, 9]


@pytest.mark.parametrize("method", ["lora", "bottleneck"])
def test_new_token_rows_start_as_the_identity(method):
    model, x = tiny(), ids()
    base = model(x)[0]
    inject.add_adapter(model, AdapterConfig(method, tokens=CHOSEN), "a")
    assert isinstance(model.wte, TokenRows) and isinstance(model.lm_head, TiedTokenColumns)
    assert torch.equal(rows_of(model, "a"), model.wte.base_layer.weight[list(SORTED)])
    assert torch.equal(model(x)[0], base)


def test_changed_rows_change_only_their_tokens_embeddings_and_logits():
    model = tiny()
    weight = model.wte.weight.detach().clone()
    plain = tiny()
    inject.add_adapter(model, lora(), "a")  # LoRA's B starts at zero: only the rows act
    with torch.no_grad():
        rows_of(model, "a").normal_()
    new = rows_of(model, "a").detach()
    # the embedding: new rows for the chosen ids (to rounding: base + (new - base)), the base's
    # for every other, exactly
    x = ids()
    emb = model.wte(x)
    for t, row in zip(SORTED, new, strict=True):
        torch.testing.assert_close(emb[x == t], row.expand(int((x == t).sum()), -1))
    other = ~torch.isin(x, torch.tensor(CHOSEN))
    assert torch.equal(emb[other], weight[x[other]])
    # the tied output layer: the chosen tokens' columns are hidden @ new row, the rest as before
    logits, _, hidden = model(x, return_hidden=True)
    torch.testing.assert_close(logits[..., list(SORTED)], hidden @ new.T, atol=1e-5, rtol=1e-5)
    rest = [t for t in range(512) if t not in CHOSEN]
    torch.testing.assert_close(logits[..., rest], hidden @ weight[rest].T, atol=1e-5, rtol=1e-5)
    # text without the chosen tokens runs through the same hidden states: only their columns move
    y = without(CHOSEN)
    logits, _, hidden = model(y, return_hidden=True)
    base_logits, _, base_hidden = plain(y, return_hidden=True)
    assert torch.equal(hidden, base_hidden)
    assert torch.equal(logits[..., rest], base_logits[..., rest])
    assert (logits[..., list(SORTED)] - base_logits[..., list(SORTED)]).abs().min() > 0
    assert model.lm_head.weight is model.wte.weight  # still one tensor, as the base ties them


def test_merge_then_unmerge_restores_the_embedding_bit_for_bit():
    model, x = tiny(), ids()
    weight = model.wte.weight.detach().clone()
    inject.add_adapter(model, lora(targets=("attn.qkv", "mlp.fc")), "a")
    randomise(model, "a")
    unmerged = model(x)[0]
    inject.merge(model)
    assert torch.equal(model.wte.base_layer.weight[list(SORTED)], rows_of(model, "a"))
    torch.testing.assert_close(model(x)[0], unmerged, atol=1e-5, rtol=0)
    inject.unmerge(model)
    assert torch.equal(model.wte.base_layer.weight, weight)
    torch.testing.assert_close(model(x)[0], unmerged, atol=1e-5, rtol=0)  # LoRA's W + d - d
    # a weighted merge moves the rows part of the way, and unmerges as exactly
    inject.set_adapters(model, {"a": 0.5})
    half = model(x)[0]
    inject.merge(model)
    moved = weight[list(SORTED)] + 0.5 * (rows_of(model, "a") - weight[list(SORTED)])
    torch.testing.assert_close(model.wte.base_layer.weight[list(SORTED)], moved)
    torch.testing.assert_close(model(x)[0], half, atol=1e-5, rtol=0)
    inject.unmerge(model)
    assert torch.equal(model.wte.base_layer.weight, weight)


def test_only_the_adapter_and_its_rows_get_gradients():
    model, x = tiny(), ids()
    inject.add_adapter(model, lora(), "a")
    inject.add_adapter(model, lora(tokens=(1, 2)), "b")
    inject.set_adapters(model, "a")
    trained = inject.train_only(model, "a")
    own = inject.adapter_parameters(model, "a")
    assert tuple(own["wte.token_rows.a.weight"].shape) == (3, 64)
    lora_size = 2 * (4 * 64 + 192 * 4 + 4 * 64 + 64 * 4)
    assert trained == sum(p.numel() for p in own.values()) == lora_size + 3 * 64
    model.train()
    _, loss = model(x, x)
    loss.backward()
    for n, p in model.named_parameters():
        if n in own:
            assert p.grad is not None, n
        else:
            assert p.grad is None and not p.requires_grad, n
    assert own["wte.token_rows.a.weight"].grad.abs().min() > 0  # every row, not only some
    assert model.wte.base_layer.weight.grad is None  # the base embedding (and tied head) stay


def test_rows_mix_token_adapters_in_one_batch_as_each_alone():
    model, x = tiny(), ids(batch=4)
    inject.add_adapter(model, lora(rank=2), "a")
    inject.add_adapter(model, lora(tokens=(42, 99), rank=6), "b")  # 42 is both's: each its own
    bottleneck = AdapterConfig("bottleneck", targets=("mlp.proj",), bottleneck_size=4, tokens=(5,))
    inject.add_adapter(model, bottleneck, "c")
    for name in ("a", "b", "c"):
        randomise(model, name)
    alone = {}
    for name in ("a", "b", "c", None):
        inject.set_adapters(model, name)
        alone[name] = model(x)[0]
    per_row = ["b", None, "a", "c"]
    with inject.rows(model, per_row):
        mixed = model(x)[0]
    for r, name in enumerate(per_row):
        torch.testing.assert_close(mixed[r], alone[name][r], atol=1e-5, rtol=0)
    assert not torch.allclose(alone["a"], alone["b"])


def test_deleting_one_token_adapter_keeps_the_other():
    model, x = tiny(), ids()
    base = model(x)[0]
    inject.add_adapter(model, lora(), "a")
    inject.add_adapter(model, lora(tokens=(42, 99)), "b")
    randomise(model, "a")
    randomise(model, "b")
    inject.set_adapters(model, "b")
    only_b = model(x)[0]
    inject.set_adapters(model, {"a": 1.0, "b": 1.0})
    inject.delete_adapter(model, "a")
    assert inject.acting(model) == {"b": 1.0}
    assert torch.equal(model(x)[0], only_b)
    inject.delete_adapter(model, "b")
    assert type(model.wte) is nn.Embedding and type(model.lm_head) is nn.Linear
    assert model.lm_head.weight is model.wte.weight
    assert torch.equal(model(x)[0], base)


def test_token_ids_follow_the_model_and_are_not_saved():
    model = tiny()
    inject.add_adapter(model, lora(), "a")
    assert dict(model.named_buffers())["wte.indices_a"].tolist() == list(SORTED)
    assert not any("indices" in k for k in model.state_dict())
    model.to(torch.float64)  # ids stay integers; the rows follow the model's dtype
    assert model.wte.indices("a").dtype == torch.long
    assert rows_of(model, "a").dtype == torch.float64
    model(ids())


@pytest.mark.skipif(not torch.cuda.is_available(), reason="needs a CUDA device")
def test_token_rows_run_after_the_model_moves_to_the_gpu():
    model, x = tiny(), ids()
    inject.add_adapter(model, lora(), "a")
    randomise(model, "a")
    expected = model(x)[0]
    model.to("cuda")
    assert model.wte.indices("a").device.type == "cuda"
    torch.testing.assert_close(model(x.cuda())[0].cpu(), expected, atol=1e-4, rtol=1e-4)
    with inject.rows(model, ["a", None, "a"]):
        model(x.cuda())
    inject.merge(model)
    inject.unmerge(model)


def test_an_adapter_with_tokens_saved_alone_reloads_with_the_same_logits(tmp_path):
    tok = Tokenizer.train(["a small corpus of words for a tiny tokenizer"] * 20, vocab_size=300)
    save_gpt(tmp_path / "base", tiny(vocab_size=tok.vocab_size), tok)
    model = tiny(vocab_size=tok.vocab_size)
    chosen = tuple(tok.special.values())
    adapted = Adapted.around(model, tmp_path / "base", lora(tokens=chosen), "task")
    randomise(adapted.model, "task")
    registry.save(tmp_path / "adapter", adapted, "adapter", adapted.config)
    saved = load_tensors(tmp_path / "adapter" / "model.safetensors")
    assert tuple(saved["model.wte.token_rows.task.weight"].shape) == (len(set(chosen)), 64)
    assert all("lora_" in n or n == "model.wte.token_rows.task.weight" for n in saved)
    x = ids(chosen=tuple(sorted(set(chosen)))[:4], vocab=tok.vocab_size)
    loaded = load_adapter(tmp_path / "adapter")
    assert loaded.config.adapter.tokens == tuple(sorted(set(chosen)))
    assert torch.equal(loaded(x)[0], adapted(x)[0])
    # and attached beside another adapter on a base loaded once
    fresh = tiny(vocab_size=tok.vocab_size)
    inject.add_adapter(fresh, lora(tokens=(3,)), "other")
    attach(fresh, tmp_path / "adapter", "again")
    assert torch.equal(fresh(x)[0], adapted(x)[0])


def test_bad_tokens_are_one_line_errors_that_leave_the_embedding_alone():
    for tokens, named in (((5, 512, 700), "[512, 700]"), ((-1, 3), "[-1]")):
        model = tiny()
        with pytest.raises(GenlabError) as info:
            inject.add_adapter(model, AdapterConfig("prompt", prompt_tokens=2, tokens=tokens))
        message = str(info.value)
        assert "\n" not in message and f"token ids {named} lie outside the vocabulary" in message
        assert "512 tokens" in message
        assert type(model.wte) is nn.Embedding and type(model.lm_head) is nn.Linear
    # a LoRA on the tied output layer and token rows do not combine: one line naming the ways out
    model = tiny()
    with pytest.raises(GenlabError) as info:
        inject.add_adapter(model, lora(targets=("lm_head",)), "h")
    message = str(info.value)
    assert "\n" not in message and "lm_head" in message and "--no-special-tokens" in message
    untied = tiny(tie_weights=False)
    with pytest.raises(GenlabError, match="tied to the embedding"):
        inject.add_adapter(untied, lora(), "a")


def test_a_refused_token_list_leaves_no_part_of_the_adapter():
    model = tiny()
    before = model.state_dict()
    with pytest.raises(GenlabError, match="outside the vocabulary"):
        inject.add_adapter(model, AdapterConfig("lora", rank=2, tokens=(1, 10_000)), "a")
    assert inject.adapter_names(model) == []
    assert not list(inject.adapter_layers(model))
    assert model.state_dict().keys() == before.keys()
