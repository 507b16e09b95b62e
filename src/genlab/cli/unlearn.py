"""``genlab unlearn``: make a fact model forget chosen facts, and measure what it still knows.

``--forget`` names what to forget: ``person:NAME`` (every fact of a person; several names
comma-separated), ``persons:N`` (the first N trained people of a seeded draw) or a JSONL file of
``{"prompt", "answer"}`` records. The recipe is :mod:`genlab.recipes.unlearning`; this verb
prints its before-and-after table.
"""

from __future__ import annotations

from genlab.cli._app import app, say
from genlab.cli.options import config_command
from genlab.core.sweep import markdown_table
from genlab.recipes.unlearning import UnlearnRunConfig, run_unlearn


@app.command("unlearn")
@config_command(UnlearnRunConfig)
def unlearn_command(cfg: UnlearnRunConfig) -> None:
    """Make the fact model --model forget --forget by --method into --out."""
    report = run_unlearn(cfg)
    b, a = report["before"], report["after"]
    rows = [
        [name, *("-" if r[key] is None else f"{r[key]:.3f}" for r in (b, a))]
        for name, key in (
            ("forget accuracy", "forget"),
            ("retain accuracy", "retain"),
            ("world accuracy", "world"),
            ("held-out accuracy (guessing)", "holdout"),
            ("membership AUC", "membership_auc"),
            ("forget NLL / token", "forget_nll"),
        )
    ]
    say(markdown_table(["", "before", "after"], rows))
    say(f"wrote {cfg.out} ({report['method']}, {len(report['history'])} steps)")
