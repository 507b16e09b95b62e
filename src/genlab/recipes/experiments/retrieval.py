"""Do its citations point to the passage with the answer? Retrieval-augmented answers, measured.

The claim (WebGPT, Nakano et al., 2021): a model that searches, reads and cites answers
questions it cannot answer alone, and its references let a reader check each answer. A ladder
rung (default ``l``) is fine-tuned to call ``search(...)`` over documents about a TinyWorld it
never saw and to answer with ``[n]`` citations (``genlab.recipes.retrieval``); then it answers
questions whose fact is only in those documents, against the same rung closed-book (the floor:
it cannot know those facts, so it can only guess from the kind of answer). Settings were tuned on
the validation questions (``--split validation --out-dir DIR``, so as not to overwrite this
page); the page reports the test questions once.

    genlab experiment retrieval
"""

from __future__ import annotations

import time
from collections.abc import Sequence
from dataclasses import asdict, dataclass, field
from pathlib import Path
from typing import Any

from genlab.core.device import pick_device
from genlab.core.errors import GenlabError
from genlab.core.io import atomic_write_json
from genlab.core.sweep import Metrics, Point, markdown_table, point_dir, run_sweep
from genlab.data.tinyworld.documents import DOCUMENTS_DIR, DocQuestion, fact_documents
from genlab.data.tinyworld.tasks import SPLITS
from genlab.methods.autoregressive.checkpoint import load_gpt
from genlab.prompting.layout import question
from genlab.recipes.experiments.ladder import LadderConfig, ladder_runs
from genlab.recipes.experiments.prompting_ladder import interval, interval_text, load_note
from genlab.recipes.experiments.report import (
    DOCS_DIR,
    load_average,
    new_figure,
    save_figure,
    training_seconds,
    write_page,
)
from genlab.recipes.retrieval import (
    NOT_FOUND,
    QUERY_FORMS,
    RetrievalConfig,
    retrieval,
    search_query,
)
from genlab.tools.cited import answer_with_citations, last_search
from genlab.tools.generate import generate_with_tools
from genlab.tools.retrieval import Retriever, documents_index

NAME = "retrieval"
TRAIN_POINT = "genlab.recipes.experiments.retrieval:train_point"
ARMS = ("closed-book", "search + cite")
GOAL = 0.8  # share of answers that are right and cite a passage containing the answer
# measure -> what the table calls it, in the order of its columns
MEASURES = {
    "correct": "correct",
    "supported": "correct, citing a passage with the answer",
    "cites_answer": "cites a passage with the answer",
    "cites_other": "cites a passage without it",
    "abstains": "says it could not find it",
}


@dataclass
class RetrievalExperimentConfig:
    """The rung, the questions asked, and the retrieval recipe's settings."""

    rung: str = "l"  # the ladder rung fine-tuned to search and cite
    split: str = "test"  # questions asked: test (reported once) or validation (for tuning)
    device: str = "auto"  # where the models answer
    out_dir: str = str(DOCS_DIR)
    retrieval: RetrievalConfig = field(default_factory=RetrievalConfig)
    ladder: LadderConfig = field(default_factory=LadderConfig)


def train_point(settings: Point, run_dir: Path) -> Metrics:
    """The rung's retrieval run (a sweep point): ``settings`` hold the base and the recipe."""
    fields = dict(settings["retrieval"])
    cfg = RetrievalConfig(**{k: v for k, v in fields.items() if k not in ("documents", "train")})
    cfg.base, cfg.out = settings["base"], str(run_dir / "run")
    cfg.documents = type(cfg.documents)(**fields["documents"])
    cfg.train = type(cfg.train)(**fields["train"])
    return retrieval(cfg)


def retrieval_run(cfg: RetrievalExperimentConfig, base: Path) -> Path:
    """The rung's retrieval run folder, trained unless the sweep has it."""
    out = Path(cfg.ladder.sweep_dir) / NAME
    fixed = {"retrieval": asdict(cfg.retrieval) | {"base": "", "out": ""}}
    point: Point = {"rung": cfg.rung, "base": str(base)}
    run_sweep(TRAIN_POINT, [point], out, fixed)
    return point_dir(out, TRAIN_POINT, point, fixed) / "run"


def cited_scores(
    asked: Sequence[DocQuestion], run: Path, retriever: Retriever, cfg: RetrievalExperimentConfig
) -> dict[str, Any]:
    """The retrieval model on ``asked``: per question, each measure (0/1), its searches and
    whether its last search found the passage with the answer; three answers as examples."""
    model, tokenizer = load_gpt(run, device=pick_device(cfg.device))
    k = cfg.retrieval.k
    answers = answer_with_citations(
        model, tokenizer, retriever, [q.example.prompt for q in asked], k=k
    )
    flags: dict[str, list[float]] = {m: [] for m in (*MEASURES, "found", "searches")}
    for q, a in zip(asked, answers, strict=True):
        holds = [bool(q.evidence) and q.evidence in p.text for p in a.passages]
        found = last_search(retriever, a.calls, k)
        flags["correct"].append(q.example.checked(a.claim).correct)
        flags["cites_answer"].append(any(holds))
        flags["supported"].append(any(holds) and flags["correct"][-1])
        flags["cites_other"].append(not all(holds))
        flags["abstains"].append(a.claim == NOT_FOUND)
        flags["found"].append(any(bool(q.evidence) and q.evidence in p.text for p in found))
        flags["searches"].append(sum(c.startswith("search(") for c, _ in a.calls))
    examples = [
        {
            "question": q.example.prompt,
            "reference": q.example.answer,
            "answer": a.text,
            "calls": a.calls,
            "cited": [p.text for p in a.passages],
        }
        for q, a in list(zip(asked, answers, strict=True))[:3]
    ]
    return {"flags": flags, "examples": examples}


def closed_book(
    asked: Sequence[DocQuestion], base: Path, cfg: RetrievalExperimentConfig
) -> list[float]:
    """The pretrained rung alone, in pretraining's question layout: 1 per correct answer."""
    model, tokenizer = load_gpt(base, device=pick_device(cfg.device))
    prompts = [[tokenizer.bos_id, *tokenizer.encode(question(q.example.prompt))] for q in asked]
    answers = []
    for start in range(0, len(prompts), 64):
        answers += generate_with_tools(
            model, tokenizer, prompts[start : start + 64], None, max_new_tokens=24, stop=("\n",)
        )
    return [float(q.example.check(a.text)) for q, a in zip(asked, answers, strict=True)]


def search_recall(asked: Sequence[DocQuestion], retriever: Retriever) -> list[list[str]]:
    """BM25 alone, for the reference queries of each form: the share of answerable questions
    whose fact is in the top 1, 2, 3 passages (why the model searches by relation)."""
    rows = []
    for form in QUERY_FORMS:
        cells = [form]
        for k in (1, 2, 3):
            hits = [
                any(q.evidence in p.text for p in retriever.search(search_query(q, form), k))
                for q in asked
            ]
            cells.append(interval_text(interval(hits)))
        rows.append(cells)
    return rows


def figure(scores: dict[str, list[float]], closed: list[float], path: Path) -> None:
    """Each measure of the retrieval model with its interval; closed-book's accuracy beside."""
    fig = new_figure(9.0, 3.6)
    ax = fig.add_subplot()
    names = ["closed-book: correct", *(f"search + cite: {MEASURES[m]}" for m in MEASURES)]
    values = [interval(closed), *(interval(scores[m]) for m in MEASURES)]
    means = [100 * v[0] for v in values]
    errors = [[100 * (v[0] - v[1]) for v in values], [100 * (v[2] - v[0]) for v in values]]
    ax.barh(range(len(names)), means, xerr=errors, color=["grey", *["tab:blue"] * len(MEASURES)])
    ax.axvline(100 * GOAL, color="tab:red", linestyle="--", label="goal: right and cited")
    ax.set_yticks(range(len(names)), names)
    ax.invert_yaxis()
    ax.set_xlim(0, 100)
    ax.set_xlabel("% of the questions whose fact is only in the documents, 95% intervals")
    ax.legend(loc="lower right")
    save_figure(fig, path)


def run_experiment(cfg: RetrievalExperimentConfig, command: str = "") -> dict[str, Any]:
    """Train (or reuse) the rung and its retrieval run; ask the split's questions; write the page."""
    if cfg.split not in SPLITS[1:]:
        raise GenlabError(f"--split must be validation or test, not {cfg.split!r}")
    if cfg.ladder.world in cfg.retrieval.seeds():
        raise GenlabError(
            f"the ladder's world {cfg.ladder.world} must not be one the model reads about "
            f"(seeds {cfg.retrieval.seeds().start}-{cfg.retrieval.seeds().stop - 1}): its facts "
            "would be known"
        )
    before, start = load_average(), time.perf_counter()
    base = ladder_runs(cfg.ladder, rungs=[cfg.rung])[cfg.rung]
    run = retrieval_run(cfg, base)
    retriever = documents_index(run / DOCUMENTS_DIR)
    questions = fact_documents(cfg.retrieval.documents).questions(cfg.split)
    answerable = [q for q in questions if q.evidence]
    withheld = [q for q in questions if not q.evidence]
    scored = cited_scores(answerable, run, retriever, cfg)
    flags = scored["flags"]
    closed = closed_book(answerable, base, cfg)
    missing = cited_scores(withheld, run, retriever, cfg)["flags"] if withheld else None

    main = [
        [ARMS[0], interval_text(interval(closed)), *["-"] * (len(MEASURES) - 1), "0"],
        [
            ARMS[1],
            *(interval_text(interval(flags[m])) for m in MEASURES),
            f"{sum(flags['searches']) / len(answerable):.2f}",
        ],
    ]
    tables = [
        f"### {len(answerable)} {cfg.split} questions whose fact is only in the documents",
        "",
        markdown_table(
            ["model", *(f"{m} %" for m in MEASURES.values()), "searches per answer"], main
        ),
        "",
        "The model's own searches found the passage with the answer for "
        f"{interval_text(interval(flags['found']))}% of these questions.",
        "",
    ]
    if missing is not None:
        body = [[interval_text(interval(missing[m])) for m in ("abstains", "cites_other")]]
        tables += [
            f"### {len(withheld)} {cfg.split} questions whose fact is in no document",
            "",
            markdown_table(["says it could not find it %", "cites a passage %"], body),
            "",
        ]
    tables += [
        "### The search alone: the passage with the answer in the top k, by query form",
        "",
        markdown_table(["query", "k=1 %", "k=2 %", "k=3 %"], search_recall(answerable, retriever)),
        "",
    ]
    supported = interval(flags["supported"])
    findings = [
        f"goal: right answers citing a passage that contains the answer on >= {100 * GOAL:.0f}%"
        f" of questions whose fact is only in the documents: {interval_text(supported)}%: "
        + ("met" if supported[0] >= GOAL else "not met")
        + f" (citing such a passage, right or wrong: {interval_text(interval(flags['cites_answer']))}%)",
        f"closed-book, the same rung answers {interval_text(interval(closed))}% correctly (it "
        "can only guess: the floor); with search and citations "
        f"{interval_text(interval(flags['correct']))}%",
    ]
    out = Path(cfg.out_dir)
    results = {
        "split": cfg.split,
        "closed_book": interval(closed),
        **{m: interval(flags[m]) for m in (*MEASURES, "found")},
        "searches_per_answer": sum(flags["searches"]) / len(answerable),
        "withheld": {m: interval(missing[m]) for m in MEASURES} if missing else None,
        "examples": scored["examples"],
    }
    atomic_write_json(out / f"{NAME}.json", results)
    figure(flags, closed, out / f"{NAME}.png")
    r, d = cfg.retrieval, cfg.retrieval.documents
    seconds, steps = training_seconds(run)
    write_page(
        out / f"{NAME}.md",
        "Retrieval: do the citations point to the passage with the answer?",
        f"The {cfg.rung} rung of the ladder, pretrained on TinyWorld world {cfg.ladder.world}, is "
        "fine-tuned to search documents about another world (seed "
        f"{d.seed}) and answer with `[n]` citations (WebGPT, Nakano et al., 2021). Asked about "
        "facts that are only in those documents, does it answer, and do its citations point to "
        "a passage that states the answer?",
        "\n".join(tables),
        f"{NAME}.png",
        [
            f"documents: world seed {d.seed}, {d.size} people; at most {d.per_paragraph} facts a "
            f"paragraph, {d.distractors} distractor notes per entity, {100 * d.withheld:.0f}% of "
            f"facts withheld; {len(retriever.passages)} passages, BM25",
            f"questions: every phrasing of every fact of the {cfg.split} split (split by fact, so "
            "no asked fact was answered in training); a citation counts as containing the answer "
            "when its passage holds the sentence that states the fact",
            f"fine-tuning: {r.train.max_steps} steps of SFT (batch {r.train.batch_size}, lr "
            f"{r.train.lr}) on every train question and every question about {r.worlds} more "
            f"worlds (seeds {d.seed + 1}-{d.seed + r.worlds}, their own documents), query form "
            f"`{r.query}`, k = {r.k} passages per search; greedy answers",
            f"fine-tuning took {seconds / 60:.1f} minutes ({steps} steps); the defaults were "
            "chosen on the validation questions (the levers tried: `genlab.recipes.retrieval`'s "
            "docstring), the test questions asked once",
            "closed-book: the pretrained rung in pretraining's `Question: ... Answer:` layout",
            "intervals: 95% percentile bootstrap over the questions",
            f"runs: `{cfg.ladder.sweep_dir}/ladder`, `{cfg.ladder.sweep_dir}/{NAME}`",
            load_note(before, start),
        ],
        findings,
        command=command,
    )
    return results
