"""Does continuous batching let many users share one model? Throughput of ``genlab serve``.

A small GPT (4 layers, 256 wide by default; random weights, since speed does not depend on what
the weights say) with a tokenizer trained on a few lines is saved and served by ``genlab serve``
in its own process on loopback, its torch on one CPU thread (``--threads``). The same set of
streaming chat requests (each with its own seed, so every run generates the same tokens) is
sent by 1 client at a time (one request after the other: the baseline), and by 4 and 16
concurrent clients, each taking the next request as soon as its last one finished. Requests ask
for different lengths (max_tokens from 64 to 192), so that they finish at different steps, as
real traffic does. Reported per level: requests/s, generated tokens/s (counted by the server,
from each stream's usage), time to first token (median and p95) and failed requests; and, for
comparison, the tokens/s of the engine alone on the same requests, in the benchmark's process
without HTTP (what batching gives before the costs of serving).

Goal: 16 concurrent clients get at least 4x the generated tokens/s of the requests sent one at
a time, with no failed request.

Run: ``.venv/bin/python benchmarks/serve.py`` (writes ``benchmarks/results/serve.json``);
``--layers 6 --width 384`` for a larger model, ``--device cuda`` on a GPU, ``--kv-cache bf16``
for a bfloat16 KV cache.
"""

from __future__ import annotations

import argparse
import asyncio
import json
import os
import platform
import random
import socket
import statistics
import subprocess
import sys
import tempfile
import time
from collections.abc import Callable
from datetime import date
from pathlib import Path

import httpx
import torch

from genlab.core.device import precision_dtype
from genlab.data.tokenizer import Tokenizer
from genlab.methods.autoregressive.checkpoint import load_gpt, save_gpt
from genlab.nets.gpt import GPT, GPTConfig
from genlab.serve.engine import Engine, Event, SequenceRequest

RESULTS = Path(__file__).parent / "results" / "serve.json"
WORDS = [
    "the",
    "a",
    "cat",
    "dog",
    "bird",
    "tree",
    "river",
    "city",
    "house",
    "garden",
    "book",
    "story",
    "small",
    "big",
    "old",
    "new",
    "red",
    "green",
    "runs",
    "sees",
    "finds",
    "likes",
    "walks",
    "sings",
    "reads",
    "writes",
    "near",
    "under",
    "over",
    "with",
    "and",
    "but",
    "then",
    "because",
]


def build(folder: Path, layers: int, width: int, seed: int) -> None:
    """A random GPT (heads of 64 channels) and a small trained tokenizer, saved as a run."""
    rng = random.Random(seed)
    texts = [" ".join(rng.choices(WORDS, k=12)) + ".\n" for _ in range(2000)]
    tokenizer = Tokenizer.train(texts, vocab_size=1024)
    torch.manual_seed(seed)
    config = GPTConfig(
        vocab_size=tokenizer.vocab_size,
        block_size=512,
        n_layer=layers,
        n_head=width // 64,
        n_embd=width,
    )
    save_gpt(folder, GPT(config), tokenizer)


def requests(n: int, max_tokens: int, seed: int) -> list[dict]:
    rng = random.Random(seed)
    return [
        {
            "model": "bench",
            "messages": [
                {"role": "user", "content": " ".join(rng.choices(WORDS, k=rng.randint(5, 30)))}
            ],
            "max_tokens": rng.randint(max_tokens // 2, max_tokens * 3 // 2),
            "temperature": 0.8,
            "seed": i,
            "stream": True,
            "stream_options": {"include_usage": True},
        }
        for i in range(n)
    ]


async def one(http: httpx.AsyncClient, url: str, body: dict) -> dict:
    """Send one streaming request; its time to first token, total time and token count."""
    start = time.perf_counter()
    first = None
    tokens = None
    done = False
    try:
        async with http.stream("POST", url, json=body) as r:
            if r.status_code != 200:
                return {"ok": False, "error": f"HTTP {r.status_code}"}
            async for line in r.aiter_lines():
                if not line.startswith("data: "):
                    continue
                if line == "data: [DONE]":
                    done = True
                    break
                chunk = json.loads(line[6:])
                if "error" in chunk:
                    return {"ok": False, "error": chunk["error"]["message"]}
                if chunk.get("usage"):
                    tokens = chunk["usage"]["completion_tokens"]
                elif first is None and chunk["choices"][0]["delta"].get("content"):
                    first = time.perf_counter() - start
    except httpx.HTTPError as e:
        return {"ok": False, "error": repr(e)}
    if not done or tokens is None:
        return {"ok": False, "error": "stream ended early"}
    return {"ok": True, "ttft": first, "time": time.perf_counter() - start, "tokens": tokens}


async def level(url: str, bodies: list[dict], clients: int) -> dict:
    """``clients`` concurrent clients working through ``bodies`` in order: wall time and the
    result of every request."""
    todo = list(bodies)
    results: list[dict] = []

    async def client(http: httpx.AsyncClient) -> None:
        while todo:
            results.append(await one(http, url, todo.pop(0)))

    limits = httpx.Limits(max_connections=clients, max_keepalive_connections=clients)
    async with httpx.AsyncClient(timeout=300, limits=limits) as http:
        start = time.perf_counter()
        await asyncio.gather(*(client(http) for _ in range(clients)))
        wall = time.perf_counter() - start
    return {"wall_s": wall, "results": results}


def summarize(clients: int, runs: list[dict]) -> dict:
    """A level's median round (by tokens/s), with TTFTs pooled over all rounds."""
    rounds = []
    for run in runs:
        ok = [r for r in run["results"] if r["ok"]]
        tokens = sum(r["tokens"] for r in ok)
        rounds.append(
            {
                "requests_per_s": len(ok) / run["wall_s"],
                "tokens_per_s": tokens / run["wall_s"],
                "tokens": tokens,
                "wall_s": run["wall_s"],
            }
        )
    results = [r for run in runs for r in run["results"]]
    ok = [r for r in results if r["ok"]]
    ttfts = sorted(r["ttft"] for r in ok if r["ttft"] is not None)
    median = sorted(rounds, key=lambda r: r["tokens_per_s"])[len(rounds) // 2]
    return {
        "clients": clients,
        "requests": len(results),
        "failed": len(results) - len(ok),
        "errors": sorted({r["error"] for r in results if not r["ok"]}),
        **median,
        "tokens_per_s_rounds": [r["tokens_per_s"] for r in rounds],
        "ttft_median_s": statistics.median(ttfts) if ttfts else None,
        "ttft_p95_s": ttfts[round(0.95 * (len(ttfts) - 1))] if ttfts else None,
    }


def engine_level(
    engine: Engine,
    tokenizer: Tokenizer,
    bodies: list[dict],
    clients: int,
    adapter: Callable[[dict], str | None] = lambda body: None,
) -> float:
    """Generated tokens/s of the engine alone, in this process without HTTP, keeping
    ``clients`` of the same requests in flight: what batching gives before serving costs.
    ``adapter`` names each request's adapter (none by default)."""
    todo = list(bodies)
    in_flight, tokens = 0, 0

    def finished(event: Event) -> None:
        nonlocal in_flight, tokens
        if event.finish_reason:
            in_flight -= 1
            tokens += event.completion_tokens

    start = time.perf_counter()
    while todo or in_flight:
        while todo and in_flight < clients:
            body = todo.pop(0)
            request = SequenceRequest(
                tokenizer.render_prompt(body["messages"]),
                body["max_tokens"],
                body["temperature"],
                seed=body["seed"],
                adapter=adapter(body),
            )
            engine.submit([request], finished)
            in_flight += 1
        engine.step()
    return tokens / (time.perf_counter() - start)


def free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]


def wait_ready(base: str, server: subprocess.Popen, timeout: float = 120) -> None:
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        if server.poll() is not None:
            raise SystemExit(f"genlab serve exited with code {server.returncode}")
        try:
            if httpx.get(f"{base}/health", timeout=1).status_code == 200:
                return
        except httpx.HTTPError:
            pass
        time.sleep(0.2)
    raise SystemExit("genlab serve did not come up")


def write_report(path: Path, benchmark: str, machine: dict, results: dict) -> None:
    """Write a serving benchmark's JSON: its name, the date, the machine (platform, CPUs,
    torch, plus ``machine``'s entries) and ``results``."""
    record = {
        "benchmark": benchmark,
        "date": date.today().isoformat(),
        "machine": {
            "platform": platform.platform(),
            "processor": platform.processor() or platform.machine(),
            "cpus": os.cpu_count(),
            "torch": torch.__version__,
            **machine,
        },
        **results,
    }
    path.parent.mkdir(parents=True, exist_ok=True)
    path.write_text(json.dumps(record, indent=2) + "\n")
    print(f"wrote {path}")


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    parser.add_argument("--requests", type=int, default=48, help="requests per level")
    parser.add_argument(
        "--max-tokens", type=int, default=128, help="mean max_tokens (each: 0.5x to 1.5x)"
    )
    parser.add_argument("--levels", type=int, nargs="+", default=[1, 4, 16])
    parser.add_argument("--rounds", type=int, default=3, help="runs of each level, alternating")
    parser.add_argument("--layers", type=int, default=4)
    parser.add_argument("--width", type=int, default=256, help="a multiple of 64")
    parser.add_argument("--device", default="cpu")
    parser.add_argument(
        "--threads",
        type=int,
        default=1,
        help="CPU threads of the server's torch (0: torch's choice); one leaves the other "
        "cores of a small machine to the HTTP loop and the clients",
    )
    parser.add_argument(
        "--kv-cache", default="auto", help="KV cache precision of the server and the engine"
    )
    parser.add_argument("--seed", type=int, default=0)
    parser.add_argument("--out", type=Path, default=RESULTS)
    args = parser.parse_args()

    bodies = requests(args.requests, args.max_tokens, args.seed)
    with tempfile.TemporaryDirectory() as tmp:
        run = Path(tmp) / "bench"
        build(run, args.layers, args.width, args.seed)
        port = free_port()
        base = f"http://127.0.0.1:{port}"
        command = [sys.executable, "-m", "genlab", "serve", str(run), "--port", str(port)]
        command += ["--max-batch", str(max(args.levels)), "--device", args.device]
        command += ["--log-level", "warning", "--seed", str(args.seed)]
        command += ["--kv-cache", args.kv_cache]
        env = {**os.environ, "PYTHONUNBUFFERED": "1"}
        if args.threads:
            env["OMP_NUM_THREADS"] = str(args.threads)
        server = subprocess.Popen(command, env=env)
        try:
            wait_ready(base, server)
            url = f"{base}/v1/chat/completions"
            asyncio.run(level(url, bodies[: max(args.levels)], max(args.levels)))  # warm-up
            # Levels take turns, round after round, so that a slow spell of a shared machine
            # does not fall on one level alone; each level reports its median round.
            runs = {n: [] for n in args.levels}
            for _ in range(args.rounds):
                for n in args.levels:
                    runs[n].append(asyncio.run(level(url, bodies, n)))
            rows = [summarize(n, runs[n]) for n in args.levels]
        finally:
            server.terminate()
            server.wait(timeout=30)

        # The engine alone on the same requests (one round): the ceiling that serving costs
        # (HTTP, JSON, the event loop sharing the interpreter with the engine) eat into.
        if args.threads:
            torch.set_num_threads(args.threads)
        model, tokenizer = load_gpt(run, device=args.device)
        kv_dtype = precision_dtype(args.kv_cache)
        engine = Engine(model, tokenizer, max_batch=max(args.levels), kv_dtype=kv_dtype)
        engine_level(engine, tokenizer, bodies[: max(args.levels)], max(args.levels))  # warm-up
        for r in rows:
            r["engine_tokens_per_s"] = engine_level(engine, tokenizer, bodies, r["clients"])

    base_rate, engine_base = rows[0]["tokens_per_s"], rows[0]["engine_tokens_per_s"]
    print(
        f"{'clients':>7} {'req/s':>7} {'tok/s':>8} {'speedup':>8} {'TTFT med':>9} "
        f"{'TTFT p95':>9} {'tokens':>7} {'failed':>6} {'engine tok/s':>13} {'speedup':>8}"
    )
    for r in rows:
        r["speedup"] = r["tokens_per_s"] / base_rate
        r["engine_speedup"] = r["engine_tokens_per_s"] / engine_base
        print(
            f"{r['clients']:>7} {r['requests_per_s']:>7.2f} {r['tokens_per_s']:>8.1f} "
            f"{r['speedup']:>7.2f}x {r['ttft_median_s'] * 1000:>7.0f}ms "
            f"{r['ttft_p95_s'] * 1000:>7.0f}ms {r['tokens']:>7} {r['failed']:>6} "
            f"{r['engine_tokens_per_s']:>13.1f} {r['engine_speedup']:>7.2f}x"
        )
        for error in r["errors"]:
            print(f"        failed: {error}")
    top = rows[-1]
    goal = top["speedup"] >= 4 and all(r["failed"] == 0 for r in rows)
    print(
        f"goal (>= 4x tokens/s at {top['clients']} clients, no failure): {'met' if goal else 'MISSED'}"
    )

    write_report(
        args.out,
        "serve",
        {
            "device": args.device,
            "server_threads": args.threads or torch.get_num_threads(),
            "kv_cache": args.kv_cache,
        },
        {
            "model": f"GPT {args.layers} layers x {args.width}, context 512, random weights",
            "requests_per_level": args.requests,
            "rounds": args.rounds,
            "max_tokens": args.max_tokens,
            "levels": rows,
            "goal_met": goal,
        },
    )


if __name__ == "__main__":
    main()
