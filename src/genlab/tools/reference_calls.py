"""The call that answers a TinyWorld question, written as a careful user would write it.

Toolformer starts from a few demonstrations of each tool (Schick et al., 2023, the prompts of
its appendix A.2); here they are solved questions with this call before the answer
(``calculator(345 + 678)``, ``calendar(27 November 2011)``, ``lookup(age of Repul)``).
"""

from __future__ import annotations

from genlab.core.errors import GenlabError
from genlab.data.tinyworld.families.base import Example
from genlab.data.tinyworld.tool_uses import fields
from genlab.tools.base import format_call
from genlab.tools.lookup import PHRASES

_OPERATORS = {"addition": "+", "subtraction": "-", "multiplication": "*"}
# relation -> the lookup's first phrase for it
_PHRASE = {r: phrase for phrase, kinds in reversed(PHRASES.items()) for r in kinds.values()}


def reference_call(example: Example) -> str:
    """The call (``name(arguments)``) that answers ``example``."""
    f = fields(example)
    if example.family in _OPERATORS:
        return format_call("calculator", f"{f['a']} {_OPERATORS[example.family]} {f['b']}")
    if example.family == "day_of_week":
        return format_call("calendar", f["date"])
    if example.family == "fact_question":
        return format_call("lookup", f"{_PHRASE[example.meta['variant']]} of {f['s']}")
    raise GenlabError(f"no tool answers the {example.family!r} family")
