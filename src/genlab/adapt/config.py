"""What an adapter is: its method, where it goes, and its size."""

from __future__ import annotations

from dataclasses import asdict, dataclass, fields
from typing import Any, Literal

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
    prompt_init: str = "vocab"  # "vocab": from random vocabulary tokens' embeddings; "random"
    tokens: tuple[int, ...] = ()  # token ids whose embedding rows also train (chat tokens)

    def __post_init__(self) -> None:
        if self.method not in METHODS:
            raise GenlabError(f"unknown adapter '{self.method}': use one of {', '.join(METHODS)}")
        object.__setattr__(self, "targets", tuple(self.targets) or DEFAULT_TARGETS[self.method])
        object.__setattr__(self, "tokens", tuple(sorted(set(self.tokens))))
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
        d["tokens"] = list(self.tokens)
        return d

    @classmethod
    def from_dict(cls, d: dict[str, Any]) -> AdapterConfig:
        known = {f.name for f in fields(cls)}
        unknown = sorted(set(d) - known)
        if unknown:
            raise GenlabError(f"unknown adapter config field '{unknown[0]}'")
        return cls(
            **{**d, "targets": tuple(d.get("targets", ())), "tokens": tuple(d.get("tokens", ()))}
        )


_DEFAULT = AdapterConfig()


@dataclass(frozen=True)
class AdapterOptions:
    """A training verb's adapter, as options (``--adapter lora --lora-rank 8``): ``none`` trains
    every weight (full fine-tuning); otherwise the base is frozen and only the adapter trains.
    The defaults are ``AdapterConfig``'s; ``config()`` builds it."""

    adapter: Literal["none", "lora", "bottleneck", "prompt"] = "none"  # none: full fine-tuning
    lora_rank: int = _DEFAULT.rank  # LoRA's r
    lora_alpha: float = _DEFAULT.alpha  # LoRA's alpha: the update is scaled by alpha / r
    lora_dropout: float = _DEFAULT.dropout  # dropout on the LoRA input (training only)
    lora_targets: tuple[str, ...] | None = None  # layers (name suffixes); none: model's default
    bottleneck_size: int = _DEFAULT.bottleneck_size  # width of each bottleneck adapter
    prompt_tokens: int = _DEFAULT.prompt_tokens  # soft-prompt length (prompt tuning)
    # also train the embedding rows of the tokenizer's special tokens (chat roles, end of turn;
    # PEFT's trainable_token_indices): a base pretrained on plain text never saw them
    special_tokens: bool = True
    # train every token's embedding row (PEFT's modules_to_save=["embed_tokens"]): many more
    # weights, but on a small base the frozen vocabulary is what holds an adapter back
    all_tokens: bool = False

    def config(self, lora_targets: tuple[str, ...] = ()) -> AdapterConfig | None:
        """The adapter to train (``None``: full fine-tuning); ``lora_targets`` are the model's
        default LoRA targets, used when ``--lora-targets`` is none."""
        if self.adapter == "none":
            return None
        if self.lora_targets is not None and self.adapter != "lora":
            raise GenlabError(f"--lora-targets is for --adapter lora, not {self.adapter}")
        if self.lora_targets == ():
            raise GenlabError("--lora-targets names no layer: give some, or none for the default")
        targets = (self.lora_targets or lora_targets) if self.adapter == "lora" else ()
        return AdapterConfig(
            self.adapter,
            targets=targets,
            rank=self.lora_rank,
            alpha=self.lora_alpha,
            dropout=self.lora_dropout,
            bottleneck_size=self.bottleneck_size,
            prompt_tokens=self.prompt_tokens,
        )
