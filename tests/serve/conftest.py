"""A tiny random GPT and a tokenizer trained on a few lines, shared by the serving tests."""

from __future__ import annotations

import copy
import socket
import threading
import time
from pathlib import Path

import httpx
import pytest
import torch

from genlab.data.tokenizer import Tokenizer
from genlab.methods.autoregressive.checkpoint import save_gpt
from genlab.nets.gpt import GPT, GPTConfig

TEXT = [
    "the cat sat on the mat and the dog ran to the park.\n",
    "a small model writes small stories about cats, dogs and code.\n",
    "def add(a, b):\n    return a + b\n",
    "hello there! how are you today? i am fine, thank you.\n",
] * 20


@pytest.fixture(scope="session")
def tokenizer() -> Tokenizer:
    return Tokenizer.train(TEXT, vocab_size=320)


@pytest.fixture(scope="session")
def model(tokenizer: Tokenizer) -> GPT:
    torch.manual_seed(0)
    config = GPTConfig(
        vocab_size=tokenizer.vocab_size, block_size=256, n_layer=2, n_head=2, n_embd=32
    )
    return GPT(config).eval()


@pytest.fixture(scope="session")
def run_dir(tmp_path_factory: pytest.TempPathFactory, model: GPT, tokenizer: Tokenizer) -> Path:
    folder = tmp_path_factory.mktemp("serve") / "tiny-chat"
    save_gpt(folder, model, tokenizer)
    return folder


@pytest.fixture(autouse=True, scope="module")
def one_thread():
    """Tiny models decode fastest on one thread: spreading a 32-wide layer over several
    threads costs more in wake-ups than it saves, and far more on a busy machine."""
    before = torch.get_num_threads()
    torch.set_num_threads(1)
    yield
    torch.set_num_threads(before)


class LiveServer:
    """A uvicorn server on a free loopback port, run on a thread of the test process."""

    def __init__(self, app, engine, api_key: str | None = None) -> None:
        import uvicorn

        self.engine = engine
        self.api_key = api_key
        # IPPROTO_TCP named, as uvicorn's own sockets have it: asyncio then turns Nagle's
        # algorithm off for each connection (else every keep-alive answer waits ~40 ms).
        self._sock = socket.socket(socket.AF_INET, socket.SOCK_STREAM, socket.IPPROTO_TCP)
        self._sock.bind(("127.0.0.1", 0))
        self.url = f"http://127.0.0.1:{self._sock.getsockname()[1]}"
        config = uvicorn.Config(app, log_level="warning", lifespan="on")
        self._server = uvicorn.Server(config)
        self._thread = threading.Thread(
            target=self._server.run, kwargs={"sockets": [self._sock]}, daemon=True
        )
        self._thread.start()
        deadline = time.monotonic() + 20
        while not self._server.started:
            if time.monotonic() > deadline or not self._thread.is_alive():
                raise RuntimeError("the test server did not start")
            time.sleep(0.02)

    def health(self) -> dict:
        return httpx.get(f"{self.url}/health").json()

    def wait_idle(self, timeout: float = 10.0) -> dict:
        """/health once nothing runs or waits (fails after ``timeout`` seconds)."""
        deadline = time.monotonic() + timeout
        while True:
            health = self.health()
            if health["running"] == health["waiting"] == 0:
                return health
            assert time.monotonic() < deadline, f"the engine is still busy: {health}"
            time.sleep(0.02)

    def close(self) -> None:
        self._server.should_exit = True
        self._thread.join(timeout=10)
        self._sock.close()


API_KEY = "test-key"
SLOW_STEP_S = 0.02


@pytest.fixture(scope="module")
def server(model: GPT, tokenizer: Tokenizer, run_dir: Path):
    """The tiny model served with an API key and a max_tokens cap of 64."""
    from genlab.serve.api import create_app
    from genlab.serve.engine import Engine

    engine = Engine(model, tokenizer, max_batch=8)
    app = create_app(
        engine, model_id=run_dir.name, api_key=API_KEY, max_tokens_cap=64, max_body_bytes=65536
    )
    live = LiveServer(app, engine, API_KEY)
    yield live
    live.close()


@pytest.fixture(scope="module")
def open_server(model: GPT, tokenizer: Tokenizer, run_dir: Path):
    """The tiny model served without an API key and with 16 sequences decoded together."""
    from genlab.serve.api import create_app
    from genlab.serve.engine import Engine

    engine = Engine(model, tokenizer, max_batch=16)
    live = LiveServer(create_app(engine, model_id=run_dir.name), engine)
    yield live
    live.close()


@pytest.fixture(scope="module")
def slow_server(model: GPT, tokenizer: Tokenizer, run_dir: Path):
    """A model that takes SLOW_STEP_S per forward pass and never stops before max_tokens, in
    an engine with room for 2 running + 1 waiting sequences: long generations to interrupt."""
    from genlab.serve.api import create_app
    from genlab.serve.engine import Engine

    slow = copy.deepcopy(model)
    slow.register_forward_pre_hook(lambda module, args: time.sleep(SLOW_STEP_S))
    engine = Engine(slow, tokenizer, max_batch=2, max_queue=1, stop_ids=())
    live = LiveServer(create_app(engine, model_id=run_dir.name), engine)
    yield live
    live.close()


@pytest.fixture(scope="module")
def live_server():
    """Start ``LiveServer(app, engine)``s for a module's own apps; all close at its end."""
    started: list[LiveServer] = []

    def start(app, engine, api_key: str | None = None) -> LiveServer:
        started.append(LiveServer(app, engine, api_key))
        return started[-1]

    yield start
    for live in started:
        live.close()
