"""Editing one fact of the fact model, and measuring the edit as CounterFact does.

An edit asks the model to answer one question differently (``Tenu's capital`` is now Gasby) by
one of three methods: ROME's rank-one update (``research/rome.py``), or fine-tuning the same
layer's MLP output matrix with or without a norm constraint (``research/constrained_finetune.py``).

Each edit is scored on the prompts of Meng et al.'s (2022) CounterFact: **efficacy**, the edit
prompt now prefers the new object to the old one (log-likelihood of the whole object);
**paraphrase**, so do the fact's other question phrasings, never seen by the edit;
**specificity**, the same question about other subjects still prefers their own objects to the
new one; plus the greedy answer, the subject's other facts, and **fluency** as the change of the
model's loss on the texts it was trained on.
"""

from __future__ import annotations

import json
import random
from dataclasses import dataclass, field, replace
from pathlib import Path

import torch

from genlab.core.errors import GenlabError
from genlab.core.io import atomic_write_json
from genlab.data.tinyworld.relations import RELATIONS
from genlab.data.tinyworld.world import Fact, World
from genlab.methods.autoregressive.checkpoint import save_gpt
from genlab.methods.autoregressive.scoring import continuation_logprobs
from genlab.prompting.layout import SEPARATOR
from genlab.recipes.fact_model import (
    CORPUS_FILE,
    FactModel,
    answers,
    copy_facts,
    fact_prompt,
    fact_target,
    open_fact_model,
)
from genlab.research.causal_trace import (
    Case,
    Trace,
    average_effects,
    embedding_noise_std,
    locate_layer,
    subject_span,
    trace_case,
)
from genlab.research.constrained_finetune import FinetuneEditConfig, finetune_edit
from genlab.research.rome import (
    RankOneUpdate,
    Request,
    RomeConfig,
    inverse_second_moment,
    rome_update,
    second_moment,
)

METHODS = ("rome", "ft", "ft-l")
NEIGHBOURS = 10  # other subjects asked the same question (specificity)
FLUENCY_TEXTS = 200  # trained texts whose loss measures damage


@dataclass
class EditSettings:
    """Which layer and how each method edits it."""

    layer: int = 1
    contexts: int = 5  # prefixes the key is averaged over (ROME)
    statements: bool = True  # also edit the fact's own statement sentences (see Editor.prompts)
    key_texts: int = 2000  # trained texts the key statistics C are estimated on
    rome: RomeConfig = field(default_factory=RomeConfig)
    ft: FinetuneEditConfig = field(default_factory=FinetuneEditConfig)
    ft_linf: float = 5e-3  # FT+L's bound on each weight's change
    seed: int = 0


def parse_fact(world: World, spec: str) -> tuple[Fact, str]:
    """``"SUBJECT|RELATION|NEW_OBJECT"`` -> (the fact, the new object), checked against the world."""
    parts = [p.strip() for p in spec.split("|")]
    if len(parts) != 3 or not all(parts):
        raise GenlabError(
            f"--fact takes SUBJECT|RELATION|NEW_OBJECT (e.g. 'Tenu|capital|Gasby'), got {spec!r}"
        )
    subject, relation, new = parts
    if relation not in RELATIONS or relation == "cipher":
        names = ", ".join(r for r in RELATIONS if r != "cipher")
        raise GenlabError(f"unknown relation {relation!r}; choose from: {names}")
    try:
        fact = world.fact(subject, relation)
    except KeyError:
        raise GenlabError(
            f"the world has no fact {subject!r} {relation}: give a subject it knows "
            "(genlab data tinyworld --show facts lists them)"
        ) from None
    if new == fact.object:
        raise GenlabError(f"{subject}'s {relation} is already {new}: give a different object")
    if new not in world.entities(RELATIONS[relation].object_kind):
        raise GenlabError(
            f"{new!r} is not a {RELATIONS[relation].object_kind} of this world; "
            f"give one of: {', '.join(world.entities(RELATIONS[relation].object_kind)[:8])}, ..."
        )
    return fact, new


class Editor:
    """Edits a fact model in place and undoes each edit; keeps C^-1 of the edited layer."""

    def __init__(
        self, fm: FactModel, settings: EditSettings, keys: dict[int, torch.Tensor] | None = None
    ) -> None:
        """``keys`` caches C^-1 by layer across editors of one model (C costs a pass over
        ``key_texts`` texts)."""
        self.fm, self.settings = fm, settings
        self.tok = fm.tokenizer
        texts = _trained_texts(fm)
        rng = random.Random(f"genlab/editing/{settings.seed}")
        self.prefixes = rng.sample(texts, min(settings.contexts, len(texts)))
        self._key_ids = [
            [self.tok.bos_id, *self.tok.encode(t)] for t in texts[: settings.key_texts]
        ]
        self._keys = {} if keys is None else keys
        fluency = rng.sample(texts, min(FLUENCY_TEXTS, len(texts)))
        self.fluency_ids = [self.tok.encode(t) for t in fluency]

    def c_inv(self) -> torch.Tensor:
        layer = self.settings.layer
        if layer not in self._keys:
            c = second_moment(self.fm.model, layer, self._key_ids)
            self._keys[layer] = inverse_second_moment(c, self.settings.rome.ridge)
        return self._keys[layer]

    def prompts(self, fact: Fact, new: str) -> list[tuple[list[int], int]]:
        """What the edit is written on, as (ids, subject end): the edit question, then the
        relation's statements cut before the object (``The birthplace of Tenu is``), the sentences the
        model learnt its facts from. ROME's GPT-2 edit prompt is such a statement with the
        subject first; a question here reads the relation before the subject, so without the
        statements the new value is tied to the edit question's words and its paraphrases
        follow less (measured in docs/experiments/editing.md). The paraphrase questions are
        never among them."""
        world, tok = self.fm.world, self.tok
        texts = [fact_prompt(world, fact, 0)]
        if self.settings.statements:
            for template in RELATIONS[fact.relation].statements:
                at = template.find("{o}")
                if at > 0 and "{s}" in template[:at]:  # subject, then the object
                    texts.append(world.render(template[:at].rstrip(), fact.subject, new))
        spans = [subject_span(tok, text, fact.subject) for text in texts]
        return [(ids, end) for ids, (_, end) in spans]

    def request(self, fact: Fact, new: str) -> Request:
        """The ROME request: the edit prompts plain and after each prefix, and every other fact
        of the subject for the KL term to keep (all of them: with the first three only, 83.5%
        were kept on the test edits; with all, 93.3%)."""
        world, tok = self.fm.world, self.tok
        target = tok.encode(f" {new}")
        room = self.fm.model.config.block_size - len(target)
        prefix_ids = [tok.encode(prefix + SEPARATOR) for prefix in self.prefixes]
        prompts = []
        for ids, end in self.prompts(fact, new):
            prompts.append((ids, end))
            for extra in prefix_ids:  # a prefix too long for the context is skipped
                if len(extra) + len(ids) <= room:
                    prompts.append(([ids[0], *extra, *ids[1:]], end + len(extra)))
        keep = []
        for other in world.facts_about(fact.subject):
            if other.relation != fact.relation:
                ids, (_, end) = subject_span(tok, fact_prompt(world, other, 0), fact.subject)
                keep.append((ids, end))
        return Request(prompts=prompts, target=target, keep=keep)

    def edit(self, fact: Fact, new: str, method: str) -> RankOneUpdate | object:
        """Apply one edit; the returned object's ``revert(model)`` undoes it exactly."""
        model, settings = self.fm.model, self.settings
        if method == "rome":
            cfg = replace(settings.rome, layer=settings.layer)
            update, _ = rome_update(model, self.request(fact, new), self.c_inv(), cfg)
            update.apply(model)
            return update
        if method in ("ft", "ft-l"):
            linf = settings.ft_linf if method == "ft-l" else None
            cfg = replace(settings.ft, layer=settings.layer, linf=linf)
            prompts = [ids for ids, _ in self.prompts(fact, new)]
            return finetune_edit(model, prompts, self.tok.encode(f" {new}"), cfg)
        raise GenlabError(f"unknown edit method {method!r}; choose from: {', '.join(METHODS)}")


def _trained_texts(fm: FactModel) -> list[str]:
    """The distinct texts of the fact model's corpus, in corpus order."""
    path = fm.path / CORPUS_FILE
    if not path.is_file():
        raise GenlabError(f"{path} is missing: the key statistics are read from the corpus")
    seen: dict[str, None] = {}
    for line in path.read_text().splitlines():
        if line.strip():
            seen.setdefault(json.loads(line)["text"], None)
    return list(seen)


def object_logprob(fm: FactModel, prompts: list[str], objects: list[str]) -> torch.Tensor:
    """log p(object | prompt) of each pair, summed over the object's tokens."""
    tok = fm.tokenizer
    ctx = [[tok.bos_id, *tok.encode(p)] for p in prompts]
    cont = [tok.encode(f" {o}") for o in objects]
    return torch.stack([s.sum() for s in continuation_logprobs(fm.model, ctx, cont)])


def neighbours(fm: FactModel, fact: Fact, new: str, k: int = NEIGHBOURS) -> list[Fact]:
    """Up to ``k`` facts the model was taught, of the same relation about other subjects whose
    object is not ``new`` (CounterFact's neighbourhood; held-out people's facts are unknown, and
    a neighbour whose answer is the new object cannot tell a kept fact from a leaked edit)."""
    world, trained = fm.world, set(fm.trained)
    same = [
        f
        for f in world.facts
        if f.relation == fact.relation
        and f.subject != fact.subject
        and f.object != new
        and (world.kind_of(f.subject) != "person" or f.subject in trained)
    ]
    return random.Random(f"genlab/editing/neighbours/{fact.index}").sample(same, min(k, len(same)))


@torch.no_grad()
def fluency_loss(fm: FactModel, ids: list[list[int]]) -> float:
    """Mean per-token loss on trained texts: what an edit must not damage."""
    tok = fm.tokenizer
    scores = continuation_logprobs(fm.model, [[tok.bos_id]] * len(ids), ids)
    return -float(torch.cat(scores).mean())


def measure(fm: FactModel, fact: Fact, new: str, fluency_ids: list[list[int]]) -> dict[str, float]:
    """CounterFact's scores of the model as it is now, for the edit ``fact`` -> ``new``."""
    world = fm.world
    phrasings = len(RELATIONS[fact.relation].questions)
    prompts = [fact_prompt(world, fact, p) for p in range(phrasings)]
    new_lp = object_logprob(fm, prompts, [new] * phrasings)
    old_lp = object_logprob(fm, prompts, [fact.object] * phrasings)
    wins = (new_lp > old_lp).float()
    near = neighbours(fm, fact, new)
    specificity = float("nan")  # no other subject to ask
    if near:
        near_prompts = [fact_prompt(world, f, 0) for f in near]
        keeps = object_logprob(fm, near_prompts, [f.object for f in near]) > object_logprob(
            fm, near_prompts, [new] * len(near)
        )
        specificity = float(keeps.float().mean())
    own = [f for f in world.facts_about(fact.subject) if f.relation != fact.relation]
    said = answers(fm, [prompts[0], *[fact_prompt(world, f, 0) for f in own]])
    return {
        "efficacy": float(wins[0]),
        "paraphrase": float(wins[1:].mean()),
        "specificity": specificity,
        "answer_new": float(said[0] == new),
        "subject_others": sum(a == f.object for a, f in zip(said[1:], own, strict=True))
        / max(len(own), 1),
        "fluency_loss": fluency_loss(fm, fluency_ids),
    }


@dataclass
class EditRunConfig:
    """``genlab edit``: which model, which fact, how, and where the edited model goes."""

    model: str = "runs/fact_model"  # a fact model's run folder
    fact: str = ""  # SUBJECT|RELATION|NEW_OBJECT
    method: str = "rome"  # rome | ft | ft-l
    layer: int | None = None  # the MLP edited; None: located by causal tracing
    out: str = "runs/edited"  # the edited model's folder
    seed: int = 0  # prefixes of the key, facts traced
    device: str = "cpu"


def run_edit(cfg: EditRunConfig) -> dict:
    """Edit one fact; write the edited model with ``edit.json`` (scores before and after)."""
    if cfg.method not in METHODS:
        raise GenlabError(f"unknown edit method {cfg.method!r}; choose from: {', '.join(METHODS)}")
    out = Path(cfg.out)
    if (out / "model.safetensors").exists():
        raise GenlabError(f"{out} already holds a model; give a new --out")
    fm = open_fact_model(cfg.model, device=cfg.device)
    fact, new = parse_fact(fm.world, cfg.fact)
    layer = cfg.layer
    if layer is None:
        facts = known_facts(fm, [f for n in fm.trained for f in fm.world.facts_about(n)])[:20]
        if not facts:
            raise GenlabError(f"{cfg.model} answers none of its facts: give --layer")
        _, _, effects = trace_facts(fm, facts, samples=3, seed=cfg.seed)
        layer = locate_layer(effects)
    editor = Editor(fm, EditSettings(layer=layer, seed=cfg.seed))
    before = measure(fm, fact, new, editor.fluency_ids)
    editor.edit(fact, new, cfg.method)
    after = measure(fm, fact, new, editor.fluency_ids)
    save_gpt(out, fm.model, fm.tokenizer)
    copy_facts(fm.path, out)
    report = {
        "fact": fact.to_dict(),
        "new_object": new,
        "method": cfg.method,
        "layer": layer,
        "before": before,
        "after": after,
    }
    atomic_write_json(out / "edit.json", report)
    return report


def known_facts(fm: FactModel, facts: list[Fact]) -> list[Fact]:
    """The facts the model answers right in the edit phrasing (an edit of an unknown fact
    measures nothing)."""
    said = answers(fm, [fact_prompt(fm.world, f, 0) for f in facts])
    return [f for f, a in zip(facts, said, strict=True) if a == f.object]


def new_object(fact: Fact, known: list[Fact], rng: random.Random) -> str:
    """A counterfactual object as CounterFact draws one: the object of another known fact of
    the same relation (an entity the model never gave as an answer, such as a job nobody it
    knows has, is a word it cannot spell from one edited vector)."""
    objects = sorted({f.object for f in known if f.relation == fact.relation} - {fact.object})
    if not objects:
        raise GenlabError(f"no other known {fact.relation} object to edit {fact.subject}'s to")
    return rng.choice(objects)


def trace_facts(
    fm: FactModel, facts: list[Fact], samples: int = 5, seed: int = 0
) -> tuple[list[Case], list[Trace], torch.Tensor]:
    """Causal traces of ``facts`` (their edit prompts) and the mean effect by layer and role."""
    cases = []
    for fact in facts:
        ids, span = subject_span(fm.tokenizer, fact_prompt(fm.world, fact, 0), fact.subject)
        cases.append(Case(ids, span, fm.tokenizer.encode(fact_target(fact))[0]))
    noise = embedding_noise_std(fm.model)
    traces = [trace_case(fm.model, c, noise, samples, seed + i) for i, c in enumerate(cases)]
    return cases, traces, average_effects(cases, traces)
