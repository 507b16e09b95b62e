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
from genlab.adapt.peft_format import add_peft_adapter, load_peft, save_peft, write_peft_files
from genlab.cli import main
from genlab.core import registry
from genlab.core.errors import GenlabError
from genlab.data.tokenizer import Tokenizer
from genlab.methods.autoregressive.checkpoint import load_gpt, save_gpt
from genlab.nets.gpt import GPT, GPTConfig
from genlab.nets.hf_gpt2 import gpt_to_hf
from references import require

transformers = require("transformers")
peft = require("peft")

VOCAB = 64
ALL = ("attn.qkv", "attn.proj", "mlp.fc", "mlp.proj")
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
    return torch.randint(0, VOCAB, shape, generator=torch.Generator().manual_seed(seed))


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
    with torch.no_grad():
        peft_model = peft.PeftModel.from_pretrained(hf(hf_folder), tmp_path).eval()
    idx = tokens()
    same(peft_logits(peft_model, idx), genlab_logits(model, idx))
    # and back: the same config and tensors
    loaded, state = load_peft(tmp_path)
    assert (loaded.rank, loaded.alpha, loaded.dropout) == (4, 6.0, 0.1)
    mine = adapter_state_dict(model, "task")
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
    adapted = Adapted.around(model, base_run, AdapterConfig(targets=ALL, rank=4))
    randomise(adapted.model, "default")
    run = registry.save(tmp_path / "run", adapted, "adapter", adapted.config)
    assert write_peft_files(adapted, run) == run  # the run carries PEFT's files too
    out = tmp_path / "peft"
    main(["export", str(run), "--format", "peft", "--out", str(out),
          "--base-name", str(tmp_path / "base_hf")])  # fmt: skip
    assert "PEFT lora adapter" in capsys.readouterr().out
    idx = tokens(shape=(2, 10))
    expected = genlab_logits(load_adapter(run).model, idx)
    exported = peft.AutoPeftModelForCausalLM.from_pretrained(out).eval()  # --base-name: its base
    same(peft_logits(exported, idx), expected)
    beside = peft.PeftModel.from_pretrained(hf(tmp_path / "base_hf"), run).eval()
    same(peft_logits(beside, idx), expected)
    capsys.readouterr()
    with pytest.raises(SystemExit) as info:
        main(["export", str(run), "--out", str(tmp_path / "hf")])
    assert info.value.code == 2 and "--format peft" in capsys.readouterr().err
