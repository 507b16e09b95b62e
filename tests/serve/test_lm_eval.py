"""lm-evaluation-harness against ``genlab serve``: a multiple-choice task through
``local-completions``, each choice's log-likelihood equal to genlab's own scoring."""

from __future__ import annotations

import runpy
from pathlib import Path

import pytest
import torch

from genlab.methods.autoregressive.scoring import token_logprobs
from references import require

SCRIPT = Path(__file__).resolve().parents[2] / "scripts" / "lm_eval_task.py"


@pytest.mark.slow
def test_lm_eval_multiple_choice_scores_as_genlab_does(
    open_server, run_dir, model, tokenizer, tmp_path, monkeypatch
):
    require("lm_eval")
    require("tenacity")  # lm-eval's API models need its [api] extra
    from lm_eval import simple_evaluate
    from lm_eval.tasks import TaskManager

    monkeypatch.setenv("HF_DATASETS_OFFLINE", "1")
    monkeypatch.setenv("HF_HUB_OFFLINE", "1")
    runpy.run_path(str(SCRIPT))["write_task"](tmp_path, questions=6)
    out = simple_evaluate(
        model="local-completions",
        model_args={
            "model": run_dir.name,
            "base_url": f"{open_server.url}/v1/completions",
            "tokenizer_backend": "huggingface",
            "tokenizer": str(run_dir),  # the run folder's tokenizer.json, as transformers reads it
            "max_length": 256,
            "num_concurrent": 2,
            "batch_size": 4,  # several prompts (token-id lists) per request
            "max_retries": 1,
        },
        tasks=["tinyworld_facts"],
        task_manager=TaskManager(include_path=str(tmp_path)),
        log_samples=True,
    )
    assert 0 <= out["results"]["tinyworld_facts"]["acc,none"] <= 1
    samples = out["samples"]["tinyworld_facts"]
    assert len(samples) == 6
    for sample in samples:
        for (context, continuation), (ll, _greedy) in zip(
            sample["arguments"], sample["filtered_resps"], strict=True
        ):
            whole = tokenizer.encode(context + continuation)
            start = len(tokenizer.encode(context))
            with torch.inference_mode():
                ids = torch.tensor([[tokenizer.bos_id, *whole]])
                scores = token_logprobs(model, ids[:, :-1], ids[:, 1:]).logprobs[0]
            assert float(ll) == pytest.approx(float(scores[start:].sum()), abs=1e-4)
