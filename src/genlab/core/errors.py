"""User-facing errors.

A ``GenlabError`` carries one line that says what is wrong and what to do. The CLI prints it on
stderr and exits with code 2, without a traceback unless ``--debug`` is given.
"""


class GenlabError(Exception):
    """A problem the user can fix (bad argument, missing file, wrong checkpoint kind)."""
