"""User-facing errors.

A ``GenlabError`` carries one line that says what is wrong and what to do. The CLI prints it on
stderr and exits with code 2, without a traceback unless ``--debug`` is given.
"""


class GenlabError(Exception):
    """A problem the user can fix (bad argument, missing file, wrong checkpoint kind)."""


def refuse_invalid(config: object, checks: dict[str, bool], what: str = "setting") -> None:
    """Refuse the first of ``config``'s settings whose check is false, in one line naming it
    and its value: ``invalid {what} {name}={value!r}``."""
    for name, ok in checks.items():
        if not ok:
            raise GenlabError(f"invalid {what} {name}={getattr(config, name)!r}")
