"""GPT-2 weights in and out of the Hugging Face transformers format.

genlab's ``GPT`` is GPT-2's architecture (Radford et al., 2019) under other names, so a GPT-2
checkpoint folder (``config.json`` + ``model.safetensors``) can be read into it and written back
without transformers installed: only the names differ, and the four projections are stored
transposed, because GPT-2's ``Conv1D`` keeps its weight as (in, out) where ``nn.Linear`` keeps
(out, in). This lets a user start from a published GPT-2, compare genlab with transformers number
for number, and hand a genlab model to any tool that reads the transformers format.

A GPT without biases (genlab's default) is GPT-2 with every bias zero, so it exports exactly.
With a tokenizer, the folder also gets its files (``tokenizer.json``, ``tokenizer_config.json``
with the chat template) and a ``generation_config.json`` whose ``eos_token_id`` is the stop set,
so ``AutoModelForCausalLM``/``AutoTokenizer`` and ``generate`` behave as ``genlab generate``.

The legacy ``pytorch_model.bin`` is read with ``torch.load(weights_only=True)``, which refuses
to run code hidden in a pickle.
"""

from __future__ import annotations

import os
import pickle
import re
from pathlib import Path
from typing import Any

import torch
from torch import Tensor

from genlab.core.checkpoint import load_state_into
from genlab.core.errors import GenlabError
from genlab.core.io import (
    atomic_save_tensors,
    atomic_write_bytes,
    atomic_write_json,
    load_tensors,
    read_json,
)
from genlab.data.tokenizer import TOKENIZER_FILE, Tokenizer
from genlab.nets.gpt import GPT, GPTConfig

SAFETENSORS_FILE = "model.safetensors"
SAFETENSORS_INDEX = "model.safetensors.index.json"
LEGACY_FILE = "pytorch_model.bin"

# GPT-2's names for the parts of a block, mapped to genlab's (the ``Conv1D`` ones are transposed).
BLOCK_NAMES = {
    "ln_1": "ln_1",
    "ln_2": "ln_2",
    "attn.c_attn": "attn.qkv",
    "attn.c_proj": "attn.proj",
    "mlp.c_fc": "mlp.fc",
    "mlp.c_proj": "mlp.proj",
}
_TO_HF = {genlab: hf for hf, genlab in BLOCK_NAMES.items()}
CONV1D = ("attn.c_attn", "attn.c_proj", "mlp.c_fc", "mlp.c_proj")
# Outside the blocks the names agree: transformer.wte, transformer.wpe, transformer.ln_f.
_TOP_NAMES = ("wte", "wpe", "ln_f")
# The causal-mask buffers that older transformers versions saved beside the weights.
_BUFFERS = ("attn.bias", "attn.masked_bias")
# GELU with the tanh approximation, which genlab's MLP computes, under its two transformers names.
_TANH_GELU = ("gelu_new", "gelu_pytorch_tanh")


def _config_from_hf(hf: dict[str, Any], source: Path) -> GPTConfig:
    """Translate a GPT-2 ``config.json``; refuse the variants genlab's GPT does not compute."""
    if not isinstance(hf, dict) or hf.get("model_type") != "gpt2":
        kind = hf.get("model_type") if isinstance(hf, dict) else None
        raise GenlabError(
            f"{source} is not a GPT-2 config (model_type={kind!r}); genlab reads GPT-2 "
            "checkpoints only (model_type 'gpt2')"
        )
    act = hf.get("activation_function", "gelu_new")
    if act not in _TANH_GELU:
        raise GenlabError(
            f"{source}: activation_function '{act}' is not supported; genlab's GPT computes "
            "GELU with the tanh approximation (gelu_new), as GPT-2 does"
        )
    n_embd = hf.get("n_embd", 768)
    unsupported = {
        "n_inner": hf.get("n_inner") not in (None, 4 * n_embd),
        "scale_attn_by_inverse_layer_idx": bool(hf.get("scale_attn_by_inverse_layer_idx")),
        "scale_attn_weights": not hf.get("scale_attn_weights", True),
        "add_cross_attention": bool(hf.get("add_cross_attention")),
    }
    for key, bad in unsupported.items():
        if bad:
            raise GenlabError(
                f"{source}: {key}={hf.get(key)!r} is a GPT-2 variant genlab's GPT does not "
                "compute; only standard GPT-2 checkpoints load"
            )
    return GPTConfig(
        vocab_size=hf.get("vocab_size", 50257),
        block_size=hf.get("n_positions", hf.get("n_ctx", 1024)),
        n_layer=hf.get("n_layer", 12),
        n_head=hf.get("n_head", 12),
        n_embd=n_embd,
        dropout=hf.get("resid_pdrop", 0.1),
        bias=True,
        pos="learned",
        tie_weights=hf.get("tie_word_embeddings", True),
        norm_eps=hf.get("layer_norm_epsilon", 1e-5),
    )


def _read_weights(folder: Path) -> tuple[dict[str, Tensor], Path]:
    """The folder's tensors (safetensors, sharded safetensors or the legacy pickle, safely)."""
    if (folder / SAFETENSORS_FILE).is_file():
        path = folder / SAFETENSORS_FILE
        return load_tensors(path, what="GPT-2 weights"), path
    if (folder / SAFETENSORS_INDEX).is_file():
        path = folder / SAFETENSORS_INDEX
        index = read_json(path, what="safetensors index")
        if not isinstance(index, dict) or not isinstance(index.get("weight_map"), dict):
            raise GenlabError(f"{path} has no 'weight_map'; it is not a safetensors index")
        state: dict[str, Tensor] = {}
        for shard in sorted(set(index["weight_map"].values())):
            state.update(load_tensors(folder / shard, what="GPT-2 weight shard"))
        return state, path
    if (folder / LEGACY_FILE).is_file():
        path = folder / LEGACY_FILE
        try:
            state = torch.load(path, map_location="cpu", weights_only=True)
        except (pickle.UnpicklingError, RuntimeError, EOFError, ValueError) as e:
            # torch's message is many lines and suggests weights_only=False: name the culprit.
            culprit = re.search(r"GLOBAL (\S+)", str(e))
            found = f": it references {culprit.group(1)}" if culprit else ""
            raise GenlabError(
                f"{path} is not a plain file of tensors (torch.load with weights_only=True "
                f"refused it{found}); it is corrupt or holds other Python objects: get a "
                "safetensors copy from a source you trust"
            ) from e
        if not isinstance(state, dict) or not all(isinstance(v, Tensor) for v in state.values()):
            raise GenlabError(f"{path} does not hold a dictionary of tensors")
        return state, path
    raise GenlabError(
        f"no weights in {folder}: expected {SAFETENSORS_FILE}, {SAFETENSORS_INDEX} or {LEGACY_FILE}"
    )


def _state_from_hf(hf_state: dict[str, Tensor], tie: bool, source: Path) -> dict[str, Tensor]:
    """Rename (and transpose) GPT-2 tensors into genlab's state dict."""
    state: dict[str, Tensor] = {}
    for key, tensor in hf_state.items():
        name = key.removeprefix("transformer.")
        if name == "lm_head.weight":
            if not tie:  # a tied head is wte itself: transformers writes it, or not, as a copy
                state["lm_head.weight"] = tensor
            continue
        top, _, rest = name.partition(".")
        if top in _TOP_NAMES:
            state[name] = tensor
            continue
        layer, _, sub = rest.partition(".")
        if top == "h" and layer.isdigit():
            if sub in _BUFFERS:
                continue
            part, _, param = sub.rpartition(".")
            if part in BLOCK_NAMES:
                is_conv = part in CONV1D and param == "weight"
                state[f"blocks.{layer}.{BLOCK_NAMES[part]}.{param}"] = (
                    tensor.t() if is_conv else tensor
                )
                continue
        raise GenlabError(
            f"{source} has weight '{key}', which GPT-2's language model does not have; "
            "only GPT2LMHeadModel / GPT2Model checkpoints load"
        )
    return state


def gpt_from_hf(path: str | os.PathLike) -> GPT:
    """Load a local GPT-2 checkpoint folder in the transformers format into a genlab ``GPT``.

    The model comes back in eval mode, in float32, with GPT-2's dropout (``resid_pdrop``) in its
    config for anyone who fine-tunes it.
    """
    folder = Path(path)
    if not folder.is_dir():
        raise GenlabError(f"GPT-2 checkpoint folder not found: {folder}; check the path")
    if not (folder / "config.json").is_file():
        raise GenlabError(
            f"{folder} has no config.json, so it is not a transformers model folder; give the "
            "folder that save_pretrained wrote"
        )
    config = _config_from_hf(read_json(folder / "config.json", what="GPT-2 config"), folder)
    hf_state, source = _read_weights(folder)
    model = GPT(config)
    state = _state_from_hf(hf_state, config.tie_weights, source)
    if config.tie_weights:
        if "wte.weight" not in state:
            raise GenlabError(f"{source} lacks the token embedding 'transformer.wte.weight'")
        state["lm_head.weight"] = state["wte.weight"]
    load_state_into(model, state, source=str(source))
    return model.eval()


def load_hf(path: str | os.PathLike) -> tuple[GPT, Tokenizer]:
    """A GPT-2 folder's model and tokenizer, the embedding grown to every special token genlab
    adds (so the logits of the folder's own ids are unchanged)."""
    folder = Path(path)
    model = gpt_from_hf(folder)
    if not (folder / TOKENIZER_FILE).is_file():
        raise GenlabError(
            f"{folder} has no {TOKENIZER_FILE}; save the model's fast tokenizer there "
            "(tokenizer.save_pretrained) and try again"
        )
    tokenizer = Tokenizer.load(folder)
    if tokenizer.vocab_size > model.config.vocab_size:
        model.resize_vocab(tokenizer.vocab_size)
    return model, tokenizer


def _hf_config(
    c: GPTConfig, dtype: torch.dtype, bos: int | None, eos: int | None, pad: int | None
) -> dict:
    """A GPT-2 ``config.json`` for ``c`` as ``GPT2Config.save_pretrained`` would write it."""
    return {
        "model_type": "gpt2",
        "architectures": ["GPT2LMHeadModel"],
        "activation_function": "gelu_new",
        "vocab_size": c.vocab_size,
        "n_positions": c.block_size,
        "n_ctx": c.block_size,
        "n_embd": c.n_embd,
        "n_layer": c.n_layer,
        "n_head": c.n_head,
        "n_inner": None,
        "layer_norm_epsilon": c.norm_eps,
        "resid_pdrop": c.dropout,
        "embd_pdrop": c.dropout,
        "attn_pdrop": c.dropout,
        "initializer_range": 0.02,
        "scale_attn_weights": True,
        "scale_attn_by_inverse_layer_idx": False,
        "reorder_and_upcast_attn": False,
        "tie_word_embeddings": c.tie_weights,
        "bos_token_id": bos,
        "eos_token_id": eos,
        "pad_token_id": pad,
        "use_cache": True,
        "torch_dtype": str(dtype).removeprefix("torch."),
    }


def gpt_to_hf(
    model: GPT,
    path: str | os.PathLike,
    *,
    tokenizer: Tokenizer | None = None,
    bos_token_id: int | None = None,
    eos_token_id: int | None = None,
) -> Path:
    """Write ``model`` as a GPT-2 folder that ``GPT2LMHeadModel.from_pretrained`` loads.

    Only GPT-2's own shape exports: learned positions. A tied output layer is left out of the
    file, as transformers writes it (``tie_word_embeddings`` restores it); an untied one is saved
    as ``lm_head.weight``. With ``tokenizer``, its files and a ``generation_config.json`` join
    the weights and the special ids come from it; otherwise ``bos_token_id``/``eos_token_id``
    (GPT-2's 50256 would lie outside a small vocabulary, so there is no default).
    """
    c = model.config
    if c.pos != "learned":
        raise GenlabError(
            f"cannot export pos='{c.pos}' as GPT-2: GPT-2 has learned position embeddings only; "
            "train with pos=learned to export"
        )
    state: dict[str, Tensor] = {}
    for name, tensor in model.state_dict().items():
        if name == "lm_head.weight":
            if not c.tie_weights:
                state["lm_head.weight"] = tensor
            continue
        top, _, rest = name.partition(".")
        if top == "blocks":
            layer, _, sub = rest.partition(".")
            part, _, param = sub.rpartition(".")
            hf_part = _TO_HF[part]
            is_conv = hf_part in CONV1D and param == "weight"
            hf_name = f"transformer.h.{layer}.{hf_part}"
            state[f"{hf_name}.{param}"] = tensor.t() if is_conv else tensor
        else:
            hf_name = f"transformer.{name.rpartition('.')[0]}"
            state[f"transformer.{name}"] = tensor
        if not c.bias and name.endswith(".weight") and top in ("blocks", "ln_f"):
            # GPT-2 has a bias wherever genlab may leave it out: zero computes the same.
            state[f"{hf_name}.bias"] = tensor.new_zeros(tensor.shape[0])
    folder = Path(path)
    folder.mkdir(parents=True, exist_ok=True)
    dtype = model.wte.weight.dtype
    pad = None
    if tokenizer is not None:
        bos_token_id, eos_token_id, pad = tokenizer.bos_id, tokenizer.eos_id, tokenizer.pad_id
        for name, data in tokenizer.files(model_max_length=c.block_size).items():
            atomic_write_bytes(folder / name, data)
        generation = {
            "bos_token_id": bos_token_id,
            "eos_token_id": list(dict.fromkeys(tokenizer.stop_ids)),
            "pad_token_id": pad,
        }
        atomic_write_json(folder / "generation_config.json", generation)
    atomic_save_tensors(folder / SAFETENSORS_FILE, state, metadata={"format": "pt"})
    config = _hf_config(c, dtype, bos_token_id, eos_token_id, pad)
    atomic_write_json(folder / "config.json", config)
    return folder
