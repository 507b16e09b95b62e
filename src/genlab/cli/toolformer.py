"""``genlab toolformer``: a pretrained GPT teaches itself to call tools (Toolformer).

The options come from ``genlab.recipes.toolformer.ToolformerConfig``; the run folder answers
with its tools through ``genlab generate -c RUN --tools run``.
"""

from __future__ import annotations

from genlab.cli._app import app, say
from genlab.cli.options import config_command
from genlab.recipes.toolformer import ToolformerConfig, toolformer


@app.command("toolformer")
@config_command(ToolformerConfig)
def toolformer_cmd(cfg: ToolformerConfig) -> None:
    """Annotate text with the model's own tool calls, keep the helpful ones, fine-tune on them."""
    result = toolformer(cfg)
    per_tool = "; ".join(
        f"{tool}: {c.get('proposed', 0)} proposed, {c.get('executed', 0)} executed, "
        f"{c.get('kept', 0)} kept"
        for tool, c in result["per_tool"].items()  # type: ignore[union-attr]
    )
    say(f"calls {per_tool or 'none proposed'}")
    say(f"{result['texts_with_calls']} of {result['texts']} texts carry a call; wrote {cfg.out}")
