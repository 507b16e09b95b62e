"""Configs as dataclasses, set from files and ``key=value`` text: the machinery behind every
training verb's options, usable without a command line.

A config is a dataclass whose fields may be dataclasses themselves (``train: TrainConfig``). Its
**settings** are the leaf fields, each with its dotted key, type, default (as ``cls()`` has it)
and help text (the field's ``metadata["help"]``, else the ``# comment`` ending its line).
:func:`build_config` applies, in order: the dataclass defaults < a JSON or YAML file (keys
nested like the dataclasses) < explicit values < ``KEY=VALUE`` overrides (dotted keys; a value
is read as JSON when it parses, else as text). Unknown keys and values of the wrong type are
one-line ``GenlabError``s that name the key and the closest valid ones.
"""

from __future__ import annotations

import ast
import dataclasses
import difflib
import functools
import inspect
import io
import json
import textwrap
import tokenize
import types
import typing
from collections.abc import Mapping, Sequence
from pathlib import Path
from typing import Any, Literal, TypeVar

import yaml

from genlab.core.errors import GenlabError

C = TypeVar("C")

_SCALARS: dict[Any, tuple[str, str]] = {  # type -> (metavar, what it takes, for errors)
    int: ("INT", "an integer"),
    float: ("FLOAT", "a number"),
    str: ("TEXT", "text"),
    bool: ("BOOL", "true or false"),
}
_TRUE, _FALSE = ("true", "yes", "on", "1"), ("false", "no", "off", "0")
_NONE = ("none", "null")


@dataclasses.dataclass(frozen=True)
class Setting:
    """One leaf field of a config: its dotted key, type, default (as ``cls()`` has it, nested
    ``default_factory`` included) and help text."""

    key: str
    annotation: Any
    default: Any
    help: str


# ---------------------------------------------------------------------------------------------
# Reading the dataclasses


@functools.cache
def field_help(cls: type) -> dict[str, str]:
    """Each field's help: ``metadata["help"]``, else the trailing comment on the field's line in
    the class source (base classes included); read once per class."""
    helps: dict[str, str] = {}
    for klass in reversed(cls.__mro__):
        if dataclasses.is_dataclass(klass):
            helps.update(_trailing_comments(klass))
    helps.update(
        {f.name: f.metadata["help"] for f in dataclasses.fields(cls) if "help" in f.metadata}
    )
    return helps


def _trailing_comments(cls: type) -> dict[str, str]:
    try:
        source = textwrap.dedent(inspect.getsource(cls))
    except (OSError, TypeError):  # no source (built in a REPL): no help text
        return {}
    comments = {
        tok.start[0]: tok.string.lstrip("#").strip()
        for tok in tokenize.generate_tokens(io.StringIO(source).readline)
        if tok.type == tokenize.COMMENT
    }
    body = ast.parse(source).body[0]
    assert isinstance(body, ast.ClassDef)
    return {
        node.target.id: comments[node.lineno]
        for node in body.body
        if isinstance(node, ast.AnnAssign)
        and isinstance(node.target, ast.Name)
        and node.lineno in comments
    }


@functools.cache
def _hints(cls: type) -> dict[str, Any]:
    hints = typing.get_type_hints(cls)
    return {f.name: hints[f.name] for f in dataclasses.fields(cls) if f.init}


def _is_group(annotation: Any) -> bool:
    return isinstance(annotation, type) and dataclasses.is_dataclass(annotation)


@functools.cache
def settings(cls: type) -> tuple[Setting, ...]:
    """Every leaf field of ``cls``, nested configs flattened, in field order."""
    found: list[Setting] = []

    def walk(klass: type, instance: Any, prefix: str) -> None:
        helps = field_help(klass)
        for name, annotation in _hints(klass).items():
            value = getattr(instance, name)
            if _is_group(annotation):
                walk(annotation, value, f"{prefix}{name}.")
            else:
                found.append(Setting(prefix + name, annotation, value, helps.get(name, "")))

    walk(cls, cls(), "")
    return tuple(found)


# ---------------------------------------------------------------------------------------------
# Types: what each annotation takes, shows and converts


def _optional(annotation: Any) -> tuple[Any, bool]:
    """``(X, True)`` for ``X | None``, else ``(annotation, False)``."""
    if typing.get_origin(annotation) in (typing.Union, types.UnionType):
        args = typing.get_args(annotation)
        rest = [a for a in args if a is not type(None)]
        if len(rest) == 1 and len(args) == 2:
            return rest[0], True
    return annotation, False


def _items(annotation: Any) -> tuple[Any, ...] | None:
    """Element types of a tuple or list annotation (``(X, ...)`` for a variable length)."""
    origin, args = typing.get_origin(annotation), typing.get_args(annotation)
    if origin is tuple and args:
        return args
    if origin is list and len(args) == 1:
        return (args[0], ...)
    return None


def has_option(annotation: Any) -> bool:
    base, _ = _optional(annotation)
    if base in _SCALARS or typing.get_origin(base) is Literal:
        return True
    items = _items(base)
    return items is not None and all(t in _SCALARS for t in items if t is not Ellipsis)


def describe(annotation: Any) -> str:
    """What a setting of this type takes, for error messages."""
    base, optional = _optional(annotation)
    items = _items(base)
    if base in _SCALARS:
        text = _SCALARS[base][1]
    elif typing.get_origin(base) is Literal:
        text = "one of " + ", ".join(str(c) for c in typing.get_args(base))
    elif items is not None and items[-1] is Ellipsis:
        text = f"comma-separated values, each {describe(items[0])}"
    elif items is not None:
        text = f"{len(items)} comma-separated values ({', '.join(describe(t) for t in items)})"
    elif base is dict or typing.get_origin(base) is dict:
        text = "a JSON object"
    else:
        text = getattr(base, "__name__", str(base))
    return f"{text} or none" if optional else text


def metavar(annotation: Any) -> str:
    """How ``--help`` shows a setting's value: ``INT``, ``FLOAT,FLOAT``, ``INT,...``,
    ``[v|eps]``; ``|none`` where None is allowed."""
    base, optional = _optional(annotation)
    items = _items(base)
    if typing.get_origin(base) is Literal:
        text = "[" + "|".join(str(c) for c in typing.get_args(base)) + "]"
    elif items is not None and items[-1] is Ellipsis:
        text = f"{_SCALARS[items[0]][0]},..."
    elif items is not None:
        text = ",".join(_SCALARS[t][0] for t in items)
    else:
        text = _SCALARS[base][0]
    return f"{text}|none" if optional else text


def format_value(value: Any) -> str:
    """A value as one types it after an option: ``none``, ``0.9,0.95``, ``true``."""
    if value is None:
        return "none"
    if isinstance(value, bool):
        return "true" if value else "false"
    if isinstance(value, (tuple, list)):
        return ",".join(format_value(v) for v in value)
    if isinstance(value, dict):
        return json.dumps(value)
    return str(value)


def convert(value: Any, annotation: Any, where: str) -> Any:
    """``value`` (command-line text, or what JSON/YAML read) as the type ``annotation`` says;
    otherwise a one-line error naming ``where`` and the type expected."""
    try:
        return _convert(value, annotation)
    except (TypeError, ValueError):
        shown = repr(value) if isinstance(value, str) else json.dumps(value, default=str)
        raise GenlabError(f"{where} takes {describe(annotation)}, got {shown}") from None


def _convert(value: Any, annotation: Any) -> Any:
    base, optional = _optional(annotation)
    if optional and (value is None or (isinstance(value, str) and value.lower() in _NONE)):
        return None
    if base is Any:
        return value
    if typing.get_origin(base) is Literal:
        for choice in typing.get_args(base):
            if value == choice or (isinstance(value, str) and value == str(choice)):
                return choice
        raise ValueError(value)
    items = _items(base)
    if items is not None:
        if isinstance(value, str):
            value = [v.strip() for v in value.split(",")] if value.strip() else []
        if not isinstance(value, (list, tuple)):
            raise TypeError(value)
        kinds = [items[0]] * len(value) if items[-1] is Ellipsis else list(items)
        converted = [_convert(v, t) for v, t in zip(value, kinds, strict=True)]
        return converted if typing.get_origin(base) is list else tuple(converted)
    if base is bool:
        if isinstance(value, bool):
            return value
        if isinstance(value, str) and value.lower() in _TRUE + _FALSE:
            return value.lower() in _TRUE
        raise ValueError(value)
    if isinstance(value, bool):  # JSON's true is no number
        raise TypeError(value)
    if base is int:
        if isinstance(value, float) and value.is_integer():
            return int(value)
        if isinstance(value, (int, str)):
            return int(value)
        raise TypeError(value)
    if base is float:
        if isinstance(value, (int, float, str)):
            return float(value)
        raise TypeError(value)
    if base is str:
        if isinstance(value, str):
            return value
        raise TypeError(value)
    if base is dict or typing.get_origin(base) is dict:
        if isinstance(value, str):
            value = json.loads(value)
        if isinstance(value, Mapping):
            return dict(value)
        raise TypeError(value)
    if isinstance(base, type) and isinstance(value, base):
        return value
    raise TypeError(value)


# ---------------------------------------------------------------------------------------------
# Building a config: defaults < config file < options < KEY=VALUE


def _unknown(cls: type, key: str, where: str) -> GenlabError:
    keys = [s.key for s in settings(cls)]
    close = difflib.get_close_matches(key, keys, n=3, cutoff=0.8)
    tail = key.rsplit(".", 1)[-1]
    close += [k for k in keys if k.rsplit(".", 1)[-1] == tail and k not in close]
    hint = f"; did you mean {' or '.join(close[:3])}?" if close else "; see --help for the settings"
    return GenlabError(f"{where}unknown setting '{key}'{hint}")


def _from_text(text: str, annotation: Any) -> Any:
    """A ``KEY=VALUE`` value: JSON when it parses (``1e-3``, ``[1, 2]``, ``true``), else the
    text; a text setting keeps the text as typed unless it is a quoted JSON string."""
    if _optional(annotation)[0] is str and not text.startswith('"'):
        return text
    try:
        return json.loads(text)
    except ValueError:
        return text


def _assign(cls: type, key: str, value: Any, where: str, text: bool = False) -> dict[str, Any]:
    """The leaf changes that setting the dotted ``key`` of ``cls`` to ``value`` makes (a
    mapping for a nested config); ``text``: ``value`` is ``KEY=VALUE`` text."""
    klass: Any = cls
    annotation: Any = cls
    for part in key.split("."):
        if not _is_group(klass) or part not in _hints(klass):
            raise _unknown(cls, key, where)
        annotation = klass = _hints(klass)[part]
    if _is_group(annotation):
        if text:
            value = _from_text(value, dict)
        if not isinstance(value, Mapping):
            raise GenlabError(f"{where}{key} takes a mapping of its settings, got {value!r}")
        changes: dict[str, Any] = {}
        for sub, sub_value in value.items():
            changes.update(_assign(cls, f"{key}.{sub}", sub_value, where))
        return changes
    if text:
        value = _from_text(value, annotation)
    return {key: convert(value, annotation, f"{where}{key}")}


def read_config_file(path: str | Path) -> dict[str, Any]:
    """The settings in a JSON or YAML file, a mapping nested like the config dataclasses."""
    path = Path(path)
    suffix = path.suffix.lower()
    if suffix not in (".json", ".yaml", ".yml"):
        raise GenlabError(f"--config takes a .json, .yaml or .yml file, got {path}")
    if not path.is_file():
        raise GenlabError(f"config file {path} not found")
    text = path.read_text(encoding="utf-8")
    try:
        data = json.loads(text) if suffix == ".json" else yaml.safe_load(text)
    except json.JSONDecodeError as e:
        raise GenlabError(
            f"config file {path}: invalid JSON: {e.msg} (line {e.lineno}, column {e.colno})"
        ) from None
    except yaml.YAMLError as e:
        raise GenlabError(f"config file {path}: invalid YAML: {' '.join(str(e).split())}") from None
    if data is None:  # an empty YAML file
        return {}
    if not isinstance(data, dict):
        raise GenlabError(
            f"config file {path} must hold a mapping of settings, not a list or value"
        )
    return data


def parse_overrides(cls: type, items: Sequence[str]) -> dict[str, Any]:
    """``KEY=VALUE`` arguments as leaf changes of ``cls`` (dotted keys for nested fields)."""
    changes: dict[str, Any] = {}
    for item in items:
        key, sep, value = item.partition("=")
        if not sep or not key.strip():
            raise GenlabError(f"expected KEY=VALUE (like train.lr=1e-3), got '{item}'")
        changes.update(_assign(cls, key.strip(), value, "", text=True))
    return changes


def _rebuild(instance: C, changes: Mapping[str, Any]) -> C:
    """``instance`` with the dotted leaf ``changes`` applied, nested dataclasses rebuilt."""
    direct: dict[str, Any] = {}
    nested: dict[str, dict[str, Any]] = {}
    for key, value in changes.items():
        head, _, rest = key.partition(".")
        if rest:
            nested.setdefault(head, {})[rest] = value
        else:
            direct[head] = value
    for head, sub in nested.items():
        direct[head] = _rebuild(getattr(instance, head), sub)
    return dataclasses.replace(instance, **direct)  # type: ignore[type-var]


def build_config(
    cls: type[C],
    config_file: str | Path | None = None,
    options: Mapping[str, Any] | None = None,
    overrides: Sequence[str] = (),
) -> C:
    """``cls()``, then the config file's settings, then ``options`` (dotted keys), then the
    ``KEY=VALUE`` ``overrides``: each later source wins, setting by setting."""
    changes: dict[str, Any] = {}
    if config_file is not None:
        where = f"config file {config_file}: "
        for key, value in read_config_file(config_file).items():
            changes.update(_assign(cls, str(key), value, where))
    for key, value in (options or {}).items():
        changes.update(_assign(cls, key, value, ""))
    changes.update(parse_overrides(cls, overrides))
    return _rebuild(cls(), changes)
