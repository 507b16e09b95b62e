"""Documents that hold facts no model has seen, and the questions only they answer.

Retrieval-augmented answering (WebGPT, Nakano et al., 2021) is measured on questions whose answer
the model cannot know, so the facts must be in the documents and nowhere in pretraining. A
TinyWorld grown from another seed than the models' (seed 1 beside the ladder's world 0) has other
people, towns, countries, creatures and objects, so none of its facts is in world 0's text. It is
written out as a small encyclopedia:

- **one entity per paragraph**, at most ``per_paragraph`` of its facts in each (a person's seven
  facts take two paragraphs), every fact once, in one of its relation's paraphrases;
- **distractor notes**: paragraphs that name entities and the words of a relation but state no
  fact ("Rilzan and Tedol talked about their pets, their jobs and ..."), so that the passage a
  search ranks first is not always the one that answers;
- **withheld facts**: a share of the facts is written nowhere; their questions have no answer in
  the folder, and a model that cites must learn to say so rather than cite blindly.

Questions are the ``fact_question`` family's three phrasings of every fact, split as that family
splits them (by the fact asked: all phrasings of one fact in one split), so that no test fact is
ever answered in training. Each carries its *evidence*: the sentence of the documents that
states it (``None`` when withheld), which decides whether a cited passage contains the answer.
"""

from __future__ import annotations

import random
from dataclasses import dataclass
from pathlib import Path

from genlab.core.errors import GenlabError
from genlab.core.io import atomic_write_bytes
from genlab.data.records import write_jsonl
from genlab.data.tinyworld.families import FAMILIES
from genlab.data.tinyworld.families.base import Example
from genlab.data.tinyworld.relations import RELATIONS
from genlab.data.tinyworld.tasks import SPLITS, split_of
from genlab.data.tinyworld.world import World

# entity kind -> the file its paragraphs go to
FILES = {
    "person": "people.md",
    "country": "places.md",
    "town": "places.md",
    "creature": "creatures.md",
    "object": "objects.md",
}
NOTES = "notes.md"
DOCUMENTS_DIR = "documents"
# distractor notes: entities and the words of relations, no fact stated
_NOTES = (
    "{P} and {Q} talked about their pets, their jobs and the towns where they were born.",
    "A letter from {P} to {Q} speaks of friends, favourite colours and how old people get.",
    "{P} wrote a song about the capital of {C} and the colour of its flag.",
    "Children in {T} draw the {c}, count its legs and ask what it eats and where it lives.",
    "A book from {T} asks what the {o} is made of, what colour it is and where it was made.",
    "{P} visited {T} to learn which food it is famous for and in which country it lies.",
)


@dataclass
class DocumentsConfig:
    """Which world the documents describe and how they are written."""

    seed: int = 1  # the documents' TinyWorld; the ladder learned world 0, so this one is unseen
    size: int = 128  # people in that world; the other kinds scale with it
    per_paragraph: int = 4  # most facts in one paragraph; an entity with more takes several
    distractors: float = 0.5  # distractor notes per entity
    withheld: float = 0.1  # share of facts written nowhere: their questions have no answer

    def check(self) -> None:
        if self.per_paragraph < 1:
            raise GenlabError(f"per_paragraph must be at least 1, got {self.per_paragraph}")
        if not 0 <= self.withheld < 1 or self.distractors < 0:
            raise GenlabError("withheld must be in [0, 1) and distractors at least 0")


@dataclass(frozen=True)
class Paragraph:
    """One paragraph: the file it is in, its text, and the facts it states (indices)."""

    source: str
    text: str
    facts: tuple[int, ...] = ()


@dataclass(frozen=True)
class DocQuestion:
    """A fact question, the fact's subject and relation, and the sentence of the documents that
    states it (``None``: withheld)."""

    example: Example
    subject: str
    relation: str
    evidence: str | None

    def to_dict(self) -> dict[str, object]:
        about = {"subject": self.subject, "relation": self.relation, "evidence": self.evidence}
        return {**self.example.to_dict(), **about}


@dataclass(frozen=True)
class DocumentSet:
    """A world written as paragraphs, and each written fact's sentence (fact index -> text)."""

    world: World
    paragraphs: tuple[Paragraph, ...]
    evidence: dict[int, str]

    def questions(self, split: str) -> list[DocQuestion]:
        """Every phrasing of every fact of ``split`` (``train``, ``validation``, ``test`` or
        ``all``)."""
        if split not in (*SPLITS, "all"):
            raise GenlabError(f"unknown split {split!r}; choose from: {', '.join(SPLITS)}, all")
        family = FAMILIES["fact_question"]
        out = []
        for fact in self.world.facts:
            fields = {"s": fact.subject}
            if fact.relation == "cipher":
                continue
            if split != "all" and split_of(family.key(fact.relation, fields)) != split:
                continue
            for i, template in enumerate(RELATIONS[fact.relation].questions):
                prompt = self.world.render(template, fact.subject, "")
                example = family.build(self.world, fact.relation, fields, prompt, i)
                evidence = self.evidence.get(fact.index)
                out.append(DocQuestion(example, fact.subject, fact.relation, evidence))
        return out


def fact_documents(cfg: DocumentsConfig) -> DocumentSet:
    """The documents of ``World(cfg.seed, cfg.size)`` (module docstring); deterministic."""
    cfg.check()
    world = World(cfg.seed, cfg.size)
    rng = random.Random(f"tinyworld/documents/{cfg.seed}/{cfg.size}")
    paragraphs: list[Paragraph] = []
    evidence: dict[int, str] = {}
    subjects = [s for kind in FILES for s in world.entities(kind)]
    for subject in subjects:
        facts = [f for f in world.facts_about(subject) if rng.random() >= cfg.withheld]
        rng.shuffle(facts)
        for start in range(0, len(facts), cfg.per_paragraph):
            group = facts[start : start + cfg.per_paragraph]
            sentences = [world.statement(f, rng) for f in group]
            evidence.update((f.index, s) for f, s in zip(group, sentences, strict=True))
            source = FILES[world.kind_of(subject) or "person"]
            paragraphs.append(Paragraph(source, " ".join(sentences), tuple(f.index for f in group)))
    for _ in range(round(cfg.distractors * len(subjects))):
        names = {
            "P": rng.choice(world.persons),
            "Q": rng.choice(world.persons),
            "C": rng.choice(world.countries),
            "T": rng.choice(world.towns),
            "c": rng.choice(world.creatures),
            "o": rng.choice(world.objects),
        }
        paragraphs.append(Paragraph(NOTES, rng.choice(_NOTES).format(**names)))
    return DocumentSet(world, tuple(paragraphs), evidence)


def write_documents(docs: DocumentSet, folder: str | Path) -> list[Path]:
    """The paragraphs as ``.md`` files in ``folder`` (blank lines between paragraphs, so that
    :func:`genlab.tools.retrieval.read_passages` reads one passage per paragraph)."""
    folder = Path(folder)
    folder.mkdir(parents=True, exist_ok=True)
    texts: dict[str, list[str]] = {}
    for p in docs.paragraphs:
        texts.setdefault(p.source, []).append(p.text)
    paths = []
    for name, paragraphs in texts.items():
        atomic_write_bytes(folder / name, ("\n\n".join(paragraphs) + "\n").encode())
        paths.append(folder / name)
    return paths


def write_document_set(out: str | Path, cfg: DocumentsConfig) -> dict[str, int]:
    """``out/documents/`` (what ``genlab chat RUN --retrieve`` searches) and
    ``out/questions/{split}.jsonl`` (each question with its answer and evidence); the counts."""
    out = Path(out)
    if out.exists() and not out.is_dir():
        raise GenlabError(f"--out {out} exists and is not a folder")
    docs = fact_documents(cfg)
    write_documents(docs, out / DOCUMENTS_DIR)
    counts = {"paragraphs": len(docs.paragraphs), "facts written": len(docs.evidence)}
    for split in SPLITS:
        questions = docs.questions(split)
        write_jsonl(out / "questions" / f"{split}.jsonl", (q.to_dict() for q in questions))
        counts[f"{split} questions"] = len(questions)
    return counts
