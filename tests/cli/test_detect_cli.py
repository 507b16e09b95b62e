"""``genlab detect``: text written by ``genlab generate --watermark KEY`` is found with the key and
not without it; the likelihood columns are those of the library; a classifier folder adds its
score; bad files and options are one line naming the problem."""

from __future__ import annotations

import json
from pathlib import Path

import pytest
import torch

import genlab.cli.detect  # noqa: F401  registers the verb
from genlab.cli import main
from genlab.data.tokenizer import Tokenizer
from genlab.methods.autoregressive.checkpoint import save_gpt
from genlab.nets.gpt import GPT, GPTConfig
from genlab.research.likelihood_detect import likelihood_scores
from genlab.research.ngram_detector import save_ngram_detector, train_ngram_detector

CORPUS = [
    "the cat sat on the mat and the dog ran to the park.\n",
    "a small model writes small stories about cats, dogs and code.\n",
    "hello there! how are you today? i am fine, thank you.\n",
] * 20


@pytest.fixture(scope="module")
def tok() -> Tokenizer:
    return Tokenizer.train(CORPUS, vocab_size=300)


@pytest.fixture(scope="module")
def run(tok: Tokenizer, tmp_path_factory: pytest.TempPathFactory) -> Path:
    """A random GPT that writes printable text only, so that its text tokenizes back to about
    the tokens it wrote: the final norm's bias points every hidden state along ``u`` and the
    unembedding rows of the other tokens point against it, about 20 nats below the rest."""
    torch.manual_seed(0)
    config = GPTConfig(
        vocab_size=tok.vocab_size,
        block_size=128,
        n_layer=2,
        n_head=2,
        n_embd=32,
        bias=True,
        tie_weights=False,
    )
    model = GPT(config)
    special = set(tok.special.values())
    printable = [
        v not in special and (s := tok.decode([v])).isascii() and s.isprintable()
        for v in range(tok.vocab_size)
    ]
    u = torch.nn.functional.normalize(torch.randn(config.n_embd), dim=0)
    with torch.no_grad():
        model.ln_f.bias.copy_(4 * u)
        model.lm_head.weight[~torch.tensor(printable)] = -5 * u
    folder = tmp_path_factory.mktemp("detect") / "run"
    save_gpt(folder, model, tok)
    return folder


def generated(capsys, run: Path, seed: int, *watermark: str) -> str:
    capsys.readouterr()
    main(["generate", "-c", str(run), "--max-new-tokens", "60", "--temperature", "1.0",
          "--seed", str(seed), *watermark])  # fmt: skip
    return capsys.readouterr().out.strip()


def detect_json(capsys, argv: list[str]) -> list[dict]:
    capsys.readouterr()
    main(["detect", *argv, "--json"])
    return [json.loads(line) for line in capsys.readouterr().out.splitlines()]


def errors(capsys, argv: list[str]) -> str:
    capsys.readouterr()
    with pytest.raises(SystemExit) as info:
        main(argv)
    assert info.value.code == 2
    err = capsys.readouterr().err
    assert err.count("\n") == 1 and err.startswith("genlab: error: ")
    return err


def test_generated_watermark_is_found_with_its_key_only(run, tok, capsys, tmp_path):
    marked = [generated(capsys, run, s, "--watermark", "k", "--watermark-delta", "6")
              for s in range(4)]  # fmt: skip
    plain = [generated(capsys, run, s) for s in range(4)]
    assert generated(capsys, run, 0, "--watermark", "k", "--watermark-delta", "0") == plain[0]
    marked = [t for t in marked if len(t.split()) > 3]
    assert len(marked) == 4
    file = tmp_path / "texts.txt"
    file.write_text("\n\n".join(marked + plain) + "\n")
    rows = detect_json(capsys, ["--model", str(run), "--text", str(file), "--watermark", "k"])
    assert [r["text"] for r in rows] == list(range(8))
    z = [r["watermark_z"] for r in rows]
    assert min(z[:4]) > 4.0, z
    assert max(abs(v) for v in z[4:]) < 3.5, z
    assert all(r["watermark_p"] < 1e-4 for r in rows[:4])
    other = detect_json(capsys, ["--model", str(run), "--text", str(file), "--watermark", "x"])
    assert max(abs(r["watermark_z"]) for r in other) < 3.5
    # the likelihood columns are the library's, on <|bos|> + the text's tokens
    ids = [[tok.bos_id, *tok.encode(t)] for t in marked + plain]
    from genlab.methods.autoregressive.checkpoint import load_gpt

    model, _ = load_gpt(run)
    ref = likelihood_scores(model, ids)
    assert [r["tokens"] for r in rows] == [len(i) - 1 for i in ids]
    assert [r["curvature"] for r in rows] == pytest.approx(ref.curvature.tolist(), abs=1e-3)
    assert [r["log_likelihood"] for r in rows] == pytest.approx(
        ref.log_likelihood.tolist(), abs=1e-3
    )


def test_jsonl_and_a_classifier(run, tok, capsys, tmp_path):
    texts = ["the cat sat on the mat.", "hello there! how are you?", "a small model writes code."]
    file = tmp_path / "texts.jsonl"
    file.write_text("".join(json.dumps({"text": t, "id": i}) + "\n\n" for i, t in enumerate(texts)))
    human = [tok.encode(c) for c in CORPUS[:3]]
    machine = [tok.encode(c)[::-1] for c in CORPUS[:3]]
    det = train_ngram_detector(human, machine, seed=0)
    save_ngram_detector(tmp_path / "clf", det)
    rows = detect_json(
        capsys, ["--model", str(run), "--text", str(file), "--classifier", str(tmp_path / "clf")]
    )
    assert len(rows) == 3 and all("watermark_z" not in r for r in rows)
    expected = det.score([tok.encode(t) for t in texts]).tolist()
    assert [r["classifier"] for r in rows] == pytest.approx(expected, abs=1e-4)


def test_the_table(run, capsys, tmp_path):
    file = tmp_path / "t.txt"
    file.write_text("the cat sat.\n\n  \n\nthe dog ran.\n")
    capsys.readouterr()
    main(["detect", "--model", str(run), "--text", str(file), "--watermark", "k"])
    lines = capsys.readouterr().out.splitlines()
    assert len(lines) == 3
    assert lines[0].split() == [
        "text", "tokens", "log_likelihood", "curvature", "watermark_z", "watermark_p"
    ]  # fmt: skip
    assert lines[1].split()[0] == "0" and lines[2].split()[0] == "1"


@pytest.mark.parametrize(
    "name, content, extra, says",
    [
        ("missing.txt", None, [], "text file not found"),
        ("t.csv", "a,b\n", [], "give a .txt"),
        ("t.txt", "\n\n  \n", [], "holds no text"),
        ("t.jsonl", '{"text": "ok"}\n{"text": \n', [], "t.jsonl:2: not JSON"),
        ("t.jsonl", '{"text": "ok"}\n["text"]\n', [], 't.jsonl:2: each line needs a "text"'),
        ("t.jsonl", '{"text": 3}\n', [], 't.jsonl:1: each line needs a "text"'),
        ("t.jsonl", '{"text": "  "}\n', [], "t.jsonl:1: the text is empty"),
        ("t.txt", "hi", ["--watermark", "k", "--watermark-gamma", "1.5"], "gamma"),
        ("t.txt", "hi", ["--classifier", "nowhere"], "classifier folder not found"),
    ],
)
def test_bad_input_is_one_line(run, capsys, tmp_path, name, content, extra, says):
    path = tmp_path / name
    if content is not None:
        path.write_text(content)
    err = errors(capsys, ["detect", "--model", str(run), "--text", str(path), *extra])
    assert says in err


def test_not_utf8_and_not_a_model(run, capsys, tmp_path):
    path = tmp_path / "t.txt"
    path.write_bytes(b"caf\xe9\n")
    assert "not UTF-8" in errors(capsys, ["detect", "--model", str(run), "--text", str(path)])
    path.write_text("hi\n")
    err = errors(capsys, ["detect", "--model", str(tmp_path), "--text", str(path)])
    assert str(tmp_path) in err


def test_an_entropy_gated_watermark_is_found_with_its_threshold(run, tok, capsys, tmp_path):
    """``--watermark-entropy H`` biases only steps of entropy >= H (SWEET); ``detect`` with the
    same H scores only those, with the model's entropies on the text."""
    from genlab.methods.autoregressive.checkpoint import load_gpt
    from genlab.research.watermark import continuation_entropies

    plain = [generated(capsys, run, s) for s in range(4)]
    model, _ = load_gpt(run)
    ids = [tok.encode(t) for t in plain]
    ents = continuation_entropies(model, [[tok.bos_id]] * 4, ids)
    h = sorted(e for row in ents for e in row)[len(ids[0]) * 2]  # about a half of steps pass
    flags = ["--watermark", "k", "--watermark-delta", "6", "--watermark-entropy", f"{h:.4f}"]
    marked = [generated(capsys, run, s, *flags) for s in range(4)]
    assert marked != plain
    file = tmp_path / "texts.txt"
    file.write_text("\n\n".join(marked + plain) + "\n")
    argv = ["--model", str(run), "--text", str(file), "--watermark", "k"]
    gated = detect_json(capsys, [*argv, "--watermark-entropy", f"{h:.4f}"])
    z = [r["watermark_z"] for r in gated]
    assert min(z[:4]) > 3.0, z
    assert max(abs(v) for v in z[4:]) < 3.5, z
    # threshold 0 is the plain test; a threshold above every entropy scores nothing
    assert detect_json(capsys, [*argv, "--watermark-entropy", "0"]) == detect_json(capsys, argv)
    none = detect_json(capsys, [*argv, "--watermark-entropy", "1000"])
    assert all((r["watermark_z"], r["watermark_p"]) == (0.0, 1.0) for r in none)
    err = errors(capsys, ["detect", *argv, "--watermark-entropy", "-1"])
    assert "entropy threshold" in err
