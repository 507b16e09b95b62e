"""``genlab nar``: train a tiny CMLM and its autoregressive baseline from the command line,
translate with both, open them with ``genlab.load``, distil from the AR run, read a JSONL file;
bad input is one line naming the fix."""

from __future__ import annotations

import json
from pathlib import Path

import pytest

import genlab
from genlab.cli import main
from genlab.core.errors import GenlabError
from genlab.data.tinyworld import World
from genlab.data.tinyworld.translation import translation_pairs
from genlab.data.translation import Pair, Translation
from genlab.recipes.nar import NARConfig, distilled, open_hybrid, open_translator
from references import require

require("sacrebleu")
pytestmark = pytest.mark.usefixtures("one_thread")
TINY = [
    "--task", "cipher_to", "--n-train", "300", "--n-eval", "8", "--max-length", "8",
    "--n-layer", "1", "--n-head", "2", "--n-embd", "32", "--max-steps", "6", "--batch-size",
    "16", "--eval-every", "0", "--checkpoint-every", "0", "--eval-batches", "1", "--no-progress",
    "--no-tensorboard", "--no-plots", "--device", "cpu", "--seed", "1",
]  # fmt: skip


def train(out: Path, *extra: str) -> Path:
    main(["nar", "train", "--out", str(out), *TINY, *extra])
    return out


@pytest.fixture(scope="module")
def runs(tmp_path_factory: pytest.TempPathFactory) -> dict[str, Path]:
    base = tmp_path_factory.mktemp("nar")
    return {
        "cmlm": train(base / "cmlm", "--iterations", "2"),
        "ar": train(base / "ar", "--model", "ar", "--max-steps", "60", "--lr", "3e-3"),
    }


def test_train_then_translate_round_trip(
    runs: dict[str, Path], capsys: pytest.CaptureFixture[str]
) -> None:
    capsys.readouterr()
    main(["nar", "translate", str(runs["cmlm"]), "--text", "my cat", "--text", "the sun",
          "--iterations", "3", "--length-beam", "2"])  # fmt: skip
    lines = capsys.readouterr().out.splitlines()
    assert len(lines) == 2 and all(lines)
    vocab = genlab.load(runs["cmlm"]).files["vocab"]
    assert all(w in vocab.index for line in lines for w in line.split())
    main(["nar", "translate", str(runs["ar"]), "--text", "my cat", "--beam", "2"])
    assert capsys.readouterr().out.strip()
    loaded = {name: genlab.load(path) for name, path in runs.items()}
    assert loaded["cmlm"].kind == "cmlm" and loaded["ar"].kind == "gpt-translator"
    metrics = [
        json.loads(line) for line in (runs["cmlm"] / "metrics.jsonl").read_text().splitlines()
    ]
    assert metrics[-1]["step"] == 6


def test_an_ar_run_with_rotary_positions_trains_and_round_trips(tmp_path: Path) -> None:
    out = train(tmp_path / "rope", "--model", "ar", "--ar-pos", "rope", "--max-steps", "30",
                "--lr", "3e-3")  # fmt: skip
    losses = [json.loads(line)["loss"] for line in (out / "metrics.jsonl").read_text().splitlines()
              if "loss" in json.loads(line)]  # fmt: skip
    assert losses[-1] < losses[0]
    loaded = genlab.load(out)
    assert loaded.kind == "gpt-translator" and loaded.config.pos == "rope"
    assert loaded.model.wpe is None and loaded.model.rotary is not None
    first, again = open_translator(out), open_translator(out)
    sources = [p.source for p in translation_pairs(World(0), "cipher_to", 4, "test", seed=1)]
    assert first.translate(sources) == again.translate(sources, batch_size=1)
    assert any(first.translate(sources))


def test_distillation_replaces_targets_by_the_teacher_s(runs: dict[str, Path]) -> None:
    pairs = translation_pairs(World(0), "cipher_to", 5, "train", seed=1)
    teacher = open_translator(runs["ar"])
    taught = distilled(str(runs["ar"]), pairs, beam=1, device="cpu", max_length=8)
    outputs = teacher.translate([p.source for p in pairs])
    assert any(outputs) and outputs != [p.target for p in pairs]
    assert taught == [
        Pair(p.source, t) for p, t in zip(pairs, outputs, strict=True) if 0 < len(t.split()) <= 8
    ]


def test_a_jsonl_file_trains_too(tmp_path: Path) -> None:
    pairs = translation_pairs(World(0), "cipher_from", 400, "train") + translation_pairs(
        World(0), "cipher_from", 60, "validation"
    )
    data = tmp_path / "pairs.jsonl"
    data.write_text("".join(json.dumps({"source": p.source, "target": p.target}) + "\n"
                            for p in pairs))  # fmt: skip
    out = train(tmp_path / "run", "--data", str(data))
    assert open_translator(out).translate([pairs[0].source])[0]


@pytest.mark.parametrize(
    ("args", "message"),
    [
        (["--model", "rnn"], "unknown model 'rnn'; choose from: cmlm, ar"),
        (["--ar-pos", "alibi"], "unknown ar_pos 'alibi'; choose from: learned, rope"),
        (["--task", "copy"], "unknown task 'copy'"),
        (["--iterations", "0"], "invalid setting iterations=0"),
        (["--max-length", "3"], "longer than max_length=3: raise --max-length"),
        (["--data", "missing.jsonl"], "translation pairs file not found: missing.jsonl"),
    ],
)
def test_bad_training_settings_are_one_line_errors(
    tmp_path: Path, capsys: pytest.CaptureFixture[str], args: list[str], message: str
) -> None:
    with pytest.raises(SystemExit) as exit_info:
        main(["nar", "train", "--out", str(tmp_path / "run"), *TINY, *args])
    err = capsys.readouterr().err
    assert exit_info.value.code == 2 and message in err and len(err.strip().splitlines()) == 1


def test_bad_translation_input_is_one_line(
    runs: dict[str, Path], tmp_path: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    cases = [
        ([str(runs["cmlm"]), "--text", "my wombat"], "'wombat' is not in the model's vocabulary"),
        ([str(runs["cmlm"]), "--text", "   "], "the text has no words"),
        ([str(tmp_path), "--text", "my cat"], "is not a genlab checkpoint"),
    ]
    for args, message in cases:
        with pytest.raises(SystemExit) as exit_info:
            main(["nar", "translate", *args])
        err = capsys.readouterr().err
        assert exit_info.value.code == 2 and message in err, err
        assert len(err.strip().splitlines()) == 1


def test_defaults_validate() -> None:
    NARConfig().validate()


def test_a_distilled_run_trains_on_the_teacher_s_translations(
    runs: dict[str, Path], tmp_path: Path
) -> None:
    out = train(tmp_path / "kd", "--distill", str(runs["ar"]))
    assert genlab.load(out).files["vocab"].words == genlab.load(runs["ar"]).files["vocab"].words
    with pytest.raises(SystemExit):
        train(tmp_path / "bad", "--distill", str(runs["cmlm"]))


def test_the_hybrid_keeps_the_ar_model_s_first_words(
    runs: dict[str, Path], capsys: pytest.CaptureFixture[str]
) -> None:
    ar = open_translator(runs["ar"])
    texts = ["my cat sees the sun", "the red dog"]
    greedy = [t.split() for t in ar.translate(texts)]
    capsys.readouterr()
    main(["nar", "translate", str(runs["cmlm"]), "--hybrid", str(runs["ar"]), "--prefix-tokens",
          "2", "--iterations", "2", *[a for t in texts for a in ("--text", t)]])  # fmt: skip
    lines = capsys.readouterr().out.splitlines()
    assert len(lines) == 2
    for line, words in zip(lines, greedy, strict=True):
        if len(words) >= 2:  # the AR model wrote both words: kept, and more follow
            assert line.split()[:2] == words[:2] and len(line.split()) > 2
        else:  # it ended within the prefix: its translation as written
            assert line.split() == words
    with pytest.raises(SystemExit) as exit_info:
        main(["nar", "translate", str(runs["cmlm"]), "--hybrid", str(runs["cmlm"]), "--text", "my cat"])  # fmt: skip
    assert exit_info.value.code == 2
    assert "needs a CMLM run and an autoregressive one" in capsys.readouterr().err


def test_the_hybrid_fills_in_after_a_planted_prefix(
    runs: dict[str, Path], monkeypatch: pytest.MonkeyPatch
) -> None:
    hybrid = open_hybrid(runs["cmlm"], runs["ar"], prefix_tokens=2)
    vocab = hybrid.vocab
    first, second = 5, 6  # two words of the vocabulary, whatever they mean
    planted = [Translation([first, second], -0.1), Translation([second], -0.2)]  # 2nd ended
    monkeypatch.setattr(
        "genlab.recipes.nar.seq2seq.translate_prefix", lambda *args, **kw: list(planted)
    )
    sources = [vocab.encode("my cat sees the sun"), vocab.encode("the dog")]
    out = hybrid.translate_ids(sources, iterations=3, length_beam=2)
    assert out[0].ids[:2] == [first, second] and len(out[0].ids) > 2
    assert out[1].ids == [second]
    plain = open_hybrid(runs["cmlm"], runs["ar"], prefix_tokens=0)
    cmlm_alone = open_translator(runs["cmlm"])
    assert [t.ids for t in plain.translate_ids(sources, 3, 2)] == [
        t.ids for t in cmlm_alone.translate_ids(sources, 3, 2)
    ]
    with pytest.raises(GenlabError, match="prefix_tokens=8"):
        open_hybrid(runs["cmlm"], runs["ar"], prefix_tokens=8)
