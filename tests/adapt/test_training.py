"""Training verbs with adapters: SFT, DPO and text-to-image runs that train only an adapter write
small adapter run folders that open, generate and resume like their base, leave the base's
tensors bit-identical, and refuse bad options in one line."""

from __future__ import annotations

import json
import logging
from dataclasses import replace
from pathlib import Path

import pytest
import torch

import genlab
from genlab.adapt import inject
from genlab.adapt.adapted import Adapted
from genlab.adapt.config import AdapterOptions
from genlab.adapt.peft_format import load_peft
from genlab.align import dpo as dpo_module
from genlab.align.dpo import DPOConfig, dpo, encode_preference_pairs, reference_logprobs
from genlab.align.sft import SFTConfig, sft
from genlab.align.stage import Tuned
from genlab.cli import main
from genlab.core.errors import GenlabError
from genlab.core.io import load_tensors
from genlab.core.train_config import TrainConfig
from genlab.data.images import ShapesConfig, ShapesDataset
from genlab.data.images.folder import export_images
from genlab.data.records import read_comparisons, read_conversations, split_records
from genlab.data.tokenizer import Tokenizer
from genlab.methods.autoregressive.checkpoint import load_gpt, save_gpt
from genlab.methods.autoregressive.decoding import generate
from genlab.nets.gpt import GPT, GPTConfig
from genlab.recipes.diffusion import DataSpec, ImageTrainConfig, train_diffusion
from genlab.recipes.diffusion_eval import sample_run
from genlab.recipes.stages import tuning

pytestmark = pytest.mark.usefixtures("one_thread")

TEXT = [
    "the answer is yes. the answer is no. hello there, how are you?\n",
    "what is two plus two? it is four. ugh, whatever, figure it out yourself.\n",
] * 20
CHAT = {
    "messages": [
        {"role": "user", "content": "hello there"},
        {"role": "assistant", "content": "the answer is yes"},
    ]
}
OTHER = [CHAT["messages"][0], {"role": "assistant", "content": "ugh, whatever."}]
PAIRS = [
    {"prompt": "what is two plus two?", "chosen": "it is four.", "rejected": "ugh, whatever."},
    {"prompt": "hello", "chosen": "hello there!", "rejected": "figure it out yourself."},
]


@pytest.fixture(scope="module")
def tok() -> Tokenizer:
    return Tokenizer.train(TEXT, vocab_size=300)


@pytest.fixture(scope="module")
def base(tmp_path_factory, tok) -> Path:
    """A tiny GPT trained to answer "hello there" in two ways, half the time each: a base that
    an adapter can steer to one of them."""
    folder = tmp_path_factory.mktemp("base")
    torch.manual_seed(0)
    config = GPTConfig(vocab_size=tok.vocab_size, block_size=64, n_layer=1, n_head=2, n_embd=32)
    save_gpt(folder / "random", GPT(config), tok)
    both = [CHAT["messages"], OTHER] * 20
    threads = torch.get_num_threads()
    torch.set_num_threads(1)
    sft(SFTConfig(str(folder / "random"), str(folder / "base"), train=quick(60)), both, both[:4])
    torch.set_num_threads(threads)
    return folder / "base"


@pytest.fixture(scope="module")
def chats(tmp_path_factory) -> Path:
    path = tmp_path_factory.mktemp("data") / "chats.jsonl"
    path.write_text("".join(json.dumps(CHAT) + "\n" for _ in range(40)))
    return path


@pytest.fixture(scope="module")
def pairs(tmp_path_factory) -> Path:
    path = tmp_path_factory.mktemp("data") / "pairs.jsonl"
    path.write_text("".join(json.dumps(PAIRS[i % 2]) + "\n" for i in range(24)))
    return path


def quick(max_steps: int, lr: float = 1e-2, **kw) -> TrainConfig:
    """A short CPU run; a constant learning rate after one warmup step, so a run resumed with
    more steps follows the same schedule as one never stopped."""
    settings = dict(
        max_steps=max_steps, batch_size=8, lr=lr, warmup_steps=1, min_lr_ratio=1.0,
        weight_decay=0.0, eval_every=0, eval_batches=1, checkpoint_every=0, log_every=1,
        device="cpu", progress=False, tensorboard=False, plots=False,
    )  # fmt: skip
    return TrainConfig(**{**settings, **kw})


def capturing(options: AdapterOptions, seen: list[Tuned]):
    """``tuning(options)``, keeping what it builds (the in-memory adapter) in ``seen``."""
    tune = tuning(options)

    def keep(gpt: GPT, folder: str) -> Tuned:
        seen.append(tune(gpt, folder))
        return seen[-1]

    return keep


def run_sft(
    base: Path, out: Path, chats: Path, options: AdapterOptions, steps: int, lr: float = 1e-2,
    resume: bool = False,
) -> tuple[dict[str, float], Adapted]:  # fmt: skip
    """SFT on ``chats`` with ``options``; the metrics and the in-memory adapter."""
    seen: list[Tuned] = []
    train, held = split_records(read_conversations(chats), 0.05)
    cfg = SFTConfig(base=str(base), out=str(out), train=quick(steps, lr))
    metrics = sft(cfg, train, held, resume=resume, tune=capturing(options, seen))
    return metrics, seen[0].module  # type: ignore[return-value]


def base_tensors(model: GPT) -> dict[str, torch.Tensor]:
    """The base's own tensors inside an adapted GPT, under the base's names."""
    return {
        n.replace(".base_layer", ""): t
        for n, t in model.state_dict().items()
        if "lora_" not in n
        and "adapter_" not in n
        and not n.startswith("prefix")
        and not n.startswith("wte.token_rows.")
    }


ROWS = "model.wte.token_rows.default.weight"  # the special tokens' rows, saved with the adapter


def special_ids(tok: Tokenizer) -> list[int]:
    """The ids whose embedding rows an adapter trains by default (``special_tokens``)."""
    return sorted(set(tok.special.values()))


def weight_bytes(folder: Path) -> int:
    return (folder / "model.safetensors").stat().st_size


LORA = AdapterOptions(adapter="lora", lora_rank=4, lora_targets=("attn.qkv", "attn.proj"))


def test_lora_sft_trains_only_the_adapter_and_saves_it_alone(tmp_path, base, chats, tok):
    metrics, adapted = run_sft(base, tmp_path / "lora", chats, LORA, steps=8)
    start = {n: t.clone() for n, t in base_tensors(adapted.model).items()}
    assert start.keys() == load_tensors(base / "model.safetensors").keys()
    for name, value in load_tensors(base / "model.safetensors").items():
        assert torch.equal(start[name], value), name  # the base did not move, bit for bit
    own = inject.adapter_parameters(adapted.model, "default")
    assert metrics["trainable_parameters"] == sum(p.numel() for p in own.values())
    assert any(p.abs().max() > 0 for n, p in own.items() if "lora_B" in n)  # B left zero: trained
    # the special tokens' rows trained too: those of the chat template moved off the base's
    rows = own["wte.token_rows.default.weight"]
    chat = [tok.user_id, tok.special["assistant"], tok.eot_id]
    moved = rows - start["wte.weight"][special_ids(tok)]
    assert all(moved[special_ids(tok).index(t)].abs().max() > 0 for t in chat)

    folder = tmp_path / "lora"
    config = json.loads((folder / "config.json").read_text())
    assert config["kind"] == "adapter" and config["config"]["base"] == str(base.resolve())
    assert config["config"]["adapter"]["rank"] == 4
    assert config["config"]["adapter"]["targets"] == ["attn.qkv", "attn.proj"]
    assert config["config"]["adapter"]["tokens"] == special_ids(tok)
    saved = load_tensors(folder / "model.safetensors")
    assert saved[ROWS].shape == (len(special_ids(tok)), 32)
    assert any("lora_" in n for n in saved) and all("lora_" in n or n == ROWS for n in saved)
    assert weight_bytes(folder) < weight_bytes(base) / 10
    assert (folder / "tokenizer.json").is_file()
    peft_config, peft_tensors = load_peft(folder)  # PEFT's files beside genlab's
    assert peft_config.rank == 4 and set(peft_config.targets) == {"attn.qkv", "attn.proj"}
    assert peft_config.tokens == tuple(special_ids(tok))
    peft_json = json.loads((folder / "adapter_config.json").read_text())
    assert peft_json["trainable_token_indices"] == {"wte": special_ids(tok)}
    own = inject.adapter_state_dict(adapted.model, "default")
    assert peft_tensors.keys() == own.keys()
    assert all(torch.equal(peft_tensors[k], own[k]) for k in own)

    loaded = genlab.load(folder)
    assert loaded.kind == "adapter" and loaded.files["tokenizer"].to_json() == tok.to_json()
    x = torch.randint(0, tok.vocab_size, (2, 12), generator=torch.Generator().manual_seed(0))
    with torch.no_grad():
        assert torch.equal(loaded.model(x)[0], adapted.eval()(x)[0])
    model, tokenizer = load_gpt(folder)
    prompt = tokenizer.render_prompt([{"role": "user", "content": "hello there"}])
    out = generate(model, [prompt], 10, temperature=0, stop=[tokenizer.eot_id], tokenizer=tokenizer)
    assert out[0].text == "the answer is yes"  # the base said this half the time, now always


def test_a_lora_without_peft_form_says_so_once_and_an_adapter_run_is_no_base(
    tmp_path, caplog, base, chats
):
    options = AdapterOptions(adapter="lora", lora_rank=2, lora_targets=("lm_head",))
    # the tied lm_head takes either a LoRA or the special tokens' rows: one line says which way out
    with pytest.raises(GenlabError, match=r"lm_head.*--no-special-tokens\)$"):
        run_sft(base, tmp_path / "both", chats, options, steps=1)
    options = replace(options, special_tokens=False)
    with caplog.at_level(logging.WARNING, logger="genlab.recipes.stages"):
        run_sft(base, tmp_path / "head", chats, options, steps=2)
    said = [r.getMessage() for r in caplog.records if "no PEFT files" in r.getMessage()]
    assert len(said) == 1 and "lm_head" in said[0]
    assert not (tmp_path / "head" / "adapter_config.json").exists()
    assert genlab.load(tmp_path / "head").kind == "adapter"  # genlab's own files are complete
    with pytest.raises(GenlabError, match="is an adapter run: train the new adapter on a full"):
        run_sft(tmp_path / "head", tmp_path / "again", chats, LORA, steps=1)


def test_lora_sft_resumes_exactly(tmp_path, base, chats):
    run_sft(base, tmp_path / "straight", chats, LORA, steps=6)
    run_sft(base, tmp_path / "split", chats, LORA, steps=3)
    run_sft(base, tmp_path / "split", chats, LORA, steps=6, resume=True)
    straight = load_tensors(tmp_path / "straight" / "model.safetensors")
    split = load_tensors(tmp_path / "split" / "model.safetensors")
    assert straight.keys() == split.keys()
    for name, value in straight.items():
        assert torch.equal(split[name], value), name


def first_and_last_loss(folder: Path) -> tuple[float, float]:
    records = [json.loads(line) for line in (folder / "metrics.jsonl").read_text().splitlines()]
    losses = [r["loss"] for r in records if "loss" in r]
    return losses[0], losses[-1]


PROMPT = "model.prefix.embeddings.default.weight"


@pytest.mark.parametrize(
    ("options", "lr"),
    [
        (AdapterOptions(adapter="prompt", prompt_tokens=4, special_tokens=False), 3e-2),
        (AdapterOptions(adapter="prompt", prompt_tokens=4), 3e-2),
        (AdapterOptions(adapter="bottleneck", bottleneck_size=8), 1e-2),
    ],
    ids=["prompt", "prompt-rows", "bottleneck"],
)
def test_prompt_and_bottleneck_adapters_lower_the_loss(
    tmp_path, caplog, base, chats, tok, options, lr
):
    with caplog.at_level(logging.WARNING, logger="genlab.recipes.stages"):
        metrics, adapted = run_sft(base, tmp_path / "run", chats, options, steps=20, lr=lr)
    first, last = first_and_last_loss(tmp_path / "run")
    assert last < 0.9 * first, (first, last)
    saved = load_tensors(tmp_path / "run" / "model.safetensors")
    said = [r.getMessage() for r in caplog.records if "no PEFT files" in r.getMessage()]
    rows = len(special_ids(tok)) * 32 if options.special_tokens else 0
    if options.adapter == "prompt" and not options.special_tokens:
        # a soft prompt of 4 vectors is the whole adapter, and PEFT's files hold it
        assert list(saved) == [PROMPT] and metrics["trainable_parameters"] == 4 * 32
        assert torch.equal(
            load_peft(tmp_path / "run")[1]["prefix.embeddings.weight"], saved[PROMPT]
        )
        assert not said
    elif options.adapter == "prompt":  # the prompt and the special tokens' rows
        assert sorted(saved) == [PROMPT, ROWS] and metrics["trainable_parameters"] == 4 * 32 + rows
        # PEFT's prompt tuning cannot carry token rows: said once, genlab's files complete
        assert len(said) == 1 and "trainable_token_indices is LoRA's" in said[0]
        assert not (tmp_path / "run" / "adapter_config.json").exists()
    else:  # Houlsby's placement: after the attention projection and after the MLP
        assert {n.split(".")[3] for n in saved if n != ROWS} == {"attn", "mlp"} and ROWS in saved
        assert metrics["trainable_parameters"] == sum(t.numel() for t in saved.values())
        assert not (tmp_path / "run" / "adapter_config.json").exists()  # PEFT has no such form
        assert not said
    model, tokenizer = load_gpt(tmp_path / "run")
    prompt = tokenizer.render_prompt([{"role": "user", "content": "hello there"}])
    assert generate(model, [prompt], 4, temperature=0, tokenizer=tokenizer)[0].tokens


@pytest.mark.parametrize(
    ("special", "every", "expected"),
    [(True, False, "special"), (False, False, "none"), (True, True, "all"), (False, True, "all")],
)
def test_which_token_rows_an_adapter_trains(base, tok, special, every, expected):
    gpt, _ = load_gpt(base)
    options = AdapterOptions(adapter="lora", lora_rank=2, special_tokens=special, all_tokens=every)
    adapted = tuning(options)(gpt, str(base)).module
    want = {
        "special": special_ids(tok),
        "none": [],
        "all": list(range(gpt.config.vocab_size)),
    }[expected]
    assert list(adapted.config.adapter.tokens) == want
    rows = [p for n, p in adapted.model.named_parameters() if "token_rows" in n]
    assert sum(p.numel() for p in rows) == len(want) * gpt.config.n_embd
    assert all(p.requires_grad for p in rows)


def test_base_only_runs_the_base_and_gives_the_adapter_back(base, tok):
    gpt, _ = load_gpt(base)
    plain, _ = load_gpt(base)
    options = AdapterOptions(adapter="lora", lora_rank=2)
    tuned = tuning(options)(gpt, str(base))
    inject.add_adapter(gpt, AdapterOptions(adapter="prompt", prompt_tokens=3).config(), "p")
    inject.set_adapters(gpt, {"default": 1.0, "p": 1.0})
    with torch.no_grad():
        for p in tuned.module.parameters():
            if p.requires_grad:
                p.normal_(std=0.1)
        x = torch.randint(0, tok.vocab_size, (2, 10), generator=torch.Generator().manual_seed(0))
        adapted = gpt(x)[0]
        with tuned.reference():
            assert torch.equal(gpt(x)[0], plain(x)[0])
        assert torch.equal(gpt(x)[0], adapted)
    assert inject.acting(gpt) == {"default": 1.0, "p": 1.0}
    inject.merge(gpt, "default")
    with pytest.raises(GenlabError, match="unmerge"), tuned.reference():
        pass


@pytest.mark.parametrize("method", ["lora", "prompt"])
def test_dpo_with_an_adapter_uses_the_frozen_base_as_its_reference(
    tmp_path, monkeypatch, base, pairs, tok, method
):
    options = AdapterOptions(adapter=method, lora_rank=4, prompt_tokens=3)
    seen: list[Tuned] = []
    references: list[tuple[GPT, tuple[torch.Tensor, torch.Tensor]]] = []

    def recording(model, tensors, batch_size=64):
        out = reference_logprobs(model, tensors, batch_size)
        references.append((model, out))
        return out

    monkeypatch.setattr(dpo_module, "reference_logprobs", recording)
    train, held = split_records(read_comparisons(pairs), 0.25)
    cfg = DPOConfig(policy=str(base), out=str(tmp_path / "dpo"), beta=0.5, train=quick(10, 1e-2))
    metrics = dpo(cfg, train, held, tune=capturing(options, seen))
    adapted = seen[0].module
    assert isinstance(adapted, Adapted)
    plain, _ = load_gpt(base)
    assert [model for model, _ in references] == [adapted.model] * 2  # no second copy
    tensors, _ = encode_preference_pairs(tok, held, 64)
    with torch.no_grad():
        truth = reference_logprobs(plain, tensors)
    assert torch.equal(references[1][1][0], truth[0]) and torch.equal(references[1][1][1], truth[1])
    assert json.loads((tmp_path / "dpo" / "config.json").read_text())["kind"] == "adapter"
    if method == "prompt":  # a new soft prompt changes the policy: the reference must not see it
        fresh = load_gpt(base)[0]
        inject.add_adapter(fresh, options.config(), "p")
        with torch.no_grad():
            assert not torch.equal(reference_logprobs(fresh, tensors)[0], truth[0])
        return
    assert metrics["eval_reward_accuracy"] == 1.0
    tuned, _ = load_gpt(tmp_path / "dpo")
    with torch.no_grad():
        after = reference_logprobs(tuned, tensors)
    assert ((after[0] - after[1]) > (truth[0] - truth[1])).all()


# ---------------------------------------------------------------------------------------------
# The command line


def fails(capsys, *args: str) -> str:
    with pytest.raises(SystemExit) as e:
        main(list(args))
    assert e.value.code == 2
    err = capsys.readouterr().err.strip()
    assert len(err.splitlines()) == 1, err
    return err


def test_sft_verb_with_lora_writes_an_adapter_run(tmp_path, base, chats):
    out = tmp_path / "sft"
    main([
        "sft", "--base", str(base), "--data", str(chats), "--out", str(out), "--adapter", "lora",
        "--lora-rank", "2", "--lora-alpha", "4", "--lora-dropout", "0.1",
        "--lora-targets", "attn.qkv,mlp.fc", "--max-steps", "2", "--batch-size", "8",
        "--device", "cpu", "--no-progress", "--no-tensorboard", "--no-plots",
    ])  # fmt: skip
    adapter = json.loads((out / "config.json").read_text())["config"]["adapter"]
    assert (adapter["method"], adapter["rank"], adapter["alpha"], adapter["dropout"]) == (
        "lora", 2, 4.0, 0.1,
    )  # fmt: skip
    assert adapter["targets"] == ["attn.qkv", "mlp.fc"]


@pytest.mark.parametrize(
    ("args", "message"),
    [
        (["--adapter", "lora", "--lora-targets", "nothere"],
         "no layer matches the adapter targets nothere; this model's layers (blocks.0.attn.qkv, "
         "...) end in attn.qkv, attn.proj, mlp.fc, mlp.proj, lm_head"),
        (["--adapter", "ia3"], "--adapter takes one of none, lora, bottleneck, prompt, got 'ia3'"),
        (["--adapter", "lora", "--lora-rank", "0"], "adapter rank must be positive, got 0"),
        (["--adapter", "lora", "--lora-dropout", "1"], "adapter dropout must be in [0, 1)"),
        (["--adapter", "prompt", "--lora-targets", "attn.qkv"],
         "--lora-targets is for --adapter lora, not prompt"),
        (["--adapter", "prompt", "--prompt-tokens", "0"], "prompt_tokens must be positive"),
    ],
)  # fmt: skip
@pytest.mark.parametrize("verb", ["sft", "dpo"])
def test_bad_adapter_options_are_one_line(
    tmp_path, capsys, base, chats, pairs, verb, args, message
):
    data = chats if verb == "sft" else pairs
    start = "--base" if verb == "sft" else "--policy"
    err = fails(capsys, verb, start, str(base), "--data", str(data), "--out", str(tmp_path / "x"),
                "--max-steps", "1", "--device", "cpu", "--no-progress", *args)  # fmt: skip
    assert message in err


# ---------------------------------------------------------------------------------------------
# LoRA on a text-to-image model


def image_train(steps: int, lr: float) -> TrainConfig:
    return quick(steps, lr, min_lr_ratio=0.1)


@pytest.fixture(scope="module")
def shapes_run(tmp_path_factory) -> Path:
    """A tiny text-to-image model of shapes on white, briefly trained."""
    out = tmp_path_factory.mktemp("image") / "base"
    cfg = ImageTrainConfig(
        out=str(out),
        data=DataSpec(data="shapes", size=16, n_images=256),
        unet_overrides={"base_channels": 16, "num_heads": 2},
        text_dim=16,
        text_layers=1,
        ema_decay=0.9,
        grid_sampler_steps=2,
        train=image_train(20, 2e-3),
    )
    threads = torch.get_num_threads()
    torch.set_num_threads(1)
    train_diffusion(cfg)
    torch.set_num_threads(threads)
    return out


@pytest.fixture(scope="module")
def dark_shapes(tmp_path_factory) -> tuple[Path, float]:
    """48 images of the same captions drawn on black: a look the base never saw; and their
    mean pixel value in [-1, 1]."""
    folder = tmp_path_factory.mktemp("dark")
    config = ShapesConfig(two_shape_fraction=0.0, background=(0, 0, 0))
    data = ShapesDataset(48, 16, seed=7, config=config)
    export_images(data, folder)
    return folder, float(data.pixels.float().div(127.5).sub(1).mean())


def lora_config(out: Path, base: Path, data: Path, steps: int) -> ImageTrainConfig:
    return ImageTrainConfig(
        out=str(out),
        data=DataSpec(data=str(data)),
        init_from=str(base),
        adapter=AdapterOptions(adapter="lora", lora_rank=4),
        ema_decay=0.9,
        grid_sampler_steps=2,
        train=image_train(steps, 2e-2),
    )


PROMPTS = ["a large red circle on the left", "a small blue square at the top"]


def test_image_lora_learns_a_new_look_from_a_few_dozen_images(tmp_path, shapes_run, dark_shapes):
    folder, dark_mean = dark_shapes
    out = tmp_path / "lora"
    metrics = train_diffusion(lora_config(out, shapes_run, folder, steps=15))
    saved = load_tensors(out / "model.safetensors")
    assert saved and all("lora_" in n for n in saved)
    assert metrics["params"] == sum(t.numel() for t in saved.values())
    assert weight_bytes(out) < weight_bytes(shapes_run) / 4
    loaded = genlab.load(out)
    assert loaded.config.base_weights == "ema.safetensors"
    layers = {n.rsplit(".lora_", 1)[0].rsplit(".", 1)[-1] for n in saved}
    assert layers == {"to_q", "to_k", "to_v", "to_out", "conv1", "conv2"}
    base_ema = load_tensors(shapes_run / "ema.safetensors")
    for name, value in base_tensors(loaded.model.model).items():
        assert torch.equal(value, base_ema[name]), name  # the base's average, untouched
    before, _ = sample_run(shapes_run, tmp_path / "a.png", prompts=PROMPTS, n=8, steps=10)
    after, _ = sample_run(out, tmp_path / "b.png", prompts=PROMPTS, n=8, steps=10)
    # the samples' mean pixel moved most of the way from white backgrounds to black ones
    moved = (before.mean() - after.mean()) / (before.mean() - dark_mean)
    assert moved > 0.5, (before.mean(), after.mean(), dark_mean)


def test_image_lora_resumes_exactly_and_samples_from_the_cli(
    tmp_path, capsys, shapes_run, dark_shapes
):
    folder, _ = dark_shapes
    straight = lora_config(tmp_path / "straight", shapes_run, folder, steps=4)
    split = replace(straight, out=str(tmp_path / "split"))
    train_diffusion(straight)
    train_diffusion(split, until=2)
    train_diffusion(split, resume=True)
    for name in ("model.safetensors", "ema.safetensors"):
        a, b = load_tensors(tmp_path / "straight" / name), load_tensors(tmp_path / "split" / name)
        assert all(torch.equal(a[k], b[k]) for k in a), name
    main(["image", "sample", str(tmp_path / "split"), "--n", "2", "--steps", "2",
          "--prompt", PROMPTS[0], "--out", str(tmp_path / "grid.png"), "--device", "cpu"])  # fmt: skip
    assert "wrote 2 samples" in capsys.readouterr().out


@pytest.mark.parametrize(
    ("args", "message"),
    [
        (["--adapter", "prompt", "--init-from", "RUN"],
         "an image model takes --adapter lora, not prompt"),
        (["--adapter", "lora"], "--adapter trains on a trained model: give --init-from RUN"),
        (["--adapter", "lora", "--init-from", "RUN", "--lora-targets", "nothere"],
         "no layer matches the adapter targets nothere"),
        (["--init-from", "RUN", "--base-channels", "8"], "keeps its network"),
    ],
)  # fmt: skip
def test_bad_image_adapter_options_are_one_line(tmp_path, capsys, shapes_run, args, message):
    args = [str(shapes_run) if a == "RUN" else a for a in args]
    err = fails(capsys, "image", "train", "--out", str(tmp_path / "x"), "--max-steps", "1",
                "--n-images", "64", "--device", "cpu", "--no-progress", *args)  # fmt: skip
    assert message in err
