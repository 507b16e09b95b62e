"""How fast does genlab's diffusion model train and sample on this machine?

For the network of the shapes model in ``docs/diffusion.md`` (UNet ``tiny`` with channel
multipliers 1,2,2 and attention at 8x8, 1.2 M parameters, plus the 2-layer caption encoder), at
32x32 and batch 64:

- training images/s: one trainer step as ``genlab image train`` runs it (noising, forward,
  MSE, backward, AdamW), in fp32 and under bf16 autocast;
- sampling seconds per image: DDIM with classifier-free guidance (the conditional and
  unconditional passes in one batch of 2 x 64), per sampling step, and so for 50 and 1000
  steps (DDPM makes one network call per step, like DDIM).

Each figure is the median of ``--repeats`` timed runs after one warm-up; the settings alternate
so that all see the same load on a shared machine. Threads: ``--threads`` (default: all
cores torch sees). The results go to ``benchmarks/results/diffusion.json`` and, with
``--docs``, into their own section of ``docs/benchmarks.md`` (other sections are left alone).

    .venv/bin/python benchmarks/diffusion.py [--threads 2] [--repeats 5] [--docs]
"""

from __future__ import annotations

import argparse
import json
import os
import platform
import statistics
import time
from datetime import date
from pathlib import Path

import torch

from genlab.core.io import atomic_write_bytes
from genlab.methods.diffusion.guidance import guided_model_output
from genlab.methods.diffusion.loss import DiffusionLoss
from genlab.methods.diffusion.text_conditioned import DiffusionConfig, DiffusionModel
from genlab.nets.text_encoder import TextEncoderConfig
from genlab.nets.unet import UNetConfig

RESULTS = Path(__file__).parent / "results" / "diffusion.json"
DOCS = Path(__file__).parent.parent / "docs" / "benchmarks.md"
START, END = "<!-- benchmarks/diffusion.py: start -->", "<!-- benchmarks/diffusion.py: end -->"
BATCH, SIZE, CAPTION_LEN = 64, 32, 8


def build(device: torch.device) -> DiffusionModel:
    torch.manual_seed(0)
    unet = UNetConfig.preset("tiny", channel_mults=(1, 2, 2), attn_levels=(2,), context_dim=64)
    text = TextEncoderConfig(vocab_size=32, max_length=CAPTION_LEN, dim=64)
    config = DiffusionConfig(unet=unet, text=text, image_size=SIZE, prediction="v")
    return DiffusionModel(config).to(device)


def autocast(device: torch.device, precision: str):
    return torch.autocast(device.type, dtype=torch.bfloat16, enabled=precision == "bf16")


def sync(device: torch.device) -> None:
    if device.type == "cuda":
        torch.cuda.synchronize()


def train_step_timer(model: DiffusionModel, device: torch.device, precision: str):
    loss_fn = DiffusionLoss(model.noise_schedule())
    opt = torch.optim.AdamW(model.parameters(), lr=1e-4)
    g = torch.Generator().manual_seed(0)
    batch = {
        "sample": torch.rand(BATCH, 3, SIZE, SIZE, generator=g) * 2 - 1,
        "tokens": torch.randint(1, 32, (BATCH, CAPTION_LEN), generator=g),
        "token_mask": torch.ones(BATCH, CAPTION_LEN, dtype=torch.bool),
        "t": torch.randint(0, 1000, (BATCH,), generator=g),
        "noise": torch.randn(BATCH, 3, SIZE, SIZE, generator=g),
        "drop_cond": torch.rand(BATCH, generator=g) < 0.1,
    }
    batch = {k: v.to(device) for k, v in batch.items()}

    def run() -> float:
        sync(device)
        tic = time.perf_counter()
        with autocast(device, precision):
            loss, _ = loss_fn(model, batch)
        loss.backward()
        opt.step()
        opt.zero_grad(set_to_none=True)
        sync(device)
        return time.perf_counter() - tic

    return run


def sample_step_timer(model: DiffusionModel, device: torch.device, precision: str):
    """One guided sampling step for a batch of 64 (the network call dominates the step)."""
    x = torch.randn(BATCH, 3, SIZE, SIZE, device=device)
    tokens = torch.randint(1, 32, (BATCH, CAPTION_LEN), device=device)
    mask = torch.ones(BATCH, CAPTION_LEN, dtype=torch.bool, device=device)

    @torch.no_grad()
    def run() -> float:
        sync(device)
        tic = time.perf_counter()
        with autocast(device, precision):
            ctx = model.encode(tokens, mask)
            guided_model_output(model.unet, x, 500, {"context": ctx, "context_mask": mask}, 3.0)
        sync(device)
        return time.perf_counter() - tic

    return run


def measure(device: torch.device, repeats: int) -> list[dict]:
    model = build(device)
    timers = {}
    for precision in ("fp32", "bf16"):
        timers[("train", precision)] = train_step_timer(model, device, precision)
        timers[("sample", precision)] = sample_step_timer(model, device, precision)
    for timer in timers.values():  # warm-up
        timer()
    times: dict[tuple[str, str], list[float]] = {key: [] for key in timers}
    for _ in range(repeats):
        for key, timer in timers.items():
            times[key].append(timer())
    rows = []
    for (what, precision), values in times.items():
        seconds = statistics.median(values)
        row = {"what": what, "precision": precision, "seconds": seconds, "runs": values}
        if what == "train":
            row["images_per_s"] = BATCH / seconds
            row["best_images_per_s"] = BATCH / min(values)  # the least disturbed run
        else:
            row["s_per_image_per_step"] = seconds / BATCH
            row["s_per_image_ddim50"] = 50 * seconds / BATCH
            row["s_per_image_1000_steps"] = 1000 * seconds / BATCH
        rows.append(row)
    return rows


def machine(device: torch.device) -> str:
    if device.type == "cuda":
        return torch.cuda.get_device_name(device)
    return (
        f"CPU {platform.processor() or platform.machine()}, {os.cpu_count()} cores, "
        f"{torch.get_num_threads()} torch thread(s)"
    )


def docs_section(results: dict) -> str:
    lines = [
        START,
        "## Diffusion: training and sampling speed (`benchmarks/diffusion.py`)",
        "",
        "The shapes model of [diffusion.md](diffusion.md) (UNet `tiny` with channel multipliers "
        "1,2,2 and attention at 8x8, plus the caption encoder: "
        f"{results['params'] / 1e6:.2f} M parameters), 32x32 images, batch {BATCH}; "
        f"median of {results['repeats']} runs after a warm-up.",
        "",
        "| device | load average | precision | training images/s (best run) | "
        "sampling s/image per step | s/image, DDIM 50 steps | s/image, 1000 steps (DDPM) |",
        "|---|---|---|---|---|---|---|",
    ]
    for run in results["runs"]:
        by = {(r["what"], r["precision"]): r for r in run["rows"]}
        for precision in ("fp32", "bf16"):
            tr, sa = by[("train", precision)], by[("sample", precision)]
            load = "-" if run["load_average"] is None else f"{run['load_average']:.1f}"
            lines.append(
                f"| {run['machine']} | {load} | {precision} | {tr['images_per_s']:.0f} "
                f"({tr['best_images_per_s']:.0f}) | "
                f"{sa['s_per_image_per_step']:.2g} | {sa['s_per_image_ddim50']:.2g} | "
                f"{sa['s_per_image_1000_steps']:.2g} |"
            )
    lines += [
        "",
        "Sampling uses classifier-free guidance: each step runs the conditional and "
        "unconditional passes as one batch of 128. On a shared machine the figures move with "
        "the load of other processes; the end-to-end figures (wall and CPU time of the training "
        "run, measured seconds per image in the experiments) are in "
        "[diffusion.md](diffusion.md).",
        "",
        f"Command: `.venv/bin/python benchmarks/diffusion.py {results['args']}` "
        f"({results['date']}).",
        END,
    ]
    return "\n".join(lines)


def write_docs(section: str) -> None:
    """Replace this benchmark's section of docs/benchmarks.md, or append it."""
    text = DOCS.read_text() if DOCS.is_file() else "# Benchmarks\n"
    if START in text and END in text:
        head, rest = text.split(START, 1)
        text = head + section + rest.split(END, 1)[1]
    else:
        text = text.rstrip("\n") + "\n\n" + section + "\n"
    atomic_write_bytes(DOCS, text.encode())


def main() -> None:
    p = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    p.add_argument("--threads", type=int, default=None)
    p.add_argument("--repeats", type=int, default=5)
    p.add_argument("--device", default="cpu")
    p.add_argument("--docs", action="store_true", help="update docs/benchmarks.md")
    args = p.parse_args()
    if args.threads:
        torch.set_num_threads(args.threads)
    device = torch.device(args.device)
    load = os.getloadavg()[0] if device.type == "cpu" else None  # other processes' demand
    rows = measure(device, args.repeats)
    run = {"machine": machine(device), "device": device.type, "load_average": load, "rows": rows}
    previous = json.loads(RESULTS.read_text()) if RESULTS.is_file() else {"runs": []}
    runs = [r for r in previous.get("runs", []) if r["machine"] != run["machine"]]
    cli = " ".join(
        f"--{k} {v}" for k, v in (("threads", args.threads), ("device", args.device)) if v
    )
    results = {
        "date": str(date.today()),
        "params": build(torch.device("cpu")).num_params(),
        "repeats": args.repeats,
        "args": cli,
        "runs": [*runs, run],
    }
    RESULTS.parent.mkdir(exist_ok=True)
    atomic_write_bytes(RESULTS, (json.dumps(results, indent=2) + "\n").encode())
    print(f"{run['machine']}")
    print(f"{'what':8} {'precision':9} {'median s':>9}  rate")
    for r in rows:
        rate = (
            f"{r['images_per_s']:.1f} images/s"
            if r["what"] == "train"
            else f"{r['s_per_image_ddim50']:.3f} s/image (DDIM 50, guided)"
        )
        print(f"{r['what']:8} {r['precision']:9} {r['seconds']:9.3f}  {rate}")
    if args.docs:
        write_docs(docs_section(results))


if __name__ == "__main__":
    main()
