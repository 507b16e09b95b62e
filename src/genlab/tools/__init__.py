"""Tools a language model calls from its text, as in Toolformer (Schick et al., 2023): a
calculator, a calendar, fact lookup over a TinyWorld and search over documents, BM25 or dense
(issue 15)."""

from genlab.tools.base import Tool, ToolError, call_tool, format_call, parse_call
from genlab.tools.calculator import calculator_tool
from genlab.tools.calendar import calendar_tool
from genlab.tools.lookup import lookup_tool
from genlab.tools.retrieval import Passage, Retriever, search_tool
from genlab.tools.toolbox import TOOL_NAMES, run_call, toolbox

__all__ = [
    "TOOL_NAMES",
    "Passage",
    "Retriever",
    "Tool",
    "ToolError",
    "call_tool",
    "calculator_tool",
    "calendar_tool",
    "format_call",
    "lookup_tool",
    "parse_call",
    "run_call",
    "search_tool",
    "toolbox",
]
