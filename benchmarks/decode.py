"""How fast does genlab decode, next to transformers, on the same weights?

Greedy decoding of 200 new tokens at batch 1 and 8, for a tiny GPT (2 layers, 64 wide) and a
small one (6 layers, 384 wide): genlab's user-facing ``genlab.methods.autoregressive.decoding.generate`` against
transformers' ``GPT2LMHeadModel.generate``, both with a KV cache, in one process on the CPU with
2 threads. The GPT-2 is built by transformers (random, seeded) and read into genlab with
``gpt_from_hf``; the benchmark checks that both produce the same tokens before timing. Each
figure is the median of 3 timed runs after one warm-up run; genlab's and transformers' runs
alternate, so that both see the same load on a shared machine.

Run: ``.venv/bin/python benchmarks/decode.py`` (writes ``benchmarks/results/decode.json``);
``--compile`` decodes with genlab's compiled one-token step and reports the compile time (the
first call).
"""

from __future__ import annotations

import argparse
import json
import os
import platform
import statistics
import subprocess
import sys
import tempfile
import time
from collections.abc import Callable
from datetime import date
from pathlib import Path

import torch
import transformers

from genlab.methods.autoregressive.decoding import generate
from genlab.nets.gpt import GPT
from genlab.nets.hf_gpt2 import gpt_from_hf

NEW_TOKENS = 200
PROMPT_LEN = 32
VOCAB = 256
CONFIGS = {
    "tiny": {"n_layer": 2, "n_embd": 64, "n_head": 2},
    "small": {"n_layer": 6, "n_embd": 384, "n_head": 6},
}
RESULTS = Path(__file__).parent / "results" / "decode.json"


def build(name: str, seed: int = 0) -> tuple[transformers.GPT2LMHeadModel, GPT]:
    """A random GPT-2 made by transformers and the same weights loaded into genlab."""
    torch.manual_seed(seed)
    config = transformers.GPT2Config(
        **CONFIGS[name],
        vocab_size=VOCAB,
        n_positions=PROMPT_LEN + NEW_TOKENS + 32,
        # a wide init spreads the logits, so float rounding cannot flip a greedy choice
        initializer_range=0.2,
        bos_token_id=None,
        eos_token_id=None,
    )
    hf = transformers.GPT2LMHeadModel(config).eval()
    with tempfile.TemporaryDirectory() as folder:
        hf.save_pretrained(folder)
        ours = gpt_from_hf(folder)
    return hf, ours


def hf_generate(hf: transformers.GPT2LMHeadModel, prompts: torch.Tensor) -> torch.Tensor:
    out = hf.generate(
        prompts,
        attention_mask=torch.ones_like(prompts),
        do_sample=False,
        use_cache=True,
        max_new_tokens=NEW_TOKENS,
        min_new_tokens=NEW_TOKENS,
        pad_token_id=0,
        eos_token_id=None,
    )
    return out[:, prompts.shape[1] :]


def genlab_generate(model: GPT, prompts: torch.Tensor, compile: bool = False) -> torch.Tensor:
    results = generate(
        model, prompts.tolist(), max_new_tokens=NEW_TOKENS, temperature=0.0, compile=compile
    )
    return torch.tensor([r.tokens for r in results])


def median_seconds(fns: dict[str, Callable[[], object]], runs: int) -> dict[str, float]:
    """Median wall time of each function after one warm-up; runs alternate between the
    functions so that both see the same load on a shared machine."""
    for fn in fns.values():
        fn()
    times: dict[str, list[float]] = {name: [] for name in fns}
    for _ in range(runs):
        for name, fn in fns.items():
            start = time.perf_counter()
            fn()
            times[name].append(time.perf_counter() - start)
    return {name: statistics.median(t) for name, t in times.items()}


def cpu_name() -> str:
    try:
        out = subprocess.run(["lscpu"], capture_output=True, text=True, check=True).stdout
    except (OSError, subprocess.CalledProcessError):
        return platform.processor() or "unknown"
    for line in out.splitlines():
        if line.startswith("Model name:"):
            return line.split(":", 1)[1].strip()
    return "unknown"


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--threads", type=int, default=2)
    parser.add_argument("--runs", type=int, default=3)
    parser.add_argument("--configs", nargs="+", choices=list(CONFIGS), default=list(CONFIGS))
    parser.add_argument("--compile", action="store_true", help="genlab's compiled step")
    parser.add_argument("--out", type=Path, default=RESULTS)
    args = parser.parse_args()
    torch.set_num_threads(args.threads)
    transformers.logging.set_verbosity_error()
    transformers.utils.logging.disable_progress_bar()

    load_before = os.getloadavg()[0]
    rows = []
    for name in args.configs:
        hf, ours = build(name)
        for batch in (1, 8):
            prompts = torch.randint(
                0, VOCAB, (batch, PROMPT_LEN), generator=torch.Generator().manual_seed(batch)
            )
            with torch.inference_mode():
                theirs_tokens = hf_generate(hf, prompts)
            start = time.perf_counter()  # with --compile, the first call compiles
            ours_tokens = genlab_generate(ours, prompts, args.compile)
            first_call_s = time.perf_counter() - start
            if ours_tokens.shape != (batch, NEW_TOKENS) or not torch.equal(
                ours_tokens, theirs_tokens
            ):
                raise SystemExit(f"{name} batch {batch}: genlab and transformers tokens differ")

            def run_hf(hf=hf, prompts=prompts) -> None:
                with torch.inference_mode():
                    hf_generate(hf, prompts)

            def run_genlab(ours=ours, prompts=prompts) -> None:
                genlab_generate(ours, prompts, args.compile)

            t = median_seconds({"genlab": run_genlab, "transformers": run_hf}, args.runs)
            t_ours, t_hf = t["genlab"], t["transformers"]
            ours_tps, hf_tps = batch * NEW_TOKENS / t_ours, batch * NEW_TOKENS / t_hf
            rows.append(
                {
                    "config": name,
                    **CONFIGS[name],
                    "vocab_size": VOCAB,
                    "batch": batch,
                    "prompt_len": PROMPT_LEN,
                    "new_tokens": NEW_TOKENS,
                    "genlab_tok_s": round(ours_tps, 1),
                    "transformers_tok_s": round(hf_tps, 1),
                    "ratio": round(ours_tps / hf_tps, 2),
                    "identical_tokens": True,
                    "genlab_first_call_s": round(first_call_s, 2),
                }
            )
            print(
                f"{name:6} batch {batch}: genlab {ours_tps:8.1f} tok/s, "
                f"transformers {hf_tps:8.1f} tok/s, ratio {ours_tps / hf_tps:.2f}",
                flush=True,
            )

    header = "| config | batch | genlab tok/s | transformers tok/s | ratio |"
    print("\n" + header + "\n|---|---|---|---|---|")
    for r in rows:
        print(
            f"| {r['config']} | {r['batch']} | {r['genlab_tok_s']:.1f} | "
            f"{r['transformers_tok_s']:.1f} | {r['ratio']:.2f} |"
        )
    meta = {
        "machine": cpu_name(),
        "threads": args.threads,
        "date": date.today().isoformat(),
        "torch": torch.__version__,
        "transformers": transformers.__version__,
        "command": " ".join([".venv/bin/python", "benchmarks/decode.py", *sys.argv[1:]]),
        "compile": args.compile,
        # the machine may be shared: a load above the core count makes every figure slower
        "load_avg_1min": [round(load_before, 2), round(os.getloadavg()[0], 2)],
        "runs": f"median of {args.runs} alternating runs after 1 warm-up",
    }
    args.out.parent.mkdir(parents=True, exist_ok=True)
    args.out.write_text(json.dumps({"meta": meta, "rows": rows}, indent=2) + "\n")
    print(f"\nwrote {args.out}")


if __name__ == "__main__":
    main()
