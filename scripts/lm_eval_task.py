"""Write a small multiple-choice task over TinyWorld facts for lm-evaluation-harness.

A folder with ``tinyworld_facts.jsonl`` (a question, four choices, the index of the right one,
for facts of a seeded TinyWorld) and ``tinyworld_facts.yaml``, an lm-eval task that reads that
file (no download) and scores each choice's log-likelihood: what ``genlab serve`` answers
through ``echo`` and ``logprobs``. See docs/serving.md, "Evaluating with
lm-evaluation-harness".

    python scripts/lm_eval_task.py tasks/ --questions 100
    lm_eval --model local-completions --include_path tasks/ --tasks tinyworld_facts ...
"""

from __future__ import annotations

import argparse
import json
import random
from pathlib import Path

from genlab.data.tinyworld.world import World

TASK = "tinyworld_facts"
RELATIONS = {  # relation -> the question, about its subject
    "lives_in": "Where does {} live?",
    "born_in": "Where was {} born?",
    "pet": "What pet does {} have?",
    "job": "What is {}'s job?",
    "favourite_colour": "What is {}'s favourite colour?",
    "capital": "What is the capital of {}?",
    "eats": "What do {} eat?",
}


def write_task(folder: Path, questions: int = 50, seed: int = 0) -> Path:
    """Write the task's JSONL and YAML into ``folder``; the YAML's path."""
    world = World(seed)
    rng = random.Random(f"lm-eval/{seed}")
    objects: dict[str, list[str]] = {}
    for fact in world.facts:
        objects.setdefault(fact.relation, []).append(fact.object)
    facts = [f for f in world.facts if f.relation in RELATIONS]
    rows = []
    for fact in rng.sample(facts, min(questions, len(facts))):
        others = sorted(set(objects[fact.relation]) - {fact.object})
        choices = [fact.object, *rng.sample(others, min(3, len(others)))]
        rng.shuffle(choices)
        question = RELATIONS[fact.relation].format(fact.subject)
        rows.append(
            {"question": question, "choices": choices, "answer": choices.index(fact.object)}
        )
    folder.mkdir(parents=True, exist_ok=True)
    data = folder / f"{TASK}.jsonl"
    data.write_text("".join(json.dumps(r) + "\n" for r in rows))
    yaml = folder / f"{TASK}.yaml"
    yaml.write_text(
        f"task: {TASK}\n"
        "dataset_path: json\n"
        "dataset_kwargs:\n"
        "  data_files:\n"
        f"    test: {data.resolve()}\n"
        "test_split: test\n"
        "output_type: multiple_choice\n"
        'doc_to_text: "Question: {{question}}\\nAnswer:"\n'
        'doc_to_choice: "{{choices}}"\n'
        'doc_to_target: "{{answer}}"\n'
        "target_delimiter: ' '\n"
        "metric_list:\n"
        "  - {metric: acc, aggregation: mean, higher_is_better: true}\n"
        "  - {metric: acc_norm, aggregation: mean, higher_is_better: true}\n"
    )
    return yaml


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    parser.add_argument("folder", type=Path)
    parser.add_argument("--questions", type=int, default=50)
    parser.add_argument("--seed", type=int, default=0, help="the TinyWorld's seed")
    args = parser.parse_args()
    print(f"wrote {write_task(args.folder, args.questions, args.seed)}")


if __name__ == "__main__":
    main()
