"""Training throughput and model FLOPs utilisation: genlab's GPT vs transformers' GPT-2.

For each config (4 x 256 and 6 x 384, block 256) and precision (fp32, bf16 autocast), both
models train on the same batches with AdamW in this process: forward, backward, optimizer
step. MFU is achieved model FLOP/s (6N + 12·L·d·T per token, ``GPT.flops_per_token``) over this
machine's measured matmul rate at that precision, measured here in the same run. Peak memory is
the process's peak resident set growth (CPU) or ``torch.cuda.max_memory_allocated`` (GPU).

    .venv/bin/python benchmarks/train.py [--steps 8] [--batch 8] [--json PATH]
"""

from __future__ import annotations

import argparse
import json
import platform
import resource
import statistics
import tempfile
import time
from datetime import date
from pathlib import Path

import torch
import transformers

from genlab.nets.gpt import GPT, GPTConfig
from genlab.nets.hf_gpt2 import gpt_to_hf

CONFIGS = {
    "4x256": dict(n_layer=4, n_head=4, n_embd=256),
    "6x384": dict(n_layer=6, n_head=6, n_embd=384),
}
VOCAB = 8192
BLOCK = 256


def matmul_flops(device: torch.device, dtype: torch.dtype, n: int = 1024, reps: int = 20) -> float:
    """Measured FLOP/s of an n x n matmul at ``dtype`` (the machine's practical peak)."""
    a = torch.randn(n, n, device=device, dtype=dtype)
    b = torch.randn(n, n, device=device, dtype=dtype)
    for _ in range(3):
        a @ b
    sync(device)
    times = []
    for _ in range(reps):
        t = time.perf_counter()
        a @ b
        sync(device)
        times.append(time.perf_counter() - t)
    return 2 * n**3 / min(times)


def sync(device: torch.device) -> None:
    if device.type == "cuda":
        torch.cuda.synchronize()


def peak_mb(device: torch.device) -> float:
    if device.type == "cuda":
        return torch.cuda.max_memory_allocated() / 2**20
    return resource.getrusage(resource.RUSAGE_SELF).ru_maxrss / 1024


def train_rate(model, loss_fn, batches, precision: str, device: torch.device) -> float:
    """Median tokens/s over the timed steps (the first two steps are warm-up)."""
    opt = torch.optim.AdamW(model.parameters(), lr=1e-4, foreach=True)
    model.train()
    times = []
    for i, (x, y) in enumerate(batches):
        t = time.perf_counter()
        with torch.autocast(device.type, dtype=torch.bfloat16, enabled=precision == "bf16"):
            loss = loss_fn(model, x, y)
        loss.backward()
        opt.step()
        opt.zero_grad(set_to_none=True)
        sync(device)
        if i >= 2:
            times.append(time.perf_counter() - t)
    return batches[0][0].numel() / statistics.median(times)


def genlab_loss(model, x, y):
    return model(x, y)[1]


def hf_loss(model, x, y):
    logits = model(input_ids=x).logits
    return torch.nn.functional.cross_entropy(logits.float().view(-1, logits.size(-1)), y.view(-1))


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--steps", type=int, default=8)
    ap.add_argument("--batch", type=int, default=8)
    ap.add_argument("--threads", type=int, default=torch.get_num_threads())
    ap.add_argument("--json", default="benchmarks/results/train.json")
    args = ap.parse_args()
    torch.set_num_threads(args.threads)
    device = torch.device("cuda" if torch.cuda.is_available() else "cpu")
    peaks = {
        p: matmul_flops(device, d) for p, d in (("fp32", torch.float32), ("bf16", torch.bfloat16))
    }
    rows = []
    for name, sizes in CONFIGS.items():
        cfg = GPTConfig(vocab_size=VOCAB, block_size=BLOCK, bias=True, **sizes)
        torch.manual_seed(0)
        ours = GPT(cfg).to(device)
        with tempfile.TemporaryDirectory() as tmp:
            gpt_to_hf(ours.cpu(), tmp)
            theirs = transformers.GPT2LMHeadModel.from_pretrained(tmp, attn_implementation="sdpa")
        ours, theirs = ours.to(device), theirs.to(device)
        g = torch.Generator().manual_seed(0)
        batches = [
            tuple(
                torch.randint(0, VOCAB, (args.batch, BLOCK), generator=g).to(device)
                for _ in range(2)
            )
            for _ in range(args.steps)
        ]
        flops = ours.flops_per_token(BLOCK)
        for precision in ("fp32", "bf16"):
            for lib, model, fn in (
                ("genlab", ours, genlab_loss),
                ("transformers", theirs, hf_loss),
            ):
                rate = train_rate(model, fn, batches, precision, device)
                rows.append(
                    {
                        "config": name,
                        "params_M": round(ours.num_params() / 1e6, 2),
                        "precision": precision,
                        "library": lib,
                        "tokens_per_s": round(rate),
                        "mfu": rate * flops / peaks[precision],
                        "peak_mem_mb": round(peak_mb(device)),
                    }
                )
    header = f"{'config':7} {'prec':5} {'library':13} {'tok/s':>8} {'MFU':>6} {'vs HF':>6}"
    print(header)
    for r in rows:
        peer = next(
            o
            for o in rows
            if o["config"] == r["config"]
            and o["precision"] == r["precision"]
            and o["library"] == "transformers"
        )
        own32 = next(
            o
            for o in rows
            if o["config"] == r["config"]
            and o["precision"] == "fp32"
            and o["library"] == r["library"]
        )
        r["ratio_vs_transformers"] = r["tokens_per_s"] / peer["tokens_per_s"]
        r["ratio_vs_own_fp32"] = r["tokens_per_s"] / own32["tokens_per_s"]
        print(
            f"{r['config']:7} {r['precision']:5} {r['library']:13} {r['tokens_per_s']:8d} "
            f"{r['mfu']:6.1%} {r['ratio_vs_transformers']:6.2f}"
        )
    print("matmul peak GFLOP/s: " + ", ".join(f"{k} {v / 1e9:.0f}" for k, v in peaks.items()))
    out = {
        "date": date.today().isoformat(),
        "machine": platform.processor() or platform.machine(),
        "device": str(device),
        "threads": args.threads,
        "torch": torch.__version__,
        "transformers": transformers.__version__,
        "batch": args.batch,
        "block": BLOCK,
        "matmul_flops": peaks,
        "rows": rows,
    }
    Path(args.json).parent.mkdir(parents=True, exist_ok=True)
    Path(args.json).write_text(json.dumps(out, indent=2))


if __name__ == "__main__":
    main()
