"""``genlab detect``: was a text generated? The watermark's z-test (with its key), the model's own
likelihood and curvature (zero-shot), and a trained n-gram classifier, per text of a file."""

from __future__ import annotations

import json
import re
from pathlib import Path

import torch
import typer

from genlab.cli._app import app
from genlab.core.device import pick_device
from genlab.core.errors import GenlabError
from genlab.methods.autoregressive.checkpoint import load_gpt
from genlab.research.likelihood_detect import likelihood_scores
from genlab.research.ngram_detector import load_ngram_detector
from genlab.research.watermark import Watermark, gated_entropies


def read_texts(path: Path) -> list[str]:
    """The texts of a ``.txt`` file (blank-line-separated paragraphs) or of a ``.jsonl`` file (a
    ``"text"`` string per line); errors name the file and line."""
    if not path.is_file():
        raise GenlabError(f"text file not found: {path}")
    try:
        content = path.read_text(encoding="utf-8")
    except UnicodeDecodeError as e:
        raise GenlabError(f"{path} is not UTF-8 text ({e.reason} at byte {e.start})") from e
    if path.suffix == ".txt":
        texts = [p.strip() for p in re.split(r"\n\s*\n", content) if p.strip()]
    elif path.suffix == ".jsonl":
        texts = []
        for n, line in enumerate(content.splitlines(), 1):
            if not line.strip():
                continue
            try:
                row = json.loads(line)
            except json.JSONDecodeError as e:
                raise GenlabError(f"{path}:{n}: not JSON ({e.msg})") from e
            if not isinstance(row, dict) or not isinstance(row.get("text"), str):
                raise GenlabError(f'{path}:{n}: each line needs a "text" string')
            if not row["text"].strip():
                raise GenlabError(f"{path}:{n}: the text is empty")
            texts.append(row["text"])
    else:
        raise GenlabError(f"{path}: give a .txt (blank-line-separated texts) or a .jsonl file")
    if not texts:
        raise GenlabError(f"{path} holds no text")
    return texts


@app.command()
def detect(
    model: Path = typer.Option(..., "--model", "-m", help="GPT run or model folder."),
    text: Path = typer.Option(
        ..., "--text", "-t", help=".txt (texts separated by blank lines) or .jsonl ('text')."
    ),
    watermark: str | None = typer.Option(
        None, metavar="KEY", help="Test for the watermark of KEY (genlab generate --watermark)."
    ),
    watermark_gamma: float = typer.Option(0.25, help="Green share the watermark was made with."),
    watermark_entropy: float = typer.Option(
        0.0, help="Entropy threshold (nats) the watermark was made with: score only those steps."
    ),
    classifier: Path | None = typer.Option(
        None, help="An n-gram detector folder (train_ngram_detector) to score with too."
    ),
    as_json: bool = typer.Option(False, "--json", help="One JSON object per text."),
    seed: int = typer.Option(0, help="Seeds torch (the scores themselves draw nothing)."),
    device: str = typer.Option("auto", help="auto, cpu, cuda, cuda:1, mps."),
) -> None:
    """Score each text of FILE: watermark z and p (with --watermark), mean log-likelihood and
    Fast-DetectGPT curvature under --model, and the classifier's machine logit (--classifier).
    Texts are tokenized with the model's tokenizer after a <|bos|>."""
    torch.manual_seed(seed)
    wm = (
        Watermark(watermark, gamma=watermark_gamma, entropy_threshold=watermark_entropy)
        if watermark
        else None
    )
    texts = read_texts(text)
    if classifier is not None and not classifier.is_dir():
        raise GenlabError(f"classifier folder not found: {classifier}")
    gpt, tok = load_gpt(model, device=pick_device(device))
    encoded = [tok.encode(t) for t in texts]
    scores = likelihood_scores(gpt, [[tok.bos_id, *ids] for ids in encoded])
    entropies: list[list[float] | None] = [None] * len(encoded)
    if wm is not None:
        entropies = gated_entropies(gpt, wm, [[tok.bos_id]] * len(encoded), encoded)
    rows = []
    for i, ids in enumerate(encoded):
        row: dict[str, float | int] = {
            "text": i,
            "tokens": len(ids),
            "log_likelihood": round(scores.log_likelihood[i].item(), 4),
            "curvature": round(scores.curvature[i].item(), 4),
        }
        if wm is not None:
            s = wm.score(ids, prompt_last=tok.bos_id, entropies=entropies[i])
            row |= {"watermark_z": round(s.z, 4), "watermark_p": float(f"{s.p_value:.4g}")}
        rows.append(row)
    if classifier is not None:
        logits = load_ngram_detector(classifier).score(encoded)
        for row, logit in zip(rows, logits.tolist(), strict=True):
            row["classifier"] = round(logit, 4)
    if as_json:
        for row in rows:
            typer.echo(json.dumps(row))
        return
    names = list(rows[0])
    typer.echo("  ".join(f"{n:>14}" for n in names))
    for row in rows:
        typer.echo("  ".join(f"{row[n]:>14}" for n in names))
