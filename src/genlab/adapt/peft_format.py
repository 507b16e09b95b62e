"""Adapters in PEFT's folder format: ``adapter_config.json`` + ``adapter_model.safetensors``.

PEFT (Mangrulkar et al., 2022, the ``peft`` library) saves an adapter alone, its tensors keyed by
the transformers model it wraps. genlab's GPT is GPT-2 under other names (``genlab.nets.hf_gpt2``),
so a genlab LoRA (Hu et al., 2021) or soft prompt (Lester et al., 2021) is written as PEFT writes
one for the exported GPT-2, and one trained with PEFT on that GPT-2 loads into genlab:

- LoRA: ``base_model.model.transformer.h.{i}.attn.c_attn.lora_A.weight`` is genlab's
  ``blocks.{i}.attn.qkv.lora_A.weight``, unchanged: PEFT wraps GPT-2's transposed ``Conv1D`` in
  the same ``nn.Linear`` pair, A (r, in) and B (out, r); only merging transposes
  (``fan_in_fan_out``). rsLoRA's ``alpha / sqrt(r)`` becomes an equivalent alpha.
- Trainable token rows beside a LoRA (``AdapterConfig.tokens``): PEFT's
  ``trainable_token_indices={"wte": [...]}`` (PEFT >= 0.15), the rows under
  ``base_model.model.transformer.wte.token_adapter.trainable_tokens_delta`` (k, dim). Despite
  the name PEFT stores the new rows themselves, in the order of its index list, as genlab's
  ``wte.token_rows`` do (genlab keeps the ids sorted). GPT-2's tied ``lm_head`` reads the same
  rows in both libraries, so PEFT saves nothing for it. The field is written only when there
  are tokens, so a plain LoRA's config stays readable by PEFT before 0.15.
- Prompt tuning: ``prompt_embeddings`` (virtual tokens, dim), placed before the token embeddings
  at positions 0..P-1 in both libraries.

Bottleneck adapters (Houlsby et al., 2019) have no PEFT form, nor does a soft prompt with token
rows (PEFT's ``PromptTuningConfig`` has no ``trainable_token_indices``); a standalone
``TRAINABLE_TOKENS`` folder is refused, genlab having no tokens-only adapter. The config lists
the fields PEFT has written since 0.13, so every PEFT from then on reads it without warnings.
Only safetensors are read: ``adapter_model.bin`` is a pickle, never opened.
"""

from __future__ import annotations

import json
import math
import os
import re
from pathlib import Path
from typing import Any

import torch
from torch import Tensor, nn

from genlab.adapt.adapted import Adapted
from genlab.adapt.config import AdapterConfig
from genlab.adapt.inject import (
    adapter_layers,
    adapter_names,
    adapter_state_dict,
    add_adapter,
    delete_adapter,
    load_adapter_state,
)
from genlab.adapt.layers import BottleneckLinear, LoRALinear
from genlab.adapt.tokens import TokenRows
from genlab.core.errors import GenlabError
from genlab.core.io import atomic_save_tensors, atomic_write_json, load_tensors, read_json
from genlab.nets.hf_gpt2 import BLOCK_NAMES, CONV1D

CONFIG_FILE = "adapter_config.json"
WEIGHTS_FILE = "adapter_model.safetensors"
PICKLE_FILE = "adapter_model.bin"
PREFIX = "base_model.model."  # PeftModel -> LoraModel -> the transformers model
PROMPT_KEY = "prompt_embeddings"
_PROMPT_STATE = "prefix.embeddings.weight"  # genlab's key of a soft prompt (adapter_state_dict)
# trainable token rows: PEFT's key (the embedding's TrainableTokensWrapper) and genlab's
TOKENS_KEY = PREFIX + "transformer.wte.token_adapter.trainable_tokens_delta"
_TOKENS_STATE = "wte.token_rows.weight"
# how a LoRA config's trainable_token_indices may name GPT-2's embedding (PEFT matches a
# dotted suffix), and its tied output layer, which must then list the same ids
_EMBEDDING = ("wte", "transformer.wte")
_TIED_HEAD = "lm_head"

# the layers LoRA adapts, genlab's name -> GPT-2's ("attn.qkv" -> "attn.c_attn")
_TO_HF = {genlab: hf for hf, genlab in BLOCK_NAMES.items() if hf in CONV1D}
_FROM_HF = {hf: genlab for genlab, hf in _TO_HF.items()}
_LAYER = re.compile(r"blocks\.(\d+)\.(" + "|".join(re.escape(p) for p in _TO_HF) + ")")
_PEFT_KEY = re.compile(
    re.escape(PREFIX) + r"(?:transformer\.)?h\.(\d+)\.("
    + "|".join(re.escape(p) for p in _FROM_HF) + r")\.lora_([AB])\.weight"
)  # fmt: skip
# PEFT's short target names -> genlab's layer patterns (PEFT matches a name or a dotted suffix)
_HF_SHORT = ("c_attn", "c_proj", "c_fc")
_HF_TARGETS = {
    "c_attn": ("attn.qkv",),
    "c_proj": ("attn.proj", "mlp.proj"),
    "c_fc": ("mlp.fc",),
    **{hf: (genlab,) for genlab, hf in _TO_HF.items()},
}
# LoRA fields whose other values are variants genlab does not compute: field -> plain values
_LORA_PLAIN: dict[str, tuple[Any, ...]] = {
    "bias": ("none",),
    "use_dora": (False, None),
    "lora_bias": (False, None),
    "modules_to_save": (None, []),
    "layer_replication": (None, []),
    "target_parameters": (None, []),
    "alora_invocation_tokens": (None, []),
    "use_qalora": (False, None),
    "use_bdlora": (None, False),
    "arrow_config": (None,),
    "kasa_config": (None,),
    "velora_config": (None,),
    "monteclora_config": (None,),
}
# Inits that leave the base weights as they are (PiSSA, OLoRA, CorDA, LoftQ, LoRA-GA rewrite them)
_PLAIN_INITS = (True, False, "gaussian", "eva", "orthogonal")
_PROMPT_PLAIN: dict[str, tuple[Any, ...]] = {
    "task_type": ("CAUSAL_LM",),
    "num_transformer_submodules": (1, None),
    "modules_to_save": (None, []),
}


def _common(peft_type: str, base_name_or_path: str) -> dict[str, Any]:
    return {
        "peft_type": peft_type,
        "task_type": "CAUSAL_LM",
        "base_model_name_or_path": base_name_or_path,
        "revision": None,
        "inference_mode": True,
        "auto_mapping": None,
    }


def _number(x: float) -> float | int:
    """``16.0`` as PEFT writes it (``16``)."""
    return int(x) if float(x).is_integer() else x


def _target_modules(layers: list[str], n_blocks: int) -> list[str]:
    """GPT-2 names PEFT matches: short ones (``c_attn``) when every block has the layer,
    else each module's full name."""
    found: dict[str, set[int]] = {}
    for layer in layers:
        match = _LAYER.fullmatch(layer)
        if match is None:
            raise GenlabError(
                f"layer '{layer}' has no GPT-2 counterpart in PEFT's format: a LoRA saved for "
                "PEFT adapts blocks.{i}.attn.qkv|proj and blocks.{i}.mlp.fc|proj only"
            )
        found.setdefault(match.group(2), set()).add(int(match.group(1)))
    if any(blocks != set(range(n_blocks)) for blocks in found.values()):
        return [f"transformer.h.{i}.{_TO_HF[p]}" for p in sorted(found) for i in sorted(found[p])]
    names = {_TO_HF[p] for p in found}
    if {"attn.c_proj", "mlp.c_proj"} <= names:
        names = (names - {"attn.c_proj", "mlp.c_proj"}) | {"c_proj"}
    # c_attn and c_fc name one layer of a block each; c_proj alone would name both projections
    return sorted(n if n.endswith("c_proj") else n.rpartition(".")[2] for n in names)


def _lora_to_peft(
    model: nn.Module,
    name: str,
    layers: list[tuple[str, nn.Module]],
    rows: TokenRows | None,
    base: str,
) -> tuple[dict[str, Any], dict[str, Tensor]]:
    _, first = layers[0]
    rank = first.lora_A[name].weight.shape[0]
    dropout = first.lora_dropout[name]
    config = {
        **_common("LORA", base),
        "r": rank,
        "lora_alpha": _number(first.scaling[name] * rank),
        "lora_dropout": dropout.p if isinstance(dropout, nn.Dropout) else 0.0,
        "target_modules": _target_modules(
            [n for n, _ in layers], len(getattr(model, "blocks", ()))
        ),
        "fan_in_fan_out": True,  # GPT-2's Conv1D keeps its weight as (in, out)
        "bias": "none",
        "use_rslora": False,
        "use_dora": False,
        "init_lora_weights": True,
        "modules_to_save": None,
        "layers_to_transform": None,
        "layers_pattern": None,
        "rank_pattern": {},
        "alpha_pattern": {},
        "megatron_config": None,
        "megatron_core": "megatron.core",
        "loftq_config": {},
        "layer_replication": None,
    }
    state = adapter_state_dict(model, name)
    tensors = {}
    if rows is not None:  # only then: a PEFT before 0.15 reads a plain LoRA's config as ever
        config["trainable_token_indices"] = {"wte": rows.indices(name).tolist()}
        tensors[TOKENS_KEY] = state.pop(_TOKENS_STATE)
    for key, tensor in state.items():
        layer, _, matrix = key.rpartition(".lora_")
        block, part = _LAYER.fullmatch(layer).groups()  # type: ignore[union-attr]
        tensors[f"{PREFIX}transformer.h.{block}.{_TO_HF[part]}.lora_{matrix}"] = tensor
    return config, tensors


def _prompt_to_peft(
    model: nn.Module, name: str, rows: TokenRows | None, base: str
) -> tuple[dict[str, Any], dict[str, Tensor]]:
    if rows is not None:
        raise GenlabError(
            f"soft prompt '{name}' also trains the embedding rows of tokens "
            f"{rows.indices(name).tolist()}, which PEFT's prompt tuning cannot carry "
            "(trainable_token_indices is LoRA's); keep it in genlab's adapter run folder, or "
            "train the prompt without token rows (--no-special-tokens)"
        )
    state = adapter_state_dict(model, name)
    if _PROMPT_STATE not in state:
        raise GenlabError(
            f"soft prompt '{name}' is not acting; call set_adapters(model, '{name}') before "
            "saving it"
        )
    prompt = state[_PROMPT_STATE]
    c = model.config
    config = {
        **_common("PROMPT_TUNING", base),
        "num_virtual_tokens": prompt.shape[0],
        "token_dim": prompt.shape[1],
        "num_transformer_submodules": 1,  # a decoder: one stack takes the prompt
        "num_attention_heads": c.n_head,
        "num_layers": c.n_layer,
        # the trained values are saved, so the init only says how a fresh prompt would start;
        # RANDOM is the one every PEFT version knows (SAMPLE_VOCAB is recent)
        "prompt_tuning_init": "RANDOM",
        "prompt_tuning_init_text": None,
        "tokenizer_name_or_path": None,
        "tokenizer_kwargs": None,
    }
    return config, {PROMPT_KEY: prompt}


def save_peft(
    model: nn.Module, name: str, folder: str | os.PathLike, base_name_or_path: str
) -> Path:
    """Write adapter ``name`` of ``model`` (a genlab GPT) as PEFT saves one for the GPT-2
    ``genlab export`` writes: ``PeftModel.from_pretrained(gpt2, folder)`` then gives genlab's
    logits. ``base_name_or_path`` is recorded for ``AutoPeftModelForCausalLM``."""
    if name not in adapter_names(model):
        known = ", ".join(adapter_names(model)) or "none"
        raise GenlabError(f"no adapter named '{name}' to save; this model has {known}")
    layers = [(n, layer) for n, layer in adapter_layers(model) if name in layer.names]
    if any(isinstance(layer, BottleneckLinear) for _, layer in layers):
        raise GenlabError(
            f"adapter '{name}' is a bottleneck adapter (Houlsby et al., 2019), which PEFT has no "
            "format for; keep it in genlab's adapter run folder"
        )
    rows = next((layer for _, layer in layers if isinstance(layer, TokenRows)), None)
    lora = [(n, layer) for n, layer in layers if isinstance(layer, LoRALinear)]
    base = str(base_name_or_path)
    if lora:
        config, tensors = _lora_to_peft(model, name, lora, rows, base)
    else:
        config, tensors = _prompt_to_peft(model, name, rows, base)
    folder = Path(folder)
    folder.mkdir(parents=True, exist_ok=True)
    atomic_save_tensors(folder / WEIGHTS_FILE, tensors, metadata={"format": "pt"})
    atomic_write_json(folder / CONFIG_FILE, config)
    return folder


def write_peft_files(
    adapted: Adapted, folder: str | os.PathLike, base_name_or_path: str | None = None
) -> Path | None:
    """Put PEFT's two files beside genlab's own in an adapter run folder, so tools built on
    PEFT open the run as it is. A bottleneck adapter has no PEFT form: nothing is written and
    ``None`` comes back."""
    if adapted.config.adapter.method == "bottleneck":
        return None
    base = base_name_or_path or adapted.config.base
    return save_peft(adapted.model, adapted.config.name, folder, base)


def _check_plain(config: dict[str, Any], plain: dict[str, tuple[Any, ...]], path: Path) -> None:
    for field, values in plain.items():
        value = config.get(field, values[0])
        if value not in values:
            raise GenlabError(
                f"{path}: {field}={json.dumps(value)} is a PEFT setting genlab's adapters do "
                f"not compute; use an adapter trained with {field}={json.dumps(values[0])}"
            )


def _lora_from_peft(
    config: dict[str, Any], tensors: dict[str, Tensor], config_path: Path, weights_path: Path
) -> tuple[AdapterConfig, dict[str, Tensor]]:
    _check_plain(config, _LORA_PLAIN, config_path)
    init = config.get("init_lora_weights", True)
    if init not in _PLAIN_INITS:
        raise GenlabError(
            f"{config_path}: init_lora_weights={json.dumps(init)} rewrites the base weights, "
            "which genlab does not reproduce; convert it to a plain LoRA first (PEFT's "
            "save_pretrained(..., path_initial_model_for_weight_conversion=...))"
        )
    rank, alpha = config.get("r", 8), config.get("lora_alpha", 8)
    for field, value in (("r", rank), ("lora_alpha", alpha)):
        if isinstance(value, bool) or not isinstance(value, int | float):
            raise GenlabError(f"{config_path}: {field} must be a number, got {json.dumps(value)}")
    for field, value in (("rank_pattern", rank), ("alpha_pattern", alpha)):
        odd = {k: v for k, v in (config.get(field) or {}).items() if v != value}
        if odd:
            layer, v = next(iter(odd.items()))
            raise GenlabError(
                f"{config_path}: {field} gives '{layer}' {v} instead of {value}; genlab's LoRA "
                "has one rank and one alpha per adapter"
            )
    if config.get("use_rslora"):  # rsLoRA scales by alpha / sqrt(r): the same as this alpha / r
        alpha = alpha * rank / math.sqrt(rank)
    tensors = dict(tensors)
    tokens, rows = _tokens_from_peft(config, tensors, config_path, weights_path)
    state = {} if rows is None else {_TOKENS_STATE: rows}
    for key, tensor in tensors.items():
        match = _PEFT_KEY.fullmatch(key)
        if match is None:
            raise GenlabError(
                f"{weights_path} holds '{key}', which is not a LoRA matrix of a GPT-2 attention "
                "or MLP layer (c_attn, c_proj, c_fc), the layers genlab's LoRA adapts"
            )
        block, part, matrix = match.groups()
        state[f"blocks.{block}.{_FROM_HF[part]}.lora_{matrix}.weight"] = tensor
    if len(state) == (rows is not None):
        raise GenlabError(f"{weights_path} holds no LoRA matrices; re-save the adapter")
    modules = config.get("target_modules")
    if isinstance(modules, list):
        for module in modules:
            if not isinstance(module, str) or module.rpartition(".")[2] not in _HF_SHORT:
                raise GenlabError(
                    f"{config_path}: target_modules names '{module}', which genlab cannot adapt; "
                    "target GPT-2's c_attn, c_proj and c_fc"
                )
    restricted = any(config.get(f) is not None for f in ("layers_to_transform", "exclude_modules"))
    if isinstance(modules, list) and not restricted and all(m in _HF_TARGETS for m in modules):
        # PEFT's own matching: every block's layer, so a base of other depth is refused on load
        targets = tuple(dict.fromkeys(p for m in modules for p in _HF_TARGETS[m]))
    else:  # a regular expression, chosen layers, exclusions: the layers the file holds
        targets = tuple(dict.fromkeys(k.rpartition(".lora_")[0] for k in state if ".lora_" in k))
    adapter = AdapterConfig(
        method="lora",
        targets=targets,
        rank=rank,
        alpha=alpha,
        dropout=config.get("lora_dropout", 0.0),
        init="gaussian" if init == "gaussian" else "default",
        tokens=tokens,
    )
    return adapter, state


def _tokens_from_peft(
    config: dict[str, Any], tensors: dict[str, Tensor], config_path: Path, weights_path: Path
) -> tuple[tuple[int, ...], Tensor | None]:
    """A LoRA's ``trainable_token_indices`` as genlab's sorted ids and their rows in that order
    (taken out of ``tensors``); ``()`` and ``None`` without any."""
    indices = config.get("trainable_token_indices")
    if isinstance(indices, dict) and indices:
        named = [k for k in indices if k in _EMBEDDING]
        other = next((k for k in indices if k not in (*_EMBEDDING, _TIED_HEAD)), None)
        if other is not None or len(named) != 1:
            what = f"'{other}'" if other is not None else f"{len(named)} embeddings"
            raise GenlabError(
                f"{config_path}: trainable_token_indices names {what}; genlab trains token "
                'rows of GPT-2\'s embedding (tied to lm_head) alone: {"wte": [...]}'
            )
        if indices.get(_TIED_HEAD, indices[named[0]]) != indices[named[0]]:
            raise GenlabError(
                f"{config_path}: trainable_token_indices gives lm_head other tokens than wte; "
                "GPT-2's lm_head is tied to wte, so genlab trains the same rows for both"
            )
        indices = indices[named[0]]
    if not indices:
        if TOKENS_KEY in tensors:
            raise GenlabError(
                f"{weights_path} holds trainable token rows but {config_path.name} has no "
                "trainable_token_indices; the folder mixes two adapters"
            )
        return (), None
    if not isinstance(indices, list) or not all(
        isinstance(i, int) and not isinstance(i, bool) for i in indices
    ):
        raise GenlabError(
            f"{config_path}: trainable_token_indices must list token ids, got {json.dumps(indices)}"
        )
    if len(set(indices)) != len(indices):
        twice = next(i for i in indices if indices.count(i) > 1)
        raise GenlabError(
            f"{config_path}: trainable_token_indices lists token {twice} twice; each token "
            "has one trained row"
        )
    rows = tensors.pop(TOKENS_KEY, None)
    if rows is None:
        raise GenlabError(
            f"{weights_path} lacks '{TOKENS_KEY}', the rows of the trainable tokens "
            f"{config_path.name} lists; re-save the adapter with PEFT"
        )
    if rows.dim() != 2 or rows.shape[0] != len(indices):
        raise GenlabError(
            f"{weights_path}: '{TOKENS_KEY}' has shape {tuple(rows.shape)} but "
            f"{config_path.name} lists {len(indices)} trainable tokens; the folder mixes two "
            "adapters"
        )
    order = sorted(range(len(indices)), key=indices.__getitem__)  # genlab keeps ids sorted
    return tuple(indices[i] for i in order), rows[torch.tensor(order, dtype=torch.long)]


def _prompt_from_peft(
    config: dict[str, Any], tensors: dict[str, Tensor], config_path: Path, weights_path: Path
) -> tuple[AdapterConfig, dict[str, Tensor]]:
    _check_plain(config, _PROMPT_PLAIN, config_path)
    if set(tensors) != {PROMPT_KEY}:
        other = sorted(set(tensors) - {PROMPT_KEY}) or ["nothing else"]
        raise GenlabError(
            f"{weights_path} holds '{other[0]}': a prompt-tuning adapter holds '{PROMPT_KEY}' "
            "alone; re-save it with PEFT"
        )
    prompt = tensors[PROMPT_KEY]
    for field, size in (("num_virtual_tokens", prompt.shape[0]), ("token_dim", prompt.shape[1])):
        if config.get(field, size) != size:
            raise GenlabError(
                f"{config_path}: {field}={config[field]} but {weights_path.name} holds "
                f"{tuple(prompt.shape)} prompt embeddings; the folder mixes two adapters"
            )
    init = "random" if config.get("prompt_tuning_init", "RANDOM") == "RANDOM" else "vocab"
    adapter = AdapterConfig(method="prompt", prompt_tokens=prompt.shape[0], prompt_init=init)
    return adapter, {_PROMPT_STATE: prompt}


def load_peft(folder: str | os.PathLike) -> tuple[AdapterConfig, dict[str, Tensor]]:
    """Read a PEFT adapter folder (LoRA or prompt tuning of a GPT-2) as genlab's adapter config
    and tensors keyed as ``inject.adapter_state_dict`` keys them."""
    folder = Path(folder)
    if not folder.is_dir():
        raise GenlabError(f"PEFT adapter folder not found: {folder}; check the path")
    config_path = folder / CONFIG_FILE
    if not config_path.is_file():
        raise GenlabError(
            f"{folder} has no {CONFIG_FILE}, so it is not a PEFT adapter folder; give the "
            "folder PeftModel.save_pretrained wrote"
        )
    config = read_json(config_path, what="PEFT adapter config")
    if not isinstance(config, dict):
        raise GenlabError(f"{config_path} is not a PEFT adapter config (not a JSON object)")
    readers = {"LORA": _lora_from_peft, "PROMPT_TUNING": _prompt_from_peft}
    peft_type = config.get("peft_type")
    if peft_type == "TRAINABLE_TOKENS":
        raise GenlabError(
            f'{config_path}: peft_type "TRAINABLE_TOKENS" trains token rows alone, which '
            "genlab has no adapter for; train them beside a LoRA "
            "(LoraConfig(trainable_token_indices=...)) and load that"
        )
    if peft_type not in readers:
        raise GenlabError(
            f"{config_path}: peft_type {json.dumps(peft_type)} is not supported; genlab reads "
            "LORA and PROMPT_TUNING adapters"
        )
    weights_path = folder / WEIGHTS_FILE
    if not weights_path.is_file():
        if (folder / PICKLE_FILE).is_file():
            raise GenlabError(
                f"{folder / PICKLE_FILE} is a pickle, which genlab never opens; re-save the "
                "adapter as safetensors (save_pretrained(folder, safe_serialization=True))"
            )
        raise GenlabError(f"{folder} has no {WEIGHTS_FILE}; re-save the adapter with PEFT")
    tensors = load_tensors(weights_path, what="PEFT adapter weights")
    return readers[peft_type](config, tensors, config_path, weights_path)


def add_peft_adapter(
    model: nn.Module, folder: str | os.PathLike, name: str = "default"
) -> AdapterConfig:
    """Inject the PEFT adapter of ``folder`` into ``model`` (a genlab GPT) under ``name`` (it
    then acts, as ``add_adapter``) and fill it; on any mismatch a one-line error names the
    first layer that does not fit, and no part of the adapter stays in ``model``."""
    if name in adapter_names(model):
        raise GenlabError(f"the model already has an adapter named '{name}'")
    config, state = load_peft(folder)
    try:
        add_adapter(model, config, name)
        model.train(model.training)  # the new dropout modules follow the model's mode
        load_adapter_state(model, name, state, str(Path(folder) / WEIGHTS_FILE))
    except GenlabError:
        if name in adapter_names(model):
            delete_adapter(model, name)
        raise
    return config
