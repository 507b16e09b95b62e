"""``POST /v1/images/generations`` through the official openai client: a tiny diffusion run's
images are the PNGs ``genlab image sample`` draws for the same seed, every bad input is a 400 in
OpenAI's shape, ``/health`` answers while images are drawn, and ``genlab serve`` serves a
diffusion run alone or beside a GPT."""

from __future__ import annotations

import base64
import copy
import io
import json
import re
import threading
import time
from dataclasses import replace
from pathlib import Path

import httpx
import numpy as np
import openai
import pytest
import torch
from PIL import Image

from genlab.adapt.config import AdapterOptions
from genlab.cli import main
from genlab.core.ema import EMA_FILE
from genlab.core.errors import GenlabError
from genlab.core.train_config import TrainConfig
from genlab.data.images import to_uint8
from genlab.recipes.diffusion import DataSpec, ImageTrainConfig, train_diffusion
from genlab.recipes.diffusion_eval import sample_run
from genlab.serve.api import create_app
from genlab.serve.engine import Engine
from genlab.serve.images import ImageGenerator, is_image_run

IMAGE_MODEL = "shapes32"  # the run folder's name
SIZE = 32
PROMPT = "a small red circle on the left"
FAST = {"steps": 3}  # genlab's extension fields, sent with extra_body
DOCS = Path(__file__).resolve().parents[2] / "docs" / "serving.md"
DOCS_URL = "http://127.0.0.1:8000/v1"


def tiny_image_config(out: Path, steps: int = 2) -> ImageTrainConfig:
    """A 32x32 captioned-shapes diffusion run of ``steps`` training steps (its images are noise
    in shapes' colours: these tests check serving, not learning)."""
    return ImageTrainConfig(
        out=str(out),
        data=DataSpec(data="shapes", size=SIZE, n_images=32),
        preset="tiny",
        unet_overrides={"base_channels": 8, "num_heads": 1, "norm_groups": 4},
        text_dim=8,
        text_layers=1,
        grid_sampler_steps=1,
        train=TrainConfig(
            max_steps=steps,
            batch_size=4,
            warmup_steps=1,
            eval_every=1000,
            checkpoint_every=1000,
            device="cpu",
            progress=False,
            tensorboard=False,
            plots=False,
        ),
    )


def train_image_run(tmp_path_factory: pytest.TempPathFactory) -> Path:
    """The tiny run, trained once per session: the first module that asks trains it into the
    session's temporary folder, later ones find it there."""
    out = tmp_path_factory.getbasetemp() / "image-run" / IMAGE_MODEL
    if (out / EMA_FILE).is_file():
        return out
    threads = torch.get_num_threads()
    torch.set_num_threads(1)
    train_diffusion(tiny_image_config(out))
    torch.set_num_threads(threads)
    return out


@pytest.fixture(scope="module")
def image_run(tmp_path_factory) -> Path:
    return train_image_run(tmp_path_factory)


@pytest.fixture(scope="module")
def image_server(image_run, live_server):
    """The run served alone, as ``genlab serve RUN`` serves a diffusion run."""
    images = ImageGenerator.load(image_run, max_waiting=4)
    return live_server(create_app(None, images=images), None)


@pytest.fixture(scope="module")
def client(image_server) -> openai.OpenAI:
    return openai.OpenAI(base_url=f"{image_server.url}/v1", api_key="none", max_retries=0)


def pixels(b64: str) -> torch.Tensor:
    """A base64 PNG as uint8 (C, H, W), read by Pillow."""
    image = Image.open(io.BytesIO(base64.b64decode(b64)))
    assert image.format == "PNG" and image.mode == "RGB"
    return torch.from_numpy(np.asarray(image).copy()).permute(2, 0, 1)


def test_images_are_what_genlab_image_sample_draws(client, image_run, tmp_path):
    out = client.images.generate(
        model=IMAGE_MODEL,
        prompt=PROMPT,
        n=2,
        size=f"{SIZE}x{SIZE}",
        response_format="b64_json",
        extra_body={"seed": 7, "guidance": 2.5, **FAST},
    )
    assert abs(out.created - time.time()) < 60
    assert len(out.data) == 2
    got = torch.stack([pixels(d.b64_json) for d in out.data])
    assert got.shape == (2, 3, SIZE, SIZE)
    assert all(d.revised_prompt == PROMPT and d.url is None for d in out.data)
    expected, _ = sample_run(
        image_run, tmp_path / "grid.png", [PROMPT], n=2, steps=3, guidance=2.5, seed=7
    )
    assert torch.equal(got, to_uint8(expected))
    assert not torch.equal(got[0], got[1])  # two draws, not one twice


def test_the_docs_example_runs_as_written(image_server, tmp_path, monkeypatch, capsys):
    section = DOCS.read_text().split("\n## Images\n", 1)[1].split("\n## ", 1)[0]
    blocks = re.findall(r"```python\n(.*?)```", section, re.S)
    [example] = [b for b in blocks if "client.images.generate(" in b]
    assert DOCS_URL in example and f'model="{IMAGE_MODEL}"' in example
    monkeypatch.chdir(tmp_path)
    exec(compile(example.replace(DOCS_URL, f"{image_server.url}/v1"), str(DOCS), "exec"), {})
    assert capsys.readouterr().out.splitlines() == [PROMPT] * 2
    for i in range(2):
        with Image.open(tmp_path / f"circle_{i}.png") as image:
            assert image.format == "PNG" and image.size == (SIZE, SIZE)


def test_the_same_seed_gives_the_same_bytes(client):
    def draw(**extra) -> list[str]:
        out = client.images.generate(prompt="A Blue square!", n=2, extra_body={**FAST, **extra})
        assert out.data[0].revised_prompt == "a blue square"  # the words the model read
        return [d.b64_json for d in out.data]

    first = draw(seed=3)
    assert draw(seed=3) == first
    assert draw(seed=4) != first
    assert draw() != draw()  # no seed: the server's own, a new one each time


def test_one_image_of_the_run_size_by_default(client):
    out = client.images.generate(prompt="a green star", extra_body=FAST)
    (image,) = out.data
    assert pixels(image.b64_json).shape == (3, SIZE, SIZE)
    for size in ("auto", f"{SIZE}x{SIZE}"):  # and quality, style, user accepted and ignored
        kw = dict(size=size, quality="hd", style="natural", user="someone", output_format="png")
        assert len(client.images.generate(prompt="a green star", **kw, extra_body=FAST).data) == 1


BAD = [  # (fields, the field named, words of the message)
    ({"prompt": "a zebra and a red unicorn"}, "prompt", ["'zebra'", "'unicorn'", "circle"]),
    ({"prompt": ""}, "prompt", ["empty"]),
    ({"prompt": "   "}, "prompt", ["empty"]),
    ({"prompt": "?!"}, "prompt", ["no words"]),
    ({"prompt": "a " * 501}, "prompt", ["1002 characters", "1000"]),
    ({"prompt": "a red circle on the left on the left"}, "prompt", ["9 words", "7"]),
    ({"n": 0}, "n", []),
    ({"n": 11}, "n", ["10"]),
    ({"size": "64x64"}, "size", ["'64x64'", "32x32"]),
    ({"size": "huge"}, "size", ["WIDTHxHEIGHT"]),
    ({"response_format": "url"}, "response_format", ["b64_json", "no files"]),
    ({"response_format": "jpeg"}, "response_format", ["b64_json"]),
    ({"output_format": "webp"}, "output_format", ["png"]),
    ({"quality": "ultra"}, "quality", []),
    ({"style": "baroque"}, "style", []),
    ({"stream": True}, "stream", ["not supported"]),
    ({"extra_body": {"steps": 1001}}, "steps", ["1000"]),
    ({"extra_body": {"steps": 0}}, "steps", []),
    ({"extra_body": {"guidance": -1}}, "guidance", []),
    ({"extra_body": {"seed": "1"}}, "seed", []),
]


@pytest.mark.parametrize(("fields", "param", "words"), BAD)
def test_bad_requests_are_a_400_naming_the_field(client, fields, param, words):
    with pytest.raises(openai.BadRequestError) as info:
        client.images.generate(**{"prompt": "a red circle", **fields})
    error = info.value
    assert error.status_code == 400 and error.param == param
    assert error.body["type"] == "invalid_request_error"
    assert error.body["message"].startswith(f"{param}: ")
    for word in words:
        assert word in error.body["message"]


def test_a_lone_surrogate_is_a_400(image_server, client):
    # the openai client cannot encode one; JSON can spell it
    body = json.dumps({"prompt": "a red \ud800 circle"}).encode()
    headers = {"Content-Type": "application/json"}
    url = f"{image_server.url}/v1/images/generations"
    r = httpx.post(url, content=body, headers=headers, timeout=30)
    assert r.status_code == 400
    error = r.json()["error"]
    assert error["param"] == "prompt" and "surrogate" in error["message"]
    assert error["type"] == "invalid_request_error"
    assert len(client.images.generate(prompt="a red circle", extra_body=FAST).data) == 1


def test_models_health_and_the_text_routes(client, image_server):
    assert [m.id for m in client.models.list()] == [IMAGE_MODEL]
    assert client.models.retrieve(IMAGE_MODEL).owned_by == "genlab"
    health = httpx.get(f"{image_server.url}/health").json()
    assert health["model"] is None
    assert health["image_model"]["id"] == IMAGE_MODEL
    assert health["image_model"]["size"] == f"{SIZE}x{SIZE}"
    assert health["image_model"]["max_words"] == 7
    with pytest.raises(openai.NotFoundError) as info:
        client.images.generate(model="dall-e-3", prompt="a red circle")
    assert info.value.code == "model_not_found" and IMAGE_MODEL in info.value.message
    with pytest.raises(openai.NotFoundError) as info:
        client.chat.completions.create(
            model=IMAGE_MODEL, messages=[{"role": "user", "content": "hi"}]
        )
    assert info.value.param == "model"
    assert "image model" in info.value.message and "/v1/images/generations" in info.value.message
    with pytest.raises(openai.NotFoundError):
        client.completions.create(model=IMAGE_MODEL, prompt="hi")


def test_text_and_images_served_together(image_run, model, tokenizer, run_dir, live_server):
    engine = Engine(model, tokenizer, max_batch=4)
    images = ImageGenerator.load(image_run)
    live = live_server(create_app(engine, model_id=run_dir.name, images=images), engine)
    client = openai.OpenAI(base_url=f"{live.url}/v1", api_key="none", max_retries=0)
    assert [m.id for m in client.models.list()] == [run_dir.name, IMAGE_MODEL]
    chat = client.chat.completions.create(
        model=run_dir.name, messages=[{"role": "user", "content": "hi"}], max_tokens=3
    )
    assert chat.choices[0].message.content is not None
    out = client.images.generate(model=IMAGE_MODEL, prompt="a red circle", extra_body=FAST)
    assert pixels(out.data[0].b64_json).shape == (3, SIZE, SIZE)
    with pytest.raises(openai.NotFoundError) as info:
        client.images.generate(model=run_dir.name, prompt="a red circle")
    assert "text model" in info.value.message
    with pytest.raises(openai.NotFoundError) as info:
        client.chat.completions.create(
            model=IMAGE_MODEL, messages=[{"role": "user", "content": "hi"}]
        )
    assert "image model" in info.value.message
    health = live.health()
    assert health["model"] == run_dir.name and health["image_model"]["id"] == IMAGE_MODEL
    with pytest.raises(GenlabError, match="like a text model"):
        create_app(engine, model_id=IMAGE_MODEL, images=images)


def test_a_text_server_has_no_image_model(open_server):
    client = openai.OpenAI(base_url=f"{open_server.url}/v1", api_key="none", max_retries=0)
    with pytest.raises(openai.NotFoundError) as info:
        client.images.generate(prompt="a red circle")
    assert "--image-model" in info.value.message


def test_health_answers_while_images_are_drawn_and_the_queue_is_bounded(image_run, live_server):
    """Generation runs on its own thread: /health stays quick while a slow model draws, and a
    request beyond the one drawn and ``max_waiting`` waiting is a 429."""
    base = ImageGenerator.load(image_run)
    slow = copy.deepcopy(base.model)
    slow.unet.register_forward_pre_hook(lambda module, args: time.sleep(0.05))
    images = ImageGenerator(slow, base.tokenizer, IMAGE_MODEL, max_waiting=0)
    live = live_server(create_app(None, images=images), None)
    client = openai.OpenAI(base_url=f"{live.url}/v1", api_key="none", max_retries=0)
    done: list = []
    drawing = threading.Thread(
        target=lambda: done.append(
            client.images.generate(prompt="a red circle", extra_body={"steps": 40})
        )
    )
    drawing.start()
    deadline = time.monotonic() + 10
    while live.health()["image_model"]["running"] == 0:
        assert time.monotonic() < deadline
        time.sleep(0.01)
    with pytest.raises(openai.RateLimitError):
        client.images.generate(prompt="a red circle", extra_body=FAST)
    slowest, polls = 0.0, 0
    while drawing.is_alive():
        t0 = time.monotonic()
        assert live.health()["status"] == "ok"
        slowest, polls = max(slowest, time.monotonic() - t0), polls + 1
        time.sleep(0.02)
    drawing.join()
    assert len(done) == 1 and len(done[0].data) == 1
    # the drawing takes 40 x 0.05 s = 2 s; on the event loop it would hold a poll for most of it
    assert polls >= 5 and slowest < 1.0
    assert live.health()["image_model"]["requests"] == 1  # the refused one never queued


def served_by_the_cli(monkeypatch, live_server, *args: str):
    """What ``genlab serve ARGS`` serves: its application, on a live test server."""
    import uvicorn

    apps: list = []
    monkeypatch.setattr(uvicorn, "run", lambda app, **kw: apps.append(app))
    main(["serve", *args])
    return live_server(apps[0], None)


def test_genlab_serve_serves_a_diffusion_run_alone_or_beside_a_gpt(
    image_run, run_dir, monkeypatch, live_server
):
    assert is_image_run(image_run) and not is_image_run(run_dir)
    alone = served_by_the_cli(monkeypatch, live_server, str(image_run), "--device", "cpu")
    client = openai.OpenAI(base_url=f"{alone.url}/v1", api_key="none", max_retries=0)
    assert [m.id for m in client.models.list()] == [IMAGE_MODEL]
    assert len(client.images.generate(prompt="a red circle", extra_body=FAST).data) == 1
    both = served_by_the_cli(
        monkeypatch, live_server, str(run_dir), "--image-model", str(image_run), "--device", "cpu"
    )
    client = openai.OpenAI(base_url=f"{both.url}/v1", api_key="none", max_retries=0)
    assert [m.id for m in client.models.list()] == [run_dir.name, IMAGE_MODEL]
    assert len(client.images.generate(prompt="a red circle", extra_body=FAST).data) == 1


@pytest.mark.usefixtures("one_thread")
def test_a_lora_of_the_run_is_served_as_an_image_model(
    image_run, tmp_path, monkeypatch, live_server
):
    lora = tmp_path / "shapes32-lora"
    adapter = AdapterOptions(adapter="lora", lora_rank=2)
    cfg = replace(tiny_image_config(lora, 1), unet_overrides={}, init_from=str(image_run))
    train_diffusion(replace(cfg, adapter=adapter))
    assert is_image_run(lora)
    live = served_by_the_cli(monkeypatch, live_server, str(lora), "--device", "cpu")
    client = openai.OpenAI(base_url=f"{live.url}/v1", api_key="none", max_retries=0)
    assert [m.id for m in client.models.list()] == ["shapes32-lora"]
    out = client.images.generate(prompt="a red circle", n=2, extra_body=FAST)
    assert [pixels(d.b64_json).shape for d in out.data] == [(3, SIZE, SIZE)] * 2


@pytest.mark.parametrize(
    ("args", "message"),
    [
        (["{image}", "--image-model", "{image}"], "is an image model already"),
        (["{image}", "--server-tools", "calculator"], "are for a GPT run"),
        (["{gpt}", "--image-model", "{gpt}"], "is not a diffusion run"),
        (["{gpt}", "--image-model", "{gpt}/nope"], "image model folder not found"),
    ],
)
def test_genlab_serve_refuses_wrong_folders(image_run, run_dir, capsys, args, message):
    with pytest.raises(SystemExit) as exit_info:
        main(["serve", *(a.format(image=image_run, gpt=run_dir) for a in args)])
    assert exit_info.value.code == 2
    assert message in capsys.readouterr().err
