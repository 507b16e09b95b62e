"""How long does ``genlab eval`` take on 750 prompts, and what does batching buy?

Issue 14's goal: 750 prompts, greedy, a 1M-parameter model, at most 30 s on the 2-core CPU. The
benchmark asks 50 test questions of each of 15 TinyWorld families, few-shot with 3
demonstrations (the prompts of ``genlab eval --strategy few-shot``), of a model folder: a run you
name (``--model runs/demo/pretrain``), or by default a random GPT of the demo's shape (4 layers
x 128, vocabulary 1024, 0.9M weights), which never writes the end of its line and so always
decodes the full ``--max-tokens`` (an upper bound). It times the batched path (``LocalLM``,
batches of 64 prompts) and, as the peer in the same process, the same prompts one at a time
(batch 1), and reports both and their ratio.

Run: ``.venv/bin/python benchmarks/prompting_eval.py`` (writes
``benchmarks/results/prompting_eval.json``).
"""

from __future__ import annotations

import argparse
import tempfile
import time
from pathlib import Path

import torch

from genlab.data.tinyworld.families import FAMILIES
from genlab.prompting import LocalLM, PromptSettings, answer
from genlab.prompting.tasks import load_tasks
from serve import build, write_report

RESULTS = Path(__file__).parent / "results" / "prompting_eval.json"


def timed(lm: LocalLM, questions: list, pool: list, settings: PromptSettings) -> float:
    start = time.perf_counter()
    answer(lm, questions, pool, settings)
    return time.perf_counter() - start


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    parser.add_argument("--model", default="", help="a run folder (default: a random 1M GPT)")
    parser.add_argument("--families", type=int, default=15, help="TinyWorld families asked")
    parser.add_argument("--n-per-family", type=int, default=50)
    parser.add_argument("--max-tokens", type=int, default=24)
    parser.add_argument("--batch-size", type=int, default=64)
    parser.add_argument("--device", default="cpu")
    parser.add_argument("--seed", type=int, default=0)
    parser.add_argument("--out", type=Path, default=RESULTS)
    args = parser.parse_args()

    families = ",".join(list(FAMILIES)[: args.families])
    questions, pool = load_tasks(families, "test", args.n_per_family, seed=args.seed)
    settings = PromptSettings("few-shot", shots=3, max_tokens=args.max_tokens, seed=args.seed)
    with tempfile.TemporaryDirectory() as tmp:
        folder = args.model
        if not folder:
            folder = str(Path(tmp) / "random-1m")
            build(Path(folder), layers=4, width=128, seed=args.seed)
        batched = LocalLM(folder, device=args.device, batch_size=args.batch_size)
        params = sum(p.numel() for p in batched.model.parameters())
        timed(batched, questions[:8], pool, settings)  # warm-up
        seconds = timed(batched, questions, pool, settings)
        single = LocalLM(folder, device=args.device, batch_size=1)
        one_at_a_time = timed(single, questions, pool, settings)
    print(
        f"{len(questions)} prompts, {params / 1e6:.2f}M weights, {torch.get_num_threads()} threads"
    )
    print("| path | seconds | prompts/s |\n|---|---|---|")
    print(f"| batched ({args.batch_size}) | {seconds:.1f} | {len(questions) / seconds:.1f} |")
    print(f"| one at a time | {one_at_a_time:.1f} | {len(questions) / one_at_a_time:.1f} |")
    print(f"batched / one at a time: {one_at_a_time / seconds:.1f}x; goal: 750 prompts in 30 s")
    write_report(
        args.out,
        "prompting_eval",
        {"threads": torch.get_num_threads(), "device": args.device},
        {
            "model": args.model or "random 4x128 GPT",
            "params": params,
            "prompts": len(questions),
            "max_tokens": args.max_tokens,
            "batched_s": seconds,
            "one_at_a_time_s": one_at_a_time,
            "speedup": one_at_a_time / seconds,
        },
    )


if __name__ == "__main__":
    main()
