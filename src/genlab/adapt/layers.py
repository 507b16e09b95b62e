"""Adapter layers: a frozen layer plus any number of named adapters.

- ``LoRALinear`` / ``LoRAConv2d``: the frozen weight W plus a low-rank update ``(alpha / r) B A``
  (Hu et al., 2021, "LoRA: Low-Rank Adaptation of Large Language Models"). A starts like a
  layer's default init and B at zero, so a new adapter changes nothing until it trains (PEFT's
  default). Being linear, the update merges into W and unmerges exactly (to float rounding).
- ``BottleneckLinear``: the layer's output plus a small residual MLP on it, ``up(gelu(down(y)))``
  (Houlsby et al., 2019, "Parameter-Efficient Transfer Learning for NLP"); ``up`` starts at zero
  so the adapter starts as the identity. Non-linear, so it cannot be merged.

Several adapters live in one layer under their names (as in PEFT, ``lora_A.<name>``); which
ones act is either a weighted sum (``weights``: switch, or combine adapters) or one per batch row
(``set_rows``: a batch mixing requests for different adapters, as S-LoRA and Punica serve them:
the rows' matrices are gathered and applied with two batched matmuls, not one adapter at a time).
"""

from __future__ import annotations

import math

import torch
import torch.nn.functional as F
from torch import Tensor, nn

from genlab.adapt.config import AdapterConfig
from genlab.core.errors import GenlabError


class AdapterLayer(nn.Module):
    """A frozen ``base_layer`` and named adapters; subclasses define what one adapter adds."""

    def __init__(self, base_layer: nn.Module) -> None:
        super().__init__()
        self.base_layer = base_layer
        self.weights: dict[str, float] = {}  # the adapters that act, and their weight in the sum
        self.merged: list[tuple[str, float]] = []  # merged into the base weight, in order
        self.row_index: Tensor | None = None  # (B,): per row, an index into row_names, or -1
        self.row_names: tuple[str, ...] = ()

    @property
    def names(self) -> list[str]:
        raise NotImplementedError

    @property
    def weight(self) -> Tensor:
        """The base layer's weight, as code reading ``layer.weight`` expects (PEFT does too)."""
        return self.base_layer.weight

    def add(self, name: str, config: AdapterConfig) -> None:
        raise NotImplementedError

    def delta(self, name: str, x: Tensor, y: Tensor) -> Tensor:
        """What adapter ``name`` adds to the base output ``y`` of input ``x``."""
        raise NotImplementedError

    def forward(self, x: Tensor) -> Tensor:
        y = self.base_layer(x)
        if self.row_index is not None:
            return y + self.rows_delta(x, y) if self.row_names else y
        merged = {name for name, _ in self.merged}
        out = y
        for name, weight in self.weights.items():
            if name not in merged:
                out = out + weight * self.delta(name, x, y)
        return out

    def rows_delta(self, x: Tensor, y: Tensor) -> Tensor:
        """Each row's own adapter (``row_index``); -1 rows get the base alone. This general form
        runs each adapter on its rows; linear layers override it with gathered matmuls."""
        out = torch.zeros_like(y)
        for i, name in enumerate(self.row_names):
            rows = (self.row_index == i).nonzero().squeeze(1)
            if len(rows):
                out[rows] = self.delta(name, x[rows], y[rows])
        return out

    def set_rows(self, names: tuple[str, ...], index: Tensor | None) -> None:
        """Give row ``b`` the adapter ``names[index[b]]`` (``-1``: none); ``None`` turns rows off."""
        unknown = [n for n in names if n not in self.names]
        if unknown:
            raise GenlabError(f"no adapter named '{unknown[0]}' in this layer")
        self.row_names, self.row_index = names, index

    def delete(self, name: str) -> None:
        raise NotImplementedError


def _zero_pad(t: Tensor, dim: int, size: int) -> Tensor:
    pad = [0, 0] * (t.dim() - 1 - dim) + [0, size - t.shape[dim]]
    return F.pad(t, pad)


class LoRALinear(AdapterLayer):
    """``nn.Linear`` plus low-rank updates: ``y = W x + sum_a w_a (alpha_a / r_a) B_a A_a x``."""

    def __init__(self, base_layer: nn.Linear) -> None:
        super().__init__(base_layer)
        self.lora_A = nn.ModuleDict()
        self.lora_B = nn.ModuleDict()
        self.lora_dropout = nn.ModuleDict()
        self.scaling: dict[str, float] = {}
        self._stacks: tuple[Tensor, Tensor] | None = None

    @property
    def names(self) -> list[str]:
        return list(self.lora_A)

    def add(self, name: str, config: AdapterConfig) -> None:
        base = self.base_layer
        kw = {"device": base.weight.device, "dtype": base.weight.dtype}
        self.lora_A[name] = self._down(config.rank, kw)
        self.lora_B[name] = self._up(config.rank, kw)
        self.lora_dropout[name] = nn.Dropout(config.dropout) if config.dropout else nn.Identity()
        self.scaling[name] = config.scaling
        if config.init == "gaussian":
            nn.init.normal_(self.lora_A[name].weight, std=1 / config.rank)
        else:  # PEFT's default: A as nn.Linear initialises its weight, B zero
            nn.init.kaiming_uniform_(self.lora_A[name].weight, a=math.sqrt(5))
        nn.init.zeros_(self.lora_B[name].weight)
        self._stacks = None

    def _down(self, rank: int, kw: dict) -> nn.Module:
        return nn.Linear(self.base_layer.in_features, rank, bias=False, **kw)

    def _up(self, rank: int, kw: dict) -> nn.Module:
        return nn.Linear(rank, self.base_layer.out_features, bias=False, **kw)

    def delete(self, name: str) -> None:
        for d in (self.lora_A, self.lora_B, self.lora_dropout):
            del d[name]
        del self.scaling[name]
        self.weights.pop(name, None)
        self._stacks = None

    def delta(self, name: str, x: Tensor, y: Tensor) -> Tensor:
        a, b = self.lora_A[name], self.lora_B[name]
        return b(a(self.lora_dropout[name](x))) * self.scaling[name]

    def delta_weight(self, name: str) -> Tensor:
        """The update ``(alpha / r) B A`` in the base weight's shape."""
        b, a = self.lora_B[name].weight, self.lora_A[name].weight
        return (b @ a) * self.scaling[name]

    @torch.no_grad()
    def merge(self, name: str, weight: float = 1.0) -> None:
        """Add the update into the base weight: the layer then costs what the base costs."""
        if any(n == name for n, _ in self.merged):
            raise GenlabError(f"adapter '{name}' is already merged")
        self.base_layer.weight += weight * self.delta_weight(name)
        self.merged.append((name, weight))

    @torch.no_grad()
    def unmerge(self) -> None:
        """Subtract every merged update, newest first: the base weight as it was."""
        while self.merged:
            name, weight = self.merged.pop()
            self.base_layer.weight -= weight * self.delta_weight(name)

    def set_rows(self, names: tuple[str, ...], index: Tensor | None) -> None:
        super().set_rows(names, index)
        self._stacks = self._stack(names) if index is not None and names else None

    @torch.no_grad()
    def _stack(self, names: tuple[str, ...]) -> tuple[Tensor, Tensor]:
        """A (n + 1, r_max, in) and scaled B (n + 1, out, r_max), ranks zero-padded to the
        largest; the last entry is all zeros for rows without an adapter (index -1)."""
        r = max(self.lora_A[n].weight.shape[0] for n in names)
        a = [_zero_pad(self.lora_A[n].weight, 0, r) for n in names]
        b = [_zero_pad(self.lora_B[n].weight * self.scaling[n], 1, r) for n in names]
        a.append(torch.zeros_like(a[0]))
        b.append(torch.zeros_like(b[0]))
        return torch.stack(a), torch.stack(b)

    def rows_delta(self, x: Tensor, y: Tensor) -> Tensor:
        a, b = self._stacks  # type: ignore[misc]
        a, b = a[self.row_index], b[self.row_index]  # (B, r, in), (B, out, r)
        return torch.bmm(torch.bmm(x, a.transpose(1, 2)), b.transpose(1, 2))


class LoRAConv2d(LoRALinear):
    """``nn.Conv2d`` plus a low-rank update: A is a conv with the base's kernel, stride and
    padding into r channels, B a 1x1 conv back (PEFT's conv LoRA)."""

    def _down(self, rank: int, kw: dict) -> nn.Module:
        base = self.base_layer
        return nn.Conv2d(
            base.in_channels, rank, base.kernel_size, base.stride, base.padding,
            base.dilation, bias=False, **kw,
        )  # fmt: skip

    def _up(self, rank: int, kw: dict) -> nn.Module:
        return nn.Conv2d(rank, self.base_layer.out_channels, 1, bias=False, **kw)

    def delta_weight(self, name: str) -> Tensor:
        b, a = self.lora_B[name].weight[:, :, 0, 0], self.lora_A[name].weight
        return torch.einsum("or,rikl->oikl", b, a) * self.scaling[name]

    def set_rows(self, names: tuple[str, ...], index: Tensor | None) -> None:
        AdapterLayer.set_rows(self, names, index)

    def rows_delta(self, x: Tensor, y: Tensor) -> Tensor:
        return AdapterLayer.rows_delta(self, x, y)


class BottleneckLinear(AdapterLayer):
    """``nn.Linear`` whose output passes a residual bottleneck: ``y + up(gelu(down(y)))``."""

    def __init__(self, base_layer: nn.Module) -> None:
        super().__init__(base_layer)
        self.adapter_down = nn.ModuleDict()
        self.adapter_up = nn.ModuleDict()
        self._stacks: tuple[Tensor, ...] | None = None

    @property
    def names(self) -> list[str]:
        return list(self.adapter_down)

    def add(self, name: str, config: AdapterConfig) -> None:
        weight = self.base_layer.weight
        kw = {"device": weight.device, "dtype": weight.dtype}
        width, size = weight.shape[0], config.bottleneck_size
        self.adapter_down[name] = nn.Linear(width, size, **kw)
        self.adapter_up[name] = nn.Linear(size, width, **kw)
        # Houlsby et al.: near-identity at the start; a zero up-projection makes it exact
        nn.init.normal_(self.adapter_down[name].weight, std=0.02)
        nn.init.zeros_(self.adapter_down[name].bias)
        nn.init.zeros_(self.adapter_up[name].weight)
        nn.init.zeros_(self.adapter_up[name].bias)
        self._stacks = None

    def delete(self, name: str) -> None:
        del self.adapter_down[name], self.adapter_up[name]
        self.weights.pop(name, None)
        self._stacks = None

    def delta(self, name: str, x: Tensor, y: Tensor) -> Tensor:
        return self.adapter_up[name](F.gelu(self.adapter_down[name](y)))

    def merge(self, name: str, weight: float = 1.0) -> None:
        raise GenlabError("a bottleneck adapter is not linear, so it cannot be merged into weights")

    def unmerge(self) -> None:
        """Nothing is ever merged into a bottleneck layer."""

    def set_rows(self, names: tuple[str, ...], index: Tensor | None) -> None:
        super().set_rows(names, index)
        self._stacks = self._stack(names) if index is not None and names else None

    @torch.no_grad()
    def _stack(self, names: tuple[str, ...]) -> tuple[Tensor, ...]:
        """Down and up weights and biases of every adapter, sizes zero-padded to the largest,
        and a zero entry last for rows without an adapter (``gelu(0) = 0``: it adds nothing)."""
        h = max(self.adapter_down[n].weight.shape[0] for n in names)
        parts = (
            [_zero_pad(self.adapter_down[n].weight, 0, h) for n in names],
            [_zero_pad(self.adapter_down[n].bias, 0, h) for n in names],
            [_zero_pad(self.adapter_up[n].weight, 1, h) for n in names],
            [self.adapter_up[n].bias for n in names],
        )
        return tuple(torch.stack([*p, torch.zeros_like(p[0])]) for p in parts)

    def rows_delta(self, x: Tensor, y: Tensor) -> Tensor:
        down_w, down_b, up_w, up_b = (t[self.row_index] for t in self._stacks)  # type: ignore[union-attr]
        h = F.gelu(torch.bmm(y, down_w.transpose(1, 2)) + down_b[:, None])
        return torch.bmm(h, up_w.transpose(1, 2)) + up_b[:, None]
