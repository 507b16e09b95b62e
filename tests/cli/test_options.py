"""The command line generated from config dataclasses: names, types, defaults, help text, the
precedence defaults < --config < options < KEY=VALUE, and one-line errors; then the real verbs."""

from __future__ import annotations

import json
import re
import shlex
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any, Literal

import pytest
import typer
from typer.testing import CliRunner

from genlab.adapt.config import AdapterOptions
from genlab.cli import app, main
from genlab.cli.options import config_command, option_names
from genlab.core.config import build_config, convert, field_help, settings
from genlab.metrics.features import FeatureTrainConfig
from genlab.recipes.clip import CLIPTrainConfig
from genlab.recipes.diffusion import ImageTrainConfig
from genlab.recipes.experiments import (
    adapters,
    ar_vs_nar,
    calibration,
    chain_of_thought,
    detection,
    diffusion_guidance,
    diffusion_prediction,
    diffusion_steps,
    editing,
    emergence,
    icl_wrong_labels,
    image_families,
    instruction_tuning,
    knowledge_vs_language,
    least_to_most,
    pixel_vs_latent,
    prompt_search,
    prompting_all,
    retrieval,
    rlhf_vs_size,
    scale_all,
    scaling_laws,
    self_consistency,
    text_encoder_size,
    toolformer,
    u_shaped,
    unlearning,
    wavegrad_steps,
)
from genlab.recipes.experiments.detection import DetectionConfig
from genlab.recipes.experiments.diffusion_guidance import GuidanceConfig
from genlab.recipes.experiments.diffusion_prediction import PredictionConfig
from genlab.recipes.experiments.diffusion_steps import StepsConfig
from genlab.recipes.experiments.editing import EditingConfig
from genlab.recipes.experiments.image_families import ImageFamiliesConfig
from genlab.recipes.experiments.retrieval import RetrievalExperimentConfig
from genlab.recipes.experiments.toolformer import ToolformerExperimentConfig
from genlab.recipes.experiments.unlearning import UnlearningConfig
from genlab.recipes.experiments.wavegrad_steps import WaveGradStepsConfig
from genlab.recipes.pretrain import PretrainConfig
from genlab.recipes.retrieval import RetrievalConfig
from genlab.recipes.stages import DPOStage, PPOStage, RewardStage, SFTStage
from genlab.recipes.toolformer import ToolformerConfig
from genlab.recipes.wavegrad import AudioTrainConfig


@dataclass
class Inner:
    """A nested config whose defaults the parent's factory changes."""

    rate: float = 0.5  # how fast
    seed: int = 1  # the inner seed
    flag: bool = False  # an inner switch


@dataclass
class More:
    seed: int = 2  # another seed
    depth: int = 4


@dataclass
class Toy:
    """Every kind of field a config has."""

    name: str = "x"  # the name
    count: int = 3  # how many
    scale: float | None = None  # optional scale
    betas: tuple[float, float] = (0.9, 0.95)  # two numbers
    levels: tuple[int, ...] = (1, 2)  # any number of integers
    mode: Literal["a", "b"] = "a"  # a choice
    verbose: bool = True  # say more
    extra: dict[str, Any] = field(default_factory=dict)  # no option: --config or KEY=VALUE
    seed: int = 0  # the top-level seed
    noted: int = field(default=5, metadata={"help": "from metadata"})  # not this comment
    inner: Inner = field(default_factory=lambda: Inner(rate=0.25))
    more: More = field(default_factory=More)


def toy_app() -> tuple[typer.Typer, list[Toy]]:
    """A one-verb app that records the config and its own option."""
    seen: list[Any] = []
    toy = typer.Typer()

    @toy.command()
    @config_command(Toy, aliases={"more.depth": "--levels-deep"})
    def run(cfg: Toy, resume: bool = typer.Option(False, "--resume")) -> None:
        seen.append((cfg, resume))

    return toy, seen


def invoke(*args: str) -> tuple[Toy, bool]:
    toy, seen = toy_app()
    result = CliRunner().invoke(toy, list(args))
    assert result.exit_code == 0, (result.output, result.exception)
    return seen[0]


# ---------------------------------------------------------------------------------------------
# Generation


def test_flags_follow_the_naming_rule():
    names = option_names(Toy, {"more.depth": "--levels-deep"})
    assert names == {
        "name": ("--name",),
        "count": ("--count",),
        "scale": ("--scale",),
        "betas": ("--betas",),
        "levels": ("--levels",),
        "mode": ("--mode",),
        "verbose": ("--verbose",),
        "seed": ("--seed",),  # the top-level leaf keeps the bare name
        "noted": ("--noted",),
        "inner.rate": ("--rate",),  # unique: flattened
        "inner.seed": ("--inner-seed",),  # shared: spelled by its path
        "inner.flag": ("--flag",),
        "more.seed": ("--more-seed",),
        "more.depth": ("--depth", "--levels-deep"),
    }  # "extra" (a dict) has no option


def test_clashing_or_unknown_aliases_fail_when_the_verb_is_defined():
    with pytest.raises(ValueError, match="--seed"):
        option_names(Toy, {"inner.seed": "--seed"})
    with pytest.raises(ValueError, match="nope"):
        option_names(Toy, {"nope": "--nope"})


def test_help_and_defaults_come_from_the_dataclass():
    helps = field_help(Toy)
    assert helps["count"] == "how many" and helps["noted"] == "from metadata"
    assert "inner" not in helps and "depth" not in field_help(More)
    by_key = {s.key: s for s in settings(Toy)}
    assert by_key["inner.rate"].default == 0.25  # the parent's default_factory, not Inner's
    assert by_key["inner.rate"].help == "how fast"
    assert by_key["betas"].default == (0.9, 0.95)


def test_help_shows_each_type_default_and_help():
    toy, _ = toy_app()
    out = CliRunner().invoke(toy, ["--help"], env={"COLUMNS": "200"}).output
    assert re.search(r"--count\s+INT\s+how many \[default: 3\]", out)
    assert re.search(r"--scale\s+FLOAT\|none\s+optional scale \[default: none\]", out)
    assert re.search(r"--betas\s+FLOAT,FLOAT\s+two numbers \[default: 0\.9,0\.95\]", out)
    assert re.search(r"--levels\s+INT,\.\.\.\s+any number of integers \[default: 1,2\]", out)
    assert re.search(r"--mode\s+\[a\|b\]\s+a choice \[default: a\]", out)
    assert re.search(r"--verbose\s+--no-verbose", out)
    assert re.search(r"--rate\s+FLOAT\s+how fast \[default: 0\.25\]", out)
    assert "inner settings" in out and "more settings" in out
    assert "--extra" not in out and "--config" in out and "KEY=VALUE" in out


# ---------------------------------------------------------------------------------------------
# Values and precedence


def test_no_arguments_give_the_dataclass_defaults():
    assert invoke() == (Toy(), False)


def test_options_of_every_type():
    cfg, resume = invoke(
        "--name", "y", "--count", "4", "--scale", "2", "--betas", "0.8,0.9", "--levels", "3",
        "--mode", "b", "--no-verbose", "--rate", "0.1", "--inner-seed", "7", "--flag",
        "--more-seed", "8", "--levels-deep", "9", "--resume",
    )  # fmt: skip
    assert resume
    assert (cfg.name, cfg.count, cfg.scale, cfg.betas, cfg.levels) == (
        "y",
        4,
        2.0,
        (0.8, 0.9),
        (3,),
    )
    assert (cfg.mode, cfg.verbose, cfg.seed) == ("b", False, 0)
    assert cfg.inner == Inner(rate=0.1, seed=7, flag=True) and cfg.more == More(seed=8, depth=9)
    assert invoke("--scale", "none")[0].scale is None


def test_key_value_overrides():
    cfg, _ = invoke(
        "inner.rate=1e-3",
        "betas=[0.1, 0.2]",
        "name=123",
        'extra={"width": 32}',
        'more={"seed": 9}',
        "scale=null",
        "verbose=false",
    )
    assert cfg.inner == Inner(rate=1e-3) and cfg.betas == (0.1, 0.2) and cfg.name == "123"
    assert cfg.extra == {"width": 32} and cfg.more == More(seed=9) and not cfg.verbose


@pytest.mark.parametrize("suffix", [".json", ".yaml"])
def test_defaults_lose_to_the_file_to_options_to_key_value(tmp_path, suffix):
    settings_ = {"name": "f", "count": 5, "inner": {"rate": 1e-3}, "levels": [4, 5]}
    path = tmp_path / f"c{suffix}"
    if suffix == ".json":
        path.write_text(json.dumps(settings_))
    else:  # YAML reads 1e-3 as text: the converter still takes it as a number
        path.write_text("name: f\ncount: 5\ninner:\n  rate: 1e-3\nlevels: [4, 5]\n")
    cfg, _ = invoke("--config", str(path))
    assert (cfg.name, cfg.count, cfg.levels) == ("f", 5, (4, 5))
    assert cfg.inner == Inner(rate=1e-3)  # the other nested settings keep their defaults
    cfg, _ = invoke("--config", str(path), "--count", "6")
    assert (cfg.name, cfg.count) == ("f", 6)  # options not given leave the file's values
    cfg, _ = invoke("count=7", "--config", str(path), "--count", "6", "--rate", "0.2")
    assert (cfg.name, cfg.count, cfg.inner.rate) == ("f", 7, 0.2)


def test_build_config_from_python(tmp_path):
    path = tmp_path / "c.yml"
    path.write_text("more: {depth: 1}\n")
    cfg = build_config(Toy, path, {"count": 2}, ["more.seed=3"])
    assert cfg.more == More(seed=3, depth=1) and cfg.count == 2


@pytest.mark.parametrize(
    ("value", "annotation", "expected"),
    [
        ("3", int, 3),
        (3.0, int, 3),
        ("1e-3", float, 1e-3),
        (2, float, 2.0),
        ("none", int | None, None),
        ("yes", bool, True),
        ("1,2,2", tuple[int, ...], (1, 2, 2)),
        ([1, 2], list[int], [1, 2]),
        ("b", Literal["a", "b"], "b"),
    ],
)
def test_convert(value, annotation, expected):
    assert convert(value, annotation, "x") == expected


# ---------------------------------------------------------------------------------------------
# Errors: one line, exit code 2, through the real CLI


def fails(capsys, *args: str) -> str:
    with pytest.raises(SystemExit) as e:
        main(list(args))
    assert e.value.code == 2
    err = capsys.readouterr().err.strip()
    assert len(err.splitlines()) == 1, err
    return err


@pytest.mark.parametrize(
    ("args", "message"),
    [
        (["train.lrr=1"], "unknown setting 'train.lrr'; did you mean train.lr?"),
        (["lr=1"], "unknown setting 'lr'; did you mean train.lr?"),
        (["--lr", "fast"], "--lr takes a number, got 'fast'"),
        (["train.max_steps=1.5"], "train.max_steps takes an integer, got 1.5"),
        (["train.betas=0.9"], "train.betas takes 2 comma-separated values"),
        (["train=3"], "train takes a mapping of its settings"),
        (["oops"], "expected KEY=VALUE"),
    ],
)
def test_bad_settings_are_one_line(capsys, args, message):
    assert message in fails(capsys, "pretrain", *args)


@pytest.mark.parametrize(
    ("name", "text", "message"),
    [
        ("c.yaml", "train:\n  lrr: 1\n", "c.yaml: unknown setting 'train.lrr'"),
        ("c.json", '{"preset": 3}', "c.json: preset takes text, got 3"),
        ("c.json", "{nope", "invalid JSON"),
        ("c.yaml", "a: [1\n", "invalid YAML"),
        ("c.yaml", "- 1\n", "must hold a mapping"),
        ("c.toml", "x = 1", "--config takes a .json, .yaml or .yml file"),
    ],
)
def test_bad_config_files_are_one_line(tmp_path, capsys, name, text, message):
    path = tmp_path / name
    path.write_text(text)
    assert message in fails(capsys, "pretrain", "--config", str(path))


def test_missing_config_file(tmp_path, capsys):
    assert "not found" in fails(capsys, "pretrain", "--config", str(tmp_path / "none.yaml"))


# ---------------------------------------------------------------------------------------------
# The real training verbs

VERBS = {  # command path -> the config its options are generated from
    ("pretrain",): PretrainConfig,
    ("image", "train"): ImageTrainConfig,
    ("metrics", "train-features"): FeatureTrainConfig,
    ("metrics", "train-clip"): CLIPTrainConfig,
    ("sft",): SFTStage,
    ("reward",): RewardStage,
    ("dpo",): DPOStage,
    ("ppo",): PPOStage,
    ("experiment", "diffusion-steps"): StepsConfig,
    ("experiment", "diffusion-guidance"): GuidanceConfig,
    ("experiment", "diffusion-prediction"): PredictionConfig,
    ("experiment", "wavegrad-steps"): WaveGradStepsConfig,
    ("experiment", "image-families"): ImageFamiliesConfig,
    ("experiment", "editing"): EditingConfig,
    ("experiment", "detection"): DetectionConfig,
    ("experiment", "unlearning"): UnlearningConfig,
    ("experiment", "retrieval"): RetrievalExperimentConfig,
    ("toolformer",): ToolformerConfig,
    ("retrieval",): RetrievalConfig,
    ("experiment", "toolformer"): ToolformerExperimentConfig,
    ("audio", "train"): AudioTrainConfig,
}


def command(path: tuple[str, ...]) -> Any:
    cmd = typer.main.get_command(app)
    for name in path:
        cmd = cmd.commands[name]
    return cmd


def test_pretrain_help_lists_a_train_setting_with_its_help():
    out = CliRunner().invoke(app, ["pretrain", "--help"], env={"COLUMNS": "200"}).output
    assert re.search(r"--batch-size\s+INT\s+global rows per optimizer step.*\[default: 16\]", out)
    assert "--config" in out and "--resume" in out


@pytest.mark.parametrize("path", list(VERBS), ids=" ".join)
def test_help_defaults_are_the_dataclass_defaults(path):
    """The one-place guarantee: every default --help shows is the dataclass's, read back."""
    cls = VERBS[path]
    out = CliRunner().invoke(app, [*path, "--help"], env={"COLUMNS": "250"}).output
    names = option_names(cls, _aliases(path))
    shown = 0
    for s in settings(cls):
        if s.key not in names:
            continue
        flag = names[s.key][0]
        line = next(ln for ln in out.splitlines() if re.match(rf"│\s+{re.escape(flag)}[ ,]", ln))
        match = re.search(r"\[default: ([^\]]*)\]", line)
        assert match, (flag, line)
        text = match.group(1)
        if s.annotation is bool:
            assert text == (flag[2:] if s.default else f"no-{flag[2:]}"), flag
        else:
            assert convert(text, s.annotation, flag) == s.default, flag
        assert s.help in " ".join(out.split()), flag
        shown += 1
    assert shown == len(names) > 10


def _aliases(path: tuple[str, ...]) -> dict[str, str]:
    """The aliases the verb declared, read back from its click parameters."""
    found = {}
    for param in command(path).params:
        if param.name and param.name.startswith("setting__") and len(param.opts) > 1:
            found[param.name[len("setting__") :].replace("__", ".")] = param.opts[1]
    return found


def test_documented_image_command_line_still_parses(monkeypatch):
    """docs/diffusion.md's command line, every flag as before."""
    seen = []
    monkeypatch.setattr(
        "genlab.cli.image.train_diffusion",
        lambda cfg, resume: seen.append(cfg) or {"params": 1.0, "step": 1.0},
    )
    main(
        shlex.split(
            "image train --out runs/shapes32 --data shapes --size 32 --preset tiny "
            "--channel-mults 1,2,2 --attn-levels 2 --prediction v --snr-gamma 1 --snr-floor 0.1 "
            "--max-steps 2000 --batch-size 64 --lr 1e-3 --precision bf16 --sample-every 500 "
            "--checkpoint-every 500 --seed 3"
        )
    )
    main(
        shlex.split(
            "image train --snr-gamma 0 --base-channels 16 'unet_overrides={\"norm_groups\":4}'"
        )
    )
    cfg, plain = seen
    assert cfg.unet_overrides == {"channel_mults": (1, 2, 2), "attn_levels": (2,)}
    assert (cfg.out, cfg.data.data, cfg.data.size, cfg.preset) == (
        "runs/shapes32",
        "shapes",
        32,
        "tiny",
    )
    assert (cfg.snr_gamma, cfg.snr_floor, cfg.train.precision) == (1.0, 0.1, "bf16")
    assert (cfg.train.eval_every, cfg.train.checkpoint_every, cfg.train.lr) == (500, 500, 1e-3)
    assert (cfg.train.seed, cfg.data.seed) == (3, 0)
    assert (plain.snr_gamma, plain.snr_floor) == (None, 0.0)  # --snr-gamma 0: the plain MSE
    assert plain.unet_overrides == {"norm_groups": 4, "base_channels": 16}
    assert plain.train == ImageTrainConfig().train


def test_pretrain_options_reach_the_recipe(monkeypatch):
    seen = []
    monkeypatch.setattr(
        "genlab.cli.pretrain.pretrain", lambda cfg, resume: seen.append((cfg, resume)) or {}
    )
    main(["pretrain", "--out", "runs/x", "--compile", "--max-steps", "9", "--resume"])
    cfg, resume = seen[0]
    assert resume and cfg.out == "runs/x" and cfg.train.compile and cfg.train.max_steps == 9
    assert cfg.train.batch_size == PretrainConfig().train.batch_size == 16


def test_stage_verbs_build_their_stage(monkeypatch):
    seen = []
    metrics = {"step": 1.0, "conversations": 1.0, "reward": 0.0, "kl": 0.0}
    record = lambda stage, resume: seen.append((stage, resume)) or metrics  # noqa: E731
    monkeypatch.setattr("genlab.cli.align.run_sft", record)
    monkeypatch.setattr("genlab.cli.ppo.run_ppo", record)
    main(["sft", "--base", "b", "--max-steps", "3", "--families", "all", "data.n_train=10"])
    main(["ppo", "--iterations", "2", "--rollout-size", "8", "--prompts", "p.jsonl", "--resume"])
    (sft, sft_resume), (ppo, ppo_resume) = seen
    assert not sft_resume and ppo_resume
    assert (sft.sft.base, sft.sft.train.max_steps, sft.data.families, sft.data.n_train) == (
        "b", 3, "all", 10,
    )  # fmt: skip
    assert sft.sft.train.lr == SFTStage().sft.train.lr
    assert (ppo.ppo.iterations, ppo.ppo.rollout_size, ppo.data.prompts) == (2, 8, "p.jsonl")


def test_adapter_options_reach_the_stage_and_image_configs(monkeypatch):
    seen = []
    record = lambda cfg, resume: seen.append(cfg) or AnyMetrics()  # noqa: E731
    for target in ("align.run_sft", "align.run_dpo", "image.train_diffusion"):
        monkeypatch.setattr(f"genlab.cli.{target}", record)
    main(["sft", "--adapter", "lora", "--lora-rank", "4", "--lora-alpha", "8", "--lora-dropout",
          "0.1", "--lora-targets", "attn.qkv,mlp.fc"])  # fmt: skip
    main(["dpo", "--adapter", "prompt", "--prompt-tokens", "5"])
    main(["sft", "--adapter", "bottleneck", "--bottleneck-size", "4"])
    main(["image", "train", "--init-from", "runs/x", "--adapter", "lora", "--lora-rank", "2"])
    main(["sft"])
    lora, prompt, bottleneck, image, plain = seen
    assert lora.adapter == AdapterOptions("lora", 4, 8.0, 0.1, ("attn.qkv", "mlp.fc"))
    assert (prompt.adapter.adapter, prompt.adapter.prompt_tokens) == ("prompt", 5)
    assert (bottleneck.adapter.adapter, bottleneck.adapter.bottleneck_size) == ("bottleneck", 4)
    assert image.init_from == "runs/x" and image.adapter == AdapterOptions("lora", lora_rank=2)
    assert plain.adapter == AdapterOptions() and plain.adapter.config() is None  # every weight


TRAINING = (
    r"pretrain|image train|metrics train-features|sft|reward|dpo|ppo|nar train|scaling sweep"
    r"|toolformer|retrieval|metrics train-clip"
)


def documented_command_lines() -> list[str]:
    """Every training command line in README.md and docs/*.md (continuation lines joined,
    comments dropped)."""
    root = Path(__file__).resolve().parents[2]
    found = []
    for page in [root / "README.md", *sorted((root / "docs").glob("*.md"))]:
        text = page.read_text().replace("\\\n", " ")
        for match in re.finditer(rf"genlab ((?:{TRAINING})\b[^`\n#]*)", text):
            found.append(match.group(1).strip())
    return found


class AnyMetrics(dict):
    """What a training function returns, as far as the verbs print it."""

    def __missing__(self, key: str) -> float:
        return 1.0


@pytest.mark.parametrize("line", documented_command_lines())
def test_documented_command_lines_parse(monkeypatch, line):
    done = []
    record = lambda *args, **kwargs: done.append(args) or AnyMetrics(per_tool={})  # noqa: E731
    for target in [
        "pretrain.pretrain",
        "image.train_diffusion",
        "image.train_family",
        "image.train_upsampler",
        "metrics.train_feature_net",
        "metrics.train_clip",
        "align.run_sft",
        "align.run_reward",
        "align.run_dpo",
        "ppo.run_ppo",
        "nar.train_nar",
        "scaling.run_scaling_sweep",
        "toolformer.toolformer",
        "retrieval.retrieval",
    ]:
        monkeypatch.setattr(f"genlab.cli.{target}", record)
    main(shlex.split(line))
    assert len(done) == 1


# ---------------------------------------------------------------------------------------------
# The experiment verbs: their documented command lines, and the one each page records

EXPERIMENTS = (
    diffusion_steps,
    diffusion_guidance,
    diffusion_prediction,
    rlhf_vs_size,
    ar_vs_nar,
    adapters,
    icl_wrong_labels,
    instruction_tuning,
    chain_of_thought,
    self_consistency,
    least_to_most,
    prompt_search,
    prompting_all,
    scaling_laws,
    emergence,
    calibration,
    u_shaped,
    knowledge_vs_language,
    scale_all,
    wavegrad_steps,
    image_families,
    editing,
    detection,
    unlearning,
    retrieval,
    toolformer,
    pixel_vs_latent,
    text_encoder_size,
)


def documented_experiment_lines() -> list[str]:
    """Every ``genlab experiment`` command line in README.md, docs/ (the experiments' pages
    included) and the experiments' docstrings."""
    root = Path(__file__).resolve().parents[2]
    pages = [root / "README.md", *sorted((root / "docs").rglob("*.md"))]
    pages += [root / "src/genlab/recipes/experiments" / f"{m.NAME}.py" for m in EXPERIMENTS]
    found = []
    for page in pages:
        text = page.read_text().replace("\\\n", " ")
        found += [m.strip() for m in re.findall(r"genlab (experiment [^`\n#]*)", text)]
    return found


@pytest.fixture
def experiments(monkeypatch) -> list[tuple[Any, str]]:
    """What each experiment verb would run: its config and the command line its page records."""
    seen: list[tuple[Any, str]] = []
    for module in EXPERIMENTS:
        monkeypatch.setattr(
            module, "run_experiment", lambda cfg, command: seen.append((cfg, command))
        )
    return seen


@pytest.mark.parametrize("line", documented_experiment_lines())
def test_documented_experiment_lines_parse_and_their_record_rebuilds_them(experiments, line):
    main(shlex.split(line))
    [(cfg, command)] = experiments
    args = shlex.split(command)
    assert args[:3] == ["genlab", *line.split()[:2]]
    main(args[1:])  # the page's command line: every setting spelled out, the same config
    assert experiments[1] == (cfg, command)


def test_documented_experiment_flags_reach_the_config(experiments):
    main(
        shlex.split(
            "experiment diffusion-prediction --base runs/shapes32 --runs runs/prediction "
            "--max-steps 600 --n 128 --features runs/f --precision bf16 --predictions eps,x0 "
            "--guidance 3.0 --steps 50 --seed 0 --batch-size 100 --out-dir docs/experiments"
        )
    )
    main(shlex.split("experiment diffusion-steps --ddim-steps 10,20 --ddpm-steps 9 --parallel 2"))
    main(shlex.split("experiment diffusion-guidance --scales 0,1.5 --sweep-dir s"))
    (prediction, command), (steps, _), (guidance, _) = experiments
    assert prediction == PredictionConfig(
        run="runs/shapes32",
        runs="runs/prediction",
        max_steps=600,
        n=128,
        features="runs/f",
        precision="bf16",
    )
    assert command.startswith("genlab experiment diffusion-prediction --base runs/shapes32 ")
    assert "--no-reuse-base" in command and "--features runs/f" in command
    assert (steps.ddim_steps, steps.ddpm_steps, steps.parallel) == ((10, 20), 9, 2)
    assert (guidance.scales, guidance.sweep_dir) == ((0.0, 1.5), "s")


@pytest.mark.parametrize(
    ("args", "message"),
    [
        ("diffusion-steps --ddim-steps ''", "invalid experiment setting ddim_steps=()"),
        ("diffusion-steps --ddim-steps 10,x", "--ddim-steps takes comma-separated values"),
        ("diffusion-steps --n 1", "invalid experiment setting n=1: at least 2"),
        ("diffusion-guidance --scales -1", "invalid experiment setting scales=(-1.0,)"),
        ("diffusion-prediction --predictions eps,eps", "of eps, x0, v, each once"),
        ("diffusion-prediction --max-steps 0", "invalid experiment setting max_steps=0"),
        ("diffusion-steps --precision fp8", "--precision takes one of fp32, bf16, fp16"),
    ],
)
def test_bad_experiment_settings_are_one_line(capsys, args, message):
    with pytest.raises(SystemExit) as e:
        main(["experiment", *shlex.split(args)])
    err = capsys.readouterr().err
    assert e.value.code == 2 and message in err and err.count("\n") == 1, err


def documented_eval_lines() -> list[str]:
    """Every ``genlab eval`` command line in README.md and docs/*.md."""
    root = Path(__file__).resolve().parents[2]
    found = []
    for page in [root / "README.md", *sorted((root / "docs").glob("*.md"))]:
        text = page.read_text().replace("\\\n", " ")
        found += [m.strip() for m in re.findall(r"genlab (eval --[^`\n#]*)", text)]
    return found


@pytest.mark.parametrize("line", documented_eval_lines())
def test_documented_eval_lines_parse(monkeypatch, line):
    seen = []
    report = {"results": {"addition": {"accuracy": 0.5, "ci": [0.4, 0.6], "n": 50}}}
    monkeypatch.setattr(
        "genlab.cli.evaluate.run_eval",
        lambda cfg: seen.append(cfg) or report | {"n": 50, "seconds": 1.0},
    )
    main(shlex.split(line))
    assert len(seen) == 1 and seen[0].model
