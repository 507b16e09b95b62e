"""Command-line options generated from a config dataclass: each default and help text lives once.

TRL's idea (``HfArgumentParser`` over its config dataclasses): a training verb names the config
class it runs and its command line follows from the class's fields, so ``--help`` cannot drift
from the defaults that run.

- **One option per leaf field**; nested configs (``train: TrainConfig``) are flattened, so
  ``--max-steps`` sets ``train.max_steps``. When several leaves share a field name, a top-level
  leaf keeps ``--name`` and every nested one is spelled by its path (``data.seed`` and
  ``train.seed`` become ``--data-seed`` and ``--train-seed``). A verb may add aliases to keep a
  flag its users know (``--seed``). Two settings that would share a flag are an error when the
  verb is defined, so the names are deterministic.
- **Types** come from the annotations: ``int``, ``float``, ``str``; ``bool`` as ``--x/--no-x``;
  ``X | None`` (the word ``none`` gives None); tuples and lists comma-separated
  (``--betas 0.9,0.95``); ``Literal`` choices. Fields of other types (``dict``) have no option:
  ``--config`` and ``KEY=VALUE`` set them.
- **Help** is the field's ``metadata["help"]``, else the ``# comment`` that ends its line.
- **Precedence**: dataclass defaults < ``--config FILE`` (JSON or YAML, keys nested like the
  dataclasses) < options given on the command line < ``KEY=VALUE`` arguments (dotted for nested
  fields, ``train.lr=1e-3``; the value is read as JSON when it parses, else as text). Unknown
  keys and values of the wrong type are one-line ``GenlabError``s.
"""

from __future__ import annotations

import inspect
from collections import Counter
from collections.abc import Callable, Mapping
from pathlib import Path
from typing import Annotated, Any, TypeVar

import typer

from genlab.core.config import (
    build_config,
    convert,
    format_value,
    has_option,
    metavar,
    settings,
)

C = TypeVar("C")
R = TypeVar("R")
# The wrapper's own parameters, named so that no config field or verb option can clash.
_CTX, _FILE, _OVERRIDES = "genlab_ctx", "genlab_config_file", "genlab_overrides"
# ---------------------------------------------------------------------------------------------
# The Typer command


def option_names(cls: type, aliases: Mapping[str, str] | None = None) -> dict[str, tuple[str, ...]]:
    """Each setting's flags by dotted key: ``--name``, or the dotted path dashed
    (``--train-seed``) for a nested leaf whose name another leaf shares; then the verb's alias. Settings without an option type
    (``dict``) are left out."""
    aliases = dict(aliases or {})
    leaves = [s.key for s in settings(cls) if has_option(s.annotation)]
    counts = Counter(key.rsplit(".", 1)[-1] for key in leaves)
    names: dict[str, tuple[str, ...]] = {}
    for key in leaves:
        name = key.rsplit(".", 1)[-1]
        spelled = key if counts[name] > 1 and "." in key else name
        flag = "--" + spelled.replace(".", "-").replace("_", "-")
        names[key] = (flag, *([aliases.pop(key)] if key in aliases else []))
    if aliases:
        raise ValueError(f"aliases name settings that {cls.__name__} lacks: {sorted(aliases)}")
    flags = Counter(flag for group in names.values() for flag in group)
    clashes = sorted(flag for flag, n in flags.items() if n > 1)
    if clashes:
        raise ValueError(f"{cls.__name__}: several settings would take {', '.join(clashes)}")
    return names


def _param(key: str) -> str:
    return "setting__" + key.replace(".", "__")


def _option_parameters(cls: type, names: Mapping[str, tuple[str, ...]]) -> list[inspect.Parameter]:
    """One Typer option per setting: the default shown is ``cls()``'s, typed as it would be
    given; nested settings appear in a help panel of their own."""
    params = []
    for setting in settings(cls):
        flags = names.get(setting.key)
        if flags is None:
            continue
        panel = f"{setting.key.rsplit('.', 1)[0]} settings" if "." in setting.key else None
        if setting.annotation is bool:
            decls = [f"{flag}/--no-{flag[2:]}" for flag in flags]
            info = typer.Option(*decls, help=setting.help, rich_help_panel=panel)
            annotation, default = bool, setting.default
        else:
            info = typer.Option(
                *flags,
                help=setting.help,
                metavar=metavar(setting.annotation),
                rich_help_panel=panel,
            )
            annotation, default = str, format_value(setting.default)
        params.append(
            inspect.Parameter(
                _param(setting.key),
                inspect.Parameter.KEYWORD_ONLY,
                default=default,
                annotation=Annotated[annotation, info],
            )
        )
    return params


def _example(cls: type) -> tuple[str, str]:
    """A nested setting to show in the help of ``--config`` and ``KEY=VALUE``: a learning rate
    where there is one."""
    keys = [s for s in settings(cls) if "." in s.key] or list(settings(cls))
    setting = next((s for s in keys if s.key.endswith(".lr")), keys[0])
    return setting.key, format_value(setting.default)


def _file_and_overrides(cls: type) -> tuple[inspect.Parameter, inspect.Parameter]:
    """The ``--config FILE`` option and the ``KEY=VALUE`` arguments, with an example of ``cls``."""
    key, value = _example(cls)
    *parents, leaf = key.split(".")
    nested = f"{leaf}: {value}"
    for parent in reversed(parents):
        nested = f"{parent}: {{{nested}}}"
    config = typer.Option(
        "--config",
        metavar="FILE",
        help=f"Settings from a JSON or YAML file, keys nested like the config ({nested}); "
        "options and KEY=VALUE override it.",
        show_default=False,
    )
    overrides = typer.Argument(
        metavar="KEY=VALUE",
        help=f"Set any setting by its dotted key ({key}={value}); the value is read as JSON "
        "when it parses, else as text. Wins over --config and the options.",
        show_default=False,
    )
    kind = inspect.Parameter.KEYWORD_ONLY
    return (
        inspect.Parameter(_FILE, kind, default=None, annotation=Annotated[Path | None, config]),
        inspect.Parameter(
            _OVERRIDES, kind, default=None, annotation=Annotated[list[str] | None, overrides]
        ),
    )


def config_command(
    cls: type[C], aliases: Mapping[str, str] | None = None
) -> Callable[[Callable[..., R]], Callable[..., R]]:
    """Turn ``verb(cfg, **own_options)`` into a Typer command function whose options set the
    fields of ``cls`` (plus ``--config FILE`` and ``KEY=VALUE`` arguments); the verb receives
    the built config and its own options (``--resume``) unchanged. ``aliases`` maps a dotted key
    to one more flag for it, to keep a flag users know."""
    names = option_names(cls, aliases)
    annotations = {s.key: s.annotation for s in settings(cls)}

    def decorate(verb: Callable[..., R]) -> Callable[..., R]:
        own = list(inspect.signature(verb, eval_str=True).parameters.values())[1:]

        def command(**kwargs: Any) -> R:
            ctx = kwargs.pop(_CTX)
            config_file = kwargs.pop(_FILE)
            overrides = kwargs.pop(_OVERRIDES) or ()
            given = {}
            for key, flags in names.items():
                value = kwargs.pop(_param(key))
                source = ctx.get_parameter_source(_param(key))
                if source is not None and source.name == "COMMANDLINE":
                    given[key] = convert(value, annotations[key], flags[0])
            return verb(build_config(cls, config_file, given, overrides), **kwargs)

        ctx_param = inspect.Parameter(
            _CTX, inspect.Parameter.KEYWORD_ONLY, annotation=typer.Context
        )
        config_file, overrides = _file_and_overrides(cls)
        command.__signature__ = inspect.Signature(  # type: ignore[attr-defined]
            [
                ctx_param,
                config_file,
                *_option_parameters(cls, names),
                *(p.replace(kind=inspect.Parameter.KEYWORD_ONLY) for p in own),
                overrides,
            ]
        )
        command.__name__, command.__qualname__ = verb.__name__, verb.__qualname__
        command.__doc__, command.__module__ = verb.__doc__, verb.__module__
        return command

    return decorate
