"""``genlab retrieval``: fine-tune a GPT to search documents and answer with citations (WebGPT).

The options come from ``genlab.recipes.retrieval.RetrievalConfig``; the run answers from its
documents (or any folder) through ``genlab chat RUN --retrieve DOCS``.
"""

from __future__ import annotations

from pathlib import Path

from genlab.cli._app import app, say
from genlab.cli.options import config_command
from genlab.recipes.retrieval import DOCUMENTS_DIR, RetrievalConfig, retrieval


@app.command("retrieval")
@config_command(RetrievalConfig)
def retrieval_cmd(cfg: RetrievalConfig) -> None:
    """Write documents of an unseen world, then teach the base to search them and cite."""
    metrics = retrieval(cfg)
    docs = Path(cfg.out) / DOCUMENTS_DIR
    say(f"{metrics['passages']:.0f} passages in {docs}; wrote {cfg.out}")
    say(f"ask it: genlab chat {cfg.out} --retrieve {docs}")
