"""Can a model's text be told from people's, at 50 tokens, and at what cost to its answers?

The claims: a soft watermark in sampling (Kirchenbauer et al., 2023, "A Watermark for Large
Language Models": a keyed green share ``gamma`` of the vocabulary per previous token, ``delta``
added to its logits) is detected from the tokens and the key alone by a z-test, with a bias too
small to hurt the model's answers; zero-shot detectors from the model's own likelihood (the mean
log-likelihood, and Fast-DetectGPT's curvature, Bao et al., 2024) and a trained n-gram classifier
(Solaiman et al., 2019) need no watermark; replacing tokens weakens all of them. The issue's goal:
a true-positive rate of at least 0.95 at a 1% false-positive rate on 50 tokens, with ``delta``
chosen so that the judge score of the model's answers drops by at most 0.02.

The lever against that cost: entropy gating (Lee et al., 2023, "Who Wrote this Code?
Watermarking for Code Generation", SWEET) biases, and the detector scores, only the steps whose
next-token entropy reaches a threshold; a greedy answer's confident steps are left alone. The
threshold is a grid dimension beside delta (0: the plain watermark).

One rung of the prompting ladder (``ladder.py``; trained once through the sweep runner and shared
with the prompting experiments) writes the machine text. The human text is TinyWorld pretraining
text the model never saw: documents of another corpus seed (any also in the model's corpus are
dropped), read as pretraining reads them (each document after ``<|bos|>``, the next one following
a short one). Each window opens a document: its first ``prefix_tokens`` are the prompt, the next
``new_tokens`` the human continuation; the model continues the same prompt by sampling (with and
without the watermark, the same random draws), so every human text has a machine twin and the
intervals are paired bootstraps over prompts. Only the continuation is scored: the watermark's
first pair is (the prompt's last token, the first new one), and the likelihood detectors score
the continuation conditioned on the prompt (the prompt, human in both classes, would only add
noise). Windows are split three ways: train (the classifier's fit), validation (gamma and delta
the entropy threshold are chosen there: the best rate among the cells within the drop bound, the
smallest delta among equals) and test (the chosen cell, reported once).

The judge score: held-out questions of a few TinyWorld families in pretraining's layout
(``Question: ...`` / ``Answer:``), answered greedily to the end of the line as chat answers are,
with and without the watermark's bias, scored by TinyWorld's judge
(:func:`genlab.data.tinyworld.judge.verdict`). Which frequent pairs a key colours green moves
that cost, so it is measured for the key in use and averaged over ``keys`` keys (the cost of a
key drawn at random), and delta is chosen once by each; the mean over keys is the headline (a
user's key is random: one lucky key says nothing about the next). The attack replaces a share of the
continuation's tokens, at seeded random positions, by other tokens drawn uniformly from the
tokenizer's ordinary ones. Every detector is also measured at other sampling temperatures (a
lever: the zero-shot detectors assume the model's text is likelier under it than people's).

    genlab experiment detection
"""

from __future__ import annotations

import random
import time
from collections.abc import Iterable, Sequence
from dataclasses import asdict, dataclass
from pathlib import Path
from typing import Any

import numpy as np

from genlab.core.device import pick_device
from genlab.core.errors import GenlabError, refuse_invalid
from genlab.core.io import atomic_write_json
from genlab.core.sweep import markdown_table
from genlab.data.tinyworld import World, make_examples
from genlab.data.tinyworld.families import FAMILIES
from genlab.data.tinyworld.families.base import Example
from genlab.data.tinyworld.judge import verdict
from genlab.data.tokenizer import Tokenizer
from genlab.methods.autoregressive.checkpoint import load_gpt
from genlab.methods.autoregressive.decoding import LogitsBias, generate
from genlab.metrics.bootstrap import bootstrap_mean, bootstrap_statistic
from genlab.metrics.roc import auroc, threshold_at_fpr, tpr_at_fpr
from genlab.nets.gpt import GPT
from genlab.prompting.layout import question
from genlab.recipes.experiments.ladder import LadderConfig, ladder_runs
from genlab.recipes.experiments.prompting_ladder import interval_text, value_interval_text
from genlab.recipes.experiments.report import (
    DOCS_DIR,
    SWEEPS_DIR,
    load_average,
    new_figure,
    save_figure,
    training_seconds,
    write_page,
)
from genlab.research.likelihood_detect import likelihood_scores
from genlab.research.ngram_detector import train_ngram_detector
from genlab.research.watermark import Watermark, WatermarkScore, gated_entropies

NAME = "detection"
FPR = 0.01
Z_AT_FPR = 2.326  # the one-sided z that N(0, 1) exceeds with probability 0.01
HUMAN_SEED = 10_000  # corpus seeds from here on are the held-out human text's
SPLITS = ("train", "validation", "test")
BATCH = 128  # prompts decoded together
# how delta is chosen: by the mean judge drop over keys (the headline: a user's key is random),
# or by the drop of the key in use
RULES = {"keys": "drop_keys", "key": "drop"}
# preset -> the rung that writes, and the ladder budget it is trained under (cpu: the prompting
# experiments' default, so the rung is theirs; toy: a few steps on a small corpus, for tests)
PRESETS = {
    "cpu": ("m", {}),
    "toy": (
        "xs",
        {
            "preset": "toy",
            "corpus_chars": 20_000,
            "task_examples": 12,
            "steps": 20,
            "batch_size": 4,
            "vocab_size": 300,
        },
    ),
}


@dataclass
class DetectionConfig:
    """The model, the texts, the watermark's grid, the questions and the attack."""

    preset: str = "cpu"  # cpu: rung m of the prompting ladder; toy: rung xs, 20 steps (tests)
    n_texts: int = 300  # human texts per split (train, validation, test), each with a machine twin
    prefix_tokens: int = 16  # a held-out document's first tokens: the prompt
    new_tokens: int = 50  # the continuation, human or the model's: what is scored
    temperature: float = 1.0  # of the model's sampling
    temperatures: tuple[float, ...] = (0.9, 0.8, 0.7)  # other temperatures, measured on test
    key: str = "genlab"  # the watermark's key (the one whose detection is reported)
    keys: int = 8  # keys the judge drop and the human z are also averaged over (the first: --key)
    gammas: tuple[float, ...] = (0.25,)  # green shares tried (the paper's 0.25; 0.5 cost more)
    deltas: tuple[float, ...] = (3.0, 6.0)  # green biases tried (below 2 nothing detects)
    entropies: tuple[float, ...] = (0.0, 1.0, 2.0, 2.5, 3.0)  # entropy thresholds, nats (SWEET)
    ignore_repeated: bool = True  # the z-test counts a repeated (previous, token) pair once
    max_drop: float = 0.02  # judge-score drop allowed when choosing delta
    families: tuple[str, ...] = ("count_letters", "sentiment", "yes_no_fact", "fact_question")
    n_questions: int = 100  # questions per family in validation and in test
    answer_tokens: int = 24  # an answer's length at most
    shares: tuple[float, ...] = (0.1, 0.3)  # shares of the continuation's tokens replaced
    seed: int = 0  # held-out text, sampling, questions and the attack
    device: str = "auto"  # where the rung trains and the experiment runs
    sweep_dir: str = str(SWEEPS_DIR)
    out_dir: str = str(DOCS_DIR)

    def __post_init__(self) -> None:
        checks = {
            "preset": self.preset in PRESETS,
            "n_texts": self.n_texts >= 2,
            "prefix_tokens": self.prefix_tokens >= 1,
            "new_tokens": self.new_tokens >= 2,
            "temperature": self.temperature > 0,
            "temperatures": all(t > 0 for t in self.temperatures),
            "keys": self.keys >= 1,
            "gammas": bool(self.gammas) and all(0 < g < 1 for g in self.gammas),
            "deltas": bool(self.deltas) and all(d >= 0 for d in self.deltas),
            "entropies": bool(self.entropies)
            and all(0 <= h < float("inf") for h in self.entropies),
            "max_drop": self.max_drop >= 0,
            "families": bool(self.families) and all(f in FAMILIES for f in self.families),
            "n_questions": self.n_questions >= 1,
            "answer_tokens": self.answer_tokens >= 1,
            "shares": all(0 <= s <= 1 for s in self.shares),
        }
        refuse_invalid(self, checks, "detection setting")

    def ladder(self) -> tuple[str, LadderConfig]:
        """The rung that writes and the ladder it belongs to."""
        rung, budget = PRESETS[self.preset]
        return rung, LadderConfig(
            **budget, device=self.device, sweep_dir=self.sweep_dir, parallel=1
        )


@dataclass
class Texts:
    """One split's windows: prompts (``<|bos|>`` and the prefix) and human continuations."""

    prompts: list[list[int]]
    human: list[list[int]]


def replace_tokens(
    texts: Sequence[Sequence[int]], share: float, vocab: Sequence[int], seed: int
) -> list[list[int]]:
    """Each text with ``round(share * len)`` tokens, at positions drawn without replacement,
    replaced by a different token drawn uniformly from ``vocab``; the same seed, the same edits."""
    if not 0.0 <= share <= 1.0:
        raise GenlabError(f"the share of tokens replaced must lie in [0, 1], got {share}")
    if len(set(vocab)) < 2:
        raise GenlabError("replacing a token needs a vocabulary of at least two tokens")
    rng = random.Random(f"genlab/detection/replace/{seed}/{share}")
    out = []
    for text in texts:
        edited = list(text)
        for i in rng.sample(range(len(edited)), round(share * len(edited))):
            new = edited[i]
            while new == edited[i]:
                new = rng.choice(vocab)
            edited[i] = new
        out.append(edited)
    return out


def human_windows(
    docs: Iterable[str], tokenizer: Tokenizer, n: int, prefix: int, length: int
) -> list[list[int]]:
    """``n`` disjoint windows of ``prefix + length`` tokens of the document stream, each opening
    a document of at least ``prefix`` tokens; a short document is followed by ``<|bos|>`` and the
    next, as pretraining packs them."""
    windows: list[list[int]] = []
    open_window: list[int] = []
    for doc in docs:
        ids = tokenizer.encode(doc)
        if open_window:
            open_window += [tokenizer.bos_id, *ids]
        elif len(ids) >= prefix:
            open_window = ids
        if len(open_window) >= prefix + length:
            windows.append(open_window[: prefix + length])
            open_window = []
            if len(windows) == n:
                return windows
    raise GenlabError(f"the held-out corpus gave {len(windows)} windows of the {n} asked for")


def held_out_texts(cfg: DetectionConfig, tokenizer: Tokenizer) -> dict[str, Texts]:
    """The human windows of every split, from documents the model's corpus does not hold."""
    _, ladder = cfg.ladder()
    world = World(ladder.world)
    seen = set(world.corpus(n_chars=ladder.corpus_chars, seed=ladder.seed))
    docs = (d for d in world.corpus(n_chars=10**9, seed=HUMAN_SEED + cfg.seed) if d not in seen)
    n = cfg.n_texts
    windows = human_windows(docs, tokenizer, 3 * n, cfg.prefix_tokens, cfg.new_tokens)
    out = {}
    for i, split in enumerate(SPLITS):
        part = windows[i * n : (i + 1) * n]
        out[split] = Texts(
            [[tokenizer.bos_id, *w[: cfg.prefix_tokens]] for w in part],
            [w[cfg.prefix_tokens :] for w in part],
        )
    return out


def continuations(
    model: GPT,
    prompts: Sequence[Sequence[int]],
    cfg: DetectionConfig,
    temperature: float,
    bias: LogitsBias | None = None,
) -> list[list[int]]:
    """The model's sampled continuation of each prompt (the same random stream with or without
    a bias)."""
    out: list[list[int]] = []
    for start in range(0, len(prompts), BATCH):
        gens = generate(
            model,
            prompts[start : start + BATCH],
            max_new_tokens=cfg.new_tokens,
            temperature=temperature,
            seed=cfg.seed + start,
            logits_bias=bias,
        )
        out += [g.tokens for g in gens]
    return out


@dataclass
class Answers:
    """Questions answered: each answer's text, judge score and whether it is right."""

    texts: list[str]
    scores: np.ndarray
    correct: np.ndarray


def judge_scores(
    model: GPT,
    tokenizer: Tokenizer,
    questions: Sequence[Example],
    cfg: DetectionConfig,
    bias: LogitsBias | None = None,
) -> Answers:
    """Each question answered greedily to the end of its line, as a chat answers, and judged."""
    prompts = [[tokenizer.bos_id, *tokenizer.encode(question(e.prompt))] for e in questions]
    texts: list[str] = []
    for start in range(0, len(prompts), BATCH):
        gens = generate(
            model,
            prompts[start : start + BATCH],
            max_new_tokens=cfg.answer_tokens,
            temperature=0.0,
            stop=[*tokenizer.stop_ids, "\n"],
            tokenizer=tokenizer,
            logits_bias=bias,
        )
        texts += [g.text or "" for g in gens]
    verdicts = [verdict(e, t) for e, t in zip(questions, texts, strict=True)]
    return Answers(
        texts,
        np.array([v.score for v in verdicts]),
        np.array([v.correct and v.rejected is None for v in verdicts]),
    )


def watermark_scores(
    wm: Watermark,
    prompts: Sequence[Sequence[int]],
    texts: Sequence[Sequence[int]],
    entropies: Sequence[Sequence[float] | None],
    ignore_repeated: bool,
) -> list[WatermarkScore]:
    """Each continuation's z-test, its first pair starting at the prompt's last token."""
    return [
        wm.score(t, prompt_last=p[-1], ignore_repeated=ignore_repeated, entropies=e)
        for p, t, e in zip(prompts, texts, entropies, strict=True)
    ]


def z_scores(
    wm: Watermark,
    prompts: Sequence[Sequence[int]],
    texts: Sequence[Sequence[int]],
    entropies: Sequence[Sequence[float] | None],
    ignore_repeated: bool,
) -> np.ndarray:
    return np.array([s.z for s in watermark_scores(wm, prompts, texts, entropies, ignore_repeated)])


def all_keys(cfg: DetectionConfig) -> list[str]:
    return [cfg.key, *(f"{cfg.key}/{k}" for k in range(1, cfg.keys))]


def tpr_interval(pos: np.ndarray, neg: np.ndarray, seed: int) -> list[float]:
    """TPR at 1% FPR (threshold read off ``neg``) with its 95% interval, resampling prompts
    (the i-th positive and negative share a prompt)."""
    iv = bootstrap_statistic(lambda i: tpr_at_fpr(pos[i], neg[i], FPR), len(pos), seed=seed)
    return [iv.mean, iv.low, iv.high]


def auroc_interval(pos: np.ndarray, neg: np.ndarray, seed: int) -> list[float]:
    iv = bootstrap_statistic(lambda i: auroc(pos[i], neg[i]), len(pos), seed=seed)
    return [iv.mean, iv.low, iv.high]


def mean_interval(values: np.ndarray, seed: int) -> list[float]:
    iv = bootstrap_mean(values.astype(float), seed=seed)
    return [iv.mean, iv.low, iv.high]


def watermark_cell(
    model: GPT,
    tok: Tokenizer,
    texts: Texts,
    questions: Sequence[Example],
    plain: Answers,
    gamma: float,
    delta: float,
    entropy: float,
    cfg: DetectionConfig,
) -> dict[str, Any]:
    """One watermark on one split: detection at 1% FPR (with ``cfg.key``) and the judge-score
    drop, for ``cfg.key`` and averaged over ``cfg.keys`` keys, with 95% intervals."""
    wm = Watermark(cfg.key, gamma, delta, entropy)
    marked = continuations(model, texts.prompts, cfg, cfg.temperature, wm)
    gated, human_gated = (
        gated_entropies(model, wm, texts.prompts, t) for t in (marked, texts.human)
    )
    z = z_scores(wm, texts.prompts, marked, gated, cfg.ignore_repeated)
    human_z = z_scores(wm, texts.prompts, texts.human, human_gated, cfg.ignore_repeated)
    z_all = z_scores(wm, texts.prompts, marked, gated, not cfg.ignore_repeated)
    human_all = z_scores(wm, texts.prompts, texts.human, human_gated, not cfg.ignore_repeated)
    answers = [
        judge_scores(model, tok, questions, cfg, Watermark(k, gamma, delta, entropy))
        for k in all_keys(cfg)
    ]
    by_key = np.stack([a.scores for a in answers])  # (keys, questions)
    every = watermark_scores(wm, texts.prompts, marked, gated, ignore_repeated=False)
    return {
        "gamma": gamma,
        "delta": delta,
        "entropy": entropy,
        "tpr": tpr_interval(z, human_z, cfg.seed),
        "tpr_theory": mean_interval(z > Z_AT_FPR, cfg.seed),
        "tpr_other_counting": tpr_interval(z_all, human_all, cfg.seed),
        "threshold": threshold_at_fpr(human_z, FPR),
        "z_mean": float(z.mean()),
        "green_share": float(np.mean([s.green / max(s.scored, 1) for s in every])),
        "scored_share": float(
            np.mean([s.scored / len(t) for s, t in zip(every, marked, strict=True)])
        ),
        "drop": mean_interval(plain.scores - by_key[0], cfg.seed),
        "drop_keys": mean_interval(plain.scores - by_key.mean(0), cfg.seed),
        "drop_per_key": (plain.scores.mean() - by_key.mean(1)).tolist(),
        "judge_plain": float(plain.scores.mean()),
        "accuracy_plain": float(plain.correct.mean()),
        "accuracy_marked": float(answers[0].correct.mean()),
        "accuracy_keys": float(np.mean([a.correct.mean() for a in answers])),
        "answers_changed": changed(plain.texts, [a.texts for a in answers]),
        "first_word_changed": changed(
            [first_word(x) for x in plain.texts],
            [[first_word(x) for x in a.texts] for a in answers],
        ),
        "z": z.tolist(),
        "human_z": human_z.tolist(),
    }


def first_word(text: str) -> str:
    return next(iter(text.split()), "")


def changed(plain: Sequence[str], marked: Sequence[Sequence[str]]) -> float:
    """The share of answers that differ from the plain ones, over every key's answers."""
    return float(np.mean([[x != y for x, y in zip(plain, m, strict=True)] for m in marked]))


def choose(grid: Sequence[dict[str, Any]], max_drop: float, drop: str) -> dict[str, Any]:
    """The cell with the best TPR among those whose ``drop`` (the key's, or the mean over keys)
    is within the bound, the smallest delta (then gamma, then entropy threshold) among equals; with
    none within it, the cell of smallest drop."""
    within = [c for c in grid if c[drop][0] <= max_drop]
    if not within:
        return min(grid, key=lambda c: (c[drop][0], c["delta"], c["gamma"], c["entropy"]))
    return min(within, key=lambda c: (-c["tpr"][0], c["delta"], c["gamma"], c["entropy"]))


def detector_row(
    name: str, pos: np.ndarray, neg: np.ndarray, attacked: dict[float, np.ndarray], seed: int
) -> dict[str, Any]:
    """AUROC and TPR at 1% FPR on clean positives and on each attacked set (same negatives)."""
    row: dict[str, Any] = {"detector": name, "auroc": auroc_interval(pos, neg, seed)}
    row |= {
        "tpr": tpr_interval(pos, neg, seed),
        "mean": float(pos.mean()),
        "human_mean": float(neg.mean()),
    }
    for share, scores in attacked.items():
        row[f"tpr_replaced_{share}"] = tpr_interval(scores, neg, seed)
        row[f"auroc_replaced_{share}"] = auroc_interval(scores, neg, seed)
    return row


def detectors(
    model: GPT,
    texts: dict[str, Texts],
    wm: Watermark,
    temperature: float,
    vocab: Sequence[int],
    cfg: DetectionConfig,
) -> list[dict[str, Any]]:
    """Every detector on the test split at one sampling temperature: the watermark (on
    watermarked text), the zero-shot scores and the classifier (on unwatermarked text); clean
    and with ``cfg.shares`` of the machine tokens replaced."""
    test = texts["test"]
    marked = continuations(model, test.prompts, cfg, temperature, wm)
    plain = continuations(model, test.prompts, cfg, temperature)
    attacked = {s: replace_tokens(marked, s, vocab, cfg.seed) for s in cfg.shares}
    attacked_plain = {s: replace_tokens(plain, s, vocab, cfg.seed) for s in cfg.shares}

    def z(conts: Sequence[Sequence[int]]) -> np.ndarray:
        return z_scores(
            wm,
            test.prompts,
            conts,
            gated_entropies(model, wm, test.prompts, conts),
            cfg.ignore_repeated,
        )

    def zero_shot(conts: Sequence[Sequence[int]]) -> tuple[np.ndarray, np.ndarray]:
        full = [[*p, *c] for p, c in zip(test.prompts, conts, strict=True)]
        s = likelihood_scores(model, full, context=1 + cfg.prefix_tokens)
        return s.log_likelihood.numpy(), s.curvature.numpy()

    human, machine = zero_shot(test.human), zero_shot(plain)
    hit = {s: zero_shot(a) for s, a in attacked_plain.items()}
    train = texts["train"]
    classifier = train_ngram_detector(
        train.human, continuations(model, train.prompts, cfg, temperature), seed=cfg.seed
    )
    seed = cfg.seed
    return [
        detector_row(
            f"watermark (gamma {wm.gamma:g}, delta {wm.delta:g}, entropy "
            f">= {wm.entropy_threshold:g})",
            z(marked), z(test.human), {s: z(a) for s, a in attacked.items()}, seed,
        ),
        detector_row(
            "log-likelihood (zero-shot)",
            machine[0], human[0], {s: v[0] for s, v in hit.items()}, seed,
        ),
        detector_row(
            "Fast-DetectGPT curvature (zero-shot)",
            machine[1], human[1], {s: v[1] for s, v in hit.items()}, seed,
        ),
        detector_row(
            "n-gram classifier (trained)",
            classifier.score(plain).numpy(), classifier.score(test.human).numpy(),
            {s: classifier.score(a).numpy() for s, a in attacked_plain.items()}, seed,
        ),
    ]  # fmt: skip


def run_experiment(cfg: DetectionConfig, command: str = "") -> dict[str, Any]:
    """Train (or reuse) the rung, sweep the watermark on validation, report test, write the page."""
    before, start = load_average(), time.perf_counter()
    rung, ladder = cfg.ladder()
    run = ladder_runs(ladder, [rung])[rung]
    model, tok = load_gpt(run, device=pick_device(cfg.device))
    model.eval()
    texts = held_out_texts(cfg, tok)
    world = World(ladder.world)
    questions = {
        split: [e for f in cfg.families for e in make_examples(world, f, cfg.n_questions, split, cfg.seed)]
        for split in ("validation", "test")
    }  # fmt: skip
    plain = {s: judge_scores(model, tok, q, cfg) for s, q in questions.items()}

    grid = []
    for gamma in cfg.gammas:
        for entropy in cfg.entropies:
            for delta in cfg.deltas:
                cell = watermark_cell(
                    model, tok, texts["validation"], questions["validation"],
                    plain["validation"], gamma, delta, entropy, cfg,
                )  # fmt: skip
                grid.append({k: v for k, v in cell.items() if k not in ("z", "human_z")})
    # chosen for a key drawn at random (the mean drop over keys) and for the key in use
    chosen = {rule: choose(grid, cfg.max_drop, drop) for rule, drop in RULES.items()}
    cells: dict[tuple[float, float, float], dict[str, Any]] = {}
    for c in chosen.values():
        if setting(c) not in cells:
            cells[setting(c)] = watermark_cell(
                model, tok, texts["test"], questions["test"], plain["test"], *setting(c), cfg
            )
    test = {rule: dict(cells[setting(c)]) for rule, c in chosen.items()}
    z = {"human": test["keys"]["human_z"], "watermarked": test["keys"]["z"]}
    for cell in test.values():
        for k in ("z", "human_z"):
            cell.pop(k)
    gamma, delta, entropy = setting(chosen["keys"])
    test_texts = texts["test"]
    human_gated = gated_entropies(model, Watermark(cfg.key, gamma, entropy_threshold=entropy),
                       test_texts.prompts, test_texts.human)  # fmt: skip
    human_z_by_key = [
        z_scores(
            Watermark(k, gamma, entropy_threshold=entropy),
            test_texts.prompts,
            test_texts.human,
            human_gated,
            cfg.ignore_repeated,
        )  # fmt: skip
        for k in all_keys(cfg)
    ]

    special = set(tok.special.values())
    vocab = [i for i in range(tok.vocab_size) if i not in special]
    wm = Watermark(cfg.key, gamma, delta, entropy)
    by_temperature = {
        t: detectors(model, texts, wm, t, vocab, cfg)
        for t in dict.fromkeys([cfg.temperature, *cfg.temperatures])
    }
    seconds, steps = training_seconds(run)
    record = {
        "config": asdict(cfg),
        "model": {
            "rung": rung,
            "run": str(run),
            "params": sum(p.numel() for p in model.parameters()),
            "steps": steps,
            "training_minutes": seconds / 60,
        },
        "validation": grid,
        "chosen": {
            r: {"gamma": c["gamma"], "delta": c["delta"], "entropy": c["entropy"]}
            for r, c in chosen.items()
        },
        "test": test,
        "detectors": by_temperature[cfg.temperature],
        "by_temperature": [
            {"temperature": t, "detectors": rows} for t, rows in by_temperature.items()
        ],
        "z": z,
        "human_z_by_key": [
            {
                "mean": float(h.mean()),
                "sd": float(h.std()),
                "fpr_at_2.326": float(np.mean(h > Z_AT_FPR)),
            }
            for h in human_z_by_key
        ],
        "goal_met": {
            rule: bool(test[rule]["tpr"][0] >= 0.95 and test[rule][drop][0] <= cfg.max_drop)
            for rule, drop in RULES.items()
        },
        "minutes": (time.perf_counter() - start) / 60,
        "load_before": before,
        "load_after": load_average(),
    }
    write_outputs(cfg, record, command)
    return record


def setting(c: dict[str, Any]) -> tuple[float, float, float]:
    """A cell's watermark: (gamma, delta, entropy threshold)."""
    return c["gamma"], c["delta"], c["entropy"]


def write_outputs(cfg: DetectionConfig, record: dict[str, Any], command: str) -> None:
    """``detection.json``, ``detection.png`` and the page."""
    out = Path(cfg.out_dir)
    out.mkdir(parents=True, exist_ok=True)
    atomic_write_json(out / f"{NAME}.json", record)
    figure(out / f"{NAME}.png", record, cfg)
    other = "counted every time" if cfg.ignore_repeated else "counted once"
    headers = [
        "gamma", "delta", "entropy >= (nats)", "TPR at 1% FPR % [95%]",
        "TPR at z > 2.326 % [95%]", f"TPR, repeated pairs {other} %", "mean z",
        "tokens scored %", "green share (scored)",
        f"judge drop, key `{cfg.key}` [95%]", f"judge drop, {cfg.keys} keys [95%]",
        "answers changed %",
    ]  # fmt: skip

    def row(c: dict[str, Any]) -> list[str]:
        return [
            f"{c['gamma']:g}",
            f"{c['delta']:g}",
            f"{c['entropy']:g}",
            interval_text(c["tpr"]),
            interval_text(c["tpr_theory"]),
            f"{100 * c['tpr_other_counting'][0]:.1f}",
            f"{c['z_mean']:.2f}",
            f"{100 * c['scored_share']:.0f}",
            f"{c['green_share']:.2f}",
            value_interval_text(c["drop"]),
            value_interval_text(c["drop_keys"]),
            f"{100 * c['answers_changed']:.1f}",
        ]

    chosen = record["chosen"]
    labels = {"key": f"key `{cfg.key}` only", "keys": f"a random key ({cfg.keys}-key mean)"}

    def picked_for(c: dict[str, Any]) -> str:
        return ", ".join(labels[r] for r, x in chosen.items() if setting(x) == setting(c))

    val_rows = [[*row(c), picked_for(c)] for c in record["validation"]]
    test_rows = [[labels[r], *row(c)] for r, c in record["test"].items()]
    shares = cfg.shares
    det_headers = [
        "detector", "AUROC [95%]", "TPR at 1% FPR % [95%]",
        *(f"TPR, {100 * s:g}% replaced % [95%]" for s in shares),
        *(f"AUROC, {100 * s:g}% replaced" for s in shares),
    ]  # fmt: skip
    det_rows = [
        [
            d["detector"],
            value_interval_text(d["auroc"]),
            interval_text(d["tpr"]),
            *(interval_text(d[f"tpr_replaced_{s}"]) for s in shares),
            *(f"{d[f'auroc_replaced_{s}'][0]:.3f}" for s in shares),
        ]
        for d in record["detectors"]
    ]
    names = [d["detector"] for d in record["detectors"]]
    temp_rows = [
        [
            f"{t['temperature']:g}",
            *(f"{d['auroc'][0]:.3f} / {100 * d['tpr'][0]:.1f}%" for d in t["detectors"]),
        ]
        for t in record["by_temperature"]
    ]
    v = record["validation"][0]
    t, c = record["test"]["keys"], record["chosen"]["keys"]
    verdict_line = (
        f"**For a random key the goal is {'met' if record['goal_met']['keys'] else 'not met'}.** "
        f"Chosen on validation by the mean judge drop over {cfg.keys} keys: gamma "
        f"{c['gamma']:g}, delta {c['delta']:g}, entropy threshold {c['entropy']:g} nats. On "
        f"test: TPR at 1% FPR {interval_text(t['tpr'])}% (goal >= 95%), mean judge drop over "
        f"{cfg.keys} keys {value_interval_text(t['drop_keys'])} (goal <= {cfg.max_drop}).\n\n"
    )
    table = verdict_line + (
        f"**The watermark on validation** ({cfg.n_texts} continuations of {cfg.new_tokens} "
        f"tokens; {len(cfg.families) * cfg.n_questions} questions, judge score "
        f"{v['judge_plain']:.3f} and accuracy {100 * v['accuracy_plain']:.1f}% without the "
        "watermark)\n\n"
        + markdown_table([*headers, "chosen for"], val_rows)
        + "\n\n**The chosen watermarks on test** (chosen on validation by the mean drop over "
        f"{cfg.keys} keys: the cost of a key drawn at random, the headline; or by the judge drop "
        f"of key `{cfg.key}` alone)\n\n"
        + markdown_table(["chosen for", *headers], test_rows)
        + f"\n\n**Every detector on test**, sampling at temperature {cfg.temperature:g} "
        "(positives: the watermarked continuations for the watermark, unwatermarked ones for "
        "the others; negatives: the human continuations; tokens are replaced in the positives "
        "only)\n\n"
        + markdown_table(det_headers, det_rows)
        + "\n\n**By sampling temperature** (test; AUROC / TPR at 1% FPR)\n\n"
        + markdown_table(["temperature", *names], temp_rows)
    )
    m = record["model"]
    write_page(
        out / f"{NAME}.md",
        "Detecting generated text: a watermark, zero-shot likelihood, a classifier",
        f"Is a model's text told from people's at {cfg.new_tokens} tokens, at a 1% false-positive "
        "rate? A watermark in sampling (Kirchenbauer et al., 2023), plain and entropy-gated (SWEET, "
        "Lee et al., 2023), against detectors from the "
        "model's likelihood (Fast-DetectGPT, Bao et al., 2024) and a trained n-gram classifier, "
        "with tokens replaced; and what the watermark costs the model's answers (the judge "
        f"score may drop by {cfg.max_drop} at most).",
        table,
        f"{NAME}.png",
        [
            f"model: ladder rung `{m['rung']}` ({m['params'] / 1e6:.2f}M weights, {m['steps']} "
            f"steps; training took {m['training_minutes']:.1f} minutes as the sweep recorded it, "
            f"in this call or an earlier one), `{m['run']}`",
            f"texts: {cfg.n_texts} windows per split (train, validation, test) of held-out "
            f"TinyWorld pretraining text (corpus seed {HUMAN_SEED + cfg.seed}, documents of the "
            f"model's corpus dropped): {cfg.prefix_tokens} tokens of prompt after `<|bos|>`, "
            f"then {cfg.new_tokens} scored; the model samples its continuation (no top-k, no "
            "top-p), with and without the watermark from the same random stream",
            f"watermark: green pair = keyed hash of (previous token, token); z-test over the "
            f"{cfg.new_tokens} pairs from the prompt's last token (gated: only those whose "
            "next-token entropy under the model, recomputed on the text, reaches the threshold; "
            "the same gate biased the sampling), repeated pairs "
            + ("counted once" if cfg.ignore_repeated else "counted every time")
            + "; TPR at 1% FPR reads its threshold off the same split's human z, or uses "
            f"z > {Z_AT_FPR} (theory); detection with key `{cfg.key}`",
            f"judge: {cfg.n_questions} questions per family ({', '.join(cfg.families)}) of the "
            "validation and of the test split, `Question: ...` / `Answer:`, greedy to the end "
            f"of the line ({cfg.answer_tokens} tokens at most), scored by TinyWorld's judge "
            "(0.6 correct + 0.4 style); drop = plain minus watermarked, per question, with key "
            f"`{cfg.key}` and averaged over {cfg.keys} keys (`{cfg.key}`, `{cfg.key}/1`, ...): "
            "which frequent pairs a key colours green moves the cost",
            f"grid: gamma {', '.join(f'{g:g}' for g in cfg.gammas)}; delta "
            f"{', '.join(f'{d:g}' for d in cfg.deltas)}; entropy threshold "
            f"{', '.join(f'{h:g}' for h in cfg.entropies)} nats (0: the plain watermark). Chosen "
            f"on validation twice, by the mean drop over {cfg.keys} keys and by the judge drop of "
            f"key `{cfg.key}`: the best TPR at 1% FPR among the cells whose drop is <= "
            f"{cfg.max_drop}, the smallest delta among equals",
            "zero-shot: the continuation's mean log-likelihood and Fast-DetectGPT's analytic "
            "curvature, both conditioned on the prompt, under the model that wrote the text "
            "(higher = machine); classifier: hashed uni- and bigram logistic regression fit on "
            f"the train split's {cfg.n_texts} human and {cfg.n_texts} unwatermarked machine "
            "continuations at the same temperature",
            f"attack: {', '.join(f'{100 * s:g}%' for s in shares)} of each machine "
            "continuation's tokens replaced at seeded random positions by other ordinary tokens "
            "(uniform); thresholds stay those of the clean human texts",
            "intervals: 95% percentile bootstrap over prompts (a machine text and its human twin "
            "resampled together) or over questions",
            f"machine load (1/5/15-minute averages, as `uptime` shows) before: "
            f"{record['load_before']}, after: {record['load_after']}; {record['minutes']:.1f} "
            "minutes for this call",
        ],
        findings(record, cfg),
        command=command,
    )


def findings(record: dict[str, Any], cfg: DetectionConfig) -> list[str]:
    """What the tables say, in sentences, from the numbers."""
    grid, humans = record["validation"], record["human_z_by_key"]
    lines = [
        "For a key drawn at random (the honest criterion: a user's key is random) the goal is "
        + ("met." if record["goal_met"]["keys"] else "not met.")
        + f" For key `{cfg.key}` alone it is "
        + ("met" if record["goal_met"]["key"] else "not met")
        + ", which says nothing about another key."
    ]
    for rule, who in (("keys", "a key drawn at random"), ("key", f"key `{cfg.key}`")):
        t, c, drop = record["test"][rule], record["chosen"][rule], RULES[rule]
        fails = [
            text
            for text, bad in (
                (f"TPR {100 * t['tpr'][0]:.1f}% < 95%", t["tpr"][0] < 0.95),
                (f"drop {t[drop][0]:.3f} > {cfg.max_drop}", t[drop][0] > cfg.max_drop),
            )
            if bad
        ]
        lines.append(
            f"For {who} (delta chosen on validation by "
            + ("that key's judge drop" if rule == "key" else f"the mean drop over {cfg.keys} keys")
            + f"): gamma {c['gamma']:g}, delta {c['delta']:g}, entropy threshold "
            f"{c['entropy']:g}. On test it flags "
            f"{interval_text(t['tpr'])}% of the {cfg.new_tokens}-token continuations at 1% FPR "
            f"(threshold z > {t['threshold']:.2f}; {interval_text(t['tpr_theory'])}% at "
            f"z > {Z_AT_FPR}) and the judge score drops by {value_interval_text(t[drop])} "
            + ("with that key" if rule == "key" else "on average over keys")
            + f" (accuracy {100 * t['accuracy_plain']:.1f}% -> "
            f"{100 * t['accuracy_marked' if rule == 'key' else 'accuracy_keys']:.1f}%): "
            + (
                f"the goal is met{' with this key' if rule == 'key' else ''}."
                if not fails
                else "the goal is not met (" + "; ".join(fails) + ")."
            )
        )
    t = record["test"]["keys"]
    per_key = t["drop_per_key"]
    within = sum(d <= cfg.max_drop for d in per_key)
    lines.append(
        f"The cost depends on the key: at gamma {t['gamma']:g}, delta {t['delta']:g}, entropy "
        f"threshold {t['entropy']:g} the test "
        f"drop of each of the {cfg.keys} keys lies between {min(per_key):.3f} and "
        f"{max(per_key):.3f}, {within} of them within {cfg.max_drop}. The watermark changes "
        f"{100 * t['answers_changed']:.0f}% of the greedy answers (their first word in "
        f"{100 * t['first_word_changed']:.0f}%): a bias moves every choice whose margin is below "
        "delta, and a small model's answers have small margins."
    )
    fprs = [h["fpr_at_2.326"] for h in humans]
    means = [h["mean"] for h in humans]
    lines.append(
        f"Human test continuations exceed z = {Z_AT_FPR} in {100 * fprs[0]:.1f}% of cases with "
        f"key `{cfg.key}` and in {100 * min(fprs):.1f}-{100 * max(fprs):.1f}% over the "
        f"{cfg.keys} keys (theory: 1%). Their mean z per key lies in [{min(means):.2f}, "
        f"{max(means):.2f}] where {cfg.n_texts} independent texts would stray from 0 by about "
        f"{1 / cfg.n_texts**0.5:.2f}: the texts share frequent pairs, so a key's colour of those "
        "pairs moves every human z together. The threshold read off human text holds the "
        "false-positive rate whatever the key."
    )
    for gamma in cfg.gammas:
        for entropy in cfg.entropies:
            cells = [c for c in grid if (c["gamma"], c["entropy"]) == (gamma, entropy)]
            lines.append(
                f"Validation, gamma {gamma:g}, entropy >= {entropy:g} "
                f"({100 * cells[0]['scored_share']:.0f}% of tokens gated in): as delta goes "
                f"{cells[0]['delta']:g} -> "
                f"{cells[-1]['delta']:g}, TPR at 1% FPR goes {100 * cells[0]['tpr'][0]:.1f}% "
                f"-> {100 * cells[-1]['tpr'][0]:.1f}%, the mean judge drop over keys "
                f"{cells[0]['drop_keys'][0]:.3f} -> {cells[-1]['drop_keys'][0]:.3f} and that of "
                f"key `{cfg.key}` {cells[0]['drop'][0]:.3f} -> {cells[-1]['drop'][0]:.3f}."
            )
    for d in record["detectors"]:
        attacked = ", ".join(
            f"{100 * d[f'tpr_replaced_{s}'][0]:.1f}% with {100 * s:g}% replaced" for s in cfg.shares
        )
        lines.append(
            f"{d['detector']}: AUROC {d['auroc'][0]:.3f}, TPR at 1% FPR "
            f"{100 * d['tpr'][0]:.1f}%" + (f"; {attacked}." if attacked else ".")
        )
    lines.append(
        "By sampling temperature (test), the zero-shot scores' AUROC and the machine text's mean "
        "log-likelihood against the human text's: "
        + "; ".join(
            f"{t['temperature']:g}: likelihood {t['detectors'][1]['auroc'][0]:.2f}, curvature "
            f"{t['detectors'][2]['auroc'][0]:.2f} ({t['detectors'][1]['mean']:.2f} against "
            f"{t['detectors'][1]['human_mean']:.2f} nats/token)"
            for t in record["by_temperature"]
        )
        + ". Zero-shot detection assumes the model finds its own text likelier than people's; "
        "where the machine text's log-likelihood is the lower, the detectors rank it below the "
        "human text (AUROC under 0.5)."
    )
    return lines


def figure(path: Path, record: dict[str, Any], cfg: DetectionConfig) -> None:
    """TPR and judge drop against delta (validation); z of human and watermarked test texts;
    every detector's AUROC by temperature."""
    fig = new_figure(16, 4)
    tpr_ax, drop_ax, z_ax, temp_ax = fig.subplots(1, 4)
    settings = [(g, h) for g in cfg.gammas for h in cfg.entropies]
    for i, (gamma, entropy) in enumerate(settings):
        cells = [c for c in record["validation"] if (c["gamma"], c["entropy"]) == (gamma, entropy)]
        deltas = [c["delta"] for c in cells]
        curves = (
            (tpr_ax, "tpr", "o-", "1% FPR (human z)"),
            (drop_ax, "drop_keys", "o-", f"{cfg.keys}-key mean"),
        )
        per_key = np.array([c["drop_per_key"] for c in cells])  # (deltas, keys)
        drop_ax.plot(deltas, per_key, color=f"C{i}", lw=0.6, alpha=0.35)
        for ax, key, style, what in curves:
            v = np.array([c[key] for c in cells])
            ax.errorbar(
                deltas, v[:, 0], yerr=np.clip([v[:, 0] - v[:, 1], v[:, 2] - v[:, 0]], 0, None),
                fmt=style, color=f"C{i}", capsize=3, ms=4,
                label=f"gamma {gamma:g}, H >= {entropy:g}, {what}",
            )  # fmt: skip
    tpr_ax.axhline(0.95, color="k", ls=":", lw=1, label="goal 0.95")
    tpr_ax.set(xlabel="delta", ylabel="TPR", title="detection (validation)", ylim=(0, 1.02))
    drop_ax.axhline(cfg.max_drop, color="k", ls=":", lw=1, label=f"bound {cfg.max_drop}")
    drop_ax.axhline(0.0, color="grey", lw=0.5)
    drop_ax.set(xlabel="delta", ylabel="judge score drop", title="cost (validation; thin: per key)")
    z = record["z"]
    bins = np.linspace(min(min(z["human"]), -4), max(max(z["watermarked"]), 4), 40)
    z_ax.hist(z["human"], bins=bins, alpha=0.6, label="human", color="C7")
    z_ax.hist(
        z["watermarked"], bins=bins, alpha=0.6, color="C3",
        label=f"watermarked (delta {record['chosen']['keys']['delta']:g}, "
        f"H >= {record['chosen']['keys']['entropy']:g})",
    )  # fmt: skip
    z_ax.axvline(record["test"]["keys"]["threshold"], color="k", lw=1, label="1% FPR (human z)")
    z_ax.axvline(Z_AT_FPR, color="k", ls="--", lw=1, label="z = 2.326")
    z_ax.set(xlabel="z", ylabel="texts", title="z on test")
    temps = sorted(record["by_temperature"], key=lambda t: t["temperature"])
    for j, name in enumerate(d["detector"] for d in temps[0]["detectors"]):
        temp_ax.plot(
            [t["temperature"] for t in temps],
            [t["detectors"][j]["auroc"][0] for t in temps],
            "o-", color=f"C{j}", label=name,
        )  # fmt: skip
    temp_ax.axhline(0.5, color="grey", lw=0.5)
    temp_ax.set(
        xlabel="sampling temperature", ylabel="AUROC", title="detectors (test)", ylim=(0, 1.02)
    )
    for ax in (tpr_ax, drop_ax, z_ax, temp_ax):
        ax.grid(alpha=0.3)
        ax.legend(fontsize=6)
    save_figure(fig, path)
