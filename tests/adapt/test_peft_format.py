"""PEFT's adapter folders checked against peft itself: a genlab LoRA or soft prompt saved in
PEFT's format gives genlab's logits under ``PeftModel`` on the exported GPT-2, one trained with
PEFT gives PEFT's logits in genlab, and bad folders are one line naming the fix."""

from __future__ import annotations

import copy
import json
from pathlib import Path

import pytest
import torch

from genlab.adapt.adapted import Adapted, load_adapter
from genlab.adapt.config import AdapterConfig
from genlab.adapt.inject import adapter_names, adapter_parameters, adapter_state_dict, add_adapter
from genlab.adapt.peft_format import (
    TOKENS_KEY,
    add_peft_adapter,
    load_peft,
    save_peft,
    write_peft_files,
)
from genlab.cli import main
from genlab.core import registry
from genlab.core.errors import GenlabError
from genlab.core.io import atomic_save_tensors, load_tensors
from genlab.data.tokenizer import Tokenizer
from genlab.methods.autoregressive.checkpoint import load_gpt, save_gpt
from genlab.nets.gpt import GPT, GPTConfig
from genlab.nets.hf_gpt2 import gpt_to_hf
from references import require

transformers = require("transformers")
peft = require("peft")

VOCAB = 64
ALL = ("attn.qkv", "attn.proj", "mlp.fc", "mlp.proj")
TOKENS = [60, 5, 3]  # trainable token ids, unsorted as a user may list them for PEFT
pytestmark = [
    pytest.mark.usefixtures("one_thread"),
    # transformers' own deprecation, raised inside PEFT
    pytest.mark.filterwarnings("ignore:`is_gradient_checkpointing` is deprecated:FutureWarning"),
]


def make_gpt(seed: int = 0, **overrides) -> GPT:
    """A tiny GPT with biases, as GPT-2 has, so the export is exact."""
    torch.manual_seed(seed)
    config = dict(vocab_size=VOCAB, block_size=32, n_layer=2, n_head=2, n_embd=16, bias=True)
    return GPT(GPTConfig(**{**config, **overrides})).eval()


def tokens(seed: int = 1, shape: tuple[int, int] = (2, 12)) -> torch.Tensor:
    """Random ids, ``TOKENS`` among them in every row (so trained token rows act)."""
    idx = torch.randint(0, VOCAB, shape, generator=torch.Generator().manual_seed(seed))
    for b in range(shape[0]):
        idx[b, 1 + b : 1 + b + len(TOKENS)] = torch.tensor(TOKENS)
    return idx


def randomise(model: torch.nn.Module, name: str) -> None:
    """Give adapter ``name`` non-zero values everywhere (a new LoRA's B is zero)."""
    with torch.no_grad():
        for p in adapter_parameters(model, name).values():
            p.normal_(0.0, 0.3)


@torch.no_grad()
def genlab_logits(model: GPT, idx: torch.Tensor) -> torch.Tensor:
    return model(idx)[0]


@torch.no_grad()
def peft_logits(model, idx: torch.Tensor) -> torch.Tensor:
    """PEFT prepends a soft prompt's virtual tokens: keep the real tokens' positions."""
    logits = model(input_ids=idx).logits
    return logits[:, logits.shape[1] - idx.shape[1] :]


def same(a: torch.Tensor, b: torch.Tensor) -> None:
    assert a.shape == b.shape
    assert (a - b).abs().max().item() < 1e-5


def one_line(info: pytest.ExceptionInfo[GenlabError]) -> str:
    message = str(info.value)
    assert "\n" not in message
    return message


@pytest.fixture(scope="module")
def base(tmp_path_factory: pytest.TempPathFactory) -> tuple[GPT, Path]:
    model = make_gpt()
    folder = tmp_path_factory.mktemp("gpt2")
    gpt_to_hf(model, folder, bos_token_id=0, eos_token_id=1)
    return model, folder


def hf(folder: Path):
    return transformers.AutoModelForCausalLM.from_pretrained(folder).eval()


@pytest.mark.parametrize(
    ("targets", "expected"),
    [
        (ALL, ["c_attn", "c_fc", "c_proj"]),
        (("attn.proj", "mlp.fc"), ["attn.c_proj", "c_fc"]),
        ((r"blocks\.1\.attn\.qkv",), ["transformer.h.1.attn.c_attn"]),
    ],
)
def test_genlab_lora_gives_its_logits_under_peft(base, tmp_path, targets, expected) -> None:
    gpt, hf_folder = base
    model = copy.deepcopy(gpt)
    config = AdapterConfig(targets=targets, rank=4, alpha=6.0, dropout=0.1)
    add_adapter(model, config, "task")
    model.eval()  # the new dropout modules start in training mode
    randomise(model, "task")
    save_peft(model, "task", tmp_path, str(hf_folder))
    written = json.loads((tmp_path / "adapter_config.json").read_text())
    assert written["peft_type"] == "LORA" and written["task_type"] == "CAUSAL_LM"
    assert sorted(written["target_modules"]) == expected
    assert (written["r"], written["lora_alpha"], written["lora_dropout"]) == (4, 6, 0.1)
    assert written["fan_in_fan_out"] and written["base_model_name_or_path"] == str(hf_folder)
    assert "trainable_token_indices" not in written  # as before PEFT 0.15 had the field
    with torch.no_grad():
        peft_model = peft.PeftModel.from_pretrained(hf(hf_folder), tmp_path).eval()
    idx = tokens()
    same(peft_logits(peft_model, idx), genlab_logits(model, idx))
    # and back: the same config and tensors
    loaded, state = load_peft(tmp_path)
    assert (loaded.rank, loaded.alpha, loaded.dropout) == (4, 6.0, 0.1)
    mine = adapter_state_dict(model, "task")
    assert state.keys() == mine.keys() and all(torch.equal(state[k], mine[k]) for k in mine)


def test_genlab_lora_with_token_rows_gives_its_logits_under_peft(base, tmp_path) -> None:
    gpt, hf_folder = base
    model = copy.deepcopy(gpt)
    config = AdapterConfig(targets=("attn.qkv", "mlp.fc"), rank=4, tokens=tuple(TOKENS))
    add_adapter(model, config, "task")
    randomise(model, "task")  # the rows too: far from the base's
    save_peft(model, "task", tmp_path, str(hf_folder))
    written = json.loads((tmp_path / "adapter_config.json").read_text())
    assert written["peft_type"] == "LORA"
    assert written["trainable_token_indices"] == {"wte": sorted(TOKENS)}
    saved = load_tensors(tmp_path / "adapter_model.safetensors")
    assert TOKENS_KEY == "base_model.model.transformer.wte.token_adapter.trainable_tokens_delta"
    assert torch.equal(saved[TOKENS_KEY], model.wte.token_rows["task"].weight)
    assert not any("lm_head" in k for k in saved)  # tied: PEFT reads the embedding's rows
    with torch.no_grad():
        peft_model = peft.PeftModel.from_pretrained(hf(hf_folder), tmp_path).eval()
    idx = tokens()
    same(peft_logits(peft_model, idx), genlab_logits(model, idx))
    loaded, state = load_peft(tmp_path)
    assert loaded.tokens == tuple(sorted(TOKENS)) and loaded.targets == ("attn.qkv", "mlp.fc")
    mine = adapter_state_dict(model, "task")
    assert "wte.token_rows.weight" in mine
    assert state.keys() == mine.keys() and all(torch.equal(state[k], mine[k]) for k in mine)


def train_peft(model, steps: int = 3) -> None:
    """A few Adam steps on random tokens: every trained tensor moves off its init."""
    model.train()
    optimizer = torch.optim.Adam([p for p in model.parameters() if p.requires_grad], lr=1e-2)
    for step in range(steps):
        idx = tokens(10 + step, (4, 12))
        model(input_ids=idx, labels=idx).loss.backward()
        optimizer.step()
        optimizer.zero_grad()
    model.eval()


@pytest.mark.parametrize(
    "options",
    [
        {"target_modules": ["c_attn", "c_proj", "c_fc"]},
        {"target_modules": ["c_attn", "mlp.c_proj"], "use_rslora": True, "lora_dropout": 0.1},
        {"target_modules": ["c_attn"], "layers_to_transform": [1], "init_lora_weights": "gaussian"},
        {"target_modules": r".*\.0\.attn\.c_(attn|proj)"},
    ],
)
def test_peft_lora_gives_its_logits_in_genlab(base, tmp_path, options) -> None:
    gpt, hf_folder = base
    torch.manual_seed(0)
    config = peft.LoraConfig(
        task_type="CAUSAL_LM", r=4, lora_alpha=8, fan_in_fan_out=True, **options
    )
    peft_model = peft.get_peft_model(hf(hf_folder), config)
    train_peft(peft_model)
    peft_model.save_pretrained(tmp_path)
    model = copy.deepcopy(gpt)
    adapter = add_peft_adapter(model, tmp_path, "task")
    assert adapter.method == "lora" and adapter.rank == 4
    b = [p for n, p in adapter_parameters(model, "task").items() if "lora_B" in n]
    assert b and all(p.abs().max() > 0 for p in b)
    idx = tokens()
    same(genlab_logits(model, idx), peft_logits(peft_model, idx))


@pytest.mark.parametrize(
    "indices",
    [TOKENS, {"wte": TOKENS}, {"transformer.wte": TOKENS, "lm_head": TOKENS}],
    ids=["list", "wte", "tied"],
)
def test_peft_lora_with_trainable_tokens_gives_its_logits_in_genlab(
    base, tmp_path, indices
) -> None:
    gpt, hf_folder = base
    torch.manual_seed(0)
    config = peft.LoraConfig(
        task_type="CAUSAL_LM",
        r=4,
        lora_alpha=8,
        fan_in_fan_out=True,
        target_modules=["c_attn", "c_proj"],
        trainable_token_indices=indices,
    )
    peft_model = peft.get_peft_model(hf(hf_folder), config)
    train_peft(peft_model)
    peft_model.save_pretrained(tmp_path)
    model = copy.deepcopy(gpt)
    adapter = add_peft_adapter(model, tmp_path, "task")
    assert adapter.tokens == tuple(sorted(TOKENS))
    rows = model.wte.token_rows["task"].weight
    assert (rows - gpt.wte.weight[sorted(TOKENS)]).abs().min() > 0  # trained: every row moved
    idx = tokens()
    same(genlab_logits(model, idx), peft_logits(peft_model, idx))
    # and back to PEFT as genlab writes it
    save_peft(model, "task", tmp_path / "again", str(hf_folder))
    again = peft.PeftModel.from_pretrained(hf(hf_folder), tmp_path / "again").eval()
    same(peft_logits(again, idx), peft_logits(peft_model, idx))


def test_soft_prompt_gives_its_logits_both_ways(base, tmp_path) -> None:
    gpt, hf_folder = base
    # genlab -> PEFT
    model = copy.deepcopy(gpt)
    add_adapter(model, AdapterConfig(method="prompt", prompt_tokens=5), "style")
    save_peft(model, "style", tmp_path / "genlab", str(hf_folder))
    written = json.loads((tmp_path / "genlab" / "adapter_config.json").read_text())
    assert written["peft_type"] == "PROMPT_TUNING"
    assert (written["num_virtual_tokens"], written["token_dim"]) == (5, 16)
    assert written["num_transformer_submodules"] == 1
    peft_model = peft.PeftModel.from_pretrained(hf(hf_folder), tmp_path / "genlab").eval()
    idx = tokens()
    same(peft_logits(peft_model, idx), genlab_logits(model, idx))
    # PEFT -> genlab, trained with PEFT
    torch.manual_seed(0)
    config = peft.PromptTuningConfig(task_type="CAUSAL_LM", num_virtual_tokens=3)
    peft_model = peft.get_peft_model(hf(hf_folder), config)
    train_peft(peft_model)
    peft_model.save_pretrained(tmp_path / "peft")
    model = copy.deepcopy(gpt)
    adapter = add_peft_adapter(model, tmp_path / "peft", "style")
    assert (adapter.method, adapter.prompt_tokens) == ("prompt", 3)
    same(genlab_logits(model, idx), peft_logits(peft_model, idx))


@pytest.fixture(scope="module")
def lora_folder(base, tmp_path_factory: pytest.TempPathFactory) -> Path:
    gpt, hf_folder = base
    model = copy.deepcopy(gpt)
    add_adapter(model, AdapterConfig(targets=ALL, rank=4), "default")
    randomise(model, "default")
    return save_peft(model, "default", tmp_path_factory.mktemp("lora"), str(hf_folder))


def copy_folder(source: Path, target: Path, **changes) -> Path:
    """``source`` with its config's fields changed (``None`` removes a field)."""
    target.mkdir()
    (target / "adapter_model.safetensors").write_bytes(
        (source / "adapter_model.safetensors").read_bytes()
    )
    config = json.loads((source / "adapter_config.json").read_text())
    config.update(changes)
    (target / "adapter_config.json").write_text(json.dumps(config))
    return target


def test_bad_folders_are_one_line_naming_the_fix(lora_folder, tmp_path) -> None:
    with pytest.raises(GenlabError) as info:
        load_peft(tmp_path / "nowhere")
    assert "not found" in one_line(info)
    (tmp_path / "empty").mkdir()
    with pytest.raises(GenlabError) as info:
        load_peft(tmp_path / "empty")
    assert "adapter_config.json" in one_line(info) and "save_pretrained" in one_line(info)
    pickled = copy_folder(lora_folder, tmp_path / "pickled")
    (pickled / "adapter_model.safetensors").rename(pickled / "adapter_model.bin")
    with pytest.raises(GenlabError) as info:
        load_peft(pickled)
    message = one_line(info)
    assert "adapter_model.bin" in message and "pickle" in message and "safetensors" in message
    cases = {
        "ia3": ({"peft_type": "IA3"}, 'peft_type "IA3" is not supported'),
        "dora": ({"use_dora": True}, "use_dora=true"),
        "bias": ({"bias": "all"}, 'bias="all"'),
        "pissa": ({"init_lora_weights": "pissa"}, 'init_lora_weights="pissa"'),
        "ranks": ({"rank_pattern": {"c_fc": 2}}, "rank_pattern gives 'c_fc' 2 instead of 4"),
        "head": ({"target_modules": ["c_attn", "lm_head"]}, "target_modules names 'lm_head'"),
    }
    for folder, (changes, expected) in cases.items():
        with pytest.raises(GenlabError) as info:
            load_peft(copy_folder(lora_folder, tmp_path / folder, **changes))
        assert expected in one_line(info) and "adapter_config.json" in one_line(info)


def test_an_adapter_for_another_size_names_the_layer_and_leaves_no_trace(lora_folder) -> None:
    wider = make_gpt(n_embd=32)
    with pytest.raises(GenlabError) as info:
        add_peft_adapter(wider, lora_folder)
    message = one_line(info)
    assert "'blocks.0.attn.qkv.lora_A.weight' has shape (4, 16)" in message
    assert "adapter_model.safetensors" in message and "another base model" in message
    assert adapter_names(wider) == []
    deeper = make_gpt(n_layer=3)
    with pytest.raises(GenlabError) as info:
        add_peft_adapter(deeper, lora_folder)
    assert "lacks 'blocks.2." in one_line(info)


@pytest.fixture(scope="module")
def tokens_folder(base, tmp_path_factory: pytest.TempPathFactory) -> Path:
    gpt, hf_folder = base
    model = copy.deepcopy(gpt)
    add_adapter(model, AdapterConfig(rank=4, tokens=tuple(TOKENS)), "default")
    randomise(model, "default")
    return save_peft(model, "default", tmp_path_factory.mktemp("tokens"), str(hf_folder))


def test_bad_trainable_tokens_are_one_line_naming_the_fix(tokens_folder, tmp_path) -> None:
    rows = load_tensors(tokens_folder / "adapter_model.safetensors")[TOKENS_KEY]
    cases = {
        "other": ({"embed_tokens": [3]}, "trainable_token_indices names 'embed_tokens'"),
        "twice": ({"wte": [3], "transformer.wte": [3]}, "names 2 embeddings"),
        "untied": ({"wte": [3, 5, 60], "lm_head": [3]}, "gives lm_head other tokens than wte"),
        "head": ({"lm_head": [3, 5, 60]}, "names 0 embeddings"),
        "text": (["<|user|>"], 'must list token ids, got ["<|user|>"]'),
        "repeat": ([3, 5, 3], "lists token 3 twice"),
        "fewer": ([3, 5], f"has shape {tuple(rows.shape)} but adapter_config.json lists 2"),
        "none": (None, "holds trainable token rows but adapter_config.json has no"),
    }
    for folder, (indices, expected) in cases.items():
        changed = copy_folder(tokens_folder, tmp_path / folder, trainable_token_indices=indices)
        with pytest.raises(GenlabError) as info:
            load_peft(changed)
        assert expected in one_line(info), folder
    lacking = copy_folder(tokens_folder, tmp_path / "lacking")
    state = load_tensors(lacking / "adapter_model.safetensors")
    del state[TOKENS_KEY]
    atomic_save_tensors(lacking / "adapter_model.safetensors", state)
    with pytest.raises(GenlabError) as info:
        load_peft(lacking)
    assert f"lacks '{TOKENS_KEY}'" in one_line(info)


def test_tokens_outside_the_vocabulary_name_them_and_leave_no_trace(tokens_folder) -> None:
    smaller = make_gpt(vocab_size=50)  # 60 is not a token of it
    with pytest.raises(GenlabError) as info:
        add_peft_adapter(smaller, tokens_folder, "task")
    assert "token ids [60] lie outside the vocabulary of 50 tokens" in one_line(info)
    assert adapter_names(smaller) == [] and type(smaller.wte) is torch.nn.Embedding
    assert smaller.lm_head.weight is smaller.wte.weight


def test_soft_prompt_with_token_rows_and_peft_trainable_tokens_alone_have_no_form(
    base, tmp_path
) -> None:
    gpt, hf_folder = base
    model = copy.deepcopy(gpt)
    add_adapter(model, AdapterConfig("prompt", prompt_tokens=3, tokens=(3, 5)), "style")
    with pytest.raises(GenlabError) as info:
        save_peft(model, "style", tmp_path / "prompt", str(hf_folder))
    message = one_line(info)
    assert "soft prompt 'style'" in message and "tokens [3, 5]" in message
    assert "trainable_token_indices is LoRA's" in message and "--no-special-tokens" in message
    assert not (tmp_path / "prompt").exists()
    peft_model = peft.get_peft_model(hf(hf_folder), peft.TrainableTokensConfig(token_indices=[7]))
    peft_model.save_pretrained(tmp_path / "alone")
    with pytest.raises(GenlabError) as info:
        load_peft(tmp_path / "alone")
    message = one_line(info)
    assert 'peft_type "TRAINABLE_TOKENS"' in message and "trainable_token_indices" in message


def test_a_bottleneck_adapter_has_no_peft_form(tmp_path) -> None:
    model = make_gpt()
    add_adapter(model, AdapterConfig(method="bottleneck"), "houlsby")
    with pytest.raises(GenlabError) as info:
        save_peft(model, "houlsby", tmp_path, "base")
    assert "bottleneck adapter" in one_line(info) and "PEFT has no format" in one_line(info)


@pytest.fixture(scope="module")
def tok() -> Tokenizer:
    return Tokenizer.train(
        ["the cat sat on a mat and the dog ran far away.\n"] * 20, vocab_size=280
    )


def test_cli_exports_an_adapter_run_for_peft(tok, tmp_path, capsys) -> None:
    base_run = save_gpt(tmp_path / "base", make_gpt(vocab_size=tok.vocab_size), tok)
    main(["export", str(base_run), "--out", str(tmp_path / "base_hf")])
    model, _ = load_gpt(base_run)
    chat = tuple(tok.special.values())  # token rows, as genlab sft trains them by default
    adapted = Adapted.around(model, base_run, AdapterConfig(targets=ALL, rank=4, tokens=chat))
    randomise(adapted.model, "default")
    run = registry.save(tmp_path / "run", adapted, "adapter", adapted.config)
    assert write_peft_files(adapted, run) == run  # the run carries PEFT's files too
    out = tmp_path / "peft"
    main(["export", str(run), "--format", "peft", "--out", str(out),
          "--base-name", str(tmp_path / "base_hf")])  # fmt: skip
    assert "PEFT lora adapter" in capsys.readouterr().out
    idx = tokens(shape=(2, 10))
    idx[:, -3:] = torch.tensor(sorted(set(chat))[:3])
    expected = genlab_logits(load_adapter(run).model, idx)
    exported = peft.AutoPeftModelForCausalLM.from_pretrained(out).eval()  # --base-name: its base
    same(peft_logits(exported, idx), expected)
    beside = peft.PeftModel.from_pretrained(hf(tmp_path / "base_hf"), run).eval()
    same(peft_logits(beside, idx), expected)
    capsys.readouterr()
    with pytest.raises(SystemExit) as info:
        main(["export", str(run), "--out", str(tmp_path / "hf")])
    assert info.value.code == 2 and "--format peft" in capsys.readouterr().err
