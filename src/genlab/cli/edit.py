"""``genlab edit``: change one fact of a fact model (ROME, or fine-tuning one layer), and show
what the edit did to the fact, its paraphrases and its neighbours. The recipe is
:mod:`genlab.recipes.editing`."""

from __future__ import annotations

from genlab.cli._app import app, say
from genlab.cli.options import config_command
from genlab.core.sweep import markdown_table
from genlab.recipes.editing import EditRunConfig, run_edit

ROWS = (
    ("efficacy (new beats old)", "efficacy"),
    ("paraphrases (new beats old)", "paraphrase"),
    ("neighbours kept", "specificity"),
    ("greedy answer is the new object", "answer_new"),
    ("subject's other facts kept", "subject_others"),
    ("loss on trained texts", "fluency_loss"),
)


@app.command("edit")
@config_command(EditRunConfig)
def edit_command(cfg: EditRunConfig) -> None:
    """Edit --fact SUBJECT|RELATION|NEW_OBJECT of the fact model --model into --out."""
    report = run_edit(cfg)
    b, a = report["before"], report["after"]
    say(
        markdown_table(
            ["", "before", "after"], [[n, f"{b[k]:.3f}", f"{a[k]:.3f}"] for n, k in ROWS]
        )
    )
    fact = report["fact"]
    say(
        f"wrote {cfg.out}: {fact['subject']} {fact['relation']} {fact['object']} -> "
        f"{report['new_object']} ({report['method']}, layer {report['layer']})"
    )
