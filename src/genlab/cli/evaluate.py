"""``genlab eval``: accuracy per task family of a run folder or a server under one strategy."""

from __future__ import annotations

from genlab.cli._app import app, say
from genlab.cli.options import config_command
from genlab.core.sweep import markdown_table
from genlab.recipes.evaluate import EvalConfig, run_eval


@app.command("eval")
@config_command(EvalConfig)
def evaluate(cfg: EvalConfig) -> None:
    """Prompt --model (a run folder or http://host:port) with --strategy on --tasks."""
    report = run_eval(cfg)
    rows = [
        [
            family,
            f"{100 * r['accuracy']:.1f}",
            f"[{100 * r['ci'][0]:.1f}, {100 * r['ci'][1]:.1f}]",
            r["n"],
        ]
        for family, r in report["results"].items()
    ]
    say(markdown_table(["family", "accuracy %", "95% interval", "n"], rows))
    say(f"{report['n']} questions in {report['seconds']:.1f} s ({cfg.strategy}, {cfg.shots} shots)")
    if cfg.out:
        say(f"wrote {cfg.out}")
