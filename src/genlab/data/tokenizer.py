"""Byte-level BPE tokenizer with special tokens for chat and tools, and a masked chat template.

Byte-pair encoding (Sennrich et al., 2016, "Neural Machine Translation of Rare Words with Subword
Units") starts from single symbols and repeatedly merges the most frequent adjacent pair into a
new token. GPT-2 (Radford et al., 2019) runs it over the 256 byte values instead of Unicode
characters: every string is a byte sequence, so with the 256 bytes always in the vocabulary any
text encodes (no unknown token) and decodes back exactly. Training and encoding run in Hugging
Face ``tokenizers`` (Rust, parallel); this module adds what a chat model needs on top of it.

Special tokens
    ``SPECIAL_TOKENS`` lists them: ``<|bos|>``, ``<|eos|>``, ``<|pad|>``, ``<|eot|>`` (end of
    turn), the roles ``<|system|>``, ``<|user|>``, ``<|assistant|>``, and the tool markers
    ``<|tool_call|>``, ``<|/tool_call|>``, ``<|tool_result|>``, ``<|/tool_result|>``. Only code
    inserts them (``tok.eot_id``, ``tok.special["eot"]``): ``encode`` reads text that spells one,
    such as a user typing ``<|eot|>``, as ordinary bytes, so no input can forge a turn boundary.

Chat template
    ``render_chat`` and ``render_prompt`` lay out a conversation as ids with a loss mask on what
    the assistant writes; the layout lives in :mod:`genlab.data.chat_template`.

Stop set
    ``stop_ids`` (eot, eos, bos) are the ids that end an assistant's answer or a generation: the
    one stop set that generation, PPO, evaluation and serving use.

Files
    ``save`` into a folder writes what transformers' ``AutoTokenizer`` opens: ``tokenizer.json``
    (a plain Hugging Face ``tokenizers`` file) and ``tokenizer_config.json`` (bos/eos/pad, every
    special token, the role of each under ``genlab_special_tokens``, and the chat template as
    Jinja, which renders exactly ``render_chat``'s ids and, through ``{% generation %}``, its
    mask). Text that spells a special token stays text in transformers only with
    ``apply_chat_template(..., sanitize_control_tokens=True)``; genlab always keeps it text.

Loading other tokenizers
    ``Tokenizer.load`` reads a Hugging Face ``tokenizer.json`` of a byte-level BPE (genlab's own,
    or GPT-2 style, e.g. saved by transformers' ``GPT2TokenizerFast``), from the file or its
    folder, and the roles a ``tokenizer_config.json`` beside it names. Without one,
    ``<|endoftext|>`` serves as both bos and eos; every special token still missing is appended as
    a new id after the existing vocabulary, in the order of ``SPECIAL_TOKENS``, so a pretrained
    model's embedding must grow to ``tok.vocab_size`` before it can use them. The single-file
    wrapper that older genlab versions wrote still loads.
"""

from __future__ import annotations

import codecs
import functools
import json
from collections.abc import Iterable, Mapping, Sequence
from pathlib import Path
from typing import Any

from tokenizers import AddedToken
from tokenizers import Tokenizer as HFTokenizer

from genlab.core.errors import GenlabError
from genlab.core.io import atomic_write_bytes, read_json
from genlab.data import chat_template
from genlab.data.tokenizer_training import train_byte_level_bpe

__all__ = [
    "SPECIAL_TOKENS",
    "StreamDecoder",
    "Tokenizer",
    "bytes_to_unicode",
]

SPECIAL_TOKENS: dict[str, str] = {
    "bos": "<|bos|>",
    "eos": "<|eos|>",
    "pad": "<|pad|>",
    "eot": "<|eot|>",
    "system": "<|system|>",
    "user": "<|user|>",
    "assistant": "<|assistant|>",
    "tool_call": "<|tool_call|>",
    "tool_call_end": "<|/tool_call|>",
    "tool_result": "<|tool_result|>",
    "tool_result_end": "<|/tool_result|>",
}
GPT2_END_OF_TEXT = "<|endoftext|>"
TOKENIZER_FILE = "tokenizer.json"
CONFIG_FILE = "tokenizer_config.json"
ROLES_KEY = "genlab_special_tokens"  # tokenizer_config.json: role name -> spelling
# The single-file wrapper of older genlab versions (read, no longer written).
FORMAT = "genlab.tokenizer"
FORMAT_VERSION = 1


@functools.cache
def bytes_to_unicode() -> dict[int, str]:
    """GPT-2's map from each byte to a visible character, so BPE tokens are printable strings.

    Printable Latin-1 bytes map to themselves; the others (controls, space, ...) are shifted to
    code points from 256 upwards (space becomes ``Ġ``, newline ``Ċ``).
    """
    kept = [*range(ord("!"), ord("~") + 1), *range(ord("¡"), ord("¬") + 1)]
    kept += range(ord("®"), ord("ÿ") + 1)
    table = {b: chr(b) for b in kept}
    shifted = (b for b in range(256) if b not in table)
    for n, b in enumerate(shifted):
        table[b] = chr(256 + n)
    return table


def _has_type(obj: Any, name: str) -> bool:
    """Whether a tokenizer.json component (possibly a Sequence of them) contains type ``name``."""
    if isinstance(obj, dict):
        return obj.get("type") == name or any(_has_type(v, name) for v in obj.values())
    if isinstance(obj, list):
        return any(_has_type(v, name) for v in obj)
    return False


def _check_byte_level(obj: Mapping[str, Any], where: Path) -> None:
    """Refuse tokenizers that cannot encode every text: only byte-level BPE can promise that."""
    model = obj.get("model")
    if not isinstance(model, dict) or model.get("type") != "BPE":
        raise GenlabError(f"{where}: genlab reads byte-level BPE tokenizers only, not this model")
    if not _has_type(obj.get("pre_tokenizer"), "ByteLevel") or not _has_type(
        obj.get("decoder"), "ByteLevel"
    ):
        raise GenlabError(f"{where}: genlab reads byte-level BPE tokenizers only (GPT-2 style)")
    vocab = model.get("vocab")
    missing = len(set(bytes_to_unicode().values()) - set(vocab if isinstance(vocab, dict) else ()))
    if missing:
        raise GenlabError(
            f"{where}: {missing} of the 256 byte tokens are missing, so some text "
            "cannot be encoded; retrain it with the full byte alphabet"
        )


def _hf_from_json(obj: Mapping[str, Any], where: Path) -> HFTokenizer:
    _check_byte_level(obj, where)
    try:
        return HFTokenizer.from_str(json.dumps(obj))
    except Exception as e:  # the Rust parser raises a bare Exception
        raise GenlabError(f"{where}: not a valid tokenizer ({e}); restore or retrain it") from e


def _role_spellings(hf: HFTokenizer, config: Mapping[str, Any]) -> dict[str, str]:
    """The spelling of each special token's role: as ``config`` (a tokenizer_config.json) names
    it, else the first of genlab's and GPT-2's spellings in the vocabulary, else genlab's."""

    def named(key: str) -> list[str]:
        token = config.get(key)
        token = token.get("content") if isinstance(token, dict) else token
        return [token] if isinstance(token, str) else []

    roles = config.get(ROLES_KEY)
    roles = roles if isinstance(roles, dict) else {}
    candidates = {name: [spelling] for name, spelling in SPECIAL_TOKENS.items()}
    candidates["bos"] = [*named("bos_token"), SPECIAL_TOKENS["bos"], GPT2_END_OF_TEXT]
    candidates["eos"] = [*named("eos_token"), SPECIAL_TOKENS["eos"], GPT2_END_OF_TEXT]
    candidates["pad"] = [*named("pad_token"), SPECIAL_TOKENS["pad"]]
    for name in candidates:
        if isinstance(roles.get(name), str):
            candidates[name].insert(0, roles[name])
    return {
        name: next((s for s in spellings if hf.token_to_id(s) is not None), SPECIAL_TOKENS[name])
        for name, spellings in candidates.items()
    }


def _role_ids(hf: HFTokenizer, config: Mapping[str, Any]) -> dict[str, int | None]:
    """The id of each role as ``_role_spellings`` finds it (None where it would be appended)."""
    return {name: hf.token_to_id(s) for name, s in _role_spellings(hf, config).items()}


def _ids(ids: Any) -> list[int]:
    """Plain ints from a list, a tuple, a NumPy array or a tensor."""
    return ids.tolist() if hasattr(ids, "tolist") else [int(i) for i in ids]


class StreamDecoder:
    """Decode ids one at a time, returning only complete text so far.

    A byte-level token may hold half of a multi-byte UTF-8 character (an emoji often spans two
    tokens); printing each token's text alone would show U+FFFD. Bytes go through an incremental
    UTF-8 decoder that holds an unfinished character back until its last byte arrives, so the
    pieces joined equal ``decode`` of all the ids.
    """

    def __init__(self, token_bytes: Sequence[bytes], skip_ids: frozenset[int] = frozenset()):
        self.token_bytes = token_bytes
        self._skip_ids = skip_ids
        self._utf8 = codecs.getincrementaldecoder("utf-8")(errors="replace")

    def push(self, token_id: int) -> str:
        """Add one id; return the text it completes (possibly empty)."""
        i = int(token_id)
        if not 0 <= i < len(self.token_bytes):
            raise GenlabError(
                f"token id {i} is outside the vocabulary (0..{len(self.token_bytes) - 1})"
            )
        if i in self._skip_ids:
            return ""
        return self._utf8.decode(self.token_bytes[i])

    def flush(self) -> str:
        """End the stream: return what is held back (an unfinished character becomes U+FFFD)."""
        text = self._utf8.decode(b"", final=True)
        self._utf8.reset()
        return text


class Tokenizer:
    """A byte-level BPE tokenizer with chat and tool special tokens (see the module docstring)."""

    def __init__(self, hf: HFTokenizer, special: Mapping[str, int]):
        missing = set(SPECIAL_TOKENS) - set(special)
        if missing:
            raise GenlabError(f"tokenizer lacks special tokens {sorted(missing)}")
        self._hf = hf
        # Text that spells a special token is split like any other text, never matched whole.
        hf.encode_special_tokens = True
        hf.no_truncation()
        hf.no_padding()
        self._vocab_size = max(hf.get_vocab(with_added_tokens=True).values()) + 1
        self.special: dict[str, int] = {name: special[name] for name in SPECIAL_TOKENS}
        self.bos_id = self.special["bos"]
        self.eos_id = self.special["eos"]
        self.pad_id = self.special["pad"]
        self.eot_id = self.special["eot"]
        self.system_id = self.special["system"]
        self.user_id = self.special["user"]
        self.assistant_id = self.special["assistant"]
        self.tool_call_id = self.special["tool_call"]
        self.tool_call_end_id = self.special["tool_call_end"]
        self.tool_result_id = self.special["tool_result"]
        self.tool_result_end_id = self.special["tool_result_end"]

    @property
    def vocab_size(self) -> int:
        """Number of ids a model must embed: bytes, merges and special tokens."""
        return self._vocab_size

    @property
    def stop_ids(self) -> tuple[int, int, int]:
        """THE stop set: (eot, eos, bos), the ids that end an assistant's answer or a generation.

        Generation, PPO rollouts, evaluation and serving all stop on these and nothing else:
        ``<|eot|>`` ends a turn, ``<|eos|>`` a document, and ``<|bos|>`` would start a new one.
        """
        return (self.eot_id, self.eos_id, self.bos_id)

    def __repr__(self) -> str:
        return f"Tokenizer(vocab_size={self.vocab_size})"

    # ---- training, saving, loading -------------------------------------------------------------

    @classmethod
    def train(
        cls,
        texts: Iterable[str] | Sequence[str | Path] | str | Path,
        vocab_size: int,
        min_frequency: int = 2,
    ) -> Tokenizer:
        """Learn merges from texts (an iterable of strings) or from files and folders of .txt.

        ``vocab_size`` counts every id, specials included. It cannot go below the 256 bytes plus
        the special tokens: a smaller request (down to 256) gives exactly those, with no merges.
        Fewer ids than asked come out when the data has no more pairs seen ``min_frequency`` times.
        """
        hf = train_byte_level_bpe(texts, vocab_size, min_frequency, list(SPECIAL_TOKENS.values()))
        return cls(hf, {name: hf.token_to_id(s) for name, s in SPECIAL_TOKENS.items()})

    def save(self, path: str | Path) -> None:
        """Write the tokenizer atomically: a folder (or a path named ``tokenizer.json``) gets the
        files of ``files()``; any other path one plain ``tokenizer.json``-style file."""
        path = Path(path)
        if path.is_dir() or path.name == TOKENIZER_FILE:
            folder = path if path.is_dir() else path.parent
            for name, data in self.files().items():
                atomic_write_bytes(folder / name, data)
            return
        if _role_ids(self._hf, {}) != self.special:
            raise GenlabError(
                f"{path}: this tokenizer's special tokens have other spellings, which one file "
                "cannot record; save it into a folder (tokenizer_config.json keeps them)"
            )
        atomic_write_bytes(path, self.to_json().encode())

    def to_json(self) -> str:
        """The Hugging Face ``tokenizer.json`` (also a cache key for tokenized data)."""
        return self._hf.to_str()

    def to_config(self, model_max_length: int | None = None) -> dict[str, Any]:
        """The ``tokenizer_config.json`` transformers reads: special tokens, roles, chat template."""
        spelling = {name: self._hf.id_to_token(i) for name, i in self.special.items()}
        added = self._hf.get_added_tokens_decoder()
        config: dict[str, Any] = {
            "tokenizer_class": "PreTrainedTokenizerFast",
            "bos_token": spelling["bos"],
            "eos_token": spelling["eos"],
            "pad_token": spelling["pad"],
            "added_tokens_decoder": {
                str(i): {
                    "content": t.content,
                    "lstrip": t.lstrip,
                    "normalized": t.normalized,
                    "rstrip": t.rstrip,
                    "single_word": t.single_word,
                    "special": t.special,
                }
                for i, t in sorted(added.items())
            },
            "chat_template": chat_template.jinja_template(spelling),
            "clean_up_tokenization_spaces": False,
            ROLES_KEY: spelling,
        }
        if model_max_length is not None:
            config["model_max_length"] = model_max_length
        return config

    def files(self, model_max_length: int | None = None) -> dict[str, bytes]:
        """File name -> bytes of a tokenizer folder that genlab and ``AutoTokenizer`` both open."""
        config = json.dumps(self.to_config(model_max_length), indent=2, ensure_ascii=False)
        return {TOKENIZER_FILE: self.to_json().encode(), CONFIG_FILE: config.encode()}

    @classmethod
    def load(cls, path: str | Path) -> Tokenizer:
        """Read a Hugging Face ``tokenizer.json`` (file or folder; with the roles of a
        ``tokenizer_config.json`` beside it) or an older genlab wrapper file."""
        path = Path(path)
        file = path / TOKENIZER_FILE if path.is_dir() else path
        obj = read_json(file, "tokenizer")
        if isinstance(obj, dict) and obj.get("format") == FORMAT:
            return cls._from_genlab(obj, file)
        if isinstance(obj, dict) and "model" in obj:
            return cls._from_hugging_face(obj, file)
        raise GenlabError(f"{file} is neither a genlab tokenizer nor a Hugging Face tokenizer.json")

    @classmethod
    def _from_genlab(cls, obj: Mapping[str, Any], file: Path) -> Tokenizer:
        if obj.get("version") != FORMAT_VERSION:
            raise GenlabError(
                f"{file}: tokenizer format version {obj.get('version')!r} is not "
                f"{FORMAT_VERSION}; use the genlab version that wrote it"
            )
        spellings, inner = obj.get("special_tokens"), obj.get("tokenizer")
        if not isinstance(spellings, dict) or not isinstance(inner, dict):
            raise GenlabError(f"{file}: tokenizer file is incomplete; restore or retrain it")
        hf = _hf_from_json(inner, file)
        special = {name: hf.token_to_id(str(s)) for name, s in spellings.items()}
        lost = sorted(name for name, i in special.items() if i is None)
        if lost:
            raise GenlabError(f"{file}: special tokens {lost} are not in the vocabulary")
        return cls(hf, special)

    @classmethod
    def _from_hugging_face(cls, obj: Mapping[str, Any], file: Path) -> Tokenizer:
        hf = _hf_from_json(obj, file)
        config_file = file.parent / CONFIG_FILE
        config = read_json(config_file, "tokenizer config") if config_file.is_file() else {}
        if not isinstance(config, dict):
            raise GenlabError(f"{config_file} is not a JSON object; restore or delete it")
        special = {}
        for name, spelling in _role_spellings(hf, config).items():
            # Marks an existing token special (same id) or appends a new one after the vocabulary.
            hf.add_special_tokens([AddedToken(spelling, special=True, normalized=False)])
            special[name] = hf.token_to_id(spelling)
        return cls(hf, special)

    # ---- encoding and decoding -----------------------------------------------------------------

    def encode(self, text: str) -> list[int]:
        """Ids of ``text``; never a special id, even where the text spells a special token."""
        if not isinstance(text, str):
            raise GenlabError(f"encode() takes a string, got {type(text).__name__}")
        return self._hf.encode(text, add_special_tokens=False).ids

    def encode_batch(self, texts: list[str]) -> list[list[int]]:
        """``encode`` for many texts at once, in parallel in Rust."""
        bad = next((t for t in texts if not isinstance(t, str)), None)
        if bad is not None:
            raise GenlabError(f"encode_batch() takes strings, got {type(bad).__name__}")
        return [e.ids for e in self._hf.encode_batch(list(texts), add_special_tokens=False)]

    def decode(self, ids: Sequence[int], skip_special: bool = False) -> str:
        """Text of ``ids``; special tokens appear spelled out unless ``skip_special``."""
        ids = _ids(ids)
        if ids and not 0 <= min(ids) <= max(ids) < self.vocab_size:
            bad = next(i for i in ids if not 0 <= i < self.vocab_size)
            raise GenlabError(
                f"token id {bad} is outside the vocabulary (0..{self.vocab_size - 1})"
            )
        return self._hf.decode(ids, skip_special_tokens=skip_special)

    @functools.cached_property
    def token_bytes(self) -> list[bytes]:
        """The bytes each id stands for (special tokens: their spelling in UTF-8)."""
        byte_of = {c: b for b, c in bytes_to_unicode().items()}
        added = self._hf.get_added_tokens_decoder()
        table = [b""] * self.vocab_size
        for token, i in self._hf.get_vocab(with_added_tokens=True).items():
            if i in added:
                table[i] = added[i].content.encode()
            else:
                table[i] = b"".join(
                    bytes([byte_of[c]]) if c in byte_of else c.encode() for c in token
                )
        return table

    def stream_decoder(self, skip_special: bool = False) -> StreamDecoder:
        """A ``StreamDecoder`` for printing generated ids as they come."""
        skip: frozenset[int] = frozenset()
        if skip_special:
            skip = frozenset(i for i, t in self._hf.get_added_tokens_decoder().items() if t.special)
        return StreamDecoder(self.token_bytes, skip)

    # ---- chat template -------------------------------------------------------------------------

    def render_chat(
        self,
        messages: Sequence[Mapping[str, Any]],
        add_generation_prompt: bool = False,
        tools: Sequence[Mapping[str, Any]] | None = None,
    ) -> tuple[list[int], list[int]]:
        """Ids of a conversation and its loss mask (1 on assistant-written tokens only).

        The layout is in :mod:`genlab.data.chat_template`. ``add_generation_prompt`` appends
        ``<|assistant|>`` (mask 0) so that a model continues as the assistant; ``tools`` (OpenAI
        function tools) are listed in a system turn first.
        """
        return chat_template.render_chat(self, messages, add_generation_prompt, tools)

    def render_prompt(
        self,
        messages: Sequence[Mapping[str, Any]],
        tools: Sequence[Mapping[str, Any]] | None = None,
    ) -> list[int]:
        """Ids of a conversation that end with ``<|assistant|>``, ready for the model to answer."""
        return self.render_chat(messages, add_generation_prompt=True, tools=tools)[0]
