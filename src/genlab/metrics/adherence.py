"""Caption adherence: does a generated image show what its caption asked for?

CLIP score (Hessel et al., 2021) measures image-text agreement with a network trained on web
captions; on genlab's built-in data the captions are generated from known attributes, so
agreement can be checked exactly instead: read each attribute of the generated image with the
attribute heads of the feature network (``genlab.metrics.features``), which is accurate on real
images, and compare with the attributes the caption names. Adherence is the share of images whose
every named attribute is read as asked, alongside the per-attribute agreement. The same check on
real images bounds what a perfect generator could score (the reader's own error), and on noise
gives the chance level.

A caption names an attribute when exactly one of its values appears among its words ("a large
red circle on the left": size large, colour red, kind circle, position left); attributes it does
not name are free ("a red circle" accepts any size and position). A caption that names two
values of one attribute (a two-shape scene) cannot be scored and is counted apart.
"""

from __future__ import annotations

from collections.abc import Sequence
from dataclasses import dataclass

import torch
from torch import Tensor

from genlab.core.errors import GenlabError
from genlab.data.captions import words
from genlab.metrics.features import FeatureNet


def caption_attributes(caption: str, attributes: dict[str, list[str]]) -> dict[str, str] | None:
    """The attribute values a caption names, or ``None`` if it names two values of one."""
    present = set(words(caption))
    named: dict[str, str] = {}
    for name, values in attributes.items():
        found = [v for v in values if v in present]
        if len(found) > 1:
            return None
        if found:
            named[name] = found[0]
    return named


@dataclass
class Adherence:
    """``adherence``: share of scored images matching every attribute their caption names;
    ``per_attribute``: share matching each attribute, among images whose caption names it."""

    adherence: float
    per_attribute: dict[str, float]
    scored: int
    unscored: int

    def to_dict(self) -> dict[str, float]:
        return {
            "adherence": self.adherence,
            **{f"adherence_{k}": v for k, v in self.per_attribute.items()},
            "scored": float(self.scored),
            "unscored": float(self.unscored),
        }


def caption_adherence(net: FeatureNet, images: Tensor, captions: Sequence[str]) -> Adherence:
    """Score images (B, C, H, W) in [-1, 1] against their captions with the net's heads."""
    if len(images) != len(captions):
        raise GenlabError(f"{len(images)} images but {len(captions)} captions")
    attrs = net.config.attributes
    asked = [caption_attributes(c, attrs) for c in captions]
    keep = [i for i, a in enumerate(asked) if a is not None]
    if not keep:
        raise GenlabError(
            "no caption can be scored: adherence needs one-shape captions naming attributes "
            f"({', '.join(attrs)})"
        )
    read = net.read(images[torch.tensor(keep)])
    all_ok = torch.ones(len(keep), dtype=torch.bool)
    per: dict[str, float] = {}
    for name, values in attrs.items():
        hits, count = 0, 0
        for row, i in enumerate(keep):
            want = asked[i].get(name)  # type: ignore[union-attr]
            if want is None:
                continue
            ok = values[int(read[name][row])] == want
            hits += ok
            count += 1
            all_ok[row] &= ok
        if count:
            per[name] = hits / count
    return Adherence(float(all_ok.float().mean()), per, len(keep), len(captions) - len(keep))
