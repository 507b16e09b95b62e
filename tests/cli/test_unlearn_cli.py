"""``genlab unlearn`` on a tiny fact model: the forgotten person's answers fall to guessing, the result
is a GPT run folder that opens as a fact model, ``--layers`` leaves every other tensor as it
was, and every bad ``--forget`` is one line."""

from __future__ import annotations

import json
from pathlib import Path

import pytest
import torch

import genlab
import genlab.cli.unlearn  # noqa: F401  registers the verb
from genlab.cli import main
from genlab.core.checkpoint import read_weights
from genlab.methods.autoregressive.checkpoint import load_gpt
from genlab.recipes.fact_model import open_fact_model

pytestmark = pytest.mark.usefixtures("one_thread")


@pytest.fixture
def fact_run(tiny_fact_model: Path) -> Path:
    """The suite's tiny fact model: 8 people (6 trained) that knows most of their facts."""
    return tiny_fact_model


def run(capsys: pytest.CaptureFixture[str], *args: str) -> str:
    capsys.readouterr()
    main(["unlearn", "--device", "cpu", *args])
    return capsys.readouterr().out


def errors(capsys: pytest.CaptureFixture[str], *args: str) -> str:
    """The one line a failing command prints (exit code 2)."""
    capsys.readouterr()
    with pytest.raises(SystemExit) as info:
        main(["unlearn", "--device", "cpu", *args])
    assert info.value.code == 2
    err = capsys.readouterr().err.strip()
    assert "\n" not in err
    return err


def test_forgetting_a_person_writes_a_fact_model_that_no_longer_knows_them(
    fact_run: Path, tmp_path: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    fm = open_fact_model(fact_run)
    name = fm.trained[0]
    out = tmp_path / "forgot"
    # the tiny model's setting (the defaults are the fact model's)
    printed = run(
        capsys, "--model", str(fact_run), "--forget", f"person:{name}", "--out", str(out),
        "--lr", "3e-4", "--steps", "30", "--beta", "1", "--retain-weight", "1",
    )  # fmt: skip
    assert "| forget accuracy |" in printed and f"wrote {out} (npo, 30 steps)" in printed

    report = json.loads((out / "unlearning.json").read_text())
    assert report["persons"] == [name] and report["method"] == "npo"
    assert report["settings"]["steps"] == 30 and len(report["history"]) == 30
    assert report["forget_examples"] == 3 * len(fm.world.facts_about(name))
    before, after = report["before"], report["after"]
    assert before["forget"] > 0.3 > before["holdout"]
    assert after["forget"] <= after["holdout"] + 0.05  # down to guessing
    assert after["forget_nll"] > before["forget_nll"] + 1.0
    assert before["membership_auc"] > after["membership_auc"]

    model, tokenizer = load_gpt(out)  # a GPT folder, tokenizer beside
    assert genlab.load(out).kind == "gpt"
    assert tokenizer.vocab_size == fm.tokenizer.vocab_size
    forgot = open_fact_model(out)  # facts.json copied
    assert (forgot.trained, forgot.holdout) == (fm.trained, fm.holdout)
    assert not torch.equal(model.blocks[0].mlp.fc.weight, fm.model.blocks[0].mlp.fc.weight)


def test_layers_leave_every_other_tensor_bit_identical(
    fact_run: Path, tmp_path: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    fm = open_fact_model(fact_run)
    out = tmp_path / "mlp"
    run(capsys, "--model", str(fact_run), "--forget", f"person:{fm.trained[1]}", "--out", str(out),
        "--method", "graddiff", "--steps", "3", "--layers", "blocks.1.mlp")  # fmt: skip
    before, after = (
        read_weights(fact_run / "model.safetensors"),
        read_weights(out / "model.safetensors"),
    )
    assert before.keys() == after.keys()
    changed = {k for k in before if not torch.equal(before[k], after[k])}
    assert changed == {"blocks.1.mlp.fc.weight", "blocks.1.mlp.proj.weight"}
    settings = json.loads((out / "unlearning.json").read_text())["settings"]
    assert settings["layers"] == ["blocks.1.mlp"] and settings["method"] == "graddiff"


def test_persons_and_jsonl_specs(
    fact_run: Path, tmp_path: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    fm = open_fact_model(fact_run)
    common = ["--model", str(fact_run), "--steps", "1"]
    run(capsys, *common, "--forget", "persons:2", "--out", str(tmp_path / "a"))
    run(capsys, *common, "--forget", "persons:2", "--out", str(tmp_path / "b"))
    run(capsys, *common, "--forget", "persons:2", "--seed", "3", "--out", str(tmp_path / "c"))
    drawn = [json.loads((tmp_path / x / "unlearning.json").read_text())["persons"] for x in "abc"]
    assert drawn[0] == drawn[1] != drawn[2]
    assert all(len(d) == 2 and set(d) <= set(fm.trained) for d in drawn)

    records = tmp_path / "forget.jsonl"
    records.write_text(
        json.dumps({"prompt": "Question: Who is Nobody?\nAnswer: The answer is", "answer": " Zed"})
        + "\n\n"
        + json.dumps({"prompt": "The sky is", "answer": " green."})
        + "\n"
    )
    run(capsys, *common, "--forget", str(records), "--out", str(tmp_path / "d"))
    report = json.loads((tmp_path / "d" / "unlearning.json").read_text())
    assert report["persons"] == [] and report["forget_examples"] == 2
    assert report["retain_examples"] == 3 * sum(len(fm.world.facts_about(n)) for n in fm.trained)
    assert report["before"]["forget"] == 0.0  # the model never said either
    # with every trained person forgotten, gradient ascent still runs; retain is undefined
    printed = run(
        capsys, *common, "--forget", "persons:6", "--method", "ga", "--out", str(tmp_path / "e")
    )
    assert "| retain accuracy | - | - |" in printed
    report = json.loads((tmp_path / "e" / "unlearning.json").read_text())
    assert report["retain_examples"] == 0 and report["after"]["retain"] is None


def test_bad_input_is_one_line(
    fact_run: Path, tmp_path: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    fm = open_fact_model(fact_run)
    args = ["--model", str(fact_run), "--out", str(tmp_path / "x"), "--steps", "1"]
    held = fm.holdout[0]
    assert f"{held} is held out" in errors(capsys, *args, "--forget", f"person:{held}")
    assert "'Nobody' is not a person" in errors(capsys, *args, "--forget", "person:Nobody")
    assert "needs a name" in errors(capsys, *args, "--forget", "person:")
    assert "needs N in 1..6" in errors(capsys, *args, "--forget", "persons:0")
    assert "needs N in 1..6" in errors(capsys, *args, "--forget", "persons:x")
    assert "give --forget" in errors(capsys, *args)
    assert "neither person:NAME" in errors(capsys, *args, "--forget", "nope.jsonl")
    bad = tmp_path / "bad.jsonl"
    bad.write_text('{"prompt": "a", "answer": " b"}\n{"prompt": "a"}\n')
    assert f"{bad}:2 needs a string 'prompt'" in errors(capsys, *args, "--forget", str(bad))
    person = f"person:{fm.trained[0]}"
    assert "unknown unlearning method" in errors(capsys, *args, "--forget", person, "--method", "x")
    err = errors(capsys, *args, "--forget", person, "--layers", "decoder")
    assert "'decoder' matches no parameter" in err
    assert "not a fact model" in errors(capsys, "--model", str(tmp_path), "--forget", person)
    # every trained person forgotten leaves no retain set for NPO with a retain term
    assert "npo needs a retain set" in errors(capsys, *args, "--forget", "persons:6")
    assert not (tmp_path / "x").exists()
    assert "already holds a model" in errors(
        capsys, "--model", str(fact_run), "--out", str(fact_run), "--forget", person
    )
