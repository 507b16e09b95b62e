"""scikit-learn's handwritten digits as captioned images ("a handwritten seven").

The 1,797 8x8 digits (UCI optical recognition of handwritten digits) come inside scikit-learn, so
a class-conditional image model can train on real handwriting without a download; a fixed
train/test split lets metrics compare samples with digits a model never saw.
"""

from __future__ import annotations

from typing import Literal

import numpy as np
import torch
import torch.nn.functional as F
from torch.utils.data import Dataset

from genlab.core.errors import GenlabError
from genlab.data.images.common import ImageItem, check_size

NUMBER_WORDS = ("zero", "one", "two", "three", "four", "five", "six", "seven", "eight", "nine")


def _load_sklearn_digits() -> tuple[np.ndarray, np.ndarray]:
    """The 1,797 8x8 digits (values 0..16) bundled inside scikit-learn: read from the installed
    package, never downloaded."""
    try:
        from sklearn.datasets import load_digits
    except ImportError as e:
        raise GenlabError(
            "the digits data set comes with scikit-learn, which is not installed: "
            "pip install 'genlab[digits]' (or scikit-learn)"
        ) from e
    bunch = load_digits()
    return np.asarray(bunch.images, dtype=np.float32), np.asarray(bunch.target, dtype=np.int64)


class DigitsDataset(Dataset):
    """scikit-learn's handwritten digits (UCI optical digits: 8x8, 17 grey levels), upsampled
    bilinearly to ``size``; white ink (+1) on black (-1); caption "a handwritten seven".

    ``split``: "all" (1,797), or a fixed "train"/"test" split (every fifth image is test), so
    metrics can compare samples with digits a model never saw. Attributes:
    ``{"label": 7, "index": row in scikit-learn's array}``.
    """

    def __init__(
        self,
        size: int = 32,
        split: Literal["all", "train", "test"] = "all",
        channels: Literal[1, 3] = 1,
    ) -> None:
        check_size(size, 8)
        if split not in ("all", "train", "test"):
            raise GenlabError(f"digits split must be all, train or test, got {split!r}")
        if channels not in (1, 3):
            raise GenlabError(f"digits channels must be 1 or 3, got {channels}")
        images, labels = _load_sklearn_digits()
        index = np.arange(len(labels))
        if split != "all":
            index = index[(index % 5 == 4) == (split == "test")]
        x = torch.from_numpy(images[index])[:, None] / 8.0 - 1.0  # 0..16 -> [-1, 1]
        x = F.interpolate(x, size=(size, size), mode="bilinear", align_corners=False)
        self.images = x.clamp(-1, 1).expand(-1, channels, -1, -1).contiguous()
        self.labels = torch.from_numpy(labels[index])
        self.index = index

    def __len__(self) -> int:
        return len(self.labels)

    def __getitem__(self, i: int) -> ImageItem:
        label = int(self.labels[i])
        attributes = {"label": label, "index": int(self.index[i])}
        return ImageItem(self.images[i], f"a handwritten {NUMBER_WORDS[label]}", attributes)
