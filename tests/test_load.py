"""``genlab.load`` opens every kind of model folder genlab writes."""

from __future__ import annotations

import pytest
import torch

import genlab
from genlab.align.policy import PolicyValue
from genlab.align.reward import RewardModel, save_reward_model
from genlab.core.errors import GenlabError
from genlab.core.registry import save
from genlab.data.tokenizer import Tokenizer
from genlab.methods.autoregressive.checkpoint import load_gpt, save_gpt
from genlab.nets.gpt import GPT, GPTConfig


@pytest.fixture(scope="module")
def tok() -> Tokenizer:
    return Tokenizer.train(["a small text to learn a few tokens from."] * 10, vocab_size=270)


def test_one_loader_for_gpt_reward_and_ppo_folders(tmp_path, tok):
    torch.manual_seed(0)
    gpt = GPT(GPTConfig(vocab_size=tok.vocab_size, block_size=16, n_layer=1, n_head=2, n_embd=16))
    save_gpt(tmp_path / "gpt", gpt, tok)
    save_reward_model(tmp_path / "rm", RewardModel.from_gpt(gpt), tok)
    policy = PolicyValue.from_gpt(gpt)
    save(tmp_path / "ppo", policy, "ppo", gpt.config, tok.files(gpt.config.block_size))

    kinds = {name: genlab.load(tmp_path / name) for name in ("gpt", "rm", "ppo")}
    assert {n: k.kind for n, k in kinds.items()} == {"gpt": "gpt", "rm": "reward", "ppo": "ppo"}
    assert all(k.files["tokenizer"].to_json() == tok.to_json() for k in kinds.values())
    assert isinstance(kinds["rm"].model, RewardModel) and isinstance(
        kinds["ppo"].model, PolicyValue
    )
    # the text generator of a PPO folder is its policy, with the same weights as saved
    generator, _ = load_gpt(tmp_path / "ppo")
    assert isinstance(generator, GPT) and torch.equal(generator.wte.weight, gpt.wte.weight)
    with pytest.raises(GenlabError, match="does not generate text"):
        load_gpt(tmp_path / "rm")
    with pytest.raises(GenlabError, match="not a genlab checkpoint"):
        genlab.load(tmp_path)
