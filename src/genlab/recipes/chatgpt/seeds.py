"""The demo over several seeds, and one report: every goal figure with a 95% interval.

One run's figures move with its seed (the world, the data, every stage's initialisation and
sampling), so a goal met by one seed may be luck. ``run_seeds`` runs seeds ``S .. S+N-1``, each a
normal run folder ``OUT/seed-K`` with its own report, then writes ``OUT/report.json`` and
``OUT/report.md``: each figure of the goal table as the mean over seeds with a stratified
bootstrap interval (each seed's prompts resampled within the seed,
:func:`genlab.metrics.bootstrap.bootstrap_mean`), each model's rates likewise, and one row per
seed. ``write_section`` puts that table into a Markdown page between markers, replacing what an
earlier run wrote there, so docs/benchmarks.md always shows the latest measurement.
"""

from __future__ import annotations

import time
from collections.abc import Mapping, Sequence
from dataclasses import asdict, replace
from pathlib import Path
from typing import Any

from genlab.core.errors import GenlabError
from genlab.core.io import atomic_write_bytes, atomic_write_json, read_json
from genlab.metrics.bootstrap import bootstrap_mean
from genlab.recipes.chatgpt.pipeline import say
from genlab.recipes.chatgpt.presets import ChatGPTConfig, preset_config
from genlab.recipes.chatgpt.report import (
    check_goals,
    evaluation_note,
    format_figure,
    format_point,
    goal_figures,
    goal_notes,
    goals_met,
    machine,
    render_goal_table,
)
from genlab.recipes.chatgpt.run import EVALUATED_MODELS, run_chatgpt

MARKERS = ("<!-- chatgpt-demo-seeds:start -->", "<!-- chatgpt-demo-seeds:end -->")


def seed_config(
    preset: str, out: str | Path, seed: int, eval_split: str = "test", progress: bool = True
) -> ChatGPTConfig:
    """The preset's configuration of one seed's run, in ``out/seed-K``."""
    cfg = preset_config(preset, str(Path(out) / f"seed-{seed}"), seed=seed, progress=progress)
    return replace(cfg, eval=replace(cfg.eval, split=eval_split))


def finished_report(cfg: ChatGPTConfig) -> dict[str, Any] | None:
    """The report of a finished run of ``cfg`` in its folder, or None: no report, another
    preset, seed or evaluation, or a report without every model's per-item outcomes."""
    path = Path(cfg.out) / "report.json"
    if not path.is_file():
        return None
    report = read_json(path, "demo report")
    ev = report.get("evaluation", {})
    same = (report.get("preset"), report.get("seed"), ev.get("settings")) == (
        cfg.preset,
        cfg.seed,
        asdict(cfg.eval),
    )
    complete = set(ev.get("outcomes", {}).get("models", {})) == set(EVALUATED_MODELS)
    return report if same and complete else None


def _protocol(report: Mapping[str, Any]) -> tuple[str, dict[str, Any]]:
    """The preset and the evaluation settings, but for the seed: what seeds must share."""
    settings = {k: v for k, v in report["evaluation"]["settings"].items() if k != "seed"}
    return report["preset"], settings


def _mean(values: Sequence[float]) -> float:
    return sum(values) / len(values)


def aggregate(
    reports: Sequence[Mapping[str, Any]],
    command: str = "",
    machine_start: Mapping[str, Any] | None = None,
) -> dict[str, Any]:
    """One report over seeds' reports: each goal figure and each model's rates as the mean over
    seeds with a 95% stratified bootstrap interval, the goals checked on them, and one row of
    point figures per seed."""
    if not reports:
        raise GenlabError("no seed reports to aggregate")
    first = reports[0]
    odd = [r["seed"] for r in reports if _protocol(r) != _protocol(first)]
    if odd:
        raise GenlabError(
            f"seeds {odd} ran another preset or evaluation than seed {first['seed']} "
            f"({_protocol(first)}): aggregate like with like"
        )
    outcomes = [r["evaluation"]["outcomes"] for r in reports]
    figures = goal_figures(outcomes)
    goals = check_goals(figures)
    sfts = [r["evaluation"]["models"]["sft"] for r in reports]
    return {
        "command": command,
        "preset": first["preset"],
        "seeds": [r["seed"] for r in reports],
        "split": first["evaluation"]["split"],
        "prompts": first["evaluation"]["prompts"],
        "settings": first["evaluation"]["settings"],
        "date": time.strftime("%Y-%m-%d"),
        "machine_start": dict(machine_start or first["machine_start"]),
        "machine": machine(),
        "total_seconds": sum(r["total_seconds"] for r in reports),
        "figures": {key: interval.to_dict() for key, interval in figures.items()},
        "goals": goals,
        "goals_met": goals_met(goals),
        "models": {
            name: {
                key: bootstrap_mean([o["models"][name][key] for o in outcomes]).to_dict()
                for key in outcomes[0]["models"][name]
            }
            for name in outcomes[0]["models"]
        },
        "sft": {  # SFT's means over seeds, for the goal notes
            "accuracy_by_family": {
                f: _mean([s["accuracy_by_family"][f] for s in sfts])
                for f in sfts[0]["accuracy_by_family"]
            },
            "perfect_share_sampled": _mean([s["perfect_share_sampled"] for s in sfts]),
        },
        "per_seed": [  # recomputed from the outcomes: the figures as this code defines them
            {
                "seed": r["seed"],
                "folder": r["config"]["out"],
                "figures": {key: f.mean for key, f in seed_figures.items()},
                "goals_met": goals_met(check_goals(seed_figures)),
                "seconds": r["total_seconds"],
                "load_average": [r["machine_start"]["load_average"], r["machine"]["load_average"]],
            }
            for r, seed_figures in (
                (r, goal_figures([r["evaluation"]["outcomes"]])) for r in reports
            )
        ],
    }


def _seeds(n: int) -> str:
    return f"{n} seed" if n == 1 else f"{n} seeds"


def _summary_lines(agg: Mapping[str, Any]) -> list[str]:
    """The goal table over seeds, its notes, and one row per seed."""
    m0, m1 = agg["machine_start"], agg["machine"]
    met = ", ".join(f"{g} {'met' if ok else 'NOT met'}" for g, ok in agg["goals_met"].items())
    keys = list(agg["figures"])
    lines = [
        f"Command: `{agg['command']}` ({agg['date']})  ",
        f"Preset `{agg['preset']}`, seeds {', '.join(map(str, agg['seeds']))}; "
        f"{agg['total_seconds'] / 60:.1f} min of runs on {m1['device']} ({m1['cpu_count']} "
        f"cores, {m1['torch_threads']} torch threads; load average at start "
        f"{m0['load_average']}, at the end {m1['load_average']}).  ",
        evaluation_note(agg["prompts"], agg["settings"]),
        "",
        f"Mean over {_seeds(len(agg['seeds']))} with a 95% stratified bootstrap interval (each "
        "seed's prompts, or comparisons for the reward model, resampled within the seed). "
        f"Goals: {met}.",
        "",
        *render_goal_table(agg["goals"]),
        "",
        *[f"- {note}" for note in goal_notes(agg["sft"])],
        "",
        "Per seed (means over its prompts):",
        "",
        "| seed | " + " | ".join(k.replace("_", " ") for k in keys) + " | goals met | time |",
        "|---|" + "---|" * (len(keys) + 2),
    ]
    for row in agg["per_seed"]:
        figures = " | ".join(format_point(k, row["figures"][k]) for k in keys)
        met_count = f"{sum(row['goals_met'].values())}/{len(row['goals_met'])}"
        lines.append(f"| {row['seed']} | {figures} | {met_count} | {row['seconds'] / 60:.1f} min |")
    return lines


def render_seeds_report(agg: Mapping[str, Any]) -> str:
    """``OUT/report.md`` of a run over seeds."""
    rates = (
        ("exact_greedy", "exact (greedy)"),
        ("exact_sampled", "exact (sampled)"),
        ("judge_sampled", "judge (sampled)"),
        ("win_vs_sft_sampled", "win vs SFT (sampled)"),
        ("kl_to_sft", "KL to SFT (nats)"),
    )
    lines = [
        f"# The ChatGPT recipe on TinyWorld over {_seeds(len(agg['seeds']))}",
        "",
        *_summary_lines(agg),
        "",
        "## Models",
        "",
        "Mean over seeds with a 95% stratified bootstrap interval.",
        "",
        "| model | " + " | ".join(label for _, label in rates) + " |",
        "|---|" + "---|" * len(rates),
    ]
    for name in [n for n in EVALUATED_MODELS if n in agg["models"]]:
        m = agg["models"][name]
        cells = [format_figure(key, m[key]) if key in m else "n/a" for key, _ in rates]
        lines.append(f"| {name} | " + " | ".join(cells) + " |")
    lines += [
        "",
        "Each seed's own report: "
        + ", ".join(
            f"[seed {r['seed']}]({Path(r['folder']).name}/report.md)" for r in agg["per_seed"]
        ),
        "",
    ]
    return "\n".join(lines)


def benchmarks_section(agg: Mapping[str, Any]) -> str:
    """The section ``--benchmarks`` writes into a page: the goal table over seeds and the seeds."""
    return "\n".join(
        [f"### The ChatGPT demo over {_seeds(len(agg['seeds']))}", "", *_summary_lines(agg)]
    )


def write_section(path: str | Path, body: str) -> None:
    """Put ``body`` between the markers in the Markdown page ``path``: replace what stands
    between them, or append them (creating the page) when the page has none."""
    path = Path(path)
    start, end = MARKERS
    block = f"{start}\n{body.rstrip()}\n{end}"
    text = path.read_text() if path.is_file() else ""
    if start in text or end in text:
        head, _, rest = text.partition(start)
        _, found, tail = rest.partition(end)
        if not found:
            raise GenlabError(f"{path} has {start} without {end} after it: fix the markers")
        text = head + block + tail
    else:
        text = text.rstrip("\n") + ("\n\n" if text.strip() else "") + block + "\n"
    atomic_write_bytes(path, text.encode())


def run_seeds(
    preset: str,
    out: str | Path,
    seeds: Sequence[int],
    *,
    eval_split: str = "test",
    resume: bool = False,
    progress: bool = True,
    command: str = "",
    benchmarks: str | Path | None = None,
) -> dict[str, Any]:
    """Run the demo once per seed into ``out/seed-K``, then write the report over the seeds
    (``out/report.json``, ``out/report.md``, and the section of ``benchmarks`` when given);
    return it. With ``resume`` a seed whose report is finished is kept, and an unfinished seed
    keeps its finished stages."""
    out = Path(out)
    start = machine()
    reports = []
    for i, seed in enumerate(seeds, 1):
        cfg = seed_config(preset, out, seed, eval_split, progress)
        kept = finished_report(cfg) if resume else None
        say(f"== seed {seed} ({i}/{len(seeds)}): {'kept' if kept else 'running'} in {cfg.out}")
        reports.append(kept or run_chatgpt(cfg, resume=resume))
    agg = aggregate(reports, command, start)
    atomic_write_json(out / "report.json", agg)
    atomic_write_bytes(out / "report.md", render_seeds_report(agg).encode())
    if benchmarks is not None:
        write_section(benchmarks, benchmarks_section(agg))
    return agg
