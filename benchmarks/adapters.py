"""Does a batch that mixes adapters serve as fast as one adapter? Many LoRAs on one base.

S-LoRA and Punica serve many adapters of one base together: each batch row runs its own
request's adapter through gathered batched matmuls, so requests for different adapters share
every decoding step. ``genlab serve BASE --adapter NAME=RUN ...`` does that
(``genlab.adapt.inject.set_rows``). This benchmark serves the serving benchmark's model
(``benchmarks/serve.py``: 4 layers x 256, random weights) with 4 LoRA adapters (rank 8 on
``attn.qkv`` and ``attn.proj``, random non-zero B) and sends the same streaming requests from
16 concurrent clients, each request naming its model:

- **4 adapters**: request i asks for adapter i mod 4, so every batch mixes all four;
- **1 adapter**: every request asks for the same adapter;
- **base**: every request asks for the base, on the same server (every row chooses no adapter);
- **base, no adapters**: a second server that loads none (the path serving had before).

Scenarios take turns, round after round, and report their median round (generated tokens/s,
counted by the server from each stream's usage); beside it, the engine alone (this process, no
HTTP) on the same requests. It also merges an adapter into the base weights and takes it out
again, and reports how far the weights moved (the round trip's max abs difference) and how far
the merged model's logits are from the unmerged adapter's.

Goal: the mixed batch gets at least 80% of the single adapter's tokens/s.

Run: ``.venv/bin/python benchmarks/adapters.py`` (writes ``benchmarks/results/adapters.json``).
"""

from __future__ import annotations

import argparse
import asyncio
import os
import subprocess
import sys
import tempfile
from pathlib import Path

import torch

from genlab.adapt.adapted import Adapted
from genlab.adapt.config import AdapterConfig
from genlab.adapt.inject import adapter_layers, adapter_parameters, merge, set_adapters, unmerge
from genlab.core import registry
from genlab.methods.autoregressive.checkpoint import load_gpt
from genlab.serve.api import load_model
from genlab.serve.engine import Engine

sys.path.insert(0, str(Path(__file__).resolve().parent))
from serve import (  # noqa: E402
    build,
    engine_level,
    free_port,
    level,
    requests,
    summarize,
    wait_ready,
    write_report,
)

RESULTS = Path(__file__).parent / "results" / "adapters.json"
BASE = "bench"  # the base's model name: its folder's name


def make_adapters(run: Path, count: int, rank: int, seed: int) -> dict[str, Path]:
    """``count`` LoRA run folders for the base in ``run``, every tensor random (B non-zero)."""
    folders = {}
    for i in range(count):
        base, _ = load_gpt(run)
        adapted = Adapted.around(base, run, AdapterConfig("lora", rank=rank), "task")
        gen = torch.Generator().manual_seed(seed + i)
        with torch.no_grad():
            for p in adapter_parameters(adapted.model, "task").values():
                p.copy_(torch.randn(p.shape, generator=gen) * 0.02)
        folders[f"a{i}"] = registry.save(run.parent / f"a{i}", adapted, "adapter", adapted.config)
    return folders


def scenarios(bodies: list[dict], names: list[str]) -> dict[str, list[dict]]:
    """The same requests, each scenario naming its models (the server that gets them too)."""
    return {
        f"{len(names)} adapters": [
            {**b, "model": names[i % len(names)]} for i, b in enumerate(bodies)
        ],
        "1 adapter": [{**b, "model": names[0]} for b in bodies],
        "base": [{**b, "model": BASE} for b in bodies],
        "base, no adapters": [{**b, "model": BASE} for b in bodies],
    }


def adapter_of(body: dict) -> str | None:
    """The adapter a request's ``model`` names (the base's own name: none)."""
    return None if body["model"] == BASE else body["model"]


def round_trip(run: Path, folders: dict[str, Path], device: str) -> dict[str, float]:
    """Merge one adapter into the base weights and out again: how far the weights moved, and
    the merged model's logits against the unmerged adapter's."""
    name = next(iter(folders))
    model, _ = load_model(run, {name: folders[name]}, device=device)
    before = {n: layer.base_layer.weight.clone() for n, layer in adapter_layers(model)}
    x = torch.randint(0, model.config.vocab_size, (4, 64), device=device)
    set_adapters(model, name)
    with torch.no_grad():
        adapted = model(x)[0]
        merge(model)
        merged = model(x)[0]
        unmerge(model)
        moved = max(
            float((layer.base_layer.weight - before[n]).abs().max())
            for n, layer in adapter_layers(model)
        )
    return {
        "weights_max_abs_diff": moved,
        "merged_logits_max_abs_diff": float((merged - adapted).abs().max()),
    }


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    parser.add_argument("--requests", type=int, default=48, help="requests per scenario")
    parser.add_argument("--clients", type=int, default=16)
    parser.add_argument("--adapters", type=int, default=4)
    parser.add_argument("--rank", type=int, default=8)
    parser.add_argument(
        "--max-tokens", type=int, default=128, help="mean max_tokens (each: 0.5x to 1.5x)"
    )
    parser.add_argument("--rounds", type=int, default=3, help="runs of each scenario, alternating")
    parser.add_argument("--layers", type=int, default=4)
    parser.add_argument("--width", type=int, default=256, help="a multiple of 64")
    parser.add_argument("--device", default="cpu")
    parser.add_argument(
        "--threads", type=int, default=1, help="CPU threads of torch (0: its choice)"
    )
    parser.add_argument("--seed", type=int, default=0)
    parser.add_argument("--out", type=Path, default=RESULTS)
    args = parser.parse_args()

    env = {**os.environ, "PYTHONUNBUFFERED": "1"}
    if args.threads:
        env["OMP_NUM_THREADS"] = str(args.threads)
        torch.set_num_threads(args.threads)
    with tempfile.TemporaryDirectory() as tmp:
        run = Path(tmp) / BASE
        build(run, args.layers, args.width, args.seed)
        folders = make_adapters(run, args.adapters, args.rank, args.seed)
        plan = scenarios(requests(args.requests, args.max_tokens, args.seed), list(folders))
        adapter_options = [x for n, f in folders.items() for x in ("--adapter", f"{n}={f}")]
        servers = {}  # with adapters, without
        try:
            for loaded in (True, False):
                port = free_port()
                command = [sys.executable, "-m", "genlab", "serve", str(run), "--port", str(port)]
                command += ["--max-batch", str(args.clients), "--device", args.device]
                command += ["--log-level", "warning", "--seed", str(args.seed)]
                command += adapter_options if loaded else []
                servers[loaded] = (f"http://127.0.0.1:{port}", subprocess.Popen(command, env=env))
            for base, server in servers.values():
                wait_ready(base, server)
            runs: dict[str, list[dict]] = {name: [] for name in plan}
            for turn in range(args.rounds + 1):  # the first turn warms up
                for name, bodies in plan.items():
                    url = servers[name != "base, no adapters"][0] + "/v1/chat/completions"
                    result = asyncio.run(level(url, bodies, args.clients))
                    if turn:
                        runs[name].append(result)
            rows = {name: summarize(args.clients, runs[name]) for name in plan}
        finally:
            for _, server in servers.values():
                server.terminate()
                server.wait(timeout=30)

        # the engine alone, in this process, on the same requests (one round each, after a
        # warm-up): what the adapters cost before HTTP's costs
        model, tokenizer = load_model(run, folders, device=args.device)
        plain, _ = load_gpt(run, device=args.device)
        engines = {
            True: Engine(model, tokenizer, max_batch=args.clients, adapters=list(folders)),
            False: Engine(plain, tokenizer, max_batch=args.clients),
        }
        for name, bodies in plan.items():
            engine = engines[name != "base, no adapters"]
            engine_level(engine, tokenizer, bodies[: args.clients], args.clients, adapter_of)
            rows[name]["engine_tokens_per_s"] = engine_level(
                engine, tokenizer, bodies, args.clients, adapter_of
            )
        trip = round_trip(run, folders, args.device)

    mixed, one = rows[f"{args.adapters} adapters"], rows["1 adapter"]
    print(
        f"{'scenario':>18} {'tok/s':>8} {'vs 1 adapter':>12} {'TTFT med':>9} {'TTFT p95':>9} "
        f"{'tokens':>7} {'failed':>6} {'engine tok/s':>13} {'vs 1 adapter':>12}"
    )
    for name, r in rows.items():
        r["vs_one_adapter"] = r["tokens_per_s"] / one["tokens_per_s"]
        r["engine_vs_one_adapter"] = r["engine_tokens_per_s"] / one["engine_tokens_per_s"]
        print(
            f"{name:>18} {r['tokens_per_s']:>8.1f} {r['vs_one_adapter']:>11.2f}x "
            f"{r['ttft_median_s'] * 1000:>7.0f}ms {r['ttft_p95_s'] * 1000:>7.0f}ms "
            f"{r['tokens']:>7} {r['failed']:>6} {r['engine_tokens_per_s']:>13.1f} "
            f"{r['engine_vs_one_adapter']:>11.2f}x"
        )
        for error in r["errors"]:
            print(f"        failed: {error}")
    print(
        f"merge + unmerge: weights back to {trip['weights_max_abs_diff']:.2e} (max abs); merged "
        f"logits within {trip['merged_logits_max_abs_diff']:.2e} of the unmerged adapter's"
    )
    goal = mixed["vs_one_adapter"] >= 0.8 and all(r["failed"] == 0 for r in rows.values())
    print(
        f"goal (mixed >= 80% of one adapter's tokens/s, no failure): {'met' if goal else 'MISSED'}"
    )

    write_report(
        args.out,
        "adapters",
        {
            "load_average": os.getloadavg(),
            "device": args.device,
            "threads": args.threads or torch.get_num_threads(),
        },
        {
            "model": f"GPT {args.layers} layers x {args.width}, context 512, random weights",
            "adapters": f"{args.adapters} LoRA, rank {args.rank}, on attn.qkv and attn.proj",
            "clients": args.clients,
            "requests_per_scenario": args.requests,
            "rounds": args.rounds,
            "max_tokens": args.max_tokens,
            "scenarios": rows,
            "merge_round_trip": trip,
            "goal_met": goal,
        },
    )


if __name__ == "__main__":
    main()
