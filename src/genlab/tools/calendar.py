"""The calendar: the weekday of a date, the date some days away, the days between two dates.

Toolformer's calendar (Schick et al., 2023) takes no argument and returns today's date, so the
model can reason about time. TinyWorld has no today; its text instead states weekdays of dates
and dates some days apart (``tool_text``'s calendar sentences, the ``day_of_week`` family), so
this calendar answers those, exactly, with :mod:`datetime`. Arguments (any case, extra spaces
ignored), dates written as TinyWorld writes them (``5 March 2024``) or in ISO (``2024-03-05``):

- ``5 March 2024`` or ``weekday of 5 March 2024`` -> ``Tuesday``
- ``10 days after 5 March 2024`` (or ``before``) -> ``15 March 2024``
- ``days from 1 March 2024 to 5 March 2024`` -> ``4`` (negative when the second is earlier)
- ``days between 5 March 2024 and 1 March 2024`` -> ``4`` (always the distance)

Years run from 1 to 9999 (those of :mod:`datetime`); results are written as TinyWorld writes them.
"""

from __future__ import annotations

import datetime as dt
import re

from genlab.data.tinyworld.worked import MONTHS, format_date, weekday
from genlab.tools.base import Tool, ToolError

MAX_LENGTH = 100  # characters of an argument

_MONTH = {m.casefold(): i + 1 for i, m in enumerate(MONTHS)}
_DATE = r"([0-9]{1,2} [a-z]+ [0-9]{1,4}|[0-9]{4}-[0-9]{2}-[0-9]{2})"
_FORMS = {
    "weekday": re.compile(rf"(?:weekday of )?{_DATE}"),
    "shift": re.compile(rf"([0-9]+) days? (after|before) {_DATE}"),
    "from": re.compile(rf"days from {_DATE} to {_DATE}"),
    "between": re.compile(rf"days between {_DATE} and {_DATE}"),
}


def parse_day(text: str) -> dt.date:
    """``5 march 2024`` or ``2024-03-05`` (already lower case) as a date; :class:`ToolError`
    naming the problem otherwise."""
    if "-" in text:
        year, month, day = (int(part) for part in text.split("-"))
    else:
        day_text, month_name, year_text = text.split()
        if month_name not in _MONTH:
            raise ToolError(f"unknown month {month_name!r}")
        year, month, day = int(year_text), _MONTH[month_name], int(day_text)
    try:
        return dt.date(year, month, day)
    except ValueError as e:
        raise ToolError(f"no such date {text!r}: {e}") from None


def _shift(day: dt.date, days: int) -> dt.date:
    try:
        return day + dt.timedelta(days=days)
    except OverflowError:
        raise ToolError("the date falls outside the years 1 to 9999") from None


def answer(question: str) -> str:
    """The calendar's answer to one argument of the forms above."""
    if len(question) > MAX_LENGTH:
        raise ToolError(f"argument longer than {MAX_LENGTH} characters")
    text = " ".join(question.casefold().split())
    if m := _FORMS["weekday"].fullmatch(text):
        return weekday(parse_day(m[1]))
    if m := _FORMS["shift"].fullmatch(text):
        days = int(m[1]) if m[2] == "after" else -int(m[1])
        return format_date(_shift(parse_day(m[3]), days))
    if m := _FORMS["from"].fullmatch(text):
        return str((parse_day(m[2]) - parse_day(m[1])).days)
    if m := _FORMS["between"].fullmatch(text):
        return str(abs((parse_day(m[2]) - parse_day(m[1])).days))
    raise ToolError(
        "expected a date (5 March 2024 or 2024-03-05), 'N days after DATE', "
        "'N days before DATE', 'days from DATE to DATE' or 'days between DATE and DATE'"
    )


def calendar_tool() -> Tool:
    return Tool(
        name="calendar",
        description="Find the weekday of a date, the date some days after or before one, or the "
        "days between two dates.",
        parameter="query",
        run=answer,
        parameter_description="A date (5 March 2024 or 2024-03-05) for its weekday, "
        "'10 days after 5 March 2024', or 'days from 1 March 2024 to 5 March 2024'.",
    )
