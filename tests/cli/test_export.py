"""``genlab export --format hf`` and ``genlab import hf``: run folders that transformers opens
offline with genlab's greedy text, and transformers GPT-2 folders that genlab opens with the
same logits; bad input is one line naming the fix."""

from __future__ import annotations

import json
from pathlib import Path

import pytest
import torch

import genlab
from genlab.cli import main
from genlab.data.tokenizer import Tokenizer
from genlab.methods.autoregressive.checkpoint import load_gpt, save_gpt
from genlab.methods.autoregressive.decoding import generate
from genlab.nets.gpt import GPT, GPTConfig
from references import require

transformers = require("transformers")

CORPUS = [
    "the cat sat on a mat and the dog ran far away. 猫 喜欢 🎉 naïve café 42 1234\n",
    "what is two plus three? it is five. the capital of the world is the small town.\n",
] * 100
PROMPTS = ["", "the cat", "The capital of", "猫 🎉"]


def random_run(folder: Path, tokenizer: Tokenizer, seed: int = 0, **overrides) -> Path:
    """A small GPT (genlab's default: no biases) whose wide weights keep greedy choices apart."""
    torch.manual_seed(seed)
    config = GPTConfig(vocab_size=tokenizer.vocab_size + 3, block_size=64, n_layer=2, n_embd=32)
    model = GPT(GPTConfig(**{**config.to_dict(), **overrides}))
    with torch.no_grad():
        for p in model.parameters():
            if p.dim() == 2:
                p.normal_(0.0, 0.3)
    save_gpt(folder, model, tokenizer)
    return folder


@pytest.fixture(scope="module")
def tok() -> Tokenizer:
    return Tokenizer.train(CORPUS, vocab_size=320)


@pytest.fixture(scope="module")
def exported(tok: Tokenizer, tmp_path_factory: pytest.TempPathFactory) -> tuple[Path, Path]:
    base = tmp_path_factory.mktemp("export")
    run = random_run(base / "run", tok)
    main(["export", str(run), "--format", "hf", "--out", str(base / "hf")])
    return run, base / "hf"


def errors(capsys: pytest.CaptureFixture[str], argv: list[str]) -> str:
    """The one line a failing command prints (exit code 2)."""
    capsys.readouterr()
    with pytest.raises(SystemExit) as info:
        main(argv)
    assert info.value.code == 2
    err = capsys.readouterr().err
    assert err.count("\n") == 1 and err.startswith("genlab: error: ")
    return err


@torch.no_grad()
def test_export_continues_greedily_as_genlab(exported) -> None:
    run, out = exported
    model, tok = load_gpt(run)
    hf = transformers.AutoModelForCausalLM.from_pretrained(out).eval()
    hf_tok = transformers.AutoTokenizer.from_pretrained(out)
    assert hf.generation_config.eos_token_id == list(dict.fromkeys(tok.stop_ids))
    chat = [{"role": "user", "content": "what is two plus three?"}]
    prompts = [[tok.bos_id, *tok.encode(p)] for p in PROMPTS] + [tok.render_prompt(chat)]
    assert prompts[1] == [hf_tok.bos_token_id, *hf_tok.encode("the cat", add_special_tokens=False)]
    rendered = hf_tok.apply_chat_template(chat, add_generation_prompt=True, return_dict=True)
    assert prompts[-1] == rendered["input_ids"]
    for ids in prompts:
        ours = generate(model, [ids], max_new_tokens=24, temperature=0.0, stop=list(tok.stop_ids))
        theirs = hf.generate(
            torch.tensor([ids]),
            attention_mask=torch.ones(1, len(ids), dtype=torch.long),
            do_sample=False,
            max_new_tokens=24,
        )
        assert theirs[0, len(ids) :].tolist() == ours[0].tokens


def test_import_matches_transformers_logits(tmp_path: Path) -> None:
    from tokenizers import Tokenizer as HFTokenizer
    from tokenizers import decoders, models, pre_tokenizers, trainers

    hf_tokenizer = HFTokenizer(models.BPE())
    hf_tokenizer.pre_tokenizer = pre_tokenizers.ByteLevel(add_prefix_space=False)
    hf_tokenizer.decoder = decoders.ByteLevel()
    trainer = trainers.BpeTrainer(
        vocab_size=300,
        special_tokens=["<|endoftext|>"],
        initial_alphabet=pre_tokenizers.ByteLevel.alphabet(),
        show_progress=False,
    )
    hf_tokenizer.train_from_iterator(CORPUS, trainer)
    reference = transformers.GPT2TokenizerFast(tokenizer_object=hf_tokenizer)
    torch.manual_seed(0)
    config = transformers.GPT2Config(
        n_layer=2, n_head=2, n_embd=32, vocab_size=len(reference), n_positions=64
    )
    hf = transformers.GPT2LMHeadModel(config).eval()
    source = tmp_path / "gpt2"
    hf.save_pretrained(source)
    reference.save_pretrained(source)

    main(["import", "hf", str(source), "--out", str(tmp_path / "run")])
    model, tok = load_gpt(tmp_path / "run")
    assert genlab.load(tmp_path / "run").kind == "gpt"
    assert tok.bos_id == tok.eos_id == reference.convert_tokens_to_ids("<|endoftext|>")
    text = tok.encode("".join(CORPUS[:4]))
    ids = torch.tensor([text[:40], text[10:50]])
    with torch.no_grad():
        ours = model(ids)[0][..., : len(reference)]
        assert (ours - hf(ids).logits).abs().max().item() < 1e-5


def test_export_then_import_is_the_same_model(exported, tmp_path: Path) -> None:
    run, out = exported
    main(["import", "hf", str(out), "--out", str(tmp_path / "back")])
    model, tok = load_gpt(run)
    back, back_tok = load_gpt(tmp_path / "back")
    assert back_tok.to_json() == tok.to_json() and back_tok.special == tok.special
    ids = torch.tensor([tok.render_prompt([{"role": "user", "content": "the cat"}])])
    with torch.no_grad():
        assert torch.equal(model(ids)[0], back(ids)[0])


def test_bad_input_is_one_line(
    exported, tok: Tokenizer, tmp_path: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    run, out = exported
    (empty := tmp_path / "empty").mkdir()
    new = str(tmp_path / "new")
    assert "not a genlab checkpoint" in errors(capsys, ["export", str(empty), "--out", new])
    assert "unknown format 'onnx'" in errors(
        capsys, ["export", str(run), "--format", "onnx", "--out", new]
    )
    assert "not empty" in errors(capsys, ["export", str(run), "--out", str(out)])
    rope = random_run(tmp_path / "rope", tok, pos="rope")
    assert "pos=learned" in errors(capsys, ["export", str(rope), "--out", new])
    assert "no config.json" in errors(capsys, ["import", "hf", str(empty), "--out", new])
    llama = tmp_path / "llama"
    llama.mkdir()
    (llama / "config.json").write_text(json.dumps({"model_type": "llama"}))
    assert "not a GPT-2 config" in errors(capsys, ["import", "hf", str(llama), "--out", new])
    no_tokenizer = tmp_path / "bare"
    no_tokenizer.mkdir()
    for name in ("config.json", "model.safetensors"):
        (no_tokenizer / name).write_bytes((out / name).read_bytes())
    assert "no tokenizer.json" in errors(capsys, ["import", "hf", str(no_tokenizer), "--out", new])
    assert not Path(new).exists()
