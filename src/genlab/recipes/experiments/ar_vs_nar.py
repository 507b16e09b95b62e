"""Autoregressive against non-autoregressive translation: quality and latency per sentence.

The claim (Ghazvininejad et al., 2019, "Mask-Predict", tables 1 and 3): one-shot
non-autoregressive decoding (Gu et al., 2018) loses quality because the words it writes at once
do not agree (the same word twice, one missing); mask-predict recovers most of it in a few
iterations, at a fraction of the autoregressive decoder's latency, and most of all when trained
on an autoregressive teacher's outputs (sequence-level distillation, Kim & Rush, 2016). The
experiment trains a GPT with the source as prefix, a CMLM, and a CMLM distilled from that GPT
on TinyWorld's long reordered cipher sentences, then decodes the test split with AR greedy, AR
beam search, and mask-predict at each iteration count: BLEU (sacreBLEU), exact match, the share
of outputs with a word repeated, and milliseconds per sentence at batch 1 and batch 32. The
hybrid rows let the AR model write the first k words and mask-predict (the distilled CMLM when
there is one) fill in the rest. BLEU comes with a 95% bootstrap interval over the test
sentences, and its difference to AR greedy with a paired one. How many length candidates
mask-predict weighs is chosen on the validation split.

    genlab experiment ar-vs-nar --device cuda
    genlab experiment ar-vs-nar --device cpu --n-train 20000 --max-steps 1200 --batch-size 64 \
        --lr 2e-3 --n-layer 2 --n-embd 96                    # one CPU thread, about 40 minutes

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
from genlab.core.errors import refuse_invalid
from genlab.core.io import atomic_write_json
from genlab.core.sweep import Metrics, Point, markdown_table, point_dir, run_sweep
from genlab.core.train_config import TrainConfig
from genlab.data.tinyworld import World
from genlab.data.tinyworld.translation import TASKS, translation_pairs
from genlab.metrics.translation import bleu_bootstrap
from genlab.nets.gpt import GPT
from genlab.recipes.experiments.report import (
    DOCS_DIR,
    SWEEPS_DIR,
    load_average,
    new_figure,
    save_figure,
    write_page,
)
from genlab.recipes.nar import (
    AR_POSITIONS,
    Hybrid,
    NARConfig,
    Translator,
    open_translator,
    score,
    train_nar,
)

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
    ar_pos: str = "rope"  # the AR GPT's positions: rope (rotary) | learned (GPT-2)
    iterations: tuple[int, ...] = (1, 2, 4, 10)  # mask-predict passes, a row each
    # mask-predict's length candidates: each CMLM run uses the count with the best validation
    # BLEU at hybrid_iterations passes (ties to the fewer, the faster), never read off the test
    length_beam: tuple[int, ...] = (1, 3, 5)
    n_valid: int = 500  # validation sentences that choose the length candidates
    beam: int = 4  # the AR beam search's width
    distill: bool = True  # also train a CMLM on the AR run's translations
    hybrid_prefix: tuple[int, ...] = (2, 4)  # hybrid rows: words the AR model writes first
    hybrid_iterations: int = 4  # the hybrid's mask-predict passes after the prefix
    n_resamples: int = 1000  # bootstrap resamples of the test sentences for BLEU's intervals
    seed: int = 0  # decides the data, the initial weights and the masks
    device: str = "auto"  # where training and timing run
    out_dir: str = str(DOCS_DIR)  # where the page and its figure go
    sweep_dir: str = str(SWEEPS_DIR)  # the trained runs, reused on a rerun
    parallel: int = 1  # AR and CMLM trained at once (timing always runs alone)

    def validate(self) -> None:
        checks = {
            "task": self.task in TASKS,
            "ar_pos": self.ar_pos in AR_POSITIONS,
            "n_test": self.n_test >= 1,
            "n_valid": self.n_valid >= 1,
            "length_beam": min(self.length_beam, default=0) >= 1,
            "n_latency": 1 <= self.n_latency <= self.n_test,
            "iterations": min(self.iterations, default=0) >= 1,
            "beam": self.beam >= 2,
            "hybrid_prefix": min(self.hybrid_prefix, default=1) >= 1,
            "hybrid_iterations": self.hybrid_iterations >= 1,
            "n_resamples": self.n_resamples >= 10,
            "parallel": self.parallel >= 1,
        }
        refuse_invalid(self, checks, "experiment setting")

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
        ar_pos=settings.get("ar_pos", "learned"),
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
    # ar_pos names the AR point only when it is not the default: runs trained before the option
    # existed keep their folders (and are reused)
    ar: Point = {"model": "ar"} | ({"ar_pos": cfg.ar_pos} if cfg.ar_pos != "learned" else {})
    points = [ar, {"model": "cmlm"}]
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


def choose_length_beams(
    cfg: ARvsNARConfig, translators: dict[str, Translator]
) -> dict[str, dict[int, float]]:
    """Each CMLM run's validation BLEU for every length-candidate count in ``cfg.length_beam``
    (at the hybrid's number of passes): the page's rows use each run's best."""
    valid = translation_pairs(World(0), cfg.task, cfg.n_valid, "validation", seed=cfg.seed)
    sources = [p.source for p in valid]
    return {
        run: {
            k: score(
                translators[run].translate(
                    sources, iterations=cfg.hybrid_iterations, length_beam=k, batch_size=32
                ),
                valid,
            )["bleu"]
            for k in cfg.length_beam
        }
        for run in ("cmlm", "cmlm-kd")
        if run in translators
    }


def best_length_beam(bleus: dict[int, float]) -> int:
    """The count with the highest BLEU; on a tie the fewest candidates (the fastest)."""
    return max(sorted(bleus), key=lambda k: bleus[k])


def measure(
    cfg: ARvsNARConfig, runs: dict[str, Path]
) -> tuple[list[dict[str, Any]], dict[str, dict[int, float]]]:
    """One row per decoding setting (test BLEU, exact match, repeats, ms per sentence), and the
    validation BLEUs that chose each CMLM run's length candidates."""
    device = pick_device(cfg.device)
    test = translation_pairs(World(0), cfg.task, cfg.n_test, "test", seed=cfg.seed)
    sources = [p.source for p in test]
    filler = "cmlm-kd" if "cmlm-kd" in runs else "cmlm"
    rows: list[dict[str, Any]] = []
    references = [p.target for p in test]
    with torch.inference_mode():
        translators = {name: open_translator(path, device) for name, path in runs.items()}
        valid_bleus = choose_length_beams(cfg, translators)
        chosen = {run: best_length_beam(bleus) for run, bleus in valid_bleus.items()}
        for k in cfg.hybrid_prefix:
            nar, ar = translators[filler], translators["ar"]
            assert isinstance(ar.model, GPT)
            translators[f"hybrid-{k}"] = Hybrid(nar.model, nar.vocab, ar.model, k)
        settings: list[tuple[str, str, dict[str, int]]] = [
            ("AR greedy", "ar", {"beam": 1}),
            (f"AR beam {cfg.beam}", "ar", {"beam": cfg.beam}),
        ]
        for run in chosen:
            kd = " + distillation" if run == "cmlm-kd" else ""
            for n in cfg.iterations:
                label = f"{'NAR, 1 iteration' if n == 1 else f'mask-predict, {n} iterations'}{kd}"
                settings.append((label, run, {"iterations": n, "length_beam": chosen[run]}))
        for k in cfg.hybrid_prefix:
            words = f"{k} word" + ("s" if k != 1 else "")
            label = f"hybrid: AR writes {words}, mask-predict {cfg.hybrid_iterations} fills in"
            decoding = {"iterations": cfg.hybrid_iterations, "length_beam": chosen[filler]}
            settings.append((label, f"hybrid-{k}", decoding | {"prefix_tokens": k}))
        for label, run, decoding in settings:
            translator = translators[run]
            options = {k: v for k, v in decoding.items() if k != "prefix_tokens"}
            hyps, ms_32 = _timed(translator, sources, 32, **options)
            _, ms_1 = _timed(translator, sources[: cfg.n_latency], 1, **options)
            greedy = rows[0]["hypotheses"] if rows else None
            own, gap = bleu_bootstrap(hyps, references, greedy, cfg.n_resamples, seed=cfg.seed)
            rows.append(
                {"decoding": label, "run": run, **decoding, **score(hyps, test)}
                | {"bleu_low": own.low, "bleu_high": own.high}
                | ({"gap": gap.mean, "gap_low": gap.low, "gap_high": gap.high} if gap else {})
                | {"ms_batch1": ms_1, "ms_batch32": ms_32, "examples": hyps[:3]}
                | {"hypotheses": hyps}
            )
    return rows, valid_bleus


def _short(row: dict[str, Any]) -> str:
    """A row's label in the figure: its decoding settings without the family's name."""
    if row["run"] == "ar":
        return "greedy" if row["beam"] == 1 else f"beam {row['beam']}"
    if "prefix_tokens" in row:
        return f"k={row['prefix_tokens']}"
    return f"{row['iterations']} it."


def _public(row: dict[str, Any]) -> dict[str, Any]:
    return {k: v for k, v in row.items() if k != "hypotheses"}


def run_experiment(cfg: ARvsNARConfig, command: str = "") -> list[dict[str, Any]]:
    """Train (or reuse) the runs, measure every decoding setting, write the page. The page
    records the machine's load before and after: timings on a shared machine need it."""
    cfg.validate()
    load_before, start = load_average(), time.perf_counter()
    runs = train_runs(cfg)
    rows, valid_bleus = measure(cfg, runs)
    out_dir = Path(cfg.out_dir)
    out_dir.mkdir(parents=True, exist_ok=True)
    report = {"rows": [_public(r) for r in rows], "length_beam_valid_bleu": valid_bleus}
    atomic_write_json(out_dir / f"{NAME}.json", report)

    greedy = rows[0]
    filler = "cmlm-kd" if "cmlm-kd" in runs else "cmlm"
    fig = new_figure(7, 4.2)
    ax = fig.subplots()
    families = {"ar": "AR", "cmlm": "mask-predict", "cmlm-kd": "mask-predict + distillation"}
    seen: set[str] = set()
    for row in rows:
        family = families.get(row["run"], f"hybrid (AR prefix, {filler} fills in)")
        color = f"C{[*families.values(), family].index(family)}"
        low, high = row["bleu"] - row["bleu_low"], row["bleu_high"] - row["bleu"]
        ax.errorbar(
            row["ms_batch1"], row["bleu"], yerr=[[low], [high]], fmt="o", color=color,
            label=None if family in seen else family,
        )  # fmt: skip
        seen.add(family)
        ax.annotate(
            _short(row), (row["ms_batch1"], row["bleu"]), fontsize=7, color=color,
            xytext=(4, 4), textcoords="offset points",
        )  # fmt: skip
    ax.legend(fontsize=7)
    ax.set(xscale="log", xlabel="ms per sentence (batch 1)", ylabel="test BLEU (95% interval)")
    ax.grid(alpha=0.3)
    fig.suptitle(f"AR vs mask-predict on {cfg.task} ({cfg.n_test} test sentences)")
    save_figure(fig, out_dir / f"{NAME}.png")

    headers = ["decoding", "BLEU [95%]", "BLEU - AR greedy [95%]", "exact %", "repeated word %"]
    headers += ["ms (batch 1)", "ms (batch 32)", "speed-up vs AR greedy (batch 1)"]
    body = [
        [f"{r['decoding']}", f"{r['bleu']:.1f} [{r['bleu_low']:.1f}, {r['bleu_high']:.1f}]"]
        + [f"{r['gap']:+.1f} [{r['gap_low']:+.1f}, {r['gap_high']:+.1f}]" if "gap" in r else "-"]
        + [100 * r["exact"], 100 * r["repeats"], r["ms_batch1"], r["ms_batch32"]]
        + [greedy["ms_batch1"] / r["ms_batch1"]]
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
            f"{greedy['bleu']:.1f} (goal: at most 1 below: {'met' if gap <= 1 else 'not met'}; "
            f"the difference's 95% interval [{four['gap_low']:+.1f}, {four['gap_high']:+.1f}]), "
            f"{speed:.1f}x AR greedy's speed at batch 1 (goal: 3x: "
            f"{'met' if speed >= 3 else 'not met'}); one iteration: BLEU {one['bleu']:.1f}, "
            f"{100 * one['repeats']:.0f}% of outputs repeat a word."
        )
    for row in rows:
        if row["run"].startswith("hybrid"):
            findings.append(
                f"{row['decoding']}: BLEU {row['bleu']:.1f} ({row['gap']:+.1f} against AR "
                f"greedy, [{row['gap_low']:+.1f}, {row['gap_high']:+.1f}]), "
                f"{greedy['ms_batch1'] / row['ms_batch1']:.1f}x AR greedy's speed at batch 1."
            )
    runs_text = ", ".join(f"{k}: `{v}`" for k, v in runs.items())
    choices = "; ".join(
        f"{run}: {best_length_beam(bleus)} ("
        + ", ".join(f"{k}: {bleu:.1f}" for k, bleu in bleus.items())
        + ")"
        for run, bleus in valid_bleus.items()
    )
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
            f"{cfg.n_layer}+{cfg.n_layer} layers, GPT {2 * cfg.n_layer} layers"
            f"{' (rotary positions)' if cfg.ar_pos == 'rope' else ''}, width "
            f"{cfg.n_embd}; beam search decodes one sentence at a time at either batch size",
            f"mask-predict's length candidates chosen on {cfg.n_valid} validation sentences "
            f"at {cfg.hybrid_iterations} passes (validation BLEU per count): {choices}",
            f"hybrid: the AR run writes the first {', '.join(map(str, cfg.hybrid_prefix))} "
            f"words (greedy), the {filler} run fills in with {cfg.hybrid_iterations} "
            "mask-predict passes",
            f"BLEU intervals: percentile bootstrap over the test sentences ({cfg.n_resamples} "
            "resamples; the difference to AR greedy on the same resamples)",
            f"runs: {runs_text}",
            f"machine load (1/5/15-minute averages) before: {load_before}, after: {load_average()}; "
            f"{(time.perf_counter() - start) / 60:.0f} minutes in all (trained runs are reused "
            "on a rerun)",
        ],
        findings,
        command=command,
    )
    return rows
