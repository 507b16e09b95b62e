"""Autoregressive against non-autoregressive translation: quality and latency per sentence.

The claim (Ghazvininejad et al., 2019, "Mask-Predict", tables 1 and 3): one-shot
non-autoregressive decoding (Gu et al., 2018) loses quality because the words it writes at once
do not agree (the same word twice, one missing); mask-predict recovers most of it in a few
iterations, at a fraction of the autoregressive decoder's latency, and most of all when trained
on an autoregressive teacher's outputs (sequence-level distillation, Kim & Rush, 2016). The
experiment trains a GPT with the source as prefix, a CMLM, and a CMLM distilled from that GPT
on TinyWorld's long reordered cipher sentences, then decodes the test split with AR greedy, AR
beam search, and mask-predict at each iteration count: BLEU (sacreBLEU), exact match, the share
of outputs with a word repeated, and milliseconds per sentence at batch 1 and batch 32.

    genlab experiment ar-vs-nar --device cuda

Goals (issue 18): mask-predict at 4 iterations within 1 BLEU of AR greedy and at least 3x
faster at batch 1; one iteration shows the quality drop, whatever it is.
"""

from __future__ import annotations

import time
from collections.abc import Sequence
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import torch

from genlab.core.device import pick_device
from genlab.core.errors import GenlabError
from genlab.core.io import atomic_write_json
from genlab.core.sweep import Metrics, Point, markdown_table, point_dir, run_sweep
from genlab.core.train_config import TrainConfig
from genlab.data.tinyworld import World
from genlab.data.tinyworld.translation import TASKS, translation_pairs
from genlab.recipes.experiments.report import (
    DOCS_DIR,
    SWEEPS_DIR,
    new_figure,
    save_figure,
    write_page,
)
from genlab.recipes.nar import NARConfig, Translator, open_translator, score, train_nar

NAME = "ar_vs_nar"
TRAIN_POINT = "genlab.recipes.experiments.ar_vs_nar:train_point"
RUN = "run"  # the run folder inside a sweep point's folder


@dataclass
class ARvsNARConfig:
    """The task, the three training runs' shared budget, and the decoding settings measured."""

    task: str = "long_cipher_to"  # a TinyWorld translation task
    n_train: int = 50_000  # training pairs
    n_test: int = 500  # test sentences scored
    n_latency: int = 100  # of them, translated one at a time for the batch-1 latency
    max_steps: int = 6000  # each run's optimizer steps
    batch_size: int = 128  # each run's pairs per step
    lr: float = 1e-3  # each run's peak learning rate
    n_layer: int = 3  # CMLM: encoder and decoder layers each; the GPT has twice as many
    n_embd: int = 256
    n_head: int = 4
    iterations: tuple[int, ...] = (1, 2, 4, 10)  # mask-predict passes, a row each
    length_beam: int = 3  # mask-predict's length candidates
    beam: int = 4  # the AR beam search's width
    distill: bool = True  # also train a CMLM on the AR run's translations
    seed: int = 0  # decides the data, the initial weights and the masks
    device: str = "auto"  # where training and timing run
    out_dir: str = str(DOCS_DIR)  # where the page and its figure go
    sweep_dir: str = str(SWEEPS_DIR)  # the trained runs, reused on a rerun
    parallel: int = 1  # AR and CMLM trained at once (timing always runs alone)

    def validate(self) -> None:
        checks = {
            "task": self.task in TASKS,
            "n_test": self.n_test >= 1,
            "n_latency": 1 <= self.n_latency <= self.n_test,
            "iterations": min(self.iterations, default=0) >= 1,
            "beam": self.beam >= 2,
            "parallel": self.parallel >= 1,
        }
        for name, ok in checks.items():
            if not ok:
                raise GenlabError(f"invalid experiment setting {name}={getattr(self, name)!r}")

    def budget(self) -> Point:
        """What every training run shares (the sweep's fixed settings)."""
        keys = ("task", "n_train", "max_steps", "batch_size", "lr", "n_layer", "n_embd", "n_head")
        return {key: getattr(self, key) for key in (*keys, "seed", "device")}


def train_point(settings: Point, run_dir: Path) -> Metrics:
    """One training run of the sweep: ``model`` (ar | cmlm), ``teacher`` (an AR run or none)."""
    cfg = NARConfig(
        out=str(run_dir / RUN),
        model=settings["model"],
        task=settings["task"],
        n_train=settings["n_train"],
        n_layer=settings["n_layer"],
        n_head=settings["n_head"],
        n_embd=settings["n_embd"],
        distill=settings.get("teacher"),
        train=TrainConfig(
            max_steps=settings["max_steps"],
            batch_size=settings["batch_size"],
            lr=settings["lr"],
            warmup_steps=min(200, settings["max_steps"] // 10),
            eval_every=max(settings["max_steps"] // 10, 1),
            checkpoint_every=max(settings["max_steps"] // 4, 1),
            weight_decay=0.01,
            seed=settings["seed"],
            device=settings["device"],
            progress=False,
            tensorboard=False,
        ),
    )
    metrics = train_nar(cfg)
    return {k: v for k, v in metrics.items() if k.startswith("val_") or k in ("step", "params")}


def train_runs(cfg: ARvsNARConfig) -> dict[str, Path]:
    """The AR and CMLM runs (and the distilled CMLM), trained unless the sweep has them."""
    out, budget = Path(cfg.sweep_dir) / NAME, cfg.budget()
    points = [{"model": "ar"}, {"model": "cmlm"}]
    run_sweep(TRAIN_POINT, points, out, budget, cfg.parallel)
    runs = {p["model"]: point_dir(out, TRAIN_POINT, p, budget) / RUN for p in points}
    if cfg.distill:
        taught = {"model": "cmlm", "teacher": str(runs["ar"])}
        run_sweep(TRAIN_POINT, [taught], out, budget)
        runs["cmlm-kd"] = point_dir(out, TRAIN_POINT, taught, budget) / RUN
    return runs


def _timed(
    translator: Translator, texts: Sequence[str], batch: int, **decoding: int
) -> tuple[list[str], float]:
    """The translations and milliseconds per sentence, at ``batch`` sentences per call."""
    translator.translate(texts[:2], batch_size=batch, **decoding)  # warm up kernels and caches
    if torch.cuda.is_available():
        torch.cuda.synchronize()
    start = time.perf_counter()
    out = translator.translate(texts, batch_size=batch, **decoding)
    return out, 1000 * (time.perf_counter() - start) / len(texts)


def measure(cfg: ARvsNARConfig, runs: dict[str, Path]) -> list[dict[str, Any]]:
    """One row per decoding setting: test BLEU, exact match, repeats, ms per sentence."""
    device = pick_device(cfg.device)
    test = translation_pairs(World(0), cfg.task, cfg.n_test, "test", seed=cfg.seed)
    sources = [p.source for p in test]
    settings: list[tuple[str, str, dict[str, int]]] = [
        ("AR greedy", "ar", {"beam": 1}),
        (f"AR beam {cfg.beam}", "ar", {"beam": cfg.beam}),
    ]
    for run in [r for r in ("cmlm", "cmlm-kd") if r in runs]:
        kd = " + distillation" if run == "cmlm-kd" else ""
        for n in cfg.iterations:
            label = f"{'NAR, 1 iteration' if n == 1 else f'mask-predict, {n} iterations'}{kd}"
            settings.append((label, run, {"iterations": n, "length_beam": cfg.length_beam}))
    rows = []
    with torch.inference_mode():
        translators = {name: open_translator(path, device) for name, path in runs.items()}
        for label, run, decoding in settings:
            translator = translators[run]
            hyps, ms_32 = _timed(translator, sources, 32, **decoding)
            _, ms_1 = _timed(translator, sources[: cfg.n_latency], 1, **decoding)
            rows.append(
                {"decoding": label, "run": run, **decoding, **score(hyps, test)}
                | {"ms_batch1": ms_1, "ms_batch32": ms_32, "examples": hyps[:3]}
            )
    return rows


def run_experiment(cfg: ARvsNARConfig, command: str = "") -> list[dict[str, Any]]:
    """Train (or reuse) the runs, measure every decoding setting, write the page."""
    cfg.validate()
    runs = train_runs(cfg)
    rows = measure(cfg, runs)
    out_dir = Path(cfg.out_dir)
    out_dir.mkdir(parents=True, exist_ok=True)
    atomic_write_json(out_dir / f"{NAME}.json", rows)

    greedy = rows[0]
    fig = new_figure(7, 4.2)
    ax = fig.subplots()
    for row in rows:
        ax.plot(row["ms_batch1"], row["bleu"], "o", color="C0" if row["run"] == "ar" else "C1")
        ax.annotate(row["decoding"], (row["ms_batch1"], row["bleu"]), fontsize=7)
    ax.set(xscale="log", xlabel="ms per sentence (batch 1)", ylabel="test BLEU")
    ax.grid(alpha=0.3)
    fig.suptitle(f"AR vs mask-predict on {cfg.task} ({cfg.n_test} test sentences)")
    save_figure(fig, out_dir / f"{NAME}.png")

    headers = ["decoding", "BLEU", "exact %", "repeated word %", "ms (batch 1)"]
    headers += ["ms (batch 32)", "speed-up vs AR greedy (batch 1)"]
    body = [
        [r["decoding"], r["bleu"], 100 * r["exact"], 100 * r["repeats"], r["ms_batch1"]]
        + [r["ms_batch32"], greedy["ms_batch1"] / r["ms_batch1"]]
        for r in rows
    ]
    findings = []
    for run in ("cmlm", "cmlm-kd"):
        four = next((r for r in rows if r["run"] == run and r.get("iterations") == 4), None)
        one = next((r for r in rows if r["run"] == run and r.get("iterations") == 1), None)
        if four is None or one is None:
            continue
        gap = greedy["bleu"] - four["bleu"]
        speed = greedy["ms_batch1"] / four["ms_batch1"]
        findings.append(
            f"{four['decoding']}: BLEU {four['bleu']:.1f} against AR greedy's "
            f"{greedy['bleu']:.1f} (goal: at most 1 below: {'met' if gap <= 1 else 'not met'}), "
            f"{speed:.1f}x AR greedy's speed at batch 1 (goal: 3x: "
            f"{'met' if speed >= 3 else 'not met'}); one iteration: BLEU {one['bleu']:.1f}, "
            f"{100 * one['repeats']:.0f}% of outputs repeat a word."
        )
    runs_text = ", ".join(f"{k}: `{v}`" for k, v in runs.items())
    write_page(
        out_dir / f"{NAME}.md",
        "Autoregressive vs non-autoregressive translation",
        "How much quality does writing every word at once cost, how much do mask-predict's "
        "iterations and distillation win back, and how much faster is it per sentence?",
        markdown_table(headers, body),
        f"{NAME}.png",
        [
            f"task `{cfg.task}`: {cfg.n_train} training pairs, {cfg.n_test} test sentences "
            f"(batch-1 latency over the first {cfg.n_latency})",
            f"each run {cfg.max_steps} steps of {cfg.batch_size} pairs, lr {cfg.lr}; CMLM "
            f"{cfg.n_layer}+{cfg.n_layer} layers, GPT {2 * cfg.n_layer} layers, width "
            f"{cfg.n_embd}; mask-predict with {cfg.length_beam} length candidates; beam search "
            "decodes one sentence at a time at either batch size",
            f"runs: {runs_text}",
        ],
        findings,
        command=command,
    )
    return rows
