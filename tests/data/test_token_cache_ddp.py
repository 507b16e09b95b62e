"""``torchrun --nproc_per_node 2 genlab pretrain`` on a cold token cache: rank 0 tokenizes, the
other rank waits, and both train on the one complete file."""

from __future__ import annotations

import json
import os
import subprocess
import sys
from pathlib import Path

import numpy as np
import pytest

from genlab.data.tokenizer import Tokenizer
from genlab.recipes.pretrain import PretrainConfig, load_tokens

TORCHRUN = [sys.executable, "-m", "torch.distributed.run", "--standalone", "--nproc_per_node", "2"]
CHARS = 10_000  # the built-in corpus: small, and the same in this process as in the run


@pytest.mark.slow
def test_two_ranks_on_a_cold_cache_build_it_once_and_whole(tmp_path: Path) -> None:
    run = tmp_path / "run"
    pretrain = ["-m", "genlab", "pretrain", "--out", run, "--preset", "tiny"]
    pretrain += ["--block-size", "16", "--vocab-size", "260", "--builtin-chars", CHARS]
    pretrain += ["--max-steps", "2", "--batch-size", "4", "--eval-every", "0"]
    pretrain += ["--checkpoint-every", "0", "--device", "cpu"]
    result = subprocess.run(
        [str(a) for a in TORCHRUN + pretrain],
        cwd=tmp_path,
        env={**os.environ, "OMP_NUM_THREADS": "1"},
        capture_output=True,
        text=True,
        timeout=300,
    )
    assert result.returncode == 0, result.stderr[-3000:]
    assert json.loads((run / "state.json").read_text())["step"] == 2

    cache = tmp_path / ".token-cache"
    assert not list(cache.glob(".*.tmp"))  # no temporary file left behind
    (bin_path,) = cache.glob("tokens-*.bin")
    meta = json.loads(bin_path.with_suffix(".json").read_text())
    tokens = np.fromfile(bin_path, dtype=meta["dtype"])
    assert meta["tokens"] == tokens.size > 0
    # the very tokens one process makes from the same text and the run's tokenizer
    tokenizer = Tokenizer.load(run / "tokenizer.json")
    alone = PretrainConfig(out=str(tmp_path / "alone" / "run"), builtin_chars=CHARS)
    assert np.array_equal(tokens, load_tokens(alone, tokenizer))
