"""GPT-2 124M on a GPU: decode tokens/s (genlab's sampler) and training tokens/s + MFU in bf16.

MFU is achieved model FLOP/s (``GPT.flops_per_token``: 6N + 12·L·d·T) over this GPU's bf16
matmul rate measured in the same run. Results are written after each measurement, so a run cut
short still reports what it measured.

    python benchmarks/gpu_gpt2.py [--out benchmarks/results/gpu_gpt2.json] [--compile]
"""

from __future__ import annotations

import argparse
import json
import time
from pathlib import Path

import torch

from genlab.methods.autoregressive.decoding import generate
from genlab.nets.gpt import GPT, GPTConfig


def sync() -> None:
    if torch.cuda.is_available():
        torch.cuda.synchronize()


def matmul_rate(device: torch.device, n: int = 8192, reps: int = 20) -> float:
    a = torch.randn(n, n, device=device, dtype=torch.bfloat16)
    b = torch.randn(n, n, device=device, dtype=torch.bfloat16)
    for _ in range(3):
        a @ b
    sync()
    t = time.perf_counter()
    for _ in range(reps):
        a @ b
    sync()
    return 2 * n**3 * reps / (time.perf_counter() - t)


def main() -> None:
    ap = argparse.ArgumentParser()
    ap.add_argument("--out", default="benchmarks/results/gpu_gpt2.json")
    ap.add_argument("--compile", action="store_true")
    ap.add_argument("--preset", default="gpt2")
    ap.add_argument("--batch", type=int, default=16)
    ap.add_argument("--steps", type=int, default=12)
    args = ap.parse_args()
    device = torch.device("cuda" if torch.cuda.is_available() else "cpu")
    torch.backends.cuda.matmul.allow_tf32 = True
    result: dict = {
        "device": torch.cuda.get_device_name() if device.type == "cuda" else "cpu",
        "torch": torch.__version__,
        "preset": args.preset,
    }
    out = Path(args.out)
    out.parent.mkdir(parents=True, exist_ok=True)

    def save() -> None:
        out.write_text(json.dumps(result, indent=2))
        print(json.dumps(result), flush=True)

    peak = matmul_rate(device, n=8192 if device.type == "cuda" else 512, reps=20)
    result["bf16_matmul_tflops"] = peak / 1e12
    save()

    torch.manual_seed(0)
    cfg = GPTConfig.preset(args.preset)
    model = GPT(cfg).to(device)
    result["params"] = model.num_params(non_embedding=False)

    # Decoding: greedy, 200 new tokens after a 32-token prompt, weights in bf16.
    dec = GPT(cfg).to(device, dtype=torch.bfloat16).eval()
    dec.load_state_dict({k: v.to(torch.bfloat16) for k, v in model.state_dict().items()})
    for batch in (1, 8):
        prompts = [list(range(1 + b, 33 + b)) for b in range(batch)]
        generate(dec, prompts, max_new_tokens=20, temperature=0)  # warm-up
        sync()
        t = time.perf_counter()
        gens = generate(dec, prompts, max_new_tokens=200, temperature=0)
        sync()
        n = sum(len(g.tokens) for g in gens)
        result[f"decode_bf16_batch{batch}_tok_s"] = n / (time.perf_counter() - t)
        save()
    del dec

    # Training: bf16 autocast, fused AdamW, batch x block tokens per step.
    net = torch.compile(model) if args.compile else model
    opt = torch.optim.AdamW(model.parameters(), lr=1e-4, fused=device.type == "cuda")
    T = cfg.block_size
    x = torch.randint(0, cfg.vocab_size, (args.batch, T), device=device)
    times = []
    for i in range(args.steps):
        sync()
        t = time.perf_counter()
        with torch.autocast(device.type, dtype=torch.bfloat16):
            _, loss = net(x, x)
        loss.backward()
        opt.step()
        opt.zero_grad(set_to_none=True)
        sync()
        if i >= 3:
            times.append(time.perf_counter() - t)
    step = sorted(times)[len(times) // 2]
    tok_s = args.batch * T / step
    key = "train_bf16_compiled" if args.compile else "train_bf16_eager"
    result[f"{key}_tok_s"] = tok_s
    result[f"{key}_mfu"] = tok_s * model.flops_per_token(T) / peak
    if device.type == "cuda":
        result[f"{key}_peak_mem_gb"] = torch.cuda.max_memory_allocated() / 2**30
    save()


if __name__ == "__main__":
    main()
