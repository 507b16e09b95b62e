"""What an adapter is: its method, where it goes, and its size."""

from __future__ import annotations

from dataclasses import asdict, dataclass, fields
from typing import Any

from genlab.core.errors import GenlabError

METHODS = ("lora", "bottleneck", "prompt")

# Where each method goes by default in a GPT (layer names of genlab.nets.transformer).
DEFAULT_TARGETS = {
    "lora": ("attn.qkv", "attn.proj"),
    # Houlsby et al. place one adapter after the attention projection and one after the MLP,
    # before each residual sum: exactly the outputs of these two layers.
    "bottleneck": ("attn.proj", "mlp.proj"),
    "prompt": (),
}


@dataclass(frozen=True)
class AdapterConfig:
    """One adapter. ``targets`` are layer-name patterns: a layer matches when its dotted name
    ends with a pattern (``attn.qkv`` matches ``blocks.3.attn.qkv``), or equals it, or matches it
    as a regular expression (``blocks\\.[01]\\.attn\\.qkv``)."""

    method: str = "lora"  # lora | bottleneck | prompt
    targets: tuple[str, ...] = ()  # empty: the method's default targets
    rank: int = 8  # LoRA's r
    alpha: float = 16.0  # LoRA's alpha: the update is scaled by alpha / r
    dropout: float = 0.0  # dropout on the LoRA input (training only)
    init: str = "default"  # LoRA init as PEFT: "default" (A Kaiming-uniform, B zero), "gaussian"
    bottleneck_size: int = 16  # width of a bottleneck adapter
    prompt_tokens: int = 20  # soft-prompt length (prompt tuning)
    prompt_init: str = (
        "vocab"  # "vocab": start from embeddings of random vocabulary tokens; "random"
    )

    def __post_init__(self) -> None:
        if self.method not in METHODS:
            raise GenlabError(f"unknown adapter '{self.method}': use one of {', '.join(METHODS)}")
        object.__setattr__(self, "targets", tuple(self.targets) or DEFAULT_TARGETS[self.method])
        for name in ("rank", "bottleneck_size", "prompt_tokens"):
            if getattr(self, name) < 1:
                raise GenlabError(f"adapter {name} must be positive, got {getattr(self, name)}")
        if not 0 <= self.dropout < 1:
            raise GenlabError(f"adapter dropout must be in [0, 1), got {self.dropout}")
        if self.init not in ("default", "gaussian"):
            raise GenlabError(f"unknown LoRA init '{self.init}': use default or gaussian")
        if self.prompt_init not in ("vocab", "random"):
            raise GenlabError(f"unknown prompt init '{self.prompt_init}': use vocab or random")

    @property
    def scaling(self) -> float:
        return self.alpha / self.rank

    def to_dict(self) -> dict[str, Any]:
        d = asdict(self)
        d["targets"] = list(self.targets)
        return d

    @classmethod
    def from_dict(cls, d: dict[str, Any]) -> AdapterConfig:
        known = {f.name for f in fields(cls)}
        unknown = sorted(set(d) - known)
        if unknown:
            raise GenlabError(f"unknown adapter config field '{unknown[0]}'")
        return cls(**{**d, "targets": tuple(d.get("targets", ()))})
