"""Many adapters on one base: requests for different adapters share a batch (S-LoRA/Punica
style) and each gets the tokens its adapter gives alone."""

from __future__ import annotations

import re
import threading
from pathlib import Path

import httpx
import openai
import pytest
import torch

from genlab.adapt.adapted import Adapted, load_adapter
from genlab.adapt.config import AdapterConfig
from genlab.adapt.inject import adapter_parameters
from genlab.cli import main
from genlab.core import registry
from genlab.methods.autoregressive.checkpoint import load_gpt, save_gpt
from genlab.methods.autoregressive.decoding import generate
from genlab.methods.autoregressive.scoring import token_logprobs
from genlab.nets.gpt import GPT, GPTConfig
from genlab.serve.api import create_app, load_model
from genlab.serve.engine import Engine, Event, SequenceRequest

# Two LoRAs of different ranks, one on a layer the other lacks, and a bottleneck adapter on a
# layer neither has: every way a row's adapter can differ from its neighbours'.
SPECS = {
    "a": AdapterConfig("lora", rank=4),
    "b": AdapterConfig("lora", targets=("attn.qkv", "mlp.fc"), rank=8),
    "c": AdapterConfig("bottleneck", targets=("mlp.proj",), bottleneck_size=8),
}


def make_adapter(folder: Path, base_dir: Path, config: AdapterConfig, seed: int) -> Path:
    """An adapter run folder for the base in ``base_dir``, every tensor random (B non-zero),
    saved under the adapter name ``task`` (served under another)."""
    base, _ = load_gpt(base_dir)
    adapted = Adapted.around(base, base_dir, config, "task")
    gen = torch.Generator().manual_seed(seed)
    with torch.no_grad():
        for p in adapter_parameters(adapted.model, "task").values():
            p.copy_(torch.randn(p.shape, generator=gen) * 0.3)
    registry.save(folder, adapted, "adapter", adapted.config)
    return folder


@pytest.fixture(scope="module")
def folders(tmp_path_factory, run_dir) -> dict[str, Path]:
    root = tmp_path_factory.mktemp("adapters")
    return {
        name: make_adapter(root / name, run_dir, config, seed)
        for seed, (name, config) in enumerate(SPECS.items())
    }


@pytest.fixture(scope="module")
def alone(run_dir, folders) -> dict[str | None, GPT]:
    """Each adapter's model on its own (opened as the registry opens it), and the base."""
    return {None: load_gpt(run_dir)[0], **{n: load_adapter(f).model for n, f in folders.items()}}


class Recorder:
    def __init__(self) -> None:
        self.tokens: list[int] = []

    def __call__(self, event: Event) -> None:
        if event.token is not None:
            self.tokens.append(event.token)


def reference(model: GPT, tokenizer, request: SequenceRequest) -> list[int]:
    stops = [tokenizer.eot_id, tokenizer.eos_id, tokenizer.bos_id]
    (gen,) = generate(
        model,
        [list(request.prompt)],
        max_new_tokens=request.max_tokens,
        stop=stops,
        temperature=request.temperature,
        top_p=request.top_p,
        seed=request.seed,
    )
    return gen.tokens


def ids(tokenizer, text: str) -> list[int]:
    return [tokenizer.bos_id, *tokenizer.encode(text)]


def test_a_mixed_batch_gets_each_adapters_own_tokens(run_dir, folders, alone, tokenizer):
    model, tok = load_model(run_dir, folders)
    engine = Engine(model, tok, max_batch=8, adapters=list(folders))
    short, mid = ids(tok, "the cat"), ids(tok, "hello there! how are")
    long = ids(tok, "a small model writes small stories about cats, dogs and code")
    greedy = {"temperature": 0.0}
    plan = {  # step: requests joining then (the long prompt shifts the running rows right)
        0: [(short, None, 20), (short, "a", 20), (mid, "b", 12), (short, "c", 25)],
        3: [(mid, "a", 18), (mid, None, 9), (short, "b", 22)],
        6: [(long, "c", 15), (long, "b", 14), (long, None, 10)],
    }
    submitted: list[tuple[SequenceRequest, Recorder]] = []
    mixed = 0  # the most adapters (the base counted) in one decoding step
    step = 0
    while True:
        for prompt, adapter, n in plan.get(step, []):
            request = SequenceRequest(prompt, n, adapter=adapter, **greedy)
            submitted.append((request, Recorder()))
            engine.submit([request], submitted[-1][1])
        # one sampled request: its own generator, whatever its neighbours run
        if step == 1:
            request = SequenceRequest(mid, 16, temperature=0.9, seed=7, adapter="a")
            submitted.append((request, Recorder()))
            engine.submit([request], submitted[-1][1])
        if not engine.step() and step > max(plan):
            break
        mixed = max(mixed, len({row.adapter for row in engine.rows}))
        step += 1
    assert mixed == 4
    for request, rec in submitted:
        assert rec.tokens == reference(alone[request.adapter], tok, request), request.adapter
    # the adapters do change what is generated
    base = reference(alone[None], tok, SequenceRequest(short, 20, temperature=0.0))
    for name in folders:
        assert reference(alone[name], tok, SequenceRequest(short, 20, temperature=0.0)) != base


def test_a_soft_prompt_or_an_unknown_adapter_is_refused(run_dir, folders, tokenizer, tmp_path):
    base, _ = load_gpt(run_dir)
    prompt = Adapted.around(base, run_dir, AdapterConfig("prompt", prompt_tokens=3), "p")
    registry.save(tmp_path / "p", prompt, "adapter", prompt.config)
    with pytest.raises(Exception, match="soft prompt.*cannot share a batch"):
        load_model(run_dir, {"a": folders["a"], "p": tmp_path / "p"})
    model, tok = load_model(run_dir, {"a": folders["a"]})
    with pytest.raises(Exception, match="no adapter named 'z'"):
        Engine(model, tok, adapters=["a", "z"])
    engine = Engine(model, tok, adapters=["a"])
    with pytest.raises(Exception, match="no adapter named 'b' is served"):
        engine.submit([SequenceRequest([1, 2], 3, adapter="b")], Recorder())


# ---- the HTTP API, through the openai client --------------------------------------------------

MODEL = "tiny-chat"
SERVED = ("a", "c")  # a LoRA and a bottleneck adapter


@pytest.fixture(scope="module")
def live(run_dir, folders, live_server):
    model, tok = load_model(run_dir, {n: folders[n] for n in SERVED})
    engine = Engine(model, tok, max_batch=8, adapters=SERVED)
    return live_server(create_app(engine, model_id=MODEL), engine)


@pytest.fixture(scope="module")
def client(live) -> openai.OpenAI:
    return openai.OpenAI(base_url=f"{live.url}/v1", api_key="none", max_retries=0)


def test_models_lists_the_base_and_its_adapters(client, live):
    assert [m.id for m in client.models.list()] == [MODEL, *SERVED]
    card = client.models.retrieve("c")
    assert card.id == "c" and card.parent == MODEL
    assert live.health()["adapters"] == list(SERVED)


@pytest.mark.parametrize("path", ["/v1/chat/completions", "/v1/models/b"])
def test_an_unknown_adapter_is_a_404_in_openais_shape(live, path):
    body = {"model": "b", "messages": [{"role": "user", "content": "hi"}]}
    r = httpx.request("POST" if "chat" in path else "GET", live.url + path, json=body)
    assert r.status_code == 404
    error = r.json()["error"]
    assert set(error) == {"message", "type", "param", "code"}
    assert error["code"] == "model_not_found" and error["param"] == "model"
    assert f"'{MODEL}', 'a', 'c'" in error["message"]


def test_concurrent_clients_of_different_adapters_get_their_own_answers(client, alone, tokenizer):
    messages = [{"role": "user", "content": "Tell me about the cat."}]
    prompt = tokenizer.render_prompt(messages)
    models = [MODEL, "a", "c"] * 3
    answers: dict[int, tuple[str, str]] = {}

    def ask(i: int, name: str) -> None:
        stream = client.chat.completions.create(
            model=name, messages=messages, temperature=0, max_tokens=24 + i, stream=True
        )
        chunks = list(stream)
        text = "".join(c.choices[0].delta.content or "" for c in chunks if c.choices)
        answers[i] = (chunks[0].model, text)

    threads = [threading.Thread(target=ask, args=(i, n)) for i, n in enumerate(models)]
    for t in threads:
        t.start()
    for t in threads:
        t.join()
    for i, name in enumerate(models):
        adapter = None if name == MODEL else name
        request = SequenceRequest(prompt, 24 + i, temperature=0.0)
        tokens = reference(alone[adapter], tokenizer, request)
        expected = tokenizer.decode(
            [t for t in tokens if t not in (tokenizer.eot_id, tokenizer.eos_id)],
            skip_special=True,
        )
        assert answers[i] == (name, expected)
    assert len({text for _, text in answers.values()}) > 1


def test_an_echoed_prompt_is_scored_by_its_adapter(client, alone, tokenizer):
    text = "the cat sat on the mat"
    prompt = torch.tensor([ids(tokenizer, text)])
    for name in (MODEL, "c"):
        out = client.completions.create(
            model=name, prompt=text, echo=True, logprobs=0, max_tokens=0
        )
        assert out.model == name
        got = out.choices[0].logprobs.token_logprobs[1:]  # the first is not scored
        expected = token_logprobs(
            alone[None if name == MODEL else name], prompt[:, :-1], prompt[:, 1:]
        )
        torch.testing.assert_close(torch.tensor(got), expected.logprobs[0, 1:], atol=1e-5, rtol=0)


# ---- the command line -------------------------------------------------------------------------


@pytest.fixture(scope="module")
def foreign(tmp_path_factory, tokenizer) -> Path:
    """A LoRA made for a GPT twice as wide as the served one."""
    root = tmp_path_factory.mktemp("foreign")
    torch.manual_seed(1)
    config = GPTConfig(
        vocab_size=tokenizer.vocab_size, block_size=256, n_layer=2, n_head=2, n_embd=64
    )
    save_gpt(root / "wide", GPT(config), tokenizer)
    return make_adapter(root / "lora", root / "wide", AdapterConfig("lora", rank=4), 0)


@pytest.mark.parametrize(
    ("option", "message"),
    [
        ("x={foreign}", r"blocks\.0\.attn\.qkv\.lora_A\.weight' has shape \(4, 64\) but this base "
         r"needs \(4, 32\)"),
        ("x", "--adapter wants NAME=RUN_FOLDER"),
        ("=folder", "--adapter wants NAME=RUN_FOLDER"),
        ("x={tmp}/nope", "adapter folder not found"),
        ("x={run}", "holds a 'gpt' model, but a adapter model is needed"),
    ],
)  # fmt: skip
def test_the_cli_refuses_a_bad_adapter_at_start_in_one_line(
    run_dir, foreign, tmp_path, capsys, option, message
):
    option = option.format(foreign=foreign, tmp=tmp_path, run=run_dir)
    with pytest.raises(SystemExit) as exit_info:
        main(["serve", str(run_dir), "--adapter", option])
    assert exit_info.value.code == 2
    errors = [line for line in capsys.readouterr().err.splitlines() if "error" in line]
    assert len(errors) == 1 and errors[0].startswith("genlab: error: ")
    assert re.search(message, errors[0]), errors[0]


def test_the_cli_passes_adapters_by_name(run_dir, folders, monkeypatch):
    import genlab.serve.api

    got = {}
    monkeypatch.setattr(genlab.serve.api, "serve", lambda folder, **kw: got.update(kw))
    main(
        ["serve", str(run_dir), "--adapter", f"a={folders['a']}", "--adapter", f"c={folders['c']}"]
    )
    assert got["adapters"] == {"a": folders["a"], "c": folders["c"]}
