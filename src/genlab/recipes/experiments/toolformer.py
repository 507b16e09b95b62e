"""Do tools pay off only above some size? Toolformer on every rung of the ladder.

The claim (Schick et al., 2023, "Toolformer: Language Models Can Teach Themselves to Use
Tools", section 4.4): models learn to call a calculator, a calendar and a lookup from their own
annotations, and the calls pay off only from a size on (below it the model cannot yet propose
useful calls, nor use their results). Each rung of the ladder runs ``genlab toolformer``
(annotator, annotation and filter, fine-tuning on its own kept calls), then answers held-out
test questions three ways: the pretrained rung alone, the Toolformer model with calls masked
(the same weights, no tools) and with its calls executed.

    genlab experiment toolformer
"""

from __future__ import annotations

import json
import time
from collections.abc import Mapping, Sequence
from dataclasses import asdict, dataclass, field, replace
from pathlib import Path

from genlab.core.device import pick_device
from genlab.core.errors import GenlabError
from genlab.core.sweep import Metrics, Point, markdown_table, point_dir, run_sweep
from genlab.data.tinyworld import World
from genlab.data.tinyworld.families.base import Example
from genlab.data.tinyworld.tool_uses import tool_questions
from genlab.methods.autoregressive.checkpoint import load_gpt
from genlab.prompting.layout import question
from genlab.recipes.experiments.ladder import LadderConfig, ladder_runs
from genlab.recipes.experiments.prompting_ladder import (
    GROUP,
    Row,
    gap_finding,
    interval,
    interval_text,
    ladder_table,
    load_note,
    save_rows,
)
from genlab.recipes.experiments.report import DOCS_DIR, load_average, write_page
from genlab.recipes.toolformer import SUMMARY, TAUS, ToolformerConfig, toolformer
from genlab.tools.generate import generate_with_tools
from genlab.tools.reference_calls import reference_call
from genlab.tools.toolbox import toolbox

NAME = "toolformer"
TRAIN_POINT = "genlab.recipes.experiments.toolformer:train_point"
ARMS = ("pretrained", "Toolformer, no tools", "Toolformer + tools")
# question group -> (tool, digits of every operand or None)
GROUPS = {
    "arithmetic (3-digit)": ("calculator", 3),
    "dates": ("calendar", None),
    "facts": ("lookup", None),
}


@dataclass
class ToolformerExperimentConfig:
    """The test questions, the Toolformer settings every rung shares, and the ladder."""

    n_per_group: int = 150  # questions per group (the world has 189 test facts)
    split: str = "test"  # the questions asked: test (the report) or validation (tuning)
    max_new_tokens: int = 48
    call_top_k: int = 10  # a call opens when its token is among the k likeliest (the paper's k)
    device: str = "auto"  # where the models answer
    out_dir: str = str(DOCS_DIR)
    toolformer: ToolformerConfig = field(default_factory=ToolformerConfig)
    ladder: LadderConfig = field(default_factory=LadderConfig)


def train_point(settings: Point, run_dir: Path) -> Metrics:
    """One rung's Toolformer run (a sweep point): ``settings`` hold the base and the config."""
    fields = dict(settings["toolformer"])
    cfg = ToolformerConfig(**{k: v for k, v in fields.items() if k not in ("annotate", "train")})
    cfg = replace(cfg, base=settings["base"], out=str(run_dir / "run"))
    cfg.annotate = type(cfg.annotate)(**fields["annotate"])
    cfg.train = type(cfg.train)(**fields["train"])
    result = toolformer(cfg)
    return {k: v for k, v in result.items() if isinstance(v, (int, float))}


def toolformer_runs(cfg: ToolformerExperimentConfig, bases: Mapping[str, Path]) -> dict[str, Path]:
    """Each rung's Toolformer run folder, trained unless the sweep has it."""
    out = Path(cfg.ladder.sweep_dir) / NAME
    fixed = {"toolformer": asdict(cfg.toolformer) | {"base": "", "out": ""}}
    points: list[Point] = [{"rung": r, "base": str(b)} for r, b in bases.items()]
    run_sweep(TRAIN_POINT, points, out, fixed, cfg.ladder.parallel)
    return {p["rung"]: point_dir(out, TRAIN_POINT, p, fixed) / "run" for p in points}


def questions(cfg: ToolformerExperimentConfig) -> dict[str, list[Example]]:
    """Each group's questions of ``cfg.split`` (seed 0; no run trained on them)."""
    if cfg.split not in ("test", "validation"):
        raise GenlabError(f"--split takes test or validation, not {cfg.split!r}")
    world = World(cfg.toolformer.world)
    return {
        group: tool_questions(world, tool, cfg.n_per_group, cfg.split, 0, digits)
        for group, (tool, digits) in GROUPS.items()
    }


def ask(
    run: Path,
    rung: str,
    arm: str,
    asked: Mapping[str, list[Example]],
    cfg: ToolformerExperimentConfig,
) -> list[Row]:
    """One model under one arm, a row per question group."""
    model, tokenizer = load_gpt(run, device=pick_device(cfg.device))
    params = sum(p.numel() for p in model.parameters())
    tools = toolbox(cfg.toolformer.tool_names(), world=World(cfg.toolformer.world))
    rows = []
    for group, examples in asked.items():
        start = time.perf_counter()
        prompts = [[tokenizer.bos_id, *tokenizer.encode(question(e.prompt))] for e in examples]
        answers = []
        for i in range(0, len(prompts), 64):
            answers += generate_with_tools(
                model,
                tokenizer,
                prompts[i : i + 64],
                tools if arm == ARMS[2] else None,
                max_new_tokens=cfg.max_new_tokens,
                stop=("\n",),
                call_top_k=cfg.call_top_k,
            )
        correct = [e.checked(a.text).correct for e, a in zip(examples, answers, strict=True)]
        calls = [c for a in answers for c in a.calls]
        right = [
            any(r == e.answer for _, r in a.calls) for e, a in zip(examples, answers, strict=True)
        ]
        score = interval(correct)
        rows.append(
            {
                "rung": rung,
                "params": params,
                "arm": arm,
                GROUP: group,
                "accuracy": score[0],
                "low": score[1],
                "high": score[2],
                "n": len(examples),
                "correct": correct,
                "families": {group: score[0]},
                "calls_per_answer": len(calls) / len(answers),
                "executed": sum(not r.startswith("error:") for _, r in calls) / max(len(calls), 1),
                "right_result": sum(right) / len(right),
                "seconds": time.perf_counter() - start,
                "examples": [
                    {"prompt": e.prompt, "reference": e.answer, "answer": a.text, "calls": a.calls}
                    for e, a in list(zip(examples, answers, strict=True))[:3]
                ],
                "reference_calls": [reference_call(e) for e in examples[:3]],
            }
        )
    return rows


def calls_table(rows: Sequence[Row]) -> str:
    """The with-tools arm: calls per answer, share executed, share whose result is the answer."""
    body = [
        [
            r["rung"],
            r[GROUP],
            f"{r['calls_per_answer']:.2f}",
            f"{100 * r['executed']:.0f}",
            f"{100 * r['right_result']:.0f}",
        ]
        for r in rows
        if r["arm"] == ARMS[2]
    ]
    return markdown_table(
        ["model", "questions", "calls per answer", "executed %", "a result is the answer %"], body
    )


def keep_table(runs: Mapping[str, Path]) -> str:
    """The filter: calls proposed, executed and kept per tool, and the keep rate against tau_f."""
    body = []
    for rung, run in runs.items():
        s = json.loads((run / SUMMARY).read_text())
        tools = "; ".join(
            f"{t} {c.get('proposed', 0)}/{c.get('executed', 0)}/{c.get('kept', 0)}"
            for t, c in s["per_tool"].items()
        )
        body.append([rung, tools, *(f"{100 * s['keep_rate'][str(t)]:.0f}" for t in TAUS)])
    return markdown_table(
        ["model", "proposed/executed/kept", *(f"keep % at tau_f={t}" for t in TAUS)], body
    )


def run_experiment(cfg: ToolformerExperimentConfig, command: str = "") -> list[Row]:
    """Train (or reuse) the ladder and each rung's Toolformer run; ask; write the page."""
    before, start = load_average(), time.perf_counter()
    bases = ladder_runs(cfg.ladder)
    runs = toolformer_runs(cfg, bases)
    asked = questions(cfg)
    rows = []
    for rung in bases:
        rows += ask(bases[rung], rung, ARMS[0], asked, cfg)
        rows += ask(runs[rung], rung, ARMS[1], asked, cfg)
        rows += ask(runs[rung], rung, ARMS[2], asked, cfg)
    out = Path(cfg.out_dir)
    arithmetic = [r for r in rows if r[GROUP] == next(iter(GROUPS))]
    save_rows(out, NAME, rows, ARMS, f"3-digit arithmetic, {cfg.split} split", plotted=arithmetic)
    tables = []
    for group in GROUPS:
        own = [r for r in rows if r[GROUP] == group]
        tables += [f"### {group}", "", ladder_table(own, ARMS, [(ARMS[2], ARMS[1])]), ""]
    tables += ["### Calls made with tools", "", calls_table(rows), ""]
    tables += ["### The filter", "", keep_table(runs), ""]
    largest = list(bases)[-1]
    top = {r["arm"]: r for r in arithmetic if r["rung"] == largest}
    met = top[ARMS[2]]["accuracy"] >= 0.9 and top[ARMS[1]]["accuracy"] < 0.5
    findings = [
        gap_finding(
            [r for r in rows if r[GROUP] == group],
            ARMS[2],
            ARMS[1],
            f"{group}; the claim: the gain appears only from some size on",
        )
        for group in GROUPS
    ]
    findings.append(
        f"goal at the largest rung ({largest}), 3-digit arithmetic: >= 90% with the calculator, "
        f"< 50% without: {interval_text([top[ARMS[2]][k] for k in ('accuracy', 'low', 'high')])}"
        f" against {interval_text([top[ARMS[1]][k] for k in ('accuracy', 'low', 'high')])}: "
        + ("met" if met else "not met")
    )
    tf = cfg.toolformer
    write_page(
        out / f"{NAME}.md",
        "Toolformer: do tools pay off only above some size?",
        "Each rung annotates TinyWorld text with its own tool calls, keeps those whose result "
        "lowers the loss of what follows, and is fine-tuned on them. Does it then answer "
        "held-out arithmetic, date and fact questions better with its tools than without, and "
        "from which size on?",
        "\n".join(tables),
        f"{NAME}.png",
        [
            f"{cfg.n_per_group} {cfg.split} questions per group; arithmetic: addition and subtraction "
            "with 3-digit operands; greedy answers, one line",
            f"tools: {tf.tools}; annotated: {tf.questions} solved train questions per tool and "
            f"{tf.prose} paragraphs of tool prose; {tf.demonstrations} demonstrations per tool "
            f"teach the annotator the syntax ({tf.annotator_steps} steps)",
            f"filter: top {tf.annotate.top_k} positions with p >= {tf.annotate.tau_s}, "
            f"{tf.annotate.samples} calls each, tau_f = {tf.annotate.tau_f}; fine-tuning "
            f"{tf.train.max_steps} steps from the pretrained rung",
            "intervals: 95% percentile bootstrap over the questions; gaps paired",
            f"ladder: {', '.join(bases)} in `{cfg.ladder.sweep_dir}/ladder`; Toolformer runs in "
            f"`{cfg.ladder.sweep_dir}/{NAME}`",
            load_note(before, start),
        ],
        findings,
        command=command,
    )
    return rows
