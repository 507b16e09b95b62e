"""The ``genlab`` command line: thin verbs that parse arguments and call the Python API.

Each verb group lives in its own module and registers on the shared Typer ``app``. Errors the
user can fix (``GenlabError``, bad arguments, missing files) print one line on stderr and exit
with code 2; ``--debug`` (anywhere on the command line) shows the traceback instead.
"""

from __future__ import annotations

import sys

import typer

# Importing a verb module registers its commands on ``app``.
from genlab.cli import info  # noqa: F401  isort: skip
from genlab.cli import data  # noqa: F401  isort: skip
from genlab.cli import plot  # noqa: F401  isort: skip
from genlab.cli import tokenizer  # noqa: F401  isort: skip
from genlab.cli import generate  # noqa: F401  isort: skip
from genlab.cli import pretrain  # noqa: F401  isort: skip
from genlab.cli import serve  # noqa: F401  isort: skip
from genlab.cli import image  # noqa: F401  isort: skip
from genlab.cli import metrics  # noqa: F401  isort: skip
from genlab.cli import experiment  # noqa: F401  isort: skip
from genlab.cli import ppo  # noqa: F401  isort: skip
from genlab.cli import align, chat, demo  # noqa: F401  isort: skip
from genlab.cli import export  # noqa: F401  isort: skip
from genlab.cli import nar  # noqa: F401  isort: skip
from genlab.cli import evaluate  # noqa: F401  isort: skip
from genlab.cli import scaling  # noqa: F401  isort: skip
from genlab.cli import audio  # noqa: F401  isort: skip
from genlab.cli import detect  # noqa: F401  isort: skip
from genlab.cli import unlearn  # noqa: F401  isort: skip
from genlab.cli import edit  # noqa: F401  isort: skip
from genlab.cli import toolformer  # noqa: F401  isort: skip
from genlab.cli import retrieval  # noqa: F401  isort: skip
from genlab.cli._app import app
from genlab.core.errors import GenlabError

__all__ = ["app", "main"]

USER_ERRORS = (GenlabError, FileNotFoundError, IsADirectoryError, NotADirectoryError)


def _usage_error_line(e: Exception) -> str | None:
    """One line for a click/Typer usage error (Typer may vendor its own click: duck-type it)."""
    if not hasattr(e, "format_message") or not hasattr(e, "exit_code"):
        return None
    ctx = getattr(e, "ctx", None)
    hint = f" (see '{ctx.command_path} --help')" if ctx is not None else ""
    return f"{e.format_message()}{hint}"


def main(argv: list[str] | None = None) -> None:
    """Run the CLI; turn user errors into one line on stderr and exit code 2."""
    args = list(sys.argv[1:] if argv is None else argv)
    debug = "--debug" in args
    if debug:
        args.remove("--debug")
    if not args:
        args = ["--help"]
    try:
        result = app(args=args, prog_name="genlab", standalone_mode=False)
    except typer.Exit as e:
        sys.exit(e.exit_code)
    except typer.Abort:
        print("genlab: aborted", file=sys.stderr)
        sys.exit(130)
    except KeyboardInterrupt:
        print("genlab: interrupted", file=sys.stderr)
        sys.exit(130)
    except USER_ERRORS as e:
        if debug:
            raise
        print(f"genlab: error: {e}", file=sys.stderr)
        sys.exit(2)
    except Exception as e:
        line = _usage_error_line(e)
        if line is None or debug:
            raise
        print(f"genlab: error: {line}", file=sys.stderr)
        sys.exit(2)
    # standalone_mode=False returns the exit code of --help / no-args instead of exiting
    if isinstance(result, int) and result:
        sys.exit(result)
