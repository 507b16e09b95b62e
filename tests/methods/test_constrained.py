"""Constrained decoding: every output of a random model parses and matches its schema or regex."""

from __future__ import annotations

import datetime
import json
import re
import uuid

import pytest
import torch

from genlab.core.errors import GenlabError
from genlab.data.tokenizer import Tokenizer
from genlab.methods.autoregressive.constrained import (
    json_schema_constraint,
    mask_logits,
    regex_constraint,
)
from genlab.methods.autoregressive.decoding import Decoder, SamplingConfig, generate
from genlab.nets.gpt import GPT, GPTConfig
from references import require

jsonschema = require("jsonschema")

# merges that cross the grammar's boundaries ('{"', '": ', '", "') and split UTF-8 characters
TEXT = [
    '{"name": "Zürich", "count": 12, "ratio": -0.5, "tags": ["a", "b"], "ok": true}\n',
    "calculator(12 + 3.5 * 4) = 26. grün, 東京, ça va? null false [1, 2, 3]\n",
] * 30

NESTED = {
    "type": "object",
    "properties": {
        "name": {"type": "string", "maxLength": 8},
        "address": {
            "type": "object",
            "properties": {
                "city": {"enum": ["Paris", "Zürich", "東京"]},
                "zip": {"type": "integer"},
            },
            "required": ["city", "zip"],
        },
        "tags": {"type": "array", "items": {"type": "string", "maxLength": 4}, "maxItems": 3},
    },
    "required": ["name", "address"],
}
ENUM = {"enum": ["red", "grün", 3, None, {"k": [1, 2]}]}
SCALARS = {
    "type": "object",
    "properties": {
        "count": {"type": "integer"},
        "ratio": {"type": "number"},
        "flag": {"type": "boolean"},
        "none": {"type": "null"},
    },
    "required": ["count", "ratio", "flag", "none"],
}
ARRAY = {
    "type": "array",
    "items": {"anyOf": [{"type": "integer"}, {"type": "string", "pattern": "^[a-z]{1,3}$"}]},
    "minItems": 1,
    "maxItems": 5,
}
OPTIONAL = {
    "type": "object",
    "properties": {
        "a": {"type": "integer"},
        "b": {"type": "boolean"},
        "c": {"const": "ç"},
        "d": {"type": "string", "pattern": "yes|no"},  # outlines-core alone would quote it badly
    },
    "required": ["b", "d"],
}
UNICODE = {
    "type": "object",
    "properties": {"text": {"type": "string", "minLength": 1, "maxLength": 6}},
    "required": ["text"],
}
REFS = {
    "$defs": {
        "point": {
            "type": "object",
            "properties": {"x": {"type": "number"}, "y": {"type": "number"}},
            "required": ["x", "y"],
        }
    },
    "type": "object",
    "properties": {
        "start": {"$ref": "#/$defs/point"},
        "day": {"type": "string", "format": "date"},
        "at": {"type": "string", "format": "date-time"},
        "id": {"type": "string", "format": "uuid"},
        "note": {"type": ["string", "null"], "maxLength": 3},
    },
    "required": ["start", "day", "at", "id"],
}
CALL = r"calculator\([0-9+\-*/ ().]{1,40}\)"


@pytest.fixture(autouse=True)
def _one_thread(one_thread):
    """Tiny models: one thread (see ``one_thread``)."""


@pytest.fixture(scope="module")
def tok() -> Tokenizer:
    return Tokenizer.train(TEXT, vocab_size=400)


@pytest.fixture(scope="module")
def model(tok: Tokenizer) -> GPT:
    """Untrained: near-uniform logits, so the constraint alone shapes the text."""
    torch.manual_seed(0)
    config = GPTConfig(vocab_size=tok.vocab_size, block_size=256, n_layer=1, n_head=2, n_embd=32)
    return GPT(config).eval()


def sample_json(model: GPT, tok: Tokenizer, schema: dict, seeds: range, n: int = 8) -> list:
    """Values decoded at temperature 1 under ``schema``: ``n`` samples for each seed."""
    values = []
    for seed in seeds:
        constraints = {
            i: json_schema_constraint(tok, schema, end_ids=[tok.eot_id]) for i in range(n)
        }
        results = generate(
            model,
            [[tok.bos_id]],
            max_new_tokens=250,
            stop=[tok.eot_id],
            seed=seed,
            tokenizer=tok,
            num_samples=n,
            constraints=constraints,
        )
        for r in results:
            assert r.finish_reason == "stop" and r.tokens[-1] == tok.eot_id, r.text
            values.append(json.loads(r.text))
    return values


@pytest.mark.parametrize(
    "schema",
    [NESTED, ENUM, SCALARS, ARRAY, OPTIONAL, UNICODE, REFS],
    ids=["nested", "enum", "scalars", "array", "optional", "unicode", "refs"],
)
def test_sampled_values_parse_and_validate(model, tok, schema):
    values = sample_json(model, tok, schema, range(4))
    for value in values:
        jsonschema.validate(value, schema)
    assert len({json.dumps(v) for v in values}) > 1  # sampled, not one fixed answer


def test_unicode_strings_and_optional_properties_are_drawn(model, tok):
    texts = [v["text"] for v in sample_json(model, tok, UNICODE, range(3))]
    assert any(ord(ch) > 127 for t in texts for ch in t)  # multi-byte characters made of bytes
    present = [("a" in v, "c" in v) for v in sample_json(model, tok, OPTIONAL, range(3))]
    assert len(set(present)) > 1
    for v in sample_json(model, tok, REFS, range(1)):  # the formats' shapes, in ASCII digits
        assert re.fullmatch("[0-9]{4}-[0-9]{2}-[0-9]{2}", v["day"])
        day, time = v["at"].split("T")
        assert re.fullmatch("[0-9]{4}-[0-9]{2}-[0-9]{2}", day)
        datetime.time.fromisoformat(time.replace("Z", "+00:00"))  # Python 3.10 reads no "Z"
        assert str(uuid.UUID(v["id"])) == v["id"]


def planted(tok: Tokenizer) -> GPT:
    """A GPT whose every prediction is ``<|eot|>`` (logit 10), else a quote (5), else a tie."""
    config = GPTConfig(
        vocab_size=tok.vocab_size, block_size=128, n_layer=1, n_head=2, n_embd=16,
        bias=True, tie_weights=False,
    )  # fmt: skip
    model = GPT(config).eval()
    with torch.no_grad():
        model.ln_f.weight.zero_()
        model.ln_f.bias.zero_()
        model.ln_f.bias[0] = 1.0
        model.lm_head.weight.zero_()
        model.lm_head.weight[tok.eot_id, 0] = 10.0
        model.lm_head.weight[tok.encode('"')[0], 0] = 5.0
    return model


def test_greedy_on_a_model_that_prefers_an_invalid_token_still_matches(tok):
    model = planted(tok)
    plain = generate(model, [[tok.bos_id]], temperature=0, stop=[tok.eot_id], tokenizer=tok)
    assert plain[0].tokens == [tok.eot_id]  # unconstrained, it ends at once: "" is no JSON
    for schema in (SCALARS, NESTED):
        c = json_schema_constraint(tok, schema, end_ids=[tok.eot_id])
        (r,) = generate(
            model, [[tok.bos_id]], 120, temperature=0, stop=[tok.eot_id], tokenizer=tok,
            constraints={0: c},
        )  # fmt: skip
        assert r.finish_reason == "stop"
        jsonschema.validate(json.loads(r.text), schema)


def test_toolformer_call_regex(model, tok):
    texts = []
    for seed in range(3):
        n = 8
        constraints = {
            i: regex_constraint(tok, CALL, end_ids=[tok.tool_call_end_id]) for i in range(n)
        }
        results = generate(
            model,
            [[tok.bos_id, tok.tool_call_id]],
            max_new_tokens=120,
            stop=[tok.tool_call_end_id],
            seed=seed,
            tokenizer=tok,
            num_samples=n,
            constraints=constraints,
        )
        assert all(r.finish_reason == "stop" for r in results)
        texts += [r.text for r in results]
    for text in texts:
        assert re.fullmatch(CALL, text), text
    assert len(set(texts)) == len(texts)


def test_state_machine_over_bytes(tok):
    a, b, c = (tok.encode(ch)[0] for ch in "abc")
    ends = [tok.eot_id, tok.eos_id]
    con = regex_constraint(tok, "ab|abc", end_ids=ends)  # "abc" stays reachable
    allowed = con.allowed()
    assert allowed.shape == (tok.vocab_size,) and allowed.dtype == torch.bool
    assert allowed[a] and not allowed[b] and not allowed[ends].any()
    assert not con.is_complete()
    with pytest.raises(GenlabError, match="not allowed"):
        con.advance(b)
    with pytest.raises(GenlabError, match="before the constrained text is complete"):
        con.advance(tok.eot_id)
    con.advance(a)
    assert not con.is_complete() and not con.allowed()[ends].any()
    con.advance(b)
    assert con.is_complete() and con.allowed()[ends].all() and con.allowed()[c]
    assert not con.allowed()[tok.tool_call_id]  # special tokens never spell text
    con.advance(c)
    assert con.is_complete() and con.allowed().sum() == len(ends)  # only an end token now
    con.advance(tok.eos_id)
    assert con.is_complete() and con.allowed().all()  # the span is over

    # a byte-level token may hold half a character: "ü" is b"\xc3\xbc"
    lead, tail = (tok.token_bytes.index(bytes([x])) for x in "ü".encode())
    umlaut = regex_constraint(tok, "ü+", end_ids=ends)
    assert umlaut.allowed()[lead] and not umlaut.allowed()[tail]
    umlaut.advance(lead)
    assert umlaut.allowed()[tail] and umlaut.allowed().sum() == 1


def test_mask_logits_fits_a_larger_model_vocabulary(tok):
    con = regex_constraint(tok, "[0-9]+", end_ids=[tok.eot_id])
    logits = torch.randn(tok.vocab_size + 5)
    masked = mask_logits(con, logits)
    digits = [tok.encode(str(d))[0] for d in range(10)]
    assert torch.equal(masked[digits], logits[digits])
    kept = torch.isfinite(masked)
    assert all(tok.token_bytes[i].isdigit() for i in kept.nonzero().flatten().tolist())
    assert not kept[tok.vocab_size :].any()


def test_constraints_leave_other_rows_as_unconstrained(model, tok):
    prompts = [[tok.bos_id], [tok.bos_id, *tok.encode("calc")], [tok.bos_id, tok.user_id]]
    plain = generate(model, prompts, max_new_tokens=30, seed=3)
    con = regex_constraint(tok, "[0-9]{2,4}", end_ids=[tok.eot_id])
    constrained = generate(model, prompts, max_new_tokens=30, seed=3, constraints={1: con})
    for i in (0, 2):
        assert constrained[i].tokens == plain[i].tokens
        assert constrained[i].logprobs == plain[i].logprobs
    span = constrained[1].tokens
    assert re.fullmatch("[0-9]{2,4}", tok.decode(span[: span.index(tok.eot_id)]))
    assert constrained[1].tokens != plain[1].tokens

    # with num_samples, prompt i's sample j is result i * num_samples + j
    plain = generate(model, prompts[:2], max_new_tokens=20, seed=5, num_samples=2)
    con = regex_constraint(tok, "[0-9]{2,4}", end_ids=[tok.eot_id])
    constrained = generate(
        model, prompts[:2], max_new_tokens=20, seed=5, num_samples=2, constraints={2: con}
    )
    assert [r.tokens for r in constrained[:2]] == [r.tokens for r in plain[:2]]
    assert constrained[3].tokens == plain[3].tokens
    assert re.match("[0-9]{2}", tok.decode(constrained[2].tokens))


def test_forced_tokens_pass_through_the_constraint(model, tok):
    con = regex_constraint(tok, "ab[0-9]+", end_ids=[tok.eot_id])
    config = SamplingConfig(max_new_tokens=8, temperature=0, stop_ids=(tok.eot_id,))
    decoder = Decoder(model, [[tok.bos_id]], config, tokenizer=tok, constraints={0: con})
    decoder.force(0, tok.encode("ab"))
    while not decoder.done:
        decoder.step()
    (r,) = decoder.finalize()
    assert re.fullmatch("ab[0-9]+", r.text)  # "ab" forced, then only digits were allowed

    con = regex_constraint(tok, "ab[0-9]+", end_ids=[tok.eot_id])
    decoder = Decoder(model, [[tok.bos_id]], config, tokenizer=tok, constraints={0: con})
    decoder.force(0, tok.encode("x"))
    with pytest.raises(GenlabError, match="forced on result 0 is not allowed"):
        decoder.step()


@pytest.mark.parametrize(
    ("schema", "keyword"),
    [
        ({"type": "integer", "minimum": 0}, "minimum"),
        ({"oneOf": [{"type": "integer"}, {"type": "number"}]}, "oneOf"),
        ({"type": "array", "items": {"type": "integer", "multipleOf": 2}}, "multipleOf"),
        ({"not": {"type": "string"}}, "not"),
        ({"type": "string", "pattern": "^[a-z]+$", "maxLength": 3}, "pattern"),
        ({"type": "string", "pattern": '[a-z"]+'}, "pattern"),  # a quote would end the string
        ({"type": "object", "properties": {"a": {}}, "required": ["b"]}, "required"),
        ({"type": "object", "additionalProperties": {"type": "integer"}}, "additionalProperties"),
        ({"type": "string", "format": "email"}, "format"),
        ({"type": "tuple"}, "tuple"),
        ({"anyOf": {"type": "integer"}}, "anyOf"),  # malformed: an object, not an array
    ],
)
def test_unsupported_schemas_raise_one_line_naming_the_keyword(tok, schema, keyword):
    with pytest.raises(GenlabError, match=re.escape(repr(keyword))) as info:
        json_schema_constraint(tok, schema, end_ids=[tok.eot_id])
    assert "\n" not in str(info.value)


def test_bad_arguments_raise(model, tok):
    with pytest.raises(GenlabError, match="end_ids is empty"):
        regex_constraint(tok, "a", end_ids=[])
    con = regex_constraint(tok, "a", end_ids=[tok.eot_id])
    with pytest.raises(GenlabError, match="its own Constraint"):
        generate(model, [[tok.bos_id]], 4, num_samples=2, constraints={0: con, 1: con})
    with pytest.raises(GenlabError, match="result 2, which does not exist"):
        generate(model, [[tok.bos_id]], 4, num_samples=2, constraints={2: con})


def test_the_index_is_built_once_per_schema_and_tokenizer(tok):
    first = json_schema_constraint(tok, NESTED, end_ids=[tok.eot_id])
    again = json_schema_constraint(tok, NESTED, end_ids=[tok.eot_id])
    assert again.index is first.index and again is not first
