import numpy as np
import pytest
import torch

from genlab.core.batches import BatchSource, TensorBatchSource, TokenWindowSource
from genlab.core.errors import GenlabError


def _split(source, step, batch, pieces):
    """The global batch read in ``pieces`` slices (as ranks x micro-batches do), re-joined."""
    m = batch // pieces
    parts = [source.get_batch(step, i * m, (i + 1) * m, batch) for i in range(pieces)]
    if isinstance(parts[0], torch.Tensor):
        return torch.cat(parts)
    return tuple(torch.cat(p) for p in zip(*parts, strict=True))


def test_tensor_source_is_a_pure_function_of_seed_and_step():
    x = torch.arange(40).float().unsqueeze(1)
    y = torch.arange(40)
    a, b = TensorBatchSource((x, y), seed=3), TensorBatchSource((x, y), seed=3)
    assert isinstance(a, BatchSource)
    for step in (0, 5, 2):
        xa, ya = a.get_batch(step, 0, 8, 8)
        xb, yb = b.get_batch(step, 0, 8, 8)
        assert torch.equal(xa, xb) and torch.equal(ya, yb)
        assert torch.equal(xa[:, 0].long(), ya)  # rows stay aligned across tensors
    assert not torch.equal(
        a.get_batch(0, 0, 8, 8)[1], TensorBatchSource((x, y), 4).get_batch(0, 0, 8, 8)[1]
    )


def test_tensor_source_splits_like_the_whole_batch_and_covers_each_epoch():
    data = torch.arange(30)
    source = TensorBatchSource(data, seed=0)
    for step in range(6):  # 12 rows a step over 30 samples: batches straddle epochs
        whole = source.get_batch(step, 0, 12, 12)
        assert torch.equal(_split(source, step, 12, 4), whole)
        assert torch.equal(_split(source, step, 12, 3), whole)
    stream = torch.cat([source.get_batch(s, 0, 10, 10) for s in range(6)])
    assert sorted(stream[:30].tolist()) == list(range(30))
    assert sorted(stream[30:].tolist()) == list(range(30))
    assert not torch.equal(stream[:30], stream[30:])  # reshuffled each epoch


def test_token_windows_are_shifted_and_split_consistently():
    tokens = np.arange(1000, dtype=np.uint16)
    source = TokenWindowSource(tokens, block_size=16, seed=7)
    x, y = source.get_batch(3, 0, 8, 8)
    assert x.shape == y.shape == (8, 16) and x.dtype == torch.int64
    assert torch.equal(y[:, :-1], x[:, 1:]) and torch.equal(y[:, 0], x[:, 0] + 1)
    assert torch.equal(x[:, 1:] - x[:, :-1], torch.ones(8, 15, dtype=torch.int64))
    assert torch.equal(_split(source, 3, 8, 4)[0], x)
    again = TokenWindowSource(tokens, block_size=16, seed=7).get_batch(3, 0, 8, 8)[0]
    assert torch.equal(again, x)
    assert not torch.equal(source.get_batch(4, 0, 8, 8)[0], x)
    assert int(x.max()) <= 999


def test_token_windows_read_a_memmap(tmp_path):
    path = tmp_path / "tokens.bin"
    np.arange(300, dtype=np.uint32).tofile(path)
    tokens = np.memmap(path, dtype=np.uint32, mode="r")
    x, y = TokenWindowSource(tokens, block_size=8, seed=0).get_batch(0, 0, 4, 4)
    assert torch.equal(y, x + 1)


def test_bad_inputs_say_so():
    with pytest.raises(GenlabError, match="needs 17"):
        TokenWindowSource(np.arange(10), block_size=16)
    with pytest.raises(GenlabError, match="not inside"):
        TensorBatchSource(torch.arange(5)).get_batch(0, 4, 9, 8)
    with pytest.raises(GenlabError, match="equal length"):
        TensorBatchSource((torch.arange(5), torch.arange(4)))
