"""``genlab edit`` end to end on the tiny fact model."""

import json
from pathlib import Path

import pytest

from genlab import load
from genlab.cli import main
from genlab.recipes.fact_model import answers, fact_prompt, open_fact_model, person_facts

pytestmark = pytest.mark.usefixtures("one_thread")


def known(run: Path):
    fm = open_fact_model(run)
    for name in fm.trained:
        for fact in person_facts(fm.world, name):
            known = answers(fm, [fact_prompt(fm.world, fact)]) == [fact.object]
            if fact.relation == "lives_in" and known:
                return fm, fact, next(t for t in fm.world.towns if t != fact.object)
    raise AssertionError("no known lives_in fact")


def test_edit_writes_an_edited_fact_model(tiny_fact_model: Path, tmp_path: Path, capsys) -> None:
    fm, fact, new = known(tiny_fact_model)
    out = tmp_path / "edited"
    main(
        [
            "edit",
            "--model",
            str(tiny_fact_model),
            "--fact",
            f"{fact.subject}|lives_in|{new}",
            "--out",
            str(out),
            "--seed",
            "0",
        ]
    )
    said = capsys.readouterr().out
    assert "efficacy" in said and f"-> {new}" in said and "layer 0" in said
    report = json.loads((out / "edit.json").read_text())
    assert report["before"]["efficacy"] == 0.0 and report["after"]["efficacy"] == 1.0
    edited = open_fact_model(out)
    assert answers(edited, [fact_prompt(edited.world, fact)]) == [new]
    assert load(out).kind == "gpt"
    assert answers(fm, [fact_prompt(fm.world, fact)]) == [fact.object]  # the source is untouched


@pytest.mark.parametrize(
    ("args", "message"),
    [
        (["--fact", "Nobody|lives_in|X"], "no fact"),
        (["--fact", "a b c"], "SUBJECT|RELATION|NEW_OBJECT"),
        (["--fact", "{s}|lives_in|{o}", "--method", "magic"], "unknown edit method"),
    ],
)
def test_edit_errors_are_one_line(
    tiny_fact_model: Path, tmp_path: Path, capsys, args, message
) -> None:
    fm, fact, new = known(tiny_fact_model)
    args = [a.format(s=fact.subject, o=new) for a in args]
    with pytest.raises(SystemExit) as exit_info:
        main(["edit", "--model", str(tiny_fact_model), "--out", str(tmp_path / "x"), *args])
    assert exit_info.value.code == 2
    err = capsys.readouterr().err.strip()
    assert message in err and "\n" not in err and "Traceback" not in err


def test_edit_refuses_a_folder_that_is_not_a_fact_model(tmp_path: Path, capsys) -> None:
    with pytest.raises(SystemExit):
        main(["edit", "--model", str(tmp_path), "--fact", "a|b|c", "--out", str(tmp_path / "o")])
    assert "not a fact model" in capsys.readouterr().err
