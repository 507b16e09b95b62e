"""``genlab export`` and ``genlab import``: run folders in and out of the transformers format.

A GPT run (pretraining, SFT, DPO, or a PPO run's policy) becomes a GPT-2 folder that
``AutoModelForCausalLM`` and ``AutoTokenizer`` open offline, chat template included; a local
GPT-2 folder becomes a genlab run folder that ``genlab generate``, ``chat`` and ``serve`` open.
An adapter run (LoRA or a soft prompt) becomes a PEFT adapter folder for its base's export.
"""

from __future__ import annotations

from pathlib import Path
from typing import Annotated

import typer

from genlab.adapt.adapted import load_adapter
from genlab.adapt.peft_format import save_peft
from genlab.cli._app import app, say
from genlab.core.checkpoint import read_model_config
from genlab.core.errors import GenlabError
from genlab.methods.autoregressive.checkpoint import load_gpt, save_gpt
from genlab.nets.hf_gpt2 import gpt_to_hf, load_hf

FORMATS = ("hf", "peft")

import_app = typer.Typer(
    help="Turn a model of another library into a genlab run folder.", no_args_is_help=True
)
app.add_typer(import_app, name="import")


def _check_format(fmt: str) -> None:
    if fmt not in FORMATS:
        raise GenlabError(
            f"unknown format '{fmt}': use --format hf (transformers GPT-2) or peft (an adapter "
            "run as a PEFT adapter folder)"
        )


def _check_empty(out: Path) -> None:
    """Refuse to mix a new model with an old folder's files."""
    if out.exists() and (not out.is_dir() or any(out.iterdir())):
        raise GenlabError(f"{out} already exists and is not empty; choose a new --out folder")


@app.command()
def export(
    run: Annotated[
        Path,
        typer.Argument(help="GPT run or model folder (a PPO run: its policy); an adapter run."),
    ],
    out: Annotated[Path, typer.Option("--out", help="New folder to write.")],
    fmt: Annotated[
        str, typer.Option("--format", help="hf: transformers GPT-2; peft: an adapter run for PEFT.")
    ] = "hf",
    base_name: Annotated[
        str | None,
        typer.Option(
            "--base-name",
            help="peft: the base_model_name_or_path to record, e.g. the folder 'genlab export "
            "BASE' wrote (default: the base run's path).",
        ),
    ] = None,
) -> None:
    """Write RUN as a folder that transformers' AutoModelForCausalLM and AutoTokenizer load, or
    an adapter run as one that PEFT's PeftModel.from_pretrained loads onto its exported base."""
    _check_format(fmt)
    _check_empty(out)
    if fmt == "peft":
        adapted = load_adapter(run)
        save_peft(adapted.model, adapted.config.name, out, base_name or adapted.config.base)
        say(
            f"{run} -> {out} (PEFT {adapted.config.adapter.method} adapter; its base exports with "
            f"genlab export {adapted.config.base} --out BASE_HF)"
        )
        return
    if read_model_config(run)["kind"] == "adapter":
        raise GenlabError(
            f"{run} is an adapter run: export it with --format peft, and its base with --format hf"
        )
    model, tokenizer = load_gpt(run)
    gpt_to_hf(model, out, tokenizer=tokenizer)
    say(f"{run} -> {out} (transformers GPT-2 with its tokenizer and chat template)")


@import_app.command("hf")
def import_hf(
    folder: Annotated[Path, typer.Argument(help="Local transformers GPT-2 folder.")],
    out: Annotated[Path, typer.Option("--out", help="New run folder to write.")],
) -> None:
    """Write a transformers GPT-2 folder (weights + tokenizer.json) as a genlab run folder."""
    _check_empty(out)
    model, tokenizer = load_hf(folder)
    save_gpt(out, model, tokenizer)
    say(f"{folder} -> {out} (GPT, {model.config.vocab_size} ids)")
