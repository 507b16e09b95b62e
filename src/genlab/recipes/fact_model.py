"""The fact model: a small GPT that knows every fact of a small TinyWorld, except some people's.

Unlearning, editing and membership inference are questions about facts a model knows. A model
pretrained for minutes on the general corpus recalls frequent facts and guesses rare ones, so
whether an edit or an unlearning step changed a fact would be lost in the noise of what it never
knew. This model is trained to know its facts: every fact of a small world is stated in all of
its relation's paraphrases and asked in all of its questions, for as many passes as it takes.
The facts of a share of the people (``holdout``) are never shown: the model's answers about them
are what "never learned" looks like (the floor an unlearned fact should reach), and their losses
are the non-members of a membership-inference attack (TOFU, Maini et al., 2024).

Questions use pretraining's layout: ``Question: Where was Tenu born?`` / ``Answer: The answer is
Fedale.``, so a fact is probed by scoring or generating the object after ``The answer is``.
"""

from __future__ import annotations

import json
import random
from dataclasses import asdict, dataclass
from pathlib import Path

import torch

from genlab.core.errors import GenlabError
from genlab.core.io import atomic_write_bytes
from genlab.core.train_config import TrainConfig
from genlab.data.tinyworld.relations import RELATIONS
from genlab.data.tinyworld.world import Fact, World
from genlab.data.tokenizer import Tokenizer
from genlab.methods.autoregressive.checkpoint import load_gpt
from genlab.methods.autoregressive.decoding import generate
from genlab.nets.gpt import GPT
from genlab.prompting.layout import direct, qa_text, question
from genlab.recipes.pretrain import PretrainConfig, pretrain

FACTS_FILE = "facts.json"
CORPUS_FILE = "corpus.jsonl"
LEAD = "The answer is"  # the words before the object in every answer
PASSES = 8  # shuffled copies of the fact texts in the corpus: the validation tail repeats them


@dataclass
class FactModelConfig:
    """The world, which people are held out, the model's shape and its training."""

    out: str = "runs/fact_model"
    world_seed: int = 0
    world_size: int = 24  # people; towns, countries, creatures and objects scale with it
    holdout: float = 0.2  # share of people whose facts are never shown (non-members)
    n_layer: int = 4
    n_head: int = 4
    n_embd: int = 128
    block_size: int = 128
    steps: int = 1500
    batch_size: int = 32
    lr: float = 2e-3
    vocab_size: int = 512
    seed: int = 0
    device: str = "auto"
    progress: bool = True


@dataclass
class FactModel:
    """A trained fact model, its world and who it was (not) shown."""

    model: GPT
    tokenizer: Tokenizer
    world: World
    trained: list[str]  # people whose facts were in the corpus
    holdout: list[str]  # people never shown
    path: Path


def person_facts(world: World, name: str) -> list[Fact]:
    """Every fact whose subject is the person ``name``."""
    if world.kind_of(name) != "person":
        raise GenlabError(f"{name!r} is not a person of {world!r}; give one of its people")
    return world.facts_about(name)


def world_facts(world: World) -> list[Fact]:
    """Facts about towns, countries, creatures and objects (no person's, no cipher word's)."""
    return [f for f in world.facts if world.kind_of(f.subject) not in (None, "person")]


def fact_prompt(world: World, fact: Fact, phrasing: int = 0) -> str:
    """The fact's question in one of its relation's phrasings, open after ``The answer is``."""
    questions = RELATIONS[fact.relation].questions
    if not 0 <= phrasing < len(questions):
        raise GenlabError(f"phrasing must be in 0..{len(questions) - 1}, got {phrasing}")
    return question(world.render(questions[phrasing], fact.subject, fact.object), lead=LEAD)


def fact_target(fact: Fact) -> str:
    """What follows the prompt when the model knows the fact: the object after a space."""
    return f" {fact.object}"


def split_people(world: World, holdout: float, seed: int) -> tuple[list[str], list[str]]:
    """(trained, held out): a seeded draw of ``holdout`` of the world's people, at least one."""
    if not 0.0 < holdout < 1.0:
        raise GenlabError(f"holdout must be in (0, 1), got {holdout}")
    people = list(world.persons)
    random.Random(f"genlab/fact-model/{seed}").shuffle(people)
    n = max(1, round(holdout * len(people)))
    return sorted(people[n:]), sorted(people[:n])


def fact_texts(world: World, fact: Fact) -> list[str]:
    """The fact stated in all its paraphrases and asked in all its phrasings, answered."""
    relation = RELATIONS[fact.relation]
    said = [world.render(s, fact.subject, fact.object) for s in relation.statements]
    asked = [
        qa_text(world.render(q, fact.subject, fact.object), direct(fact.object))
        for q in relation.questions
    ]
    return said + asked


def corpus(world: World, trained: list[str], seed: int) -> list[str]:
    """Every known fact's texts, ``PASSES`` times in a seeded order."""
    known = set(trained)
    facts = [f for f in world.facts if f.relation != "cipher"]
    facts = [f for f in facts if world.kind_of(f.subject) != "person" or f.subject in known]
    texts = [t for f in facts for t in fact_texts(world, f)]
    rng = random.Random(f"genlab/fact-model/corpus/{seed}")
    docs: list[str] = []
    for _ in range(PASSES):
        rng.shuffle(texts)
        docs += texts
    return docs


def train_fact_model(cfg: FactModelConfig) -> Path:
    """Train the fact model into ``cfg.out`` (kept when it is already there); its folder."""
    out = Path(cfg.out)
    if (out / FACTS_FILE).is_file():
        return out
    world = World(cfg.world_seed, cfg.world_size)
    trained, held = split_people(world, cfg.holdout, cfg.seed)
    out.mkdir(parents=True, exist_ok=True)
    lines = "\n".join(json.dumps({"text": d}) for d in corpus(world, trained, cfg.seed))
    atomic_write_bytes(out / CORPUS_FILE, (lines + "\n").encode())
    pretrain(
        PretrainConfig(
            out=str(out),
            data=str(out / CORPUS_FILE),
            preset="mini",
            n_layer=cfg.n_layer,
            n_head=cfg.n_head,
            n_embd=cfg.n_embd,
            block_size=cfg.block_size,
            vocab_size=cfg.vocab_size,
            pos="rope",
            val_fraction=0.02,
            train=TrainConfig(
                max_steps=cfg.steps,
                batch_size=cfg.batch_size,
                lr=cfg.lr,
                warmup_steps=min(100, cfg.steps // 10),
                eval_every=max(cfg.steps // 5, 1),
                checkpoint_every=max(cfg.steps // 3, 1),
                weight_decay=0.0,  # memorising is the point
                seed=cfg.seed,
                device=cfg.device,
                progress=cfg.progress,
                tensorboard=False,
            ),
        )
    )
    meta = {"config": asdict(cfg), "trained": trained, "holdout": held}
    atomic_write_bytes(out / FACTS_FILE, json.dumps(meta, indent=2).encode())
    return out


def open_fact_model(path: str | Path, device: str = "cpu") -> FactModel:
    """A fact model's folder (or one derived from it, with its ``facts.json`` beside)."""
    path = Path(path)
    meta_path = path / FACTS_FILE
    if not meta_path.is_file():
        raise GenlabError(
            f"{path} is not a fact model: {FACTS_FILE} is missing (train one with "
            "train_fact_model, or run an experiment that does)"
        )
    meta = json.loads(meta_path.read_text())
    model, tokenizer = load_gpt(path, device=device)
    cfg = meta["config"]
    world = World(cfg["world_seed"], cfg["world_size"])
    return FactModel(model, tokenizer, world, meta["trained"], meta["holdout"], path)


def copy_facts(source: Path, out: Path) -> None:
    """Give a model derived from a fact model (edited, unlearned) its world beside it."""
    atomic_write_bytes(out / FACTS_FILE, (source / FACTS_FILE).read_bytes())


@torch.inference_mode()
def answers(fm: FactModel, prompts: list[str], max_new_tokens: int = 8) -> list[str]:
    """Greedy answers: the text after each prompt up to the first period, stripped."""
    tok = fm.tokenizer
    ids = [[tok.bos_id, *tok.encode(p)] for p in prompts]
    out: list[str] = []
    for start in range(0, len(ids), 64):
        gens = generate(
            fm.model,
            ids[start : start + 64],
            max_new_tokens=max_new_tokens,
            temperature=0.0,
            stop=[*tok.stop_ids, "."],
            tokenizer=tok,
        )
        out += [(g.text or "").split(".")[0].strip() for g in gens]
    return out


def accuracy(fm: FactModel, facts: list[Fact], phrasing: int = 0) -> float:
    """The share of ``facts`` whose greedy answer is exactly the object."""
    if not facts:
        raise GenlabError("no facts to score")
    said = answers(fm, [fact_prompt(fm.world, f, phrasing) for f in facts])
    return sum(a == f.object for a, f in zip(said, facts, strict=True)) / len(facts)
