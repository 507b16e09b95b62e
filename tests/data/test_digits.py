"""scikit-learn's digits as captioned images: labels, captions, splits, a missing install."""

from __future__ import annotations

import sys

import pytest
import torch

from genlab.core.errors import GenlabError
from genlab.data.images import NUMBER_WORDS, DigitsDataset
from references import require


def test_digits_shapes_labels_and_captions() -> None:
    sklearn_datasets = require("sklearn.datasets")
    ds = DigitsDataset(size=32)
    assert len(ds) == 1797
    reference = sklearn_datasets.load_digits()
    for i in (0, 7, 100, 1796):
        image, caption, attrs = ds[i]
        assert image.shape == (1, 32, 32) and image.min() >= -1 and image.max() <= 1
        assert attrs["label"] == reference.target[attrs["index"]]
        assert caption == f"a handwritten {NUMBER_WORDS[attrs['label']]}"
    # upsampled, not replaced: 4x4 means come back to the 8x8 original
    down = torch.nn.functional.avg_pool2d(ds.images, 4)[:, 0]
    original = torch.from_numpy(reference.images).float() / 8 - 1
    assert torch.corrcoef(torch.stack([down.flatten(), original.flatten()]))[0, 1] > 0.97
    seven = [ds[i].caption for i in range(len(ds)) if int(ds.labels[i]) == 7]
    assert set(seven) == {"a handwritten seven"}


def test_digits_splits_and_channels() -> None:
    require("sklearn")
    train, test = DigitsDataset(16, "train"), DigitsDataset(16, "test", channels=3)
    assert len(train) + len(test) == 1797 and not set(train.index) & set(test.index)
    assert test[0].image.shape == (3, 16, 16)
    assert torch.equal(test[0].image[0], test[0].image[2])
    with pytest.raises(GenlabError, match="split"):
        DigitsDataset(16, "validation")  # type: ignore[arg-type]


def test_digits_without_scikit_learn_says_what_to_install(
    monkeypatch: pytest.MonkeyPatch,
) -> None:
    monkeypatch.setitem(sys.modules, "sklearn.datasets", None)
    with pytest.raises(GenlabError, match=r"pip install 'genlab\[digits\]'"):
        DigitsDataset()
