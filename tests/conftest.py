"""Suite-wide set-up: the reference-library rule of :mod:`references`, importable everywhere.

Test modules import the helper as ``from references import require``; this folder is put on
``sys.path`` here so that works under any ``--import-mode``.
"""

from __future__ import annotations

import sys
from pathlib import Path

_HERE = str(Path(__file__).resolve().parent)
if _HERE not in sys.path:
    sys.path.insert(0, _HERE)

from references import REQUIRE_ENV, references_required  # noqa: E402


def pytest_report_header() -> str:
    """Say in the run's header whether a missing reference library fails or skips."""
    if references_required():
        return f"reference libraries: required ({REQUIRE_ENV}=1, a missing one fails)"
    return f"reference libraries: optional (a missing one skips; {REQUIRE_ENV}=1 fails instead)"
