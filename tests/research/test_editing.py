"""ROME, causal tracing and fine-tuning edits on a tiny fact model."""

import random
from pathlib import Path

import pytest
import torch

from genlab.core.errors import GenlabError
from genlab.data.tinyworld.world import Fact
from genlab.recipes.editing import Editor, EditSettings, measure, new_object, parse_fact
from genlab.recipes.fact_model import answers, fact_prompt, open_fact_model, person_facts
from genlab.research.causal_trace import (
    ROLES,
    Case,
    average_effects,
    embedding_noise_std,
    locate_layer,
    subject_span,
    trace_case,
)
from genlab.research.rome import inverse_second_moment, second_moment

pytestmark = pytest.mark.usefixtures("one_thread")


@pytest.fixture(scope="module")
def fm(tiny_fact_model: Path):
    return open_fact_model(tiny_fact_model)


def known_fact(fm):
    """A trained person's fact the model answers right in every phrasing, and a new object."""
    for name in fm.trained:
        for fact in person_facts(fm.world, name):
            if fact.relation in ("lives_in", "born_in"):
                said = answers(fm, [fact_prompt(fm.world, fact, p) for p in range(3)])
                if all(a == fact.object for a in said):
                    new = next(t for t in fm.world.towns if t != fact.object)
                    return fact, new
    raise AssertionError("the tiny fact model knows no town fact in all phrasings")


def test_subject_span_points_at_the_subject(fm) -> None:
    tok = fm.tokenizer
    prompt = "Question: Where was Tenu born?\nAnswer: The answer is"
    ids, (start, end) = subject_span(tok, prompt, "Tenu")
    assert ids[0] == tok.bos_id
    assert tok.decode(ids[start:end]).strip() == "Tenu"
    assert tok.decode(ids[1:]) == prompt
    with pytest.raises(GenlabError, match="not in the prompt"):
        subject_span(tok, prompt, "Gasby")
    with pytest.raises(GenlabError, match="whole word"):
        subject_span(tok, prompt, "Ten")


def test_causal_trace_restores_the_answer(fm) -> None:
    fact, _ = known_fact(fm)
    ids, span = subject_span(fm.tokenizer, fact_prompt(fm.world, fact), fact.subject)
    case = Case(ids, span, fm.tokenizer.encode(f" {fact.object}")[0])
    trace = trace_case(fm.model, case, embedding_noise_std(fm.model), samples=3)
    assert trace.clean > 0.5
    assert trace.corrupted < trace.clean
    # restoring the MLP output of the last layer at the last token restores most of the answer
    # only if that output carries it; restoring everything at the last position of the final
    # layer's MLP is bounded by the clean probability plus noise
    assert trace.restored.shape == (len(fm.model.blocks), len(ids))
    # nothing before the subject saw the noise: restoring there changes nothing
    assert torch.allclose(trace.restored[:, : span[0]], torch.tensor(trace.corrupted), atol=1e-5)
    effects = average_effects([case], [trace])
    assert effects.shape == (len(fm.model.blocks), len(ROLES))
    assert 0 <= locate_layer(effects) < len(fm.model.blocks)


def test_second_moment_is_the_mean_outer_product(fm) -> None:
    tok = fm.tokenizer
    texts = [[tok.bos_id, *tok.encode(t)] for t in ("Tenu lives here.", "A long one, yes it is.")]
    c = second_moment(fm.model, 0, texts)
    keys = []
    h = fm.model.blocks[0].mlp.proj.register_forward_hook(lambda _m, i, _o: keys.append(i[0][0]))
    with torch.no_grad():
        for t in texts:
            fm.model(torch.tensor([t]))
    h.remove()
    k = torch.cat(keys).double()
    assert torch.allclose(c.double(), k.T @ k / k.size(0), atol=1e-5)
    inv = inverse_second_moment(c, 1e-3)
    assert torch.allclose(
        inv @ (c + 1e-3 * c.diagonal().mean() * torch.eye(c.size(0))),
        torch.eye(c.size(0)),
        atol=1e-2,
    )


@pytest.mark.parametrize("method", ["rome", "ft"])
def test_edit_changes_the_fact_and_reverts_exactly(fm, method: str) -> None:
    fact, new = known_fact(fm)
    editor = Editor(fm, EditSettings(layer=0, key_texts=300))
    weights = {k: v.clone() for k, v in fm.model.state_dict().items()}
    before = measure(fm, fact, new, editor.fluency_ids)
    assert before["efficacy"] == 0.0
    update = editor.edit(fact, new, method)
    after = measure(fm, fact, new, editor.fluency_ids)
    assert after["efficacy"] == 1.0
    if method == "rome":
        assert after["answer_new"] == 1.0
    changed = [k for k, v in fm.model.state_dict().items() if not torch.equal(v, weights[k])]
    assert changed == ["blocks.0.mlp.proj.weight"]
    update.revert(fm.model)
    for k, v in fm.model.state_dict().items():
        assert torch.allclose(v, weights[k], atol=1e-6), k
    assert answers(fm, [fact_prompt(fm.world, fact)]) == [fact.object]


def test_rome_inverse_edit_restores_the_original_answer(fm) -> None:
    fact, new = known_fact(fm)
    editor = Editor(fm, EditSettings(layer=0, key_texts=300))
    weights = {k: v.clone() for k, v in fm.model.state_dict().items()}
    editor.edit(fact, new, "rome")
    assert answers(fm, [fact_prompt(fm.world, fact)]) == [new]
    editor.edit(fact.__class__(**{**fact.__dict__, "object": new}), fact.object, "rome")
    assert answers(fm, [fact_prompt(fm.world, fact)]) == [fact.object]
    fm.model.load_state_dict(weights)


def test_ft_l_keeps_every_weight_within_its_bound(fm) -> None:
    fact, new = known_fact(fm)
    editor = Editor(fm, EditSettings(layer=0, ft_linf=1e-3, key_texts=300))
    delta = editor.edit(fact, new, "ft-l")
    assert delta.delta.abs().max() <= 1e-3 + 1e-7
    delta.revert(fm.model)


def test_parse_fact_names_each_problem(fm) -> None:
    fact = person_facts(fm.world, fm.trained[0])[0]
    other = next(t for t in fm.world.entities("town") if t != fact.object)
    if fact.relation in ("born_in", "lives_in"):
        assert parse_fact(fm.world, f"{fact.subject}|{fact.relation}|{other}") == (fact, other)
    for spec, message in [
        ("Tenu capital Gasby", "SUBJECT|RELATION|NEW_OBJECT"),
        (f"{fact.subject}|wings|{other}", "unknown relation"),
        (f"Nobody|born_in|{other}", "no fact"),
        (f"{fact.subject}|{fact.relation}|{fact.object}", "already"),
        (f"{fact.subject}|born_in|Atlantis", "not a town"),
        ("||", "SUBJECT|RELATION|NEW_OBJECT"),
    ]:
        with pytest.raises(GenlabError, match=message):
            parse_fact(fm.world, spec)


def test_edit_prompts_are_the_question_and_statements_never_a_paraphrase(fm) -> None:
    fact, new = known_fact(fm)
    editor = Editor(fm, EditSettings(layer=0, key_texts=300))
    tok = fm.tokenizer
    prompts = editor.prompts(fact, new)
    texts = [tok.decode(ids[1:]) for ids, _ in prompts]
    assert texts[0] == fact_prompt(fm.world, fact, 0)
    assert f"{fact.subject} was born in" in texts or f"{fact.subject} lives in" in texts
    for p in (1, 2):  # the paraphrase questions score generalisation: never edited
        assert fact_prompt(fm.world, fact, p) not in texts
    assert all(new not in t and fact.object not in t for t in texts)
    for ids, end in prompts:  # the subject's last token, where the key is read
        assert tok.decode(ids[:end]).endswith(fact.subject)
    request = editor.request(fact, new)
    assert len(request.prompts) == len(prompts) * (1 + len(editor.prefixes))
    for ids, end in request.prompts:  # a prefix moves the subject, never loses it
        assert tok.decode(ids[:end]).endswith(fact.subject)
    plain = Editor(fm, EditSettings(layer=0, key_texts=300, statements=False))
    assert [t for t, _ in plain.prompts(fact, new)] == [prompts[0][0]]


def test_new_objects_are_answers_the_model_has_given() -> None:
    known = [
        Fact(0, "Tenu", "lives_in", "Gasby", 0, 0.25, "rare"),
        Fact(1, "Mola", "lives_in", "Fedale", 1, 0.25, "rare"),
        Fact(2, "Vure", "lives_in", "Gasby", 2, 0.25, "rare"),
        Fact(3, "Mola", "born_in", "Lamby", 3, 0.25, "rare"),
    ]
    rng = random.Random(0)
    drawn = {new_object(known[0], known, rng) for _ in range(50)}
    assert drawn == {"Fedale"}  # not its own object, not another relation's
    with pytest.raises(GenlabError, match="no other known born_in object"):
        new_object(known[3], known, rng)
