"""Can a burst of huge requests stall ``genlab serve``? /health latency while 16 arrive at once.

A request just under the body limit (1 MiB) with one enormous message cannot fit any context,
but a server that tokenizes it on its event loop before finding that out answers nobody else
meanwhile. This starts the app (a small random GPT, context 512) with uvicorn on a thread of
this process on a free loopback port, polls ``GET /health`` every few milliseconds, and fires
16 such requests concurrently (chat messages and completion prompts of about a million
characters), several rounds in a row. The huge requests come from a child process, so that
what is measured is the server's stall, not the sending client's (16 MiB of JSON to write). Reported: /health latency (p50, p99, max) when idle and
during the bursts, and how the huge requests were answered.

Goal: /health p99 under 50 ms during the bursts.

Run: ``.venv/bin/python benchmarks/serve_stall.py`` (writes ``benchmarks/results/serve_stall.json``).
"""

from __future__ import annotations

import argparse
import asyncio
import json
import multiprocessing
import socket
import statistics
import sys
import threading
import time
from collections import Counter
from multiprocessing.pool import Pool
from pathlib import Path

import httpx
import torch
import uvicorn

from genlab.data.tokenizer import Tokenizer
from genlab.nets.gpt import GPT, GPTConfig
from genlab.serve.api import create_app
from genlab.serve.engine import Engine

sys.path.insert(0, str(Path(__file__).resolve().parent))
from serve import write_report  # noqa: E402

RESULTS = Path(__file__).parent / "results" / "serve_stall.json"
CORPUS = [
    "the cat sat on the mat and the dog ran to the park.\n",
    "a small model writes small stories about cats, dogs and code.\n",
    "def add(a, b):\n    return a + b\n",
    "hello there! how are you today? i am fine, thank you.\n",
] * 50
MODEL = "stall"


def huge_bodies(count: int, chars: int) -> list[tuple[str, bytes]]:
    """(path, JSON body) of each huge request: chat and completions alternating, each text
    different so that no cache could help."""
    bodies = []
    for i in range(count):
        text = (f"{i} " + "the cat sat on the mat and the dog ran. " * (chars // 40 + 1))[:chars]
        if i % 2 == 0:
            body = {"model": MODEL, "messages": [{"role": "user", "content": text}]}
            path = "/v1/chat/completions"
        else:
            body = {"model": MODEL, "prompt": text, "max_tokens": 4}
            path = "/v1/completions"
        bodies.append((path, json.dumps(body).encode()))
    return bodies


def percentile(values: list[float], q: float) -> float:
    ordered = sorted(values)
    return ordered[round(q * (len(ordered) - 1))]


async def poll(base: str, stop: asyncio.Event, every_s: float) -> list[float]:
    """/health latencies (s) until ``stop``."""
    latencies = []
    async with httpx.AsyncClient(timeout=30) as http:
        while not stop.is_set():
            start = time.perf_counter()
            r = await http.get(f"{base}/health")
            latencies.append(time.perf_counter() - start)
            assert r.status_code == 200, r.text
            await asyncio.sleep(every_s)
    return latencies


async def idle(base: str, seconds: float, every_s: float) -> list[float]:
    stop = asyncio.Event()
    task = asyncio.create_task(poll(base, stop, every_s))
    await asyncio.sleep(seconds)
    stop.set()
    return await task


def fire(base: str, count: int, chars: int) -> tuple[list[tuple[int, str | None, float]], float]:
    """Send the huge requests at once (in a child process): each answer's status, error code
    and time, and the burst's time."""
    bodies = huge_bodies(count, chars)

    async def all_at_once() -> tuple[list[tuple[int, str | None, float]], float]:
        limits = httpx.Limits(max_connections=len(bodies))
        headers = {"Content-Type": "application/json"}
        async with httpx.AsyncClient(timeout=120, limits=limits) as http:

            async def one(path: str, body: bytes) -> tuple[int, str | None, float]:
                start = time.perf_counter()
                r = await http.post(f"{base}{path}", content=body, headers=headers)
                code = r.json()["error"]["code"] if r.status_code != 200 else None
                return r.status_code, code, time.perf_counter() - start

            start = time.perf_counter()
            answers = await asyncio.gather(*(one(p, b) for p, b in bodies))
            return answers, time.perf_counter() - start

    return asyncio.run(all_at_once())


async def burst(base: str, sender: Pool, count: int, chars: int, every_s: float) -> dict:
    """One burst from the ``sender`` process while polling /health."""
    stop = asyncio.Event()
    poller = asyncio.create_task(poll(base, stop, every_s))
    await asyncio.sleep(0.05)  # the poller is running before the burst lands
    answers, elapsed = await asyncio.to_thread(sender.apply, fire, (base, count, chars))
    await asyncio.sleep(0.05)
    stop.set()
    return {"health": await poller, "answers": answers, "elapsed_s": elapsed}


class Server:
    """uvicorn serving ``app`` on a free loopback port, on a thread of this process."""

    def __init__(self, app) -> None:
        # IPPROTO_TCP named, as uvicorn's own sockets have it: asyncio then turns Nagle's
        # algorithm off for each connection (else every keep-alive answer waits ~40 ms).
        self.sock = socket.socket(socket.AF_INET, socket.SOCK_STREAM, socket.IPPROTO_TCP)
        self.sock.bind(("127.0.0.1", 0))
        self.base = f"http://127.0.0.1:{self.sock.getsockname()[1]}"
        self.server = uvicorn.Server(uvicorn.Config(app, log_level="warning", lifespan="on"))
        self.thread = threading.Thread(
            target=self.server.run, kwargs={"sockets": [self.sock]}, daemon=True
        )
        self.thread.start()
        deadline = time.monotonic() + 60
        while not self.server.started:
            if time.monotonic() > deadline:
                raise SystemExit("the server did not start")
            time.sleep(0.02)

    def close(self) -> None:
        self.server.should_exit = True
        self.thread.join(timeout=30)
        self.sock.close()


def summary(latencies: list[float]) -> dict:
    ms = [x * 1000 for x in latencies]
    return {
        "polls": len(ms),
        "p50_ms": statistics.median(ms),
        "p99_ms": percentile(ms, 0.99),
        "max_ms": max(ms),
    }


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    parser.add_argument("--requests", type=int, default=16, help="huge requests per burst")
    parser.add_argument("--chars", type=int, default=1_000_000, help="characters per text")
    parser.add_argument("--rounds", type=int, default=5, help="bursts, one after another")
    parser.add_argument("--poll-ms", type=float, default=5.0, help="pause between polls")
    parser.add_argument("--threads", type=int, default=1, help="torch CPU threads")
    parser.add_argument("--out", type=Path, default=RESULTS)
    args = parser.parse_args()

    torch.set_num_threads(args.threads)
    torch.manual_seed(0)
    tokenizer = Tokenizer.train(CORPUS, vocab_size=512)
    config = GPTConfig(
        vocab_size=tokenizer.vocab_size, block_size=512, n_layer=2, n_head=2, n_embd=128
    )
    engine = Engine(GPT(config).eval(), tokenizer, max_batch=16)
    server = Server(create_app(engine, model_id=MODEL))
    try:
        every = args.poll_ms / 1000
        with multiprocessing.get_context("spawn").Pool(1) as sender:
            sender.apply(fire, (server.base, 1, 10))  # the child is up and warm
            quiet = asyncio.run(idle(server.base, 2.0, every))
            bursts = [
                asyncio.run(burst(server.base, sender, args.requests, args.chars, every))
                for _ in range(args.rounds)
            ]
    finally:
        server.close()

    busy = [x for b in bursts for x in b["health"]]
    answers = Counter(f"{s} {c}" for b in bursts for s, c, _ in b["answers"])
    answer_s = [t for b in bursts for _, _, t in b["answers"]]
    rows = {"idle": summary(quiet), "burst": summary(busy)}
    print(f"{'phase':>6} {'polls':>6} {'p50':>8} {'p99':>8} {'max':>8}   (/health latency)")
    for phase, r in rows.items():
        print(
            f"{phase:>6} {r['polls']:>6} {r['p50_ms']:>6.1f}ms {r['p99_ms']:>6.1f}ms "
            f"{r['max_ms']:>6.1f}ms"
        )
    body_mib = statistics.mean(len(b) for _, b in huge_bodies(args.requests, args.chars)) / 2**20
    print(
        f"{args.rounds} bursts of {args.requests} requests of {body_mib:.2f} MiB: answers "
        f"{dict(answers)}, each in {statistics.median(answer_s) * 1000:.0f} ms (median), "
        f"{max(answer_s) * 1000:.0f} ms (max); a burst took "
        f"{statistics.median(b['elapsed_s'] for b in bursts) * 1000:.0f} ms (median)"
    )
    goal = rows["burst"]["p99_ms"] < 50
    print(f"goal (/health p99 < 50 ms during the bursts): {'met' if goal else 'MISSED'}")

    write_report(
        args.out,
        "serve_stall",
        {},
        {
            "model": "GPT 2 layers x 128, context 512, random weights",
            "requests_per_burst": args.requests,
            "rounds": args.rounds,
            "body_mib": body_mib,
            "health": rows,
            "answers": dict(answers),
            "answer_median_ms": statistics.median(answer_s) * 1000,
            "answer_max_ms": max(answer_s) * 1000,
            "goal_met": goal,
        },
    )


if __name__ == "__main__":
    main()
