"""GPT-2 interop checked against transformers itself: same logits, same greedy text, exact trips."""

from __future__ import annotations

import json
from pathlib import Path

import pytest
import torch

from genlab.core.errors import GenlabError
from genlab.nets.gpt import GPT, GPTConfig
from genlab.nets.hf_gpt2 import gpt_from_hf, gpt_to_hf
from references import require

transformers = require("transformers")

VOCAB = 100


def make_hf(seed: int = 0, **overrides) -> transformers.GPT2LMHeadModel:
    """A random small GPT-2; a wide init spreads the logits so greedy choices are not near-ties."""
    torch.manual_seed(seed)
    config = transformers.GPT2Config(
        n_layer=2,
        n_head=2,
        n_embd=32,
        vocab_size=VOCAB,
        n_positions=64,
        initializer_range=0.2,
        bos_token_id=None,
        eos_token_id=None,
        **overrides,
    )
    return transformers.GPT2LMHeadModel(config).eval()


@pytest.fixture(scope="module")
def hf_model() -> transformers.GPT2LMHeadModel:
    return make_hf()


@pytest.fixture(scope="module")
def hf_folder(hf_model, tmp_path_factory) -> Path:
    folder = tmp_path_factory.mktemp("gpt2")
    hf_model.save_pretrained(folder)
    return folder


@pytest.fixture(scope="module")
def genlab_model(hf_folder) -> GPT:
    return gpt_from_hf(hf_folder)


def tokens(seed: int, shape: tuple[int, ...]) -> torch.Tensor:
    return torch.randint(0, VOCAB, shape, generator=torch.Generator().manual_seed(seed))


@torch.no_grad()
def max_diff(genlab_model: GPT, hf_model, idx: torch.Tensor) -> float:
    ours, _ = genlab_model(idx)
    return (ours - hf_model(idx).logits).abs().max().item()


@torch.no_grad()
def greedy(model: GPT, prompt: torch.Tensor, n: int) -> torch.Tensor:
    """Greedy decoding with the KV cache: prefill the prompt, then one position per step."""
    cache = model.new_cache(prompt.shape[0], max_len=prompt.shape[1] + n)
    logits, _ = model(prompt, cache=cache, last_only=True)
    out = [prompt]
    for _ in range(n):
        nxt = logits[:, -1].argmax(-1, keepdim=True)
        out.append(nxt)
        logits, _ = model(nxt, cache=cache)
    return torch.cat(out, dim=1)


def test_config_maps_gpt2_fields(genlab_model):
    c = genlab_model.config
    assert (c.vocab_size, c.block_size, c.n_layer, c.n_head, c.n_embd) == (VOCAB, 64, 2, 2, 32)
    assert (c.pos, c.bias, c.tie_weights, c.norm_eps) == ("learned", True, True, 1e-5)
    assert genlab_model.lm_head.weight is genlab_model.wte.weight


def test_same_logits_as_transformers(genlab_model, hf_model):
    assert max_diff(genlab_model, hf_model, tokens(1, (3, 64))) < 1e-4


def test_same_greedy_continuation_as_transformers(genlab_model, hf_model):
    prompt = tokens(2, (2, 7))
    theirs = hf_model.generate(
        prompt,
        attention_mask=torch.ones_like(prompt),
        do_sample=False,
        max_new_tokens=40,
        pad_token_id=0,
    )
    ours = greedy(genlab_model, prompt, 40)
    assert torch.equal(ours, theirs)
    assert len(set(ours[0, 7:].tolist())) > 3  # a real continuation, not one token repeated


@torch.no_grad()
def test_left_padded_batch_matches_transformers(genlab_model, hf_model):
    idx = tokens(3, (3, 12))
    mask = torch.ones_like(idx)
    mask[0, :5] = 0
    mask[1, :2] = 0
    idx = idx.masked_fill(mask == 0, 0)
    positions = (mask.cumsum(-1) - 1).clamp(min=0)
    ours, _ = genlab_model(idx, attention_mask=mask, positions=positions)
    theirs = hf_model(idx, attention_mask=mask, position_ids=positions).logits
    real = mask.bool()
    assert (ours[real] - theirs[real]).abs().max().item() < 1e-4
    # each row equals the same prompt run alone, unpadded
    alone, _ = genlab_model(idx[0:1, 5:])
    assert (ours[0, 5:] - alone[0]).abs().max().item() < 1e-4


def test_legacy_pytorch_model_bin(hf_model, tmp_path):
    """The layout of the original hub files: no ``transformer.`` prefix, mask buffers saved."""
    state = {
        k.removeprefix("transformer."): v
        for k, v in hf_model.state_dict().items()
        if k != "lm_head.weight"
    }
    for i in range(hf_model.config.n_layer):
        state[f"h.{i}.attn.bias"] = torch.tril(torch.ones(64, 64)).view(1, 1, 64, 64)
        state[f"h.{i}.attn.masked_bias"] = torch.tensor(-1e4)
    hf_model.config.save_pretrained(tmp_path)
    torch.save(state, tmp_path / "pytorch_model.bin")
    assert max_diff(gpt_from_hf(tmp_path), hf_model, tokens(4, (2, 20))) < 1e-4


def test_sharded_safetensors(hf_model, tmp_path):
    hf_model.save_pretrained(tmp_path, max_shard_size="20KB")
    assert (tmp_path / "model.safetensors.index.json").is_file()
    assert max_diff(gpt_from_hf(tmp_path), hf_model, tokens(5, (1, 30))) < 1e-4


def test_untied_head_loads(tmp_path):
    hf = make_hf(seed=1, tie_word_embeddings=False)
    hf.save_pretrained(tmp_path)
    model = gpt_from_hf(tmp_path)
    assert not model.config.tie_weights
    assert torch.equal(model.lm_head.weight, hf.lm_head.weight)
    assert max_diff(model, hf, tokens(6, (2, 16))) < 1e-4


def random_genlab(tie: bool = True, seed: int = 0) -> GPT:
    torch.manual_seed(seed)
    config = GPTConfig(
        vocab_size=VOCAB, block_size=48, n_layer=2, n_head=4, n_embd=32, bias=True, tie_weights=tie
    )
    return GPT(config).eval()


@pytest.mark.parametrize("tie", [True, False])
def test_round_trip_is_exact(tmp_path, tie):
    model = random_genlab(tie=tie)
    back = gpt_from_hf(gpt_to_hf(model, tmp_path))
    assert back.config == model.config
    ours, theirs = model.state_dict(), back.state_dict()
    assert ours.keys() == theirs.keys()
    for name in ours:
        assert torch.equal(ours[name], theirs[name]), name
    assert (back.lm_head.weight is back.wte.weight) == tie


@pytest.mark.parametrize("tie", [True, False])
@torch.no_grad()
def test_transformers_loads_export(tmp_path, tie):
    model = random_genlab(tie=tie, seed=1)
    gpt_to_hf(model, tmp_path, eos_token_id=3)
    hf = transformers.GPT2LMHeadModel.from_pretrained(tmp_path).eval()
    assert hf.config.eos_token_id == 3
    assert hf.config.tie_word_embeddings == tie
    assert max_diff(model, hf, tokens(7, (2, 48))) < 1e-4


# ---- clear one-line errors ---------------------------------------------------------------


def write_config(folder: Path, **fields) -> Path:
    folder.mkdir(parents=True, exist_ok=True)
    base = {"model_type": "gpt2", "n_layer": 2, "n_head": 2, "n_embd": 32, "vocab_size": VOCAB}
    (folder / "config.json").write_text(json.dumps({**base, **fields}))
    return folder


def one_line_error(match: str, fn, *args) -> None:
    with pytest.raises(GenlabError, match=match) as info:
        fn(*args)
    assert "\n" not in str(info.value)


def test_missing_folder(tmp_path):
    one_line_error("folder not found", gpt_from_hf, tmp_path / "nope")


def test_folder_without_config(tmp_path):
    one_line_error("no config.json", gpt_from_hf, tmp_path)


def test_not_gpt2_config(tmp_path):
    one_line_error("not a GPT-2 config", gpt_from_hf, write_config(tmp_path, model_type="llama"))


def test_other_activation(tmp_path):
    folder = write_config(tmp_path, activation_function="relu")
    one_line_error("activation_function 'relu'", gpt_from_hf, folder)


def test_gpt2_variant_refused(tmp_path):
    folder = write_config(tmp_path, scale_attn_by_inverse_layer_idx=True)
    one_line_error("scale_attn_by_inverse_layer_idx", gpt_from_hf, folder)


def test_no_weights_file(tmp_path):
    one_line_error("no weights in", gpt_from_hf, write_config(tmp_path))


def test_shape_mismatch(hf_folder, tmp_path):
    (tmp_path / "model.safetensors").write_bytes((hf_folder / "model.safetensors").read_bytes())
    write_config(tmp_path, n_positions=32)
    one_line_error(r"'wpe.weight' has shape \(64, 32\) but the config needs", gpt_from_hf, tmp_path)


def test_unexpected_weight(hf_model, tmp_path):
    hf_model.config.save_pretrained(tmp_path)
    state = dict(hf_model.state_dict())
    state["score.weight"] = torch.zeros(2, 32)
    torch.save(state, tmp_path / "pytorch_model.bin")
    one_line_error("has weight 'score.weight'", gpt_from_hf, tmp_path)


class Payload:
    """Stands for code hidden in a pickle: safe loading must refuse to build it."""


def test_unsafe_pickle_refused(tmp_path):
    write_config(tmp_path)
    torch.save({"wte.weight": Payload()}, tmp_path / "pytorch_model.bin")
    one_line_error("not a plain file of tensors", gpt_from_hf, tmp_path)


def test_export_refuses_rope(tmp_path):
    rope = GPT(GPTConfig(vocab_size=VOCAB, n_layer=1, n_embd=32, bias=True, pos="rope"))
    one_line_error("learned position embeddings only", gpt_to_hf, rope, tmp_path)


@torch.no_grad()
def test_no_bias_exports_as_zero_biases(tmp_path):
    torch.manual_seed(2)
    model = GPT(GPTConfig(vocab_size=VOCAB, block_size=48, n_layer=2, n_embd=32)).eval()
    hf = transformers.GPT2LMHeadModel.from_pretrained(gpt_to_hf(model, tmp_path)).eval()
    assert max_diff(model, hf, tokens(8, (2, 48))) < 1e-4
